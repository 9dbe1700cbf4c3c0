"""Parameter names and shapes of the backbones, without torch.

The one torch-free account of :mod:`workers.metalearn.backbones` (the MLP and the
4-block conv net): the torch modules import :data:`CONV_BLOCKS` and
:func:`check_conv_input` from here, and each algorithm's spec
(:mod:`workers.metalearn.specs`) builds its meta-parameter shapes from
:func:`backbone_shapes`. ``tests/workers/metalearn/test_specs.py`` checks them
against the torch modules' real parameters.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from workers.metalearn.types import ConfigError

Shapes = dict[str, list[int]]

#: Smallest image side the conv net takes (four 2x2 poolings).
MIN_CONV_SIDE = 16
#: ``conv3x3 -> BatchNorm -> ReLU -> maxpool2`` blocks of the conv net.
CONV_BLOCKS = 4
#: Layers per conv block, hence the index stride of ``body.<i>`` names.
CONV_BLOCK_LAYERS = 4


class FamilyFacts(Protocol):
    """The fields of ``workers.metalearn.episodes.FamilyInfo`` (which imports torch)."""

    name: str
    kind: str
    input_shape: tuple[int, ...]
    desc_dim: int | None
    ways: int


@dataclass(frozen=True)
class Facts:
    """A family's facts as plain values: from a ``FamilyInfo``, or its ``to_dict()``."""

    name: str
    kind: str
    input_shape: tuple[int, ...]
    desc_dim: int | None
    ways: int

    @property
    def classification(self) -> bool:
        return self.kind == "classification"

    @classmethod
    def of(cls, info: FamilyFacts | Mapping[str, Any]) -> Facts:
        get = info.get if isinstance(info, Mapping) else lambda key: getattr(info, key)
        desc = get("desc_dim")
        return cls(
            name=str(get("name")),
            kind=str(get("kind")),
            input_shape=tuple(int(s) for s in get("input_shape")),
            desc_dim=None if desc is None else int(desc),
            ways=int(get("ways")),
        )


def family_info_dict(family: Any, config: Any) -> dict[str, Any]:
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


def uses_conv(input_shape: Sequence[int]) -> bool:
    """Image-shaped inputs ``[C, H, W]`` get the conv net; everything else the MLP."""
    return len(input_shape) == 3


def check_conv_input(input_shape: Sequence[int]) -> None:
    """Raise :class:`ConfigError` (``family``) when an image is too small for the
    conv net's four 2x2 poolings."""
    height, width = (int(s) for s in input_shape[1:])
    if min(height, width) < MIN_CONV_SIDE:
        raise ConfigError(
            {"family": f"images of {height}x{width} are too small for the 4-block conv net (min 16x16)"}
        )


def linear(prefix: str, in_features: int, out_features: int) -> Shapes:
    """``nn.Linear``'s parameters under ``prefix``."""
    return {f"{prefix}weight": [out_features, in_features], f"{prefix}bias": [out_features]}


def mlp_shapes(input_shape: Sequence[int], hidden: Sequence[int], out_features: int) -> tuple[Shapes, int]:
    """``backbones.MLP``: ``body`` is ``[FlattenInputs, Linear, ReLU, Linear, ReLU, ...]``,
    so the linear layers sit at indices 1, 3, 5...; then ``head``. Also its feature width."""
    width = math.prod(input_shape) if input_shape else 1
    shapes: Shapes = {}
    for i, size in enumerate(hidden):
        shapes.update(linear(f"body.{1 + 2 * i}.", width, int(size)))
        width = int(size)
    shapes.update(linear("head.", width, out_features))
    return shapes, width


def conv_shapes(input_shape: Sequence[int], filters: int, out_features: int) -> tuple[Shapes, int]:
    """``backbones.ConvNet``: :data:`CONV_BLOCKS` ``[Conv2d, BatchNorm, ReLU, MaxPool]``
    blocks, a Flatten, then ``head``. Also its feature width."""
    check_conv_input(input_shape)
    channels, height, width = (int(s) for s in input_shape)
    shapes: Shapes = {}
    for block in range(CONV_BLOCKS):
        conv, norm = CONV_BLOCK_LAYERS * block, CONV_BLOCK_LAYERS * block + 1
        shapes[f"body.{conv}.weight"] = [filters, channels, 3, 3]
        shapes[f"body.{conv}.bias"] = [filters]
        shapes[f"body.{norm}.weight"] = [filters]
        shapes[f"body.{norm}.bias"] = [filters]
        channels = filters
        height, width = height // 2, width // 2
    feature_dim = filters * height * width
    shapes.update(linear("head.", feature_dim, out_features))
    return shapes, feature_dim


def backbone_shapes(input_shape: Sequence[int], out_features: int, config: Any) -> tuple[Shapes, int]:
    """Shapes of ``backbones.make_backbone`` for an input shape, and its feature width."""
    if uses_conv(input_shape):
        return conv_shapes(input_shape, int(config.conv_filters), out_features)
    return mlp_shapes(input_shape, config.hidden, out_features)


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
