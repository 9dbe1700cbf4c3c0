"""A whole meta-iteration as one compiled graph: meta-gradient, clipping and Adam.

When a run compiles and its meta-gradient has the closed form of
:mod:`~workers.metalearn.algorithms.analytic` (MAML, first-order MAML and Meta-SGD on an MLP,
on the CPU), what is left of an iteration besides that graph is bookkeeping:
``clip_grad_norm_`` and ``torch.optim.Adam.step`` cost about as much as the
compiled meta-gradient itself (about 0.5 ms of a 1.5 ms iteration on this
2-core CPU: a dozen small eager ops per tensor), and ``Adam.step`` graph-breaks by
design when traced. So the compiled iteration calls the library's own pieces inside
one graph instead, on the optimiser's own state tensors, updated in place:

* :func:`torch.nn.utils.get_total_norm` of the meta-gradient, and the clipping
  factor of ``clip_grad_norm_`` (``max_norm / (norm + 1e-6)``, at most 1);
* :func:`torch.optim.adam.adam`, the functional form that ``Adam.step`` calls, with
  the optimiser's hyper-parameters and the step's scheduled learning rate (a
  tensor, so a schedule does not recompile);
* when the loss or the norm is not finite, the weights and Adam's state are put
  back as they were (in the same graph), and the loop raises
  :class:`~workers.metalearn.types.DivergenceError` as on the eager path: nothing
  of a diverging step is applied.

The optimiser stays a ``torch.optim.Adam``: its ``state_dict`` is what checkpoints
save and resume restores. The state exists after the run's first (eager) step;
from then on the loop calls :class:`MetaStep`. Its updates equal the eager path's to
float32 rounding (``tests/workers/metalearn/test_metastep.py``).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.optim.adam import adam

from workers.metalearn.algorithms import Algorithm
from workers.metalearn.algorithms.base import compile_options
from workers.metalearn.episodes import Episode

Params = dict[str, Tensor]
#: Adam's options the compiled step supports: the engine's optimiser (``loop.make_optimizer``).
_PLAIN_ADAM = {
    "amsgrad": False,
    "maximize": False,
    "weight_decay": 0,
    "differentiable": False,
    "capturable": False,  # its step counts live on the device; here they are CPU scalars
    "fused": None,
}


class StepOut(NamedTuple):
    loss: Tensor
    grad_norm: Tensor
    scores: Tensor  # each task's accuracy or MSE [B]
    grads: list[Tensor]  # the meta-gradient before clipping, in the weights' order


class MetaStep:
    """One meta-iteration of ``trainer`` (closed form) on ``meta`` with ``optimizer``."""

    def __init__(
        self, trainer: Algorithm, optimizer: torch.optim.Adam, meta: Params, clip: float | None, cpu: bool
    ):
        if trainer.analytic is None:
            raise ValueError("the compiled meta-step needs the closed-form meta-gradient")
        (group,) = optimizer.param_groups
        unsupported = {k: group.get(k) for k, v in _PLAIN_ADAM.items() if group.get(k, v) != v}
        if unsupported:
            raise ValueError(f"the compiled meta-step does not support Adam with {unsupported}")
        self.trainer, self.optimizer, self.meta = trainer, optimizer, meta
        self.clip = math.inf if clip is None else float(clip)
        self.hyper: dict[str, Any] = {
            "beta1": group["betas"][0],
            "beta2": group["betas"][1],
            "eps": group["eps"],
            "weight_decay": 0.0,
            "amsgrad": False,
            "maximize": False,
        }
        self.lr = torch.tensor(float(group["lr"]))
        trainer.prepare_compiled()
        self._compiled = torch.compile(self._step, options=compile_options(cpu), fullgraph=True)

    def ready(self) -> bool:
        """Whether Adam's state exists (it does after the first eager step, or a resume)."""
        return all(p in self.optimizer.state for p in self.meta.values())

    def _state(self) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        states = [self.optimizer.state[p] for p in self.meta.values()]
        return [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states], [s["step"] for s in states]

    def __call__(self, episode: Episode, lr: float) -> StepOut:
        """Take the step at learning rate ``lr``; nothing is applied when the loss
        or the gradient norm is not finite."""
        self.lr.fill_(lr)
        return StepOut(*self._compiled(self.meta, episode, *self._state(), self.lr))

    def warm(self, episode: Episode) -> StepOut:
        """Compile now, and take the step on copies of the weights and of Adam's
        state (zeros before the first step): the real ones are left untouched."""
        meta = {k: v.detach().clone().requires_grad_(v.requires_grad) for k, v in self.meta.items()}
        if self.ready():
            state = [[t.clone() for t in part] for part in self._state()]
        else:
            zeros = [torch.zeros_like(p) for p in meta.values()]
            state = [zeros, [z.clone() for z in zeros], [torch.tensor(0.0) for _ in zeros]]
        return StepOut(*self._compiled(meta, episode, *state, self.lr.clone()))

    def _step(
        self,
        meta: Params,
        ep: Episode,
        exp_avgs: list[Tensor],
        exp_avg_sqs: list[Tensor],
        steps: list[Tensor],
        lr: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor, list[Tensor]]:
        grads, losses, scores = self.trainer.closed_form_grads(meta, ep)
        loss = losses.mean()
        with torch.no_grad():
            params = list(meta.values())
            norm = torch.nn.utils.get_total_norm(list(grads.values()), foreach=False)
            factor = torch.clamp(self.clip / (norm + 1e-6), max=1.0)
            ok = torch.isfinite(loss) & torch.isfinite(norm)
            kept = [t.clone() for t in (*params, *exp_avgs, *exp_avg_sqs, *steps)]
            clipped = [torch.where(ok, g * factor, torch.zeros_like(g)) for g in grads.values()]
            adam(params, clipped, exp_avgs, exp_avg_sqs, [], steps, foreach=False, lr=lr, **self.hyper)
            for now, before in zip((*params, *exp_avgs, *exp_avg_sqs, *steps), kept, strict=True):
                now.copy_(torch.where(ok, now, before))
        return loss, norm, scores, list(grads.values())
