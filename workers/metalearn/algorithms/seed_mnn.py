"""seed-mnn: the design document's baseline, kept exactly."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import functional_call

from workers.metalearn.algorithms.base import Algorithm, Params
from workers.metalearn.backbones import glorot_uniform_, to_stateless
from workers.metalearn.config import TrainConfig
from workers.metalearn.episodes import Episode, FamilyInfo
from workers.metalearn.shapes import Facts
from workers.metalearn.specs import SEED_MNN_LAYERS, SPECS
from workers.metalearn.types import TaskPool

#: The baseline's optimiser, fixed: Keras' Adam defaults at lr 0.001.
SEED_MNN_LR = 1e-3
SEED_MNN_EPS = 1e-7
#: The pool's size without ``train_tasks``: this many meta-batches (2,500 tasks at the
#: default meta-batch of 25, the pool that 1,000 iterations of 10 epochs used to have).
SEED_MNN_POOL_BATCHES = 100


class _SeedNet(nn.Module):
    def __init__(self, in_features: int):
        super().__init__()
        width = in_features
        for name, size in SEED_MNN_LAYERS:  # dense, dense_1, dense_2: 128, 64, 1
            setattr(self, name, glorot_uniform_(nn.Linear(width, size)))
            width = size

    def forward(self, x: Tensor) -> Tensor:
        *hidden, last = (getattr(self, name) for name, _ in SEED_MNN_LAYERS)
        for layer in hidden:
            x = torch.relu(layer(x))
        return last(x)


class SeedMNN(Algorithm):
    """The seed MNN baseline of MetaWeb's design document, kept as written there.

    An MLP ``Dense(128, relu) -> Dense(64, relu) -> Dense(1)`` (Keras-style
    Glorot-uniform weights, zero biases) fed ``concat(task description, x)``, trained
    with Adam (lr 0.001, Keras' epsilon 1e-7; ``meta_lr`` is ignored) on the MSE over
    every point (support and query) of every task, in epochs over one fixed pool of
    tasks (:meth:`task_pool`): ``train_tasks`` of them, drawn from the seed alone, so
    a resume with other ``iterations`` trains on the same data; each epoch walks the
    pool in a fresh shuffle. ``seed_mnn_epochs`` no longer shapes the pool (it made
    the pool depend on ``iterations``); stored configs keep it. It is conditioned on the description
    only: it never looks at a support set, so it does not adapt. It is the
    "oracle" of Finn, Abbeel & Levine's sinusoid experiments (ICML 2017,
    arXiv:1703.03400, section 5.1), which receives the true amplitude and phase
    as input; regression families with a description only.
    """

    spec = SPECS["seed-mnn"]

    def __init__(self, config: TrainConfig, info: FamilyInfo):
        self.spec.check_family(Facts.of(info))
        super().__init__(config, info)
        in_features = int(info.desc_dim) + int(torch.Size(info.input_shape).numel())
        self.net, self._init = to_stateless(_SeedNet(in_features))

    def init_params(self) -> Params:
        return {k: v.clone() for k, v in self._init.items()}

    def start(self, meta: Params, xs: Tensor, ys: Tensor, desc: Tensor) -> tuple[Params, Params]:
        return {}, {"desc": desc}

    def forward(self, meta: Params, fast: Params, ctx: Params, x: Tensor) -> Tensor:
        x = x.reshape(x.shape[0], -1)
        desc = ctx["desc"].expand(x.shape[0], -1)
        return functional_call(self.net, meta, (torch.cat([desc, x], dim=-1),))

    def _task_loss(self, meta: Params, ep: Episode) -> tuple[Tensor, Tensor]:
        """MSE over all the task's points, support and query alike."""
        x = torch.cat([ep.xs, ep.xq], dim=0)
        y = torch.cat([ep.ys, ep.yq], dim=0)
        out = self.forward(meta, {}, {"desc": ep.desc}, x)
        loss = self.criterion(out, y)
        return loss, loss

    def weights(self, meta: Params, fast: Params, ctx: Params) -> Params:
        return dict(meta)

    def task_pool(self) -> TaskPool:
        """Epochs over a fixed pool of ``train_tasks`` tasks (default
        ``SEED_MNN_POOL_BATCHES`` meta-batches' worth), drawn from the seed alone."""
        size = self.config.train_tasks or SEED_MNN_POOL_BATCHES * self.config.meta_batch
        return TaskPool(size=int(size), seed=int(self.config.seed), epochs=True)
