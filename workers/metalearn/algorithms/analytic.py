"""MAML's meta-gradient on an MLP in closed form: the inner loop forward, then
Hessian-vector products backward, with no autograd.

The fused path (:mod:`.fused`) writes the inner loop as batched tensor algebra
and lets autograd differentiate through it. Autograd then records every op of
the unrolled loop and replays its backward op by op; under ``torch.compile`` it
becomes a second graph, called through autograd's engine. For MAML on an MLP
(``Linear -> ReLU -> ... -> Linear``, MSE or cross-entropy) the whole
meta-gradient can instead be written out, as one function of the meta-weights
and the episode:

* the inner loop runs forward as in :class:`~.fused.FusedMLP`, keeping each
  step's layer inputs and back-propagated errors (``inputs``, ``deltas``);
* the query loss's gradient at the adapted weights starts the reverse pass,
  ``v = d L_query / d theta_K`` (first-order MAML stops here);
* each inner step ``theta_{k+1} = theta_k - lr * g(theta_k)`` is then undone,
  ``v <- v - lr * H_k v``, where ``H_k v`` is the support loss's Hessian-vector
  product at ``theta_k``, by Pearlmutter's R-operator (Neural Computation 6(1),
  1994): a forward pass of directional derivatives, then the backward pass of the
  gradient differentiated in that direction. ReLU's second derivative is zero, so
  its masks are those of the forward pass;
* the meta-gradient is ``v`` averaged over the tasks.

The result is the same meta-gradient as the fused path's (tested to 1e-5 in
``tests/workers/metalearn/test_analytic.py``), as one graph without a backward
graph: eagerly about ten large ops per layer and step, and compiled, one graph
with no autograd engine between its pieces (:mod:`~workers.metalearn.metastep`
compiles it together with Adam; ``benchmarks/engine_throughput.py``'s ``fused``
sides on the CPU).

Meta-SGD's learned rates fit the same reverse pass: its step is
``theta_{k+1} = theta_k - alpha * g_k`` elementwise, so the adjoint becomes
``v <- v - H_k (alpha * v)``, and each step adds ``-g_k * v`` (``v`` before it is
undone) to the rates' gradient. MAML, first-order MAML and Meta-SGD use it, whose
meta-parameters are the fast weights' initial values (and the rates); ANIL (a body
in front of the adapted head) keeps autograd.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from workers.metalearn.algorithms.fused import FusedMLP, Params, _back, _linear, _outer, _relu_backward


@dataclass
class _Step:
    """What the reverse pass needs of one forward pass: the weights it used, each
    layer's input, each layer's back-propagated error, the network's output, and the
    per-task gradient it gave (Meta-SGD's rates are differentiated along it)."""

    fast: Params
    inputs: list[Tensor]
    deltas: list[Tensor]
    out: Tensor
    grads: Params


class AnalyticMAML:
    """The meta-gradient of MAML's batched meta-loss, written out (module docstring)."""

    def __init__(self, mlp: FusedMLP):
        self.mlp = mlp
        self.layers = mlp.layers

    @property
    def broadcast(self) -> bool:
        return self.mlp.broadcast

    def _linear(self, h: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        if b is None:
            b = w.new_zeros(()).expand(w.shape[:-1])
        return _linear(h, w, b, self.broadcast)

    def _pass(self, fast: Params, x: Tensor, y: Tensor) -> tuple[Params, _Step]:
        """Forward and backward of the mean loss: per-task gradients ``[B, ...]`` and the tape."""
        out, inputs = self.mlp._forward(fast, x)
        grads, deltas = self.mlp.backward(fast, inputs, self.mlp._loss_grad(out, y))
        return grads, _Step(fast, inputs, deltas, out, grads)

    def _loss_grad_r(self, out: Tensor, r_out: Tensor) -> Tensor:
        """The directional derivative of ``FusedMLP._loss_grad`` along ``r_out``."""
        if self.mlp.classification:
            p = torch.softmax(out, dim=-1)
            pr = p * r_out
            return (pr - p * pr.sum(dim=-1, keepdim=True)) * (1.0 / out.shape[-2])
        return r_out * (2.0 / out[0].numel())

    def hvp(self, step: _Step, v: Params) -> Params:
        """The support loss's Hessian at ``step.fast`` times ``v``, per task."""
        fast, inputs, last = step.fast, step.inputs, len(self.layers) - 1
        r_inputs: list[Tensor | None] = [None]  # the R of each layer's input (the data's is 0)
        for i, (w, b) in enumerate(self.layers):
            r = self._linear(inputs[i], v[w], v[b])
            if r_inputs[i] is not None:
                r = r + self._linear(r_inputs[i], fast[w], None)
            if i < last:
                r_inputs.append(_relu_backward(r, inputs[i + 1], 0.0))
        r_d = self._loss_grad_r(step.out, r)
        hv: Params = {}
        for i in range(last, -1, -1):
            w, b = self.layers[i]
            d, a, r_a = step.deltas[i], inputs[i], r_inputs[i]
            hv[w] = _outer(r_d, a, self.broadcast)
            if r_a is not None:
                hv[w] = hv[w] + _outer(d, r_a, self.broadcast)
            hv[b] = r_d.sum(dim=-2)
            if i:
                back = _back(r_d, fast[w], self.broadcast) + _back(d, v[w], self.broadcast)
                r_d = _relu_backward(back, a, 0.0)
        return hv

    def meta_grads(
        self,
        meta: Params,
        support: tuple[Tensor, Tensor],
        query: tuple[Tensor, Tensor],
        steps: int,
        lr: float | Mapping[str, Tensor],
        first_order: bool,
        inner_step: Callable[..., Params],
    ) -> tuple[Params, Params, Tensor, Tensor]:
        """The meta-gradient of the mean query loss after ``steps`` inner steps of
        SGD at ``lr`` (a float, or Meta-SGD's rates per weight name): the weights'
        gradient, the rates' (empty for a float), and each task's query loss and
        score ``[B]``. ``inner_step`` is :func:`~.base.inner_step`, the step every
        algorithm takes (passed in: base imports this module)."""
        (xs, ys), (xq, yq) = support, query
        tape: list[_Step] = []

        def support_grad(fast: Params, x: Tensor, y: Tensor) -> Params:
            grads, step = self._pass(fast, x, y)
            tape.append(step)
            return grads

        fast = {name: meta[name] for pair in self.layers for name in pair}
        for _ in range(steps):
            fast = inner_step(support_grad, fast, lr, (xs, ys))
        v, last = self._pass(fast, xq, yq)
        rates: Params = {}
        for step in reversed(tape):  # the adjoint of each step, last to first
            v, rates = self._undo(step, v, lr, first_order, rates)
        scale = 1.0 / xs.shape[0]
        weights = {name: v[name].sum(dim=0) * scale for name in fast}
        rates = {name: g.sum(dim=0) * scale for name, g in rates.items()}
        return weights, rates, self.mlp.losses(last.out, yq), self.mlp.scores(last.out, yq)

    def _undo(
        self, step: _Step, v: Params, lr: float | Mapping[str, Tensor], first_order: bool, rates: Params
    ) -> tuple[Params, Params]:
        """The adjoint ``v`` before ``step`` (unchanged when first order), and the
        rates' gradient with this step's term ``-g * v`` added."""
        if isinstance(lr, Mapping):
            for name in v:
                term = step.grads[name] * v[name]
                rates[name] = rates[name] - term if name in rates else -term
            if not first_order:
                hv = self.hvp(step, {name: lr[name] * v[name] for name in v})
                v = {name: v[name] - hv[name] for name in v}
            return v, rates
        if not first_order:
            hv = self.hvp(step, v)
            v = {name: torch.add(v[name], hv[name], alpha=-lr) for name in v}
        return v, rates
