"""``benchmarks/quality.py --task-pool-curve``: how many tasks meta-learning takes.

MAML and the MNN (the set encoder over the K shots, ``mnn_condition: "support"``,
and the MNN given the true (amplitude, phase), ``"description"``) are meta-trained
on sinusoid with Finn et al.'s setting (K=10, 10 query points, meta-batch 25, MLP
1-40-40-1, Adam 1e-3; MAML 1 inner step at lr 0.01), from a fixed pool of
``train_tasks`` distinct tasks (10, 100, 1,000) and from an unlimited stream of
fresh tasks, for the same number of iterations each. Every model is scored on
the 600 fixed meta-test tasks cut with K=5 shots and 100 query points: the mean
query MSE ± 95% CI after 10 SGD steps at lr 0.01 (the MNN: its generated weights,
then the same steps), as in the quality table.

The last line is ``RESULT maml_pool10_mse=... ... mnn_support_poolinf_mse=...``.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks._quality_baselines import test_episode
from workers.metalearn.api import meta_train, restore
from workers.metalearn.config import FamilySpec, TrainConfig
from workers.metalearn.families import make_family
from workers.metalearn.loop import evaluate_tasks
from workers.metalearn.types import EpisodeSpec, NullReporter

#: Pool sizes (None: unlimited, a fresh task every time).
POOLS: tuple[int | None, ...] = (10, 100, 1000, None)
#: Meta-training iterations per run: 12 runs fit about 10 minutes on 2 shared cores.
ITERATIONS = 4000
TEST_TASKS = 600
TEST_SHOTS = 5
TEST_QUERY = 100
TEST_STEPS = 10
TEST_LR = 0.01

BASE: dict[str, Any] = {
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
LEARNERS: dict[str, tuple[str, dict[str, Any]]] = {
    "maml": ("MAML", {"algorithm": "maml"}),
    "mnn_support": ("MNN, set encoder of the K shots", {"algorithm": "mnn", "mnn_condition": "support"}),
    "mnn_description": (
        "MNN given (amplitude, phase)",
        {"algorithm": "mnn", "mnn_condition": "description"},
    ),
}


@dataclass(frozen=True)
class PoolScore:
    learner: str
    pool: int | None
    mean: float
    ci: float
    seconds: float

    @property
    def key(self) -> str:
        return f"{self.learner}_pool{'inf' if self.pool is None else self.pool}_mse"


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _score(folder: Path, episode: Any) -> tuple[float, float]:
    _, algorithm, meta = restore(folder, device="cpu")
    losses, _ = evaluate_tasks(algorithm, meta, episode, steps=TEST_STEPS, lr=TEST_LR)
    final = losses[:, TEST_STEPS].astype(np.float64)
    return float(final.mean()), float(1.96 * final.std(ddof=1) / np.sqrt(final.size))


def run_curve(workdir: Path, iterations: int = ITERATIONS) -> list[PoolScore]:
    """Train and score every learner on every pool size."""
    torch.set_num_threads(1)  # the MLP's layers are 40 wide: one thread is fastest
    family = make_family(FamilySpec(name="sinusoid"))
    episode = test_episode(family, EpisodeSpec(shots=TEST_SHOTS, query=TEST_QUERY), TEST_TASKS)
    scores: list[PoolScore] = []
    for learner, (label, overrides) in LEARNERS.items():
        for pool in POOLS:
            config = TrainConfig.model_validate(
                {
                    **BASE,
                    **overrides,
                    "train_tasks": pool,
                    "iterations": iterations,
                    "eval_interval": iterations,
                    "eval_tasks": 100,
                    "checkpoint_interval": iterations,
                }
            )
            folder = workdir / f"pool-{learner}-{pool or 'inf'}"
            started = time.perf_counter()
            meta_train(config, family, NullReporter(), folder)
            seconds = time.perf_counter() - started
            mean, ci = _score(folder, episode)
            scores.append(PoolScore(learner, pool, mean, ci, seconds))
            shown = "unlimited" if pool is None else f"{pool:,}"
            _log(
                f"{label}, {shown} training tasks: K=5 MSE after {TEST_STEPS} steps "
                f"{mean:.3f} ± {ci:.3f} ({seconds:.0f}s)"
            )
    return scores


def table(scores: list[PoolScore], iterations: int) -> str:
    by = {(s.learner, s.pool): s for s in scores}
    head = "| training tasks | " + " | ".join(label for label, _ in LEARNERS.values()) + " |"
    lines = [
        f"Sinusoid, {iterations} meta-training iterations each (meta-batch 25, K=10); test: "
        f"{TEST_TASKS} fixed tasks, K={TEST_SHOTS}, MSE after {TEST_STEPS} SGD steps at lr {TEST_LR}, "
        "± 95% CI.",
        "",
        head,
        "|---" * (len(LEARNERS) + 1) + "|",
    ]
    for pool in POOLS:
        cells = []
        for learner in LEARNERS:
            s = by.get((learner, pool))
            cells.append("–" if s is None else f"{s.mean:.3f} ± {s.ci:.3f}")
        lines.append(f"| {'unlimited' if pool is None else f'{pool:,}'} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(args: argparse.Namespace, workdir: Path) -> int:
    iterations = int(args.pool_iterations)
    _log(f"task-pool curve: pools {POOLS}, {iterations} iterations per run, {len(LEARNERS)} learners")
    started = time.perf_counter()
    scores = run_curve(workdir, iterations)
    print("\n" + table(scores, iterations), flush=True)
    wall = time.perf_counter() - started
    fields = {s.key: s.mean for s in scores} | {"wall_s": wall}
    print("RESULT " + " ".join(f"{k}={v:.4g}" for k, v in fields.items()), flush=True)
    return 0
