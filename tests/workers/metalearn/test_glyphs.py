"""The conv backbone on the real glyphs family (1x28x28, ~1,000 classes): small runs."""

from __future__ import annotations

import numpy as np
import pytest

from workers.metalearn.api import evaluate, meta_train
from workers.metalearn.config import FamilySpec
from workers.metalearn.families import make_family
from workers.metalearn.types import NullReporter

GLYPHS = {"name": "glyphs"}
FIVE_WAY_ONE_SHOT = {"family": GLYPHS, "ways": 5, "shots": 1, "query": 5, "meta_batch": 4, "meta_lr": 3e-3}


class Losses(NullReporter):
    def __init__(self):
        self.losses: list[float] = []
        self.evals: list[dict] = []

    def on_step(self, step, metrics):
        self.losses.append(metrics["loss"])

    def on_eval(self, step, metrics):
        self.evals.append(metrics)


@pytest.fixture(scope="module")
def glyphs():
    return make_family(FamilySpec(**GLYPHS))


def test_maml_loss_falls_on_glyphs(glyphs):
    config = {
        **FIVE_WAY_ONE_SHOT,
        "algorithm": "maml",
        "conv_filters": 16,
        "inner_lr": 0.4,
        "iterations": 60,
        "eval_interval": 60,
        "eval_tasks": 20,
    }
    reporter = Losses()
    meta_train(config, glyphs, reporter, None)
    first, last = np.mean(reporter.losses[:10]), np.mean(reporter.losses[-10:])
    assert last < 0.85 * first, (first, last)
    assert reporter.evals[-1]["val_accuracy"] > 0.35  # chance: 0.2


def test_protonet_beats_chance_widely_on_glyphs_5way_1shot(glyphs, tmp_path):
    config = {
        **FIVE_WAY_ONE_SHOT,
        "algorithm": "protonet",
        "conv_filters": 16,
        "iterations": 40,
        "eval_interval": 40,
        "eval_tasks": 20,
        "checkpoint_interval": 40,
    }
    meta_train(config, glyphs, None, tmp_path)
    result = evaluate(tmp_path, split="test", count=100, family=glyphs)
    assert result.metric == "accuracy" and result.losses.shape == (100, 1)
    assert result.mean - result.ci95 > 0.5, (result.mean, result.ci95)  # chance: 0.2
