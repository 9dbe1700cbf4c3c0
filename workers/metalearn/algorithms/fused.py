"""The fused inner loop of MLP backbones: a meta-batch's tasks as batched tensor algebra.

The generic path (:mod:`~workers.metalearn.algorithms.base`) writes the inner loop
for one task and maps it over the meta-batch with ``vmap(grad(...))``. That is
general (any backbone, any algorithm), but each of its small ops goes through
functorch's batching and nested-autograd layers, so on the CPU a 1-40-40-1 MLP
runs at a few dozen meta-iterations a second, far below its FLOP limit.

For an MLP (``Linear -> ReLU -> ... -> Linear``) the forward pass and the
support-loss gradient can be written out over the whole meta-batch at once:
inputs ``[B, N, D]``, per-task weights ``[B, out, in]`` (``[out, in]`` before the
first step, when every task still shares the meta-weights), ``F.linear`` /
``baddbmm`` for the layers, the loss gradient in closed form (MSE:
``2 (out - y) / n``; cross-entropy: ``(softmax(out) - onehot(y)) / N``), and the
ReLU backward as ``threshold_backward`` (one op, which autograd can differentiate
again). One inner step is then about twenty large ops for all tasks, and
autograd differentiates through the unrolled loop once for the second order
(MAML's meta-gradient on the CPU is written out instead: :mod:`.analytic`).

The step itself is still :func:`~workers.metalearn.algorithms.base.inner_step`:
this module only supplies its gradient function. MAML, first-order MAML, Meta-SGD,
Reptile and ANIL (whose adapted part is a one-layer MLP, the head) use it when the
backbone is an MLP; the conv net keeps the generic path, which is also the
reference the fused path is tested against (``tests/workers/metalearn/test_fused.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

Params = dict[str, Tensor]

#: ReLU's backward as one differentiable op: ``grad`` where ``out > 0``, else 0.
_relu_backward = torch.ops.aten.threshold_backward.default


def layer_prefixes(names: Sequence[str]) -> list[str]:
    """``["body.1.weight", "body.1.bias", "head.weight", ...] -> ["body.1", "head"]``,
    in the order given (``named_parameters`` order is the forward order)."""
    prefixes: list[str] = []
    for name in names:
        prefix = name.rsplit(".", 1)[0]
        if prefix not in prefixes:
            prefixes.append(prefix)
    return prefixes


def _linear(h: Tensor, w: Tensor, b: Tensor, broadcast: bool = False) -> Tensor:
    if broadcast:  # sum_i h[..., n, i] w[..., o, i], reduced over an outer axis (no horizontal sums)
        return (h.unsqueeze(-1) * w.mT.unsqueeze(-3)).sum(-2) + b.unsqueeze(-2)
    if w.dim() == 2:  # shared by every task (before the first inner step)
        return F.linear(h, w, b)
    if w.shape[-1] == 1:  # one input (sinusoid's first layer): an outer product, cheaper broadcast
        return torch.addcmul(b.unsqueeze(-2), h, w.mT)
    return torch.baddbmm(b.unsqueeze(-2), h, w.mT)


def _back(d: Tensor, w: Tensor, broadcast: bool = False) -> Tensor:
    """``d @ w``: the gradient with respect to a layer's input."""
    if broadcast:
        return (d.unsqueeze(-1) * w.unsqueeze(-3)).sum(-2)
    if w.dim() == 2:
        return torch.matmul(d, w)
    if w.shape[-2] == 1:  # one output (regression heads): an outer product, cheaper broadcast
        return d * w
    return torch.bmm(d, w)


def _outer(d: Tensor, a: Tensor, broadcast: bool = False) -> Tensor:
    """``d^T a`` per task: a layer's weight gradient ``[B, out, in]``."""
    if broadcast:
        return (d.unsqueeze(-1) * a.unsqueeze(-2)).sum(-3)
    return torch.bmm(d.mT, a)


