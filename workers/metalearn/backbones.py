"""Backbone networks, used statelessly through :func:`torch.func.functional_call`.

A backbone is an ``nn.Module`` with two children: ``body`` (input -> features) and
``head`` (a ``Linear`` from features to outputs). Parameter names therefore start
with ``body.`` or ``head.``; ANIL adapts only the head, ProtoNets embed with the
body, and MNN generates the head of the conv net. The module itself only holds
the layer structure: weights live in plain ``dict[str, Tensor]`` meta-parameters,
and the template module is moved to the ``meta`` device so that a forgotten
parameter fails loudly instead of silently using stale weights.

* :class:`MLP` — ``in -> hidden... -> out`` with ReLU (1-40-40-1 for sinusoid,
  Finn et al. 2017), for families whose inputs are vectors.
* :class:`ConvNet` — the 4-block conv net of the few-shot literature (Vinyals et
  al. 2016; Finn et al. 2017): ``conv3x3 -> BatchNorm -> ReLU -> maxpool2``, four
  times, for ``[C, H, W]`` inputs (``1x28x28`` glyphs: 28->14->7->3->1).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from workers.metalearn.config import TrainConfig
from workers.metalearn.shapes import CONV_BLOCKS, check_conv_input, uses_conv

Params = dict[str, Tensor]

BODY = "body."
HEAD = "head."


class FlattenInputs(nn.Module):
    """``[N, ...] -> [N, prod(...)]``; a no-op on ``[N, D]`` (cheaper than
    ``nn.Flatten`` under ``vmap``, where every call counts on the hot path)."""

    def forward(self, x: Tensor) -> Tensor:
        return x if x.dim() == 2 else x.flatten(start_dim=1)


class MLP(nn.Module):
    """A ReLU multi-layer perceptron; inputs of any shape are flattened per example."""

    def __init__(self, in_features: int, hidden: Sequence[int], out_features: int):
        super().__init__()
        layers: list[nn.Module] = [FlattenInputs()]
        width = in_features
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, out_features)
        self.feature_dim = width

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


class TaskBatchNorm2d(nn.BatchNorm2d):
    """``BatchNorm2d(track_running_stats=False)``: always the statistics of the batch given.

    The affine part is applied after a non-affine ``batch_norm`` rather than inside
    it: with per-task (batched) ``weight``/``bias``, as after an inner step under
    ``vmap``, torch's fused ``batch_norm`` gives wrong second-order gradients
    (seen with torch 2.13; the batching rule of batch_norm's backward, cf.
    pytorch/functorch#534). ``test_gradients.py`` checks the conv net's
    second-order meta-gradient against a per-task loop. Same function, same
    parameter names.
    """

    def __init__(self, num_features: int):
        super().__init__(num_features, track_running_stats=False)

    def forward(self, x: Tensor) -> Tensor:
        h = F.batch_norm(x, None, None, training=True, momentum=0.0, eps=self.eps)
        return h * self.weight[:, None, None] + self.bias[:, None, None]


class ConvNet(nn.Module):
    """Four blocks of ``conv3x3(filters) -> BatchNorm -> ReLU -> maxpool2``, then a linear head.

    BatchNorm is built with ``track_running_stats=False``: it always normalises with
    the statistics of the batch it is given. Under ``vmap`` over the tasks of a
    meta-batch each task is one batch, so every task uses its own support (or
    query) statistics, at training and at test time alike, as in MAML's reference
    implementation. There are no running buffers to update in place, which is
    what makes the net usable inside ``vmap`` and ``functional_call``.
    """

    def __init__(self, input_shape: Sequence[int], filters: int, out_features: int):
        super().__init__()
        channels, height, width = (int(s) for s in input_shape)
        blocks: list[nn.Module] = []
        for _ in range(CONV_BLOCKS):
            blocks += [
                nn.Conv2d(channels, filters, kernel_size=3, padding=1),
                TaskBatchNorm2d(filters),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            channels = filters
            height, width = height // 2, width // 2
        blocks.append(nn.Flatten(start_dim=1))
        self.body = nn.Sequential(*blocks)
        self.feature_dim = filters * height * width
        self.head = nn.Linear(self.feature_dim, out_features)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


Backbone = MLP | ConvNet


def make_backbone(input_shape: Sequence[int], out_features: int, config: TrainConfig) -> Backbone:
    """The backbone for a family's input shape, sized by ``config.hidden``/``conv_filters``.

    Raises :class:`ConfigError` when an image is too small for four 2x2 poolings.
    """
    shape = tuple(int(s) for s in input_shape)
    if uses_conv(shape):
        check_conv_input(shape)
        return ConvNet(shape, config.conv_filters, out_features)
    return MLP(math.prod(shape) if shape else 1, config.hidden, out_features)


def to_stateless(module: nn.Module) -> tuple[nn.Module, Params]:
    """Detach a module's initial parameters into a dict and move the module to ``meta``."""
    params = {name: p.detach().clone() for name, p in module.named_parameters()}
    if list(module.buffers()):
        raise ValueError("backbones must not hold buffers (use BatchNorm(track_running_stats=False))")
    return module.to("meta"), params


def split_params(params: Mapping[str, Tensor], prefix: str) -> Params:
    """The entries of ``params`` under ``prefix``, with the prefix stripped."""
    n = len(prefix)
    return {name[n:]: value for name, value in params.items() if name.startswith(prefix)}


def add_prefix(params: Mapping[str, Tensor], prefix: str) -> Params:
    return {prefix + name: value for name, value in params.items()}


def body_forward(module: Backbone, body: Mapping[str, Tensor], x: Tensor) -> Tensor:
    """Features of ``x`` under body parameters ``body`` (names without ``body.``)."""
    return functional_call(module.body, dict(body), (x,))


def head_forward(module: Backbone, head: Mapping[str, Tensor], h: Tensor) -> Tensor:
    """Outputs from features ``h`` under head parameters ``head`` (``weight``, ``bias``)."""
    return functional_call(module.head, dict(head), (h,))


def shapes_of(params: Mapping[str, Tensor]) -> dict[str, list[int]]:
    return {name: list(value.shape) for name, value in params.items()}


def glorot_uniform_(linear: nn.Linear) -> nn.Linear:
    """Keras' default Dense initialisation: Glorot-uniform weights, zero biases."""
    nn.init.xavier_uniform_(linear.weight)
    if linear.bias is not None:
        nn.init.zeros_(linear.bias)
    return linear


def count(params: Mapping[str, Tensor]) -> int:
    return sum(int(v.numel()) for v in params.values())


def flat_to_params(flat: Tensor, shapes: Mapping[str, torch.Size]) -> Params:
    """Cut a flat vector ``[P]`` into named tensors of the given shapes (vmap-safe)."""
    out: Params = {}
    offset = 0
    for name, shape in shapes.items():
        size = math.prod(shape)
        out[name] = flat[offset : offset + size].reshape(shape)
        offset += size
    return out
