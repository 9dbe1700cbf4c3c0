"""Prototypical Networks."""

from __future__ import annotations

import torch
from torch import Tensor

from workers.metalearn.algorithms.base import Algorithm, Params
from workers.metalearn.backbones import BODY, body_forward, make_backbone, split_params, to_stateless
from workers.metalearn.config import TrainConfig
from workers.metalearn.episodes import FamilyInfo
from workers.metalearn.specs import SPECS


class ProtoNet(Algorithm):
    """Prototypical Networks (classification only).

    Snell, Swersky & Zemel, "Prototypical Networks for Few-shot Learning", NeurIPS
    2017 (arXiv:1703.05175). The backbone's body embeds every example; each class's
    prototype is the mean embedding of its support examples, and the logits of a
    query are its negative squared Euclidean distances to the prototypes. The body
    is meta-learned by cross-entropy on the query set; adaptation takes no gradient
    step (the prototypes are the adaptation), so ``inner_steps`` is ignored.
    """

    spec = SPECS["protonet"]

    def __init__(self, config: TrainConfig, info: FamilyInfo):
        super().__init__(config, info)
        self.net, init = to_stateless(make_backbone(info.input_shape, info.ways, config))
        self._init = {k: v for k, v in init.items() if k.startswith(BODY)}

    def init_params(self) -> Params:
        return {k: v.clone() for k, v in self._init.items()}

    def encode(self, meta: Params, x: Tensor) -> Tensor:
        return body_forward(self.net, split_params(meta, BODY), x)

    def start(self, meta: Params, hs: Tensor, ys: Tensor, desc: Tensor) -> tuple[Params, Params]:
        classes = torch.arange(self.info.ways, device=ys.device)
        onehot = (ys.unsqueeze(-1) == classes).to(hs.dtype)  # [N, ways]
        counts = onehot.sum(dim=0).clamp(min=1.0)
        prototypes = (onehot.transpose(0, 1) @ hs) / counts.unsqueeze(-1)  # [ways, D]
        return {}, {"prototypes": prototypes}

    def forward(self, meta: Params, fast: Params, ctx: Params, h: Tensor) -> Tensor:
        prototypes = ctx["prototypes"]
        # -||h - c||^2, written without cdist so it is vmap- and double-backward-safe.
        sq = (h * h).sum(-1, keepdim=True) - 2.0 * h @ prototypes.transpose(0, 1)
        return -(sq + (prototypes * prototypes).sum(-1))

    def weights(self, meta: Params, fast: Params, ctx: Params) -> Params:
        return {**{k: meta[k] for k in self._init}, "prototypes": ctx["prototypes"]}
