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

from benchmarks._quality_baselines import SINUSOID_BASE, test_episode
from workers.metalearn.api import meta_train, restore
from workers.metalearn.config import FamilySpec, TrainConfig
from workers.metalearn.families import make_family
from workers.metalearn.loop import evaluate_tasks
from workers.metalearn.types import EpisodeSpec, NullReporter

#: Pool sizes (None: unlimited, a fresh task every time).
POOLS: tuple[int | None, ...] = (10, 100, 1000, None)
#: Meta-training iterations per run (``--pool-iterations``).
ITERATIONS = 3000
#: Learners run by default (``--pool-learners``): the oracle MNN is the third.
DEFAULT_LEARNERS = "maml,mnn_support"  # quality.py's --pool-learners default
TEST_TASKS = 600
TEST_SHOTS = 5
TEST_QUERY = 100
TEST_STEPS = 10
TEST_LR = 0.01

BASE = SINUSOID_BASE
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
    #: Mean and 95% CI of the test MSE over the tasks whose adaptation stayed finite.
    mean: float
    ci: float
    #: Test tasks whose 10 steps diverged (a NaN or inf loss).
    diverged: int
    seconds: float

    @property
    def key(self) -> str:
        return f"{self.learner}_pool{'inf' if self.pool is None else self.pool}_mse"

    def cell(self) -> str:
        big = abs(self.mean) >= 1000
        text = f"{self.mean:.3g} ± {self.ci:.3g}" if big else f"{self.mean:.3f} ± {self.ci:.3f}"
        return text + (f" ({self.diverged} of {TEST_TASKS} tasks diverged)" if self.diverged else "")


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _score(folder: Path, episode: Any) -> tuple[float, float, int]:
    """Mean and 95% CI of the finite post-adaptation MSEs, and how many diverged."""
    _, algorithm, meta = restore(folder, device="cpu")
    losses, _ = evaluate_tasks(algorithm, meta, episode, steps=TEST_STEPS, lr=TEST_LR)
    final = losses[:, TEST_STEPS].astype(np.float64)
    finite = final[np.isfinite(final)]
    if finite.size < 2:
        return float("nan"), float("nan"), int(final.size - finite.size)
    ci = float(1.96 * finite.std(ddof=1) / np.sqrt(finite.size))
    return float(finite.mean()), ci, int(final.size - finite.size)


def run_curve(workdir: Path, iterations: int, learners: list[str]) -> list[PoolScore]:
    """Train and score every learner on every pool size."""
    torch.set_num_threads(1)  # the MLP's layers are 40 wide: one thread is fastest
    family = make_family(FamilySpec(name="sinusoid"))
    episode = test_episode(family, EpisodeSpec(shots=TEST_SHOTS, query=TEST_QUERY), TEST_TASKS)
    scores: list[PoolScore] = []
    for learner in learners:
        label, overrides = LEARNERS[learner]
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
            score = PoolScore(learner, pool, *_score(folder, episode), seconds=seconds)
            scores.append(score)
            shown = "unlimited" if pool is None else f"{pool:,}"
            _log(f"{label}, {shown} training tasks ({seconds:.0f}s to train): K=5 MSE {score.cell()}")
    return scores


def table(scores: list[PoolScore], iterations: int, learners: list[str]) -> str:
    by = {(s.learner, s.pool): s for s in scores}
    head = "| training tasks | " + " | ".join(LEARNERS[name][0] for name in learners) + " |"
    lines = [
        f"Sinusoid, {iterations} meta-training iterations each (meta-batch 25, K=10); test: "
        f"{TEST_TASKS} fixed tasks, K={TEST_SHOTS}, MSE after {TEST_STEPS} SGD steps at lr {TEST_LR}, "
        "± 95% CI.",
        "",
        head,
        "|---" * (len(learners) + 1) + "|",
    ]
    for pool in POOLS:
        cells = []
        for learner in learners:
            s = by.get((learner, pool))
            cells.append("–" if s is None else s.cell())
        lines.append(f"| {'unlimited' if pool is None else f'{pool:,}'} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(args: argparse.Namespace, workdir: Path) -> int:
    iterations = int(args.pool_iterations)
    learners = [name.strip() for name in str(args.pool_learners).split(",") if name.strip()]
    unknown = [name for name in learners if name not in LEARNERS]
    if unknown or not learners:
        print(f"--pool-learners: choose among {', '.join(LEARNERS)}", flush=True)
        return 2
    _log(f"task-pool curve: pools {POOLS}, {iterations} iterations per run, learners {', '.join(learners)}")
    started = time.perf_counter()
    scores = run_curve(workdir, iterations, learners)
    print("\n" + table(scores, iterations, learners), flush=True)
    wall = time.perf_counter() - started
    fields = {s.key: s.mean for s in scores}
    fields |= {s.key.replace("_mse", "_diverged"): float(s.diverged) for s in scores if s.diverged}
    fields["wall_s"] = wall
    print("RESULT " + " ".join(f"{k}={v:.4g}" for k, v in fields.items()), flush=True)
    return 0