class FusedMLP:
    """Batched forward pass, losses and support-loss gradient of an MLP's layers.

    ``prefixes`` name the ``Linear`` layers in forward order (``<prefix>.weight``
    and ``<prefix>.bias`` in the parameter dicts); a ReLU follows every layer but
    the last, as in :class:`~workers.metalearn.backbones.MLP`.
    """

    def __init__(self, prefixes: Sequence[str], classification: bool):
        if not prefixes:
            raise ValueError("a fused MLP needs at least one layer")
        self.layers = [(f"{p}.weight", f"{p}.bias") for p in prefixes]
        self.classification = classification
        #: Write the contractions as broadcast products and sums rather than ``bmm``:
        #: slower eagerly (each materialises a ``[B, N, out, in]`` product), but under
        #: ``torch.compile`` inductor fuses the whole inner loop into one vectorised C++
        #: loop nest instead of calling a BLAS ``bmm`` on 5x40 matrices dozens of times
        #: (``benchmarks/engine_throughput.py``). ``Algorithm.compile`` turns it on.
        self.broadcast = False

    def _forward(self, fast: Params, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Outputs ``[B, N, out]`` and each layer's input (for the gradient)."""
        inputs = []
        h = x
        last = len(self.layers) - 1
        for i, (w, b) in enumerate(self.layers):
            inputs.append(h)
            h = _linear(h, fast[w], fast[b], self.broadcast)
            if i < last:
                h = torch.relu(h)
        return h, inputs

    def forward(self, fast: Params, x: Tensor) -> Tensor:
        """Outputs ``[B, N, out]`` of inputs ``[B, N, in]``."""
        return self._forward(fast, x)[0]

    def _loss_grad(self, out: Tensor, y: Tensor) -> Tensor:
        """d (per-task mean loss) / d out, for every task at once."""
        if self.classification:
            onehot = F.one_hot(y, out.shape[-1]).to(out.dtype)
            return (torch.softmax(out, dim=-1) - onehot) * (1.0 / out.shape[-2])
        diff = out - y
        return diff * (2.0 / diff[0].numel())

    def backward(self, fast: Params, inputs: list[Tensor], d: Tensor) -> tuple[Params, list[Tensor]]:
        """Per-task gradients ``[B, ...]`` from the error ``d`` at the outputs, and the
        error at each layer's outputs (what :mod:`.analytic` differentiates again)."""
        grads: Params = {}
        deltas = [d] * len(self.layers)
        for i in range(len(self.layers) - 1, -1, -1):
            w, b = self.layers[i]
            deltas[i] = d
            grads[w] = _outer(d, inputs[i], self.broadcast)
            grads[b] = d.sum(dim=-2)
            if i:
                d = _relu_backward(_back(d, fast[w], self.broadcast), inputs[i], 0.0)
        return grads, deltas

    def support_grad(self, fast: Params, x: Tensor, y: Tensor) -> Params:
        """Per-task gradients ``[B, ...]`` of each task's support loss, differentiable
        with respect to ``fast`` and ``x`` (for second-order meta-gradients)."""
        out, inputs = self._forward(fast, x)
        return self.backward(fast, inputs, self._loss_grad(out, y))[0]

    def support_grad_constant(self, fast: Params, x: Tensor, y: Tensor) -> Params:
        """:meth:`support_grad` without a graph (first-order algorithms detach it anyway)."""
        with torch.no_grad():
            return self.support_grad(fast, x, y)

    def losses(self, out: Tensor, y: Tensor) -> Tensor:
        """Each task's loss ``[B]``, as ``Algorithm.criterion`` computes it for one task."""
        if self.classification:
            per_example = F.cross_entropy(out.flatten(0, 1), y.flatten(), reduction="none")
            return per_example.view(y.shape).mean(dim=-1)
        return (out - y).square().flatten(1).mean(dim=1)

    def scores(self, out: Tensor, y: Tensor) -> Tensor:
        """Each task's accuracy (classification) or MSE ``[B]``, as ``Algorithm.score``."""
        if self.classification:
            return (out.argmax(dim=-1) == y).to(out.dtype).mean(dim=-1)
        return (out - y).square().flatten(1).mean(dim=1)
