"""The parameter names and shapes a config's algorithm has on a family, without torch.

The web process checks uploaded safetensors files against these shapes, so this
module is pure Python: it mirrors :mod:`workers.metalearn.backbones` (the MLP and
the 4-block conv net) and each algorithm's ``init_params`` in
:mod:`workers.metalearn.algorithms`. ``tests/workers/metalearn/test_shapes.py``
keeps the two in step: for every algorithm on a sinusoid MLP, a glyphs conv net
and a digits MLP, :func:`expected_shapes` equals the shapes of
``make_algorithm(config, info).init_params()``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from workers.metalearn.config import ConfigError, TrainConfig

Shapes = dict[str, list[int]]

#: Smallest image side the conv net takes (four 2x2 poolings).
MIN_CONV_SIDE = 16
CONV_BLOCKS = 4


class FamilyFacts(Protocol):
    """What :func:`expected_shapes` needs to know about a family: the fields of
    ``workers.metalearn.episodes.FamilyInfo`` (which imports torch)."""

    name: str
    kind: str
    input_shape: tuple[int, ...]
    desc_dim: int | None
    ways: int


def family_info_dict(family: Any, config: TrainConfig) -> dict[str, Any]:
    """``FamilyInfo.of(family, config).to_dict()`` without torch: the family facts a
    checkpoint records. ``ways`` is the config's for classification, 1 otherwise."""
    kind = str(family.kind)
    return {
        "name": str(family.name),
        "version": int(family.version),
        "kind": kind,
        "input_shape": [int(s) for s in family.input_shape],
        "desc_dim": None if family.desc_dim is None else int(family.desc_dim),
        "ways": int(config.ways) if kind == "classification" else 1,
    }


def _facts(info: FamilyFacts | Mapping[str, Any]) -> tuple[str, str, tuple[int, ...], int | None, int]:
    if isinstance(info, Mapping):
        desc = info.get("desc_dim")
        return (
            str(info["name"]),
            str(info["kind"]),
            tuple(int(s) for s in info["input_shape"]),
            None if desc is None else int(desc),
            int(info["ways"]),
        )
    desc = info.desc_dim
    return (
        str(info.name),
        str(info.kind),
        tuple(int(s) for s in info.input_shape),
        None if desc is None else int(desc),
        int(info.ways),
    )


def _linear(prefix: str, in_features: int, out_features: int) -> Shapes:
    return {f"{prefix}weight": [out_features, in_features], f"{prefix}bias": [out_features]}


def _mlp(input_shape: Sequence[int], hidden: Sequence[int], out_features: int) -> tuple[Shapes, int]:
    """``backbones.MLP``: ``body`` is ``[FlattenInputs, Linear, ReLU, Linear, ReLU, ...]``,
    so the linear layers sit at indices 1, 3, 5...; then ``head``."""
    width = math.prod(input_shape) if input_shape else 1
    shapes: Shapes = {}
    for i, size in enumerate(hidden):
        shapes.update(_linear(f"body.{1 + 2 * i}.", width, int(size)))
        width = int(size)
    shapes.update(_linear("head.", width, out_features))
    return shapes, width


def _conv(input_shape: Sequence[int], filters: int, out_features: int) -> tuple[Shapes, int]:
    """``backbones.ConvNet``: four ``[Conv2d, BatchNorm, ReLU, MaxPool]`` blocks at
    indices ``4b .. 4b+3``, a Flatten, then ``head``."""
    channels, height, width = (int(s) for s in input_shape)
    if min(height, width) < MIN_CONV_SIDE:
        raise ConfigError(
            {"family": f"images of {height}x{width} are too small for the 4-block conv net (min 16x16)"}
        )
    shapes: Shapes = {}
    for block in range(CONV_BLOCKS):
        shapes[f"body.{4 * block}.weight"] = [filters, channels, 3, 3]
        shapes[f"body.{4 * block}.bias"] = [filters]
        shapes[f"body.{4 * block + 1}.weight"] = [filters]
        shapes[f"body.{4 * block + 1}.bias"] = [filters]
        channels = filters
        height, width = height // 2, width // 2
    feature_dim = filters * height * width
    shapes.update(_linear("head.", feature_dim, out_features))
    return shapes, feature_dim


def _backbone(
    input_shape: tuple[int, ...], out_features: int, config: TrainConfig
) -> tuple[Shapes, int, bool]:
    """Shapes of ``make_backbone``, its feature width, and whether it is the conv net."""
    if len(input_shape) == 3:
        shapes, features = _conv(input_shape, int(config.conv_filters), out_features)
        return shapes, features, True
    shapes, features = _mlp(input_shape, config.hidden, out_features)
    return shapes, features, False


