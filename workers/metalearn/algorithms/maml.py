"""Gradient-based meta-learners: MAML, first-order MAML, Meta-SGD and ANIL.

All four share :func:`~workers.metalearn.algorithms.base.inner_step`; they differ
only in which weights are fast, which learning rates the step uses, and whether
the step is differentiated through. On an MLP backbone they train with the fused
inner loop (:mod:`~workers.metalearn.algorithms.fused`), MAML, first-order MAML
and Meta-SGD on the CPU with their meta-gradient in closed form over it
(:mod:`~workers.metalearn.algorithms.analytic`); on the conv net with the generic
``torch.func`` path.
"""

from __future__ import annotations

from torch import Tensor
from torch.func import functional_call

from workers.metalearn.algorithms.base import Algorithm, LearningRates, Params
from workers.metalearn.backbones import (
    BODY,
    HEAD,
    MLP,
    add_prefix,
    body_forward,
    head_forward,
    make_backbone,
    split_params,
    to_stateless,
)
from workers.metalearn.config import TrainConfig
from workers.metalearn.episodes import FamilyInfo
from workers.metalearn.specs import SPECS


class MAML(Algorithm):
    """Model-Agnostic Meta-Learning.

    Finn, Abbeel & Levine, "Model-Agnostic Meta-Learning for Fast Adaptation of Deep
    Networks", ICML 2017 (arXiv:1703.03400). Every backbone weight is adapted by
    ``inner_steps`` SGD steps on the support loss; the meta-objective is the query
    loss of the adapted weights, differentiated through the inner loop (second
    order: ``torch.func.grad`` inside ``vmap``, then ``autograd.grad`` outside).
    With ``first_order`` the inner gradients are detached (FOMAML, same paper).
    """

    spec = SPECS["maml"]
    #: Whether the meta-gradient has the closed form of :mod:`.analytic` (the
    #: meta-parameters are the initial weights, and Meta-SGD's rates).
    closed_form = True

    def __init__(self, config: TrainConfig, info: FamilyInfo):
        super().__init__(config, info)
        self.net, self._init = to_stateless(make_backbone(info.input_shape, info.ways, config))
        if isinstance(self.net, MLP):
            self.enable_fused(list(self._init))
            if self.closed_form:
                self.enable_analytic()

    def init_params(self) -> Params:
        return {k: v.clone() for k, v in self._init.items()}

    def start(self, meta: Params, xs: Tensor, ys: Tensor, desc: Tensor) -> tuple[Params, Params]:
        return {k: meta[k] for k in self._init}, {}

    def forward(self, meta: Params, fast: Params, ctx: Params, x: Tensor) -> Tensor:
        return functional_call(self.net, fast, (x,))


class FOMAML(MAML):
    """First-order MAML (Finn et al. 2017, section 5.2): MAML whose inner gradients
    are treated as constants, so the meta-gradient is the query-loss gradient at the
    adapted weights. Same as ``algorithm="maml"`` with ``first_order=True``."""

    spec = SPECS["fomaml"]

    def __init__(self, config: TrainConfig, info: FamilyInfo):
        super().__init__(config, info)
        self.first_order = True


class MetaSGD(MAML):
    """Meta-SGD: MAML with a learned learning rate for every weight.

    Li, Zhou, Chen & Li, "Meta-SGD: Learning to Learn Quickly for Few-Shot
    Learning", 2017 (arXiv:1707.09835). The meta-parameters hold, besides the
    backbone's weights, a tensor ``lr.<name>`` of the same shape as each weight,
    initialised to ``inner_lr`` and meta-learned with the weights; the inner step is
    ``theta - lr * grad`` elementwise.
    """

    spec = SPECS["metasgd"]
    LR = "lr."

    def init_params(self) -> Params:
        params = super().init_params()
        params.update(
            {self.rate_name(k): v.new_full(v.shape, self.config.inner_lr) for k, v in self._init.items()}
        )
        return params

    def inner_lrs(self, meta: Params) -> LearningRates:
        return {k: meta[self.rate_name(k)] for k in self._init}

    def rate_name(self, name: str) -> str:
        return self.LR + name


class ANIL(Algorithm):
    """ANIL, "Almost No Inner Loop": MAML whose inner loop adapts only the head.

    Raghu, Raghu, Bengio & Vinyals, "Rapid Learning or Feature Reuse? Towards
    Understanding the Effectiveness of MAML", ICLR 2020 (arXiv:1909.09157). The body
    is meta-learned in the outer loop only; its features of the support and query
    sets are computed once per task, and the inner steps run on the linear head.
    """

    spec = SPECS["anil"]

    def __init__(self, config: TrainConfig, info: FamilyInfo):
        super().__init__(config, info)
        self.net, self._init = to_stateless(make_backbone(info.input_shape, info.ways, config))
        self._head_names = [k for k in self._init if k.startswith(HEAD)]
        if isinstance(self.net, MLP):  # the head is a one-layer MLP over the body's features
            self.enable_fused(self._head_names)

    def init_params(self) -> Params:
        return {k: v.clone() for k, v in self._init.items()}

    def encode(self, meta: Params, x: Tensor) -> Tensor:
        return body_forward(self.net, split_params(meta, BODY), x)

    def start(self, meta: Params, xs: Tensor, ys: Tensor, desc: Tensor) -> tuple[Params, Params]:
        return {k: meta[k] for k in self._head_names}, {}

    def forward(self, meta: Params, fast: Params, ctx: Params, h: Tensor) -> Tensor:
        return head_forward(self.net, split_params(fast, HEAD), h)

    def weights(self, meta: Params, fast: Params, ctx: Params) -> Params:
        body = {k: v for k, v in meta.items() if k.startswith(BODY)}
        return {**body, **add_prefix(split_params(fast, HEAD), HEAD)}
