"""The non-meta-learned baselines of ``benchmarks/quality.py`` (Finn et al. 2017, section 5.1).

* **pretrained**: a network of the meta-learner's architecture, trained by plain
  supervised regression on the pooled points (support and query) of the same
  meta-train tasks that meta-training draws, step for step, then fine-tuned on
  each test task's K shots with SGD;
* **scratch**: the same architecture at its random initialisation (the one MAML
  starts from), fine-tuned on the K shots.

Both are parameter dicts of a :class:`~workers.metalearn.algorithms.MAML` model,
so fine-tuning and scoring go through the engine's own inner loop
(``loop.evaluate_tasks``), exactly as the meta-learned models do.

Also :class:`WithoutDescription`, a view of a family that hides its task
descriptions, so that MNN must infer each task from its support set instead of
being handed the true amplitude and phase.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from workers.metalearn.algorithms import Algorithm, Params
from workers.metalearn.episodes import Episode, batch_seed, to_episode
from workers.metalearn.loop import evaluate_tasks
from workers.metalearn.types import EpisodeSpec, Split, TaskBatch, TaskFamily, TaskPool

#: Finn et al. 2017's sinusoid setting; shared by every sinusoid run.
SINUSOID_BASE: dict[str, Any] = {
    "family": {"name": "sinusoid"},
    "shots": 10,
    "query": 10,
    "inner_steps": 1,
    "inner_lr": 0.01,
    "meta_batch": 25,
    "meta_lr": 1e-3,
    "hidden": (40, 40),
    "device": "cpu",
    "seed": 0,
}


class WithoutDescription:
    """``family`` with ``desc_dim = None`` and no ``desc`` in its batches (same tasks)."""

    desc_dim = None

    def __init__(self, family: TaskFamily):
        self._family = family
        self.name = family.name
        self.version = family.version
        self.kind = family.kind
        self.input_shape = family.input_shape

    def num_classes(self, split: Split) -> int:
        return self._family.num_classes(split)

    def check_episode(self, episode: EpisodeSpec, split: Split = "train") -> None:
        self._family.check_episode(episode, split)

    def sample(self, split: Split, batch_size: int, episode: EpisodeSpec, seed: int) -> TaskBatch:
        return dataclasses.replace(self._family.sample(split, batch_size, episode, seed), desc=None)

    def sample_pool(
        self, split: Split, batch_size: int, episode: EpisodeSpec, pool: TaskPool, step: int
    ) -> TaskBatch:
        batch = self._family.sample_pool(split, batch_size, episode, pool, step)
        return dataclasses.replace(batch, desc=None)

    def fixed_tasks(self, split: Split, episode: EpisodeSpec, count: int, start: int = 0) -> TaskBatch:
        return dataclasses.replace(self._family.fixed_tasks(split, episode, count, start), desc=None)

    def describe(self) -> dict[str, Any]:
        summary = dict(self._family.describe())
        summary["desc_dim"] = None
        summary.pop("desc_names", None)
        summary["note"] = "descriptions hidden (benchmarks/quality.py)"
        return summary


def pretrain(
    algorithm: Algorithm,
    family: TaskFamily,
    *,
    iterations: int,
    meta_batch: int,
    episode: EpisodeSpec,
    seed: int,
    lr: float,
    log: Callable[[int, float], None] | None = None,
) -> Params:
    """Supervised regression on pooled meta-train data: Adam on the MSE over every
    point of each meta-batch, the meta-batch of step ``s`` being the one
    meta-training draws at step ``s`` (``batch_seed(seed, s)``). Starts from
    ``algorithm.init_params()``. ``log(step, loss)`` is called every step."""
    params = {k: v.clone().requires_grad_(True) for k, v in algorithm.init_params().items()}
    optimizer = torch.optim.Adam(list(params.values()), lr=lr)
    for step in range(1, iterations + 1):
        batch = family.sample("train", meta_batch, episode, seed=batch_seed(seed, step))
        x = np.concatenate([batch.x_support, batch.x_query], axis=1)
        y = np.concatenate([batch.y_support, batch.y_query], axis=1)
        x_t = torch.from_numpy(x.reshape(-1, *x.shape[2:]))
        y_t = torch.from_numpy(y.reshape(-1, *y.shape[2:]))
        loss = F.mse_loss(algorithm.forward(params, params, {}, x_t), y_t)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"pretraining diverged at step {step}: loss {value}")
        if log is not None:
            log(step, value)
    return {k: v.detach() for k, v in params.items()}


def pick_lr(
    algorithm: Algorithm,
    params: Params,
    family: TaskFamily,
    *,
    episode: EpisodeSpec,
    steps: int,
    lrs: Sequence[float],
    count: int,
) -> tuple[float, dict[float, float]]:
    """The fine-tuning learning rate with the lowest mean query MSE after ``steps``
    steps on the **val** split's first ``count`` fixed tasks (never the test tasks).
    Returns it and the val MSE of every candidate (inf where fine-tuning diverged)."""
    val = to_episode(family.fixed_tasks("val", episode, count=count))
    scores: dict[float, float] = {}
    for lr in lrs:
        losses, _ = evaluate_tasks(algorithm, params, val, steps=steps, lr=lr)
        value = float(np.mean(losses[:, -1]))
        scores[lr] = value if math.isfinite(value) else math.inf
    return min(scores, key=lambda lr: scores[lr]), scores


def test_episode(family: TaskFamily, episode: EpisodeSpec, count: int) -> Episode:
    """The test split's first ``count`` fixed tasks, cut as ``episode``, as tensors."""
    return to_episode(family.fixed_tasks("test", episode, count=count))


class Timer:
    def __init__(self) -> None:
        self.started = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started