def _check_compatible(algorithm: str, name: str, kind: str, desc_dim: int | None) -> None:
    """``algorithms.check_compatible``."""
    if algorithm == "protonet" and kind != "classification":
        raise ConfigError({"algorithm": f"protonet is for classification; family {name!r} is regression"})
    if algorithm == "seed-mnn" and (kind == "classification" or not desc_dim):
        raise ConfigError(
            {
                "algorithm": "seed-mnn needs a regression family with a task description; "
                f"family {name!r} is {kind}" + ("" if desc_dim else " without a description")
            }
        )


def _mnn(
    backbone: Shapes,
    feature_dim: int,
    conv: bool,
    input_shape: tuple[int, ...],
    kind: str,
    desc_dim: int | None,
    ways: int,
    config: TrainConfig,
) -> Shapes:
    """``algorithms.mnn.MNN``: the conv body (conv only), the hypernetwork ``hyper.*``
    writing the target network, and the set encoder ``encoder.*`` when the family has
    no description."""
    if conv:
        body = {k: v for k, v in backbone.items() if k.startswith("body.")}
        target = {k: v for k, v in backbone.items() if k.startswith("head.")}
    else:
        body, target = {}, dict(backbone)
        feature_dim = math.prod(input_shape)
    hidden = int(config.mnn_hidden)
    classification = kind == "classification"
    encoder: Shapes = {}
    if desc_dim is not None and desc_dim > 0:
        r_dim = desc_dim
    else:
        in_dim = feature_dim if classification else feature_dim + 1
        embed = int(config.mnn_embed_dim)
        encoder = {**_linear("encoder.0.", in_dim, hidden), **_linear("encoder.2.", hidden, embed)}
        r_dim = embed * (ways if classification else 1)
    n_target = sum(math.prod(shape) for shape in target.values())
    hyper = {
        **_linear("hyper.0.", r_dim, hidden),
        **_linear("hyper.2.", hidden, hidden),
        **_linear("hyper.4.", hidden, n_target),
    }
    return {**body, **hyper, **encoder}


def _seed_mnn(input_shape: tuple[int, ...], desc_dim: int) -> Shapes:
    """``algorithms.seed_mnn.SeedMNN``: ``Dense(128) -> Dense(64) -> Dense(1)`` on
    ``concat(description, x)``."""
    in_features = desc_dim + math.prod(input_shape)
    return {
        **_linear("dense.", in_features, 128),
        **_linear("dense_1.", 128, 64),
        **_linear("dense_2.", 64, 1),
    }


def expected_shapes(config: TrainConfig, family_info: FamilyFacts | Mapping[str, Any]) -> Shapes:
    """``{name: shape}`` of the meta-parameters ``make_algorithm(config, info)`` creates.

    ``family_info`` is a ``FamilyInfo``, anything with its fields, or its ``to_dict()``.
    Raises :class:`ConfigError` (keyed ``algorithm`` or ``family``) where the engine
    would refuse the combination.
    """
    name, kind, input_shape, desc_dim, ways = _facts(family_info)
    algorithm = config.algorithm
    _check_compatible(algorithm, name, kind, desc_dim)
    if algorithm == "seed-mnn":
        return _seed_mnn(input_shape, int(desc_dim or 0))
    backbone, feature_dim, conv = _backbone(input_shape, ways, config)
    if algorithm in ("maml", "fomaml", "reptile", "anil"):
        return backbone
    if algorithm == "metasgd":
        return {**backbone, **{f"lr.{k}": list(v) for k, v in backbone.items()}}
    if algorithm == "protonet":
        return {k: v for k, v in backbone.items() if k.startswith("body.")}
    if algorithm == "mnn":
        return _mnn(backbone, feature_dim, conv, input_shape, kind, desc_dim, ways, config)
    raise ConfigError({"algorithm": f"unknown algorithm {algorithm!r}"})


def shape_differences(
    expected: Mapping[str, Sequence[int]], actual: Mapping[str, Sequence[int]]
) -> list[str]:
    """Human-readable differences, expected names first, in order: ``"head.bias:
    expected [1], got [5]"``, ``"body.1.weight: missing"``, ``"extra: not expected
    (shape [3])"``. Empty when they match."""
    lines: list[str] = []
    for key, shape in expected.items():
        if key not in actual:
            lines.append(f"{key}: missing (expected {list(shape)})")
        elif list(actual[key]) != list(shape):
            lines.append(f"{key}: expected {list(shape)}, got {list(actual[key])}")
    for key, shape in actual.items():
        if key not in expected:
            lines.append(f"{key}: not expected (shape {list(shape)})")
    return lines
