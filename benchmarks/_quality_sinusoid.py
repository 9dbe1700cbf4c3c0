"""The sinusoid rows of ``benchmarks/quality.py``: every meta-learner of
:data:`SINUSOID_RUNS` trained on the MAML paper's sinusoid setting and scored on the
600 fixed test tasks (K=5 and K=10, 100 query points, up to 10 SGD steps), and the
two baselines of the paper's figure (pretrained on pooled tasks, and from scratch).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks._quality_baselines import SINUSOID_BASE, WithoutDescription, pick_lr, pretrain, test_episode
from benchmarks._quality_report import TEST_TASKS, Progress, Score, log
from workers.metalearn.algorithms import make_algorithm
from workers.metalearn.api import meta_train, restore
from workers.metalearn.config import FamilySpec, TrainConfig
from workers.metalearn.episodes import Episode, FamilyInfo
from workers.metalearn.families import make_family
from workers.metalearn.loop import evaluate_tasks
from workers.metalearn.types import EpisodeSpec, TaskFamily

#: Sinusoid protocol: test support sizes, query points per test task, steps, step size.
TEST_SHOTS = (5, 10)
TEST_QUERY = 100
TEST_STEPS = 10
TEST_LR = 0.01
#: Fine-tuning step sizes tried for the baselines, on the val split.
BASELINE_LRS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3)
VAL_TASKS = 600
#: Intra-op threads for the sinusoid MLP, whatever ``--threads`` says: its layers are 40 wide, so
#: extra threads only add synchronisation (on this shared 2-core machine, MAML ran at 111 it/s on
#: 1 thread and 34 it/s on 2).
MLP_THREADS = 1


@dataclass(frozen=True)
class SinusoidRun:
    key: str
    label: str
    overrides: dict[str, Any]
    hide_desc: bool = False
    #: Step sizes of test-time adaptation, one table row each; None: the model's own (Meta-SGD's
    #: learned per-weight rates).
    test_lrs: tuple[float | None, ...] = (TEST_LR,)


SINUSOID_RUNS: tuple[SinusoidRun, ...] = (
    SinusoidRun("maml", "MAML", {"algorithm": "maml"}),
    SinusoidRun("fomaml", "FOMAML", {"algorithm": "fomaml"}),
    SinusoidRun("reptile", "Reptile", {"algorithm": "reptile"}),
    SinusoidRun("reptile5", "Reptile, 5 inner steps in training", {"algorithm": "reptile", "inner_steps": 5}),
    SinusoidRun(
        "metasgd", "Meta-SGD (learned step sizes)", {"algorithm": "metasgd"}, test_lrs=(None, TEST_LR)
    ),
    SinusoidRun("anil", "ANIL (head adapted only)", {"algorithm": "anil"}),
    SinusoidRun("mnn", "MNN, set encoder of the K shots", {"algorithm": "mnn"}, hide_desc=True),
    SinusoidRun("mnn_oracle", "MNN given (amplitude, phase): an oracle, not few-shot", {"algorithm": "mnn"}),
)


@dataclass
class RegressionRow:
    key: str
    label: str
    training: str
    adaptation: str
    seconds: float
    #: Mean query MSE at K=5 after 0..TEST_STEPS steps.
    curve: list[float]
    scores: dict[str, Score]  # "k5_0", "k5_1", "k5_10", "k10_10"


# ----- sinusoid ----------------------------------------------------------------------------------
def score_regression(
    algorithm: Any, meta: dict[str, torch.Tensor], episodes: dict[int, Episode], lr: float | None
) -> tuple[list[float], dict[str, Score]]:
    scores: dict[str, Score] = {}
    curve: list[float] = []
    for shots, episode in episodes.items():
        losses, _ = evaluate_tasks(algorithm, meta, episode, steps=TEST_STEPS, lr=lr)
        losses = losses.astype(np.float64)
        if shots == 5:
            curve = [float(v) for v in losses.mean(axis=0)]
            for step in (0, 1, TEST_STEPS):
                scores[f"k5_{step}"] = Score.of(losses[:, step])
        else:
            scores[f"k{shots}_{TEST_STEPS}"] = Score.of(losses[:, TEST_STEPS])
    return curve, scores


def run_sinusoid(iterations: dict[str, int], workdir: Path) -> tuple[list[RegressionRow], dict[str, Any]]:
    """Meta-train and score every run of :data:`SINUSOID_RUNS`, then the two baselines;
    ``iterations`` per run key (and ``"pretrained"``). Returns the rows and the step
    sizes the baselines picked on val."""
    torch.set_num_threads(MLP_THREADS)
    family = make_family(FamilySpec(name="sinusoid"))
    episodes = {
        k: test_episode(family, EpisodeSpec(shots=k, query=TEST_QUERY), TEST_TASKS) for k in TEST_SHOTS
    }
    rows: list[RegressionRow] = []
    log(
        f"sinusoid: {len(SINUSOID_RUNS)} meta-learners and 2 baselines; test: {TEST_TASKS} fixed tasks, "
        f"K={TEST_SHOTS}, {TEST_QUERY} query points"
    )

    for run in SINUSOID_RUNS:
        rows += _meta_learner_rows(run, iterations[run.key], family, episodes, workdir)
    baselines, picked = _baseline_rows(iterations["pretrained"], family, episodes)
    return rows + baselines, picked


def _meta_learner_rows(
    run: SinusoidRun, iterations: int, family: TaskFamily, episodes: dict[int, Episode], workdir: Path
) -> list[RegressionRow]:
    config = TrainConfig.model_validate(
        {
            **SINUSOID_BASE,
            **run.overrides,
            "iterations": iterations,
            "eval_interval": max(1, iterations // 4),
            "eval_tasks": 100,
            "checkpoint_interval": iterations,
        }
    )
    train_family: TaskFamily = WithoutDescription(family) if run.hide_desc else family
    log(f"sinusoid: training {run.label} for {iterations} iterations")
    started = time.perf_counter()
    meta_train(config, train_family, Progress(run.label, iterations), workdir / f"sinusoid-{run.key}")
    seconds = time.perf_counter() - started
    _, algorithm, meta = restore(workdir / f"sinusoid-{run.key}", device="cpu")
    rows: list[RegressionRow] = []
    steps = 0 if run.key.startswith("mnn") else config.inner_steps
    training = f"{iterations} it, {steps} inner step{'s' if steps != 1 else ''}"
    for i, lr in enumerate(run.test_lrs):
        curve, scores = score_regression(algorithm, meta, episodes, lr)
        adaptation = f"SGD, lr {lr:g}" if lr is not None else "its learned per-weight rates"
        if run.key.startswith("mnn"):
            adaptation = "generated weights, then " + adaptation
        key = run.key if i == 0 else f"{run.key}_lr{lr:g}"
        rows.append(RegressionRow(key, run.label, training, adaptation, seconds, curve, scores))
        log(
            f"sinusoid: {run.label} ({adaptation}): K=5 MSE {scores['k5_0'].mse()} -> 1 step "
            f"{scores['k5_1'].mse()} -> {TEST_STEPS} steps {scores['k5_10'].mse()} "
            f"(trained in {seconds:.0f}s)"
        )

    return rows


def _baseline_rows(
    iterations: int, family: TaskFamily, episodes: dict[int, Episode]
) -> tuple[list[RegressionRow], dict[str, Any]]:
    """The same architecture as MAML's, pretrained on pooled tasks or from scratch, then
    fine-tuned by the same inner loop (at the test lr and at the lr picked on val)."""
    rows: list[RegressionRow] = []
    base_config = TrainConfig.model_validate({**SINUSOID_BASE, "algorithm": "maml"})
    algorithm = make_algorithm(base_config, FamilyInfo.of(family, base_config))
    log(f"sinusoid: pretraining on pooled meta-train data for {iterations} iterations")
    progress = Progress("pretrained", iterations)
    started = time.perf_counter()
    pretrained = pretrain(
        algorithm,
        family,
        iterations=iterations,
        meta_batch=base_config.meta_batch,
        episode=EpisodeSpec(shots=base_config.shots, query=base_config.query),
        seed=base_config.seed,
        lr=base_config.meta_lr,
        log=lambda step, loss: progress.on_step(step, {"loss": loss}),
    )
    pretrain_seconds = time.perf_counter() - started
    scratch = algorithm.init_params()
    picked: dict[str, Any] = {}
    for key, label, params, seconds, training in (
        (
            "pretrained",
            "pretrained on all tasks, then fine-tuned",
            pretrained,
            pretrain_seconds,
            f"{iterations} it of supervised regression",
        ),
        ("scratch", "from scratch (random init), fine-tuned", scratch, 0.0, "none"),
    ):
        lr, val = pick_lr(
            algorithm,
            params,
            family,
            episode=EpisodeSpec(shots=5, query=TEST_QUERY),
            steps=TEST_STEPS,
            lrs=BASELINE_LRS,
            count=VAL_TASKS,
        )
        picked[key] = {"lr": lr, "val": val}
        log(
            f"sinusoid: {label}: val MSE after {TEST_STEPS} steps by lr: "
            + ", ".join(f"{k:g}: {v:.3f}" for k, v in val.items())
            + f" -> lr {lr:g}"
        )
        for lr_used, suffix in ((TEST_LR, ""), (lr, "_tuned")):
            curve, scores = score_regression(algorithm, params, episodes, lr_used)
            note = f"SGD, lr {lr_used:g}" + (" (picked on val)" if suffix else "")
            rows.append(RegressionRow(key + suffix, label, training, note, seconds, curve, scores))
            log(
                f"sinusoid: {label} ({note}): K=5 MSE {scores['k5_0'].mse()} -> 1 step "
                f"{scores['k5_1'].mse()} -> {TEST_STEPS} steps {scores['k5_10'].mse()}"
            )
    return rows, picked
