"""Loss falls on toy tasks within a small budget (CPU, one thread, seconds)."""

from __future__ import annotations

import numpy as np
import pytest
from metalearn_toys import ToyBlobs

from workers.metalearn.api import meta_train
from workers.metalearn.config import FamilySpec
from workers.metalearn.families import make_family
from workers.metalearn.types import NullReporter


class Losses(NullReporter):
    def __init__(self):
        self.losses: list[float] = []
        self.evals: list[dict] = []

    def on_step(self, step, metrics):
        self.losses.append(metrics["loss"])

    def on_eval(self, step, metrics):
        self.evals.append(metrics)


def run(config, family):
    reporter = Losses()
    result = meta_train(config, family, reporter, None)
    assert result.status == "completed"
    window = max(5, len(reporter.losses) // 10)
    return float(np.mean(reporter.losses[:window])), float(np.mean(reporter.losses[-window:])), reporter


@pytest.fixture(scope="module")
def sinusoid():
    return make_family(FamilySpec(name="sinusoid"))


BASE = {"iterations": 300, "meta_batch": 10, "meta_lr": 3e-3, "eval_interval": 1000, "eval_tasks": 20}


@pytest.mark.parametrize(
    "algorithm,extra,ratio",
    [
        ("maml", {}, 0.75),
        ("reptile", {"inner_steps": 3}, 0.8),
        ("mnn", {}, 0.2),
        ("mnn", {"mnn_finetune_steps": 1}, 0.3),
        ("seed-mnn", {"train_tasks": 100}, 0.5),
    ],
)
def test_loss_falls_on_sinusoid(sinusoid, algorithm, extra, ratio):
    first, last, reporter = run({**BASE, "algorithm": algorithm, **extra}, sinusoid)
    assert last < ratio * first, (first, last)
    assert reporter.evals and "val_loss" in reporter.evals[-1]


def test_mnn_conditioned_on_the_support_set_learns(sinusoid):
    """``mnn_condition: "support"`` on sinusoid, whose tasks carry (amplitude, phase):
    the set encoder must infer each task from its 5 support points.

    last/first train loss measured on this 2-core CPU kind (1 thread, seeds 0-5,
    1500 iterations, about 10-15 s each): 0.21-0.25, val MSE 0.62-1.31 (the
    description mode below: 0.007-0.037 after 300 iterations). Before 500 iterations
    the loss sits on a plateau near 3. A bound of 0.5 is twice the worst ratio."""
    first, last, reporter = run(
        {**BASE, "algorithm": "mnn", "mnn_condition": "support", "iterations": 1500}, sinusoid
    )
    assert last < 0.5 * first, (first, last)


def test_mnn_conditioned_on_the_description_learns(sinusoid):
    """The default on a family with descriptions, and asked explicitly: the same run.
    last/first measured 0.007-0.037 over seeds 0-5 (300 iterations); bound 0.1."""
    first, last, _ = run({**BASE, "algorithm": "mnn", "mnn_condition": "description"}, sinusoid)
    assert last < 0.1 * first, (first, last)


@pytest.mark.parametrize(
    "algorithm,extra",
    [
        ("protonet", {}),
        ("maml", {}),
        ("anil", {"inner_lr": 0.5, "inner_steps": 3}),
        ("mnn", {"mnn_finetune_steps": 2, "inner_lr": 0.5}),
    ],
)
def test_loss_falls_on_toy_images(algorithm, extra):
    """Conv backbone, 3-way 2-shot on 1x16x16 toy images (fast; test_glyphs.py has the real family)."""
    config = {
        "algorithm": algorithm,
        "family": {"name": "glyphs"},
        "iterations": 40,
        "meta_batch": 4,
        "ways": 3,
        "shots": 2,
        "query": 3,
        "conv_filters": 8,
        "inner_lr": 0.1,
        "meta_lr": 3e-3,
        "eval_interval": 40,
        "eval_tasks": 10,
        **extra,
    }
    first, last, reporter = run(config, ToyBlobs(noise=0.6))
    assert last < 0.8 * first, (first, last)
    assert reporter.evals[-1]["val_accuracy"] > 0.4
