"""Reptile."""

from __future__ import annotations

import torch
from torch.func import vmap

from workers.metalearn.algorithms.base import Params, compile_options
from workers.metalearn.algorithms.maml import MAML
from workers.metalearn.config import TrainConfig
from workers.metalearn.episodes import Episode, FamilyInfo
from workers.metalearn.specs import SPECS


class Reptile(MAML):
    """Reptile: move the initialisation towards the weights adapted to each task.

    Nichol, Achiam & Schulman, "On First-Order Meta-Learning Algorithms", 2018
    (arXiv:1803.02999). Each task of the meta-batch is adapted by ``inner_steps``
    plain SGD steps on its support set (the shared inner step, first order, no
    graph kept); the meta-gradient handed to the outer optimiser is
    ``theta - mean_tasks(phi_task)``, the batched Reptile direction. The reported
    loss is the query loss of the adapted weights.
    """

    spec = SPECS["reptile"]
    closed_form = False  # its meta-gradient is a difference of weights, not a derivative

    def __init__(self, config: TrainConfig, info: FamilyInfo):
        super().__init__(config, info)
        self.first_order = True
        generic = vmap(self._task_adapt, in_dims=(None, 0))
        self._batched_adapt = self._fused_batched_adapt if self.fused else generic

    def use_generic(self) -> None:
        super().use_generic()
        self._batched_adapt = vmap(self._task_adapt, in_dims=(None, 0))

    def _fused_batched_adapt(self, meta: Params, ep: Episode) -> tuple[Params, torch.Tensor, torch.Tensor]:
        """What ``vmap(_task_adapt)`` returns, from the fused inner loop."""
        assert self.fused is not None
        fast, xq = self.fused_adapt(meta, ep, True)
        out = self.fused.forward(fast, xq)
        return fast, self.fused.losses(out, ep.yq), self.fused.scores(out, ep.yq)

    def _task_adapt(self, meta: Params, ep: Episode) -> tuple[Params, torch.Tensor, torch.Tensor]:
        fast, ctx = self.start(meta, ep.xs, ep.ys, ep.desc)
        fast = self.inner_loop(meta, fast, ctx, ep.xs, ep.ys, self.train_steps, self.inner_lrs(meta), True)
        out = self.forward(meta, fast, ctx, ep.xq)
        return fast, self.criterion(out, ep.yq), self.score(out, ep.yq)

    def meta_grads(self, meta: Params, ep: Episode) -> tuple[Params, dict[str, torch.Tensor]]:
        meta = {k: v.detach() for k, v in meta.items()}
        with torch.no_grad():
            fast, losses, scores = self._batched_adapt(meta, ep)
            grads = {k: meta[k] - fast[k].mean(dim=0) for k in meta}
        return grads, self._metrics(losses.mean(), scores)

    def compile(self, *, cpu: bool = False) -> None:
        self._eager_adapt = self._batched_adapt
        self._compiled_form(True)
        self._batched_adapt = torch.compile(self._batched_adapt, options=compile_options(cpu))

    def uncompile(self) -> None:
        self._compiled_form(False)
        self._batched_adapt = getattr(self, "_eager_adapt", self._batched_adapt)
