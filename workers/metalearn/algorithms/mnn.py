"""Meta-Neural Networks: a hypernetwork that writes the target network's weights."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.func import functional_call

from workers.metalearn.algorithms.base import Algorithm, Params
from workers.metalearn.backbones import (
    BODY,
    HEAD,
    add_prefix,
    body_forward,
    count,
    flat_to_params,
    head_forward,
    make_backbone,
    split_params,
    to_stateless,
    uses_conv,
)
from workers.metalearn.config import TrainConfig
from workers.metalearn.episodes import FamilyInfo
from workers.metalearn.specs import SPECS

HYPER = "hyper."
ENCODER = "encoder."


class MNN(Algorithm):
    """Meta-Neural Network (MNN): task representation -> hypernetwork -> target weights.

    A hypernetwork (Ha, Dai & Le, "HyperNetworks", ICLR 2017, arXiv:1609.09106)
    maps a representation ``r`` of the task to the weights of the target network,
    which then predicts through ``functional_call``. ``r`` is what ``mnn_condition``
    says: the family's task description (the default where the family has one,
    ``desc_dim``), or ``"support"``: a learned set encoder, the mean-pooled
    embedding of the K support pairs ``(x, y)``, as in Conditional
    Neural Processes (Garnelo et al., ICML 2018, arXiv:1807.01613). A regression
    pair embeds as ``g([x, y])``; a classification pair as ``onehot(y) ⊗ g(x)``,
    so that the mean lays each class's mean embedding in its own slot (a plain
    ``g([x, onehot(y)])`` mean would have to untangle classes from one average).
    Hypernetwork: ``r -> mnn_hidden -> mnn_hidden -> P`` with ReLU; its output bias
    starts at a standard initialisation of the target network and its output weights
    are scaled down, so training starts from a sensible network.

    With the MLP backbone the whole target network is generated. With the conv
    backbone only the linear head is generated: the 4-block body is meta-learned
    directly as ordinary meta-parameters (``body.*``) and also embeds the images
    for the set encoder, since generating ~110k conv weights per task would dwarf
    the rest. ``mnn_finetune_steps`` optional inner steps (the shared inner step,
    ``inner_lr``, differentiated through unless ``first_order``) then fine-tune the
    generated weights on the support set.
    """

    spec = SPECS["mnn"]

    def __init__(self, config: TrainConfig, info: FamilyInfo):
        super().__init__(config, info)
        self.train_steps = int(config.mnn_finetune_steps)
        backbone = make_backbone(info.input_shape, info.ways, config)
        self.conv = uses_conv(info.input_shape)
        feature_dim = backbone.feature_dim if self.conv else math.prod(info.input_shape)
        self.net, init = to_stateless(backbone)
        if self.conv:
            body = {k: v for k, v in init.items() if k.startswith(BODY)}
            target = {k: v for k, v in init.items() if k.startswith(HEAD)}
        else:
            body, target = {}, dict(init)
        self._target_shapes = {k: v.shape for k, v in target.items()}
        hidden = config.mnn_hidden

        self.use_desc = self.spec.describes(info.desc_dim, config.mnn_condition)
        encoder: nn.Module | None = None
        if self.use_desc:
            r_dim = int(info.desc_dim or 0)
        else:
            # Regression: pairs embed as g([x, y]). Classification: as onehot(y) (x) g(x),
            # so the mean over pairs lays the classes' mean embeddings side by side.
            in_dim = feature_dim if info.classification else feature_dim + 1
            encoder = nn.Sequential(
                nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, config.mnn_embed_dim)
            )
            r_dim = config.mnn_embed_dim * (info.ways if info.classification else 1)
        out = nn.Linear(hidden, count(target))
        with torch.no_grad():
            out.weight.mul_(0.1)
            out.bias.copy_(torch.cat([v.reshape(-1) for v in target.values()]))
        hyper = nn.Sequential(nn.Linear(r_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), out)

        self.hyper, hyper_init = to_stateless(hyper)
        self._init = {**body, **add_prefix(hyper_init, HYPER)}
        self.encoder = None
        if encoder is not None:
            self.encoder, encoder_init = to_stateless(encoder)
            self._init.update(add_prefix(encoder_init, ENCODER))

    def init_params(self) -> Params:
        return {k: v.clone() for k, v in self._init.items()}

    def encode(self, meta: Params, x: Tensor) -> Tensor:
        if self.conv:
            return body_forward(self.net, split_params(meta, BODY), x)
        return x

    def represent(self, meta: Params, xs: Tensor, ys: Tensor, desc: Tensor) -> Tensor:
        """The task representation ``r``: the description, or the set encoding."""
        if self.use_desc:
            return desc
        assert self.encoder is not None
        encoder = split_params(meta, ENCODER)
        x = xs.reshape(xs.shape[0], -1)
        if self.info.classification:
            classes = torch.arange(self.info.ways, device=ys.device)
            onehot = (ys.unsqueeze(-1) == classes).to(xs.dtype)  # [N, ways]
            g = functional_call(self.encoder, encoder, (x,))  # [N, E]
            return (onehot.unsqueeze(-1) * g.unsqueeze(-2)).mean(dim=0).reshape(-1)  # [ways * E]
        pairs = torch.cat([x, ys.reshape(ys.shape[0], -1)], dim=-1)
        return functional_call(self.encoder, encoder, (pairs,)).mean(dim=0)

    def start(self, meta: Params, xs: Tensor, ys: Tensor, desc: Tensor) -> tuple[Params, Params]:
        r = self.represent(meta, xs, ys, desc)
        flat = functional_call(self.hyper, split_params(meta, HYPER), (r,))
        return flat_to_params(flat, self._target_shapes), {}

    def forward(self, meta: Params, fast: Params, ctx: Params, x: Tensor) -> Tensor:
        if self.conv:
            return head_forward(self.net, split_params(fast, HEAD), x)
        return functional_call(self.net, fast, (x,))

    def weights(self, meta: Params, fast: Params, ctx: Params) -> Params:
        body = {k: v for k, v in meta.items() if k.startswith(BODY)}
        return {**body, **fast}
