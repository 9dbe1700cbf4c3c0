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
        ("seed-mnn", {"seed_mnn_epochs": 3}, 0.5),
    ],
)
def test_loss_falls_on_sinusoid(sinusoid, algorithm, extra, ratio):
    first, last, reporter = run({**BASE, "algorithm": algorithm, **extra}, sinusoid)
    assert last < ratio * first, (first, last)
    assert reporter.evals and "val_loss" in reporter.evals[-1]


def test_mnn_set_encoder_without_description_learns(sinusoid):
    class NoDesc:
        def __init__(self, family):
            self._f = family
            self.desc_dim = None

        def __getattr__(self, name):
            return getattr(self._f, name)

        def sample(self, *args, **kwargs):
            return strip(self._f.sample(*args, **kwargs))

        def fixed_tasks(self, *args, **kwargs):
            return strip(self._f.fixed_tasks(*args, **kwargs))

    def strip(batch):
        from dataclasses import replace

        return replace(batch, desc=None)

    # Without the description the set encoder must infer each task from its 5 support
    # points: the loss sits on a plateau near 3 for the first ~500 iterations, then falls.
    # last/first measured on this 2-core CPU kind (seeds 0-5, meta_lr 3e-3):
    #   500 iterations:  0.70-0.90 (1 thread): on the plateau, the old 0.75 bound was a coin toss;
    #   1000 iterations: 0.24-0.42 (1 thread), 0.27-0.38 (2 threads);
    #   1500 iterations: 0.21-0.25 (1 thread), 0.24 (2 threads, seed 0).
    # 1500 iterations (about 7 s) and a bound of 0.5: twice the worst ratio measured.
    first, last, _ = run({**BASE, "algorithm": "mnn", "iterations": 1500}, NoDesc(sinusoid))
    assert last < 0.5 * first, (first, last)


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
