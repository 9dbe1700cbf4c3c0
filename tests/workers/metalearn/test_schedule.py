"""The meta learning-rate schedule (``meta_lr_schedule``) and ProtoNets' training ways (``train_ways``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from metalearn_toys import ToyBlobs, ToySinusoid

from tests.workers.metalearn.test_loop import SMALL as LOOP_SMALL
from workers.metalearn.api import evaluate, load_checkpoint, meta_train
from workers.metalearn.config import ConfigError, TrainConfig, parse_config
from workers.metalearn.loop import meta_lr_factor
from workers.metalearn.types import CheckpointError

SMALL = {**LOOP_SMALL, "meta_lr": 0.01, "meta_lr_schedule": "cosine"}
BLOBS = {
    "algorithm": "protonet",
    "family": {"name": "glyphs"},
    "iterations": 30,
    "meta_batch": 4,
    "ways": 3,
    "shots": 1,
    "query": 3,
    "conv_filters": 8,
    "eval_interval": 30,
    "eval_tasks": 40,
    "checkpoint_interval": 30,
    "seed": 1,
    "meta_lr": 0.003,
}


class AdamSpy:
    """Records the learning rate of every Adam step."""

    def __init__(self, monkeypatch):
        self.lrs: list[float] = []
        original = torch.optim.Adam.step
        spy = self

        def step(self, *args, **kwargs):
            spy.lrs.append(self.param_groups[0]["lr"])
            return original(self, *args, **kwargs)

        monkeypatch.setattr(torch.optim.Adam, "step", step)


def test_cosine_factor_falls_from_one_to_near_zero():
    config = TrainConfig(meta_lr_schedule="cosine", iterations=100)
    factors = [meta_lr_factor(config, s) for s in range(1, 101)]
    assert factors[0] == 1.0
    assert factors[50] == pytest.approx(0.5)  # step 51: halfway through the cosine
    assert all(a > b for a, b in zip(factors, factors[1:], strict=False))
    assert factors[-1] == pytest.approx((1 + math.cos(math.pi * 99 / 100)) / 2) and 0 < factors[-1] < 1e-3
    constant = TrainConfig(iterations=100)
    assert {meta_lr_factor(constant, s) for s in (1, 50, 100)} == {1.0}


def test_the_loop_steps_adam_at_the_scheduled_rate(tmp_path, monkeypatch):
    spy = AdamSpy(monkeypatch)
    meta_train(SMALL, ToySinusoid(), None, tmp_path / "cosine")
    config = parse_config(SMALL)
    assert spy.lrs == pytest.approx([0.01 * meta_lr_factor(config, s) for s in range(1, 11)])
    assert spy.lrs[0] == 0.01 and spy.lrs[-1] < 0.0003
    spy.lrs.clear()
    meta_train({**SMALL, "meta_lr_schedule": "constant"}, ToySinusoid(), None, tmp_path / "constant")
    assert spy.lrs == [0.01] * 10
    # Step 1 is the same in both; after that, the weights part.
    cosine, constant = load_checkpoint(tmp_path / "cosine"), load_checkpoint(tmp_path / "constant")
    assert any(not torch.equal(cosine.params[k], constant.params[k]) for k in cosine.params)


def test_a_resumed_cosine_run_is_bit_identical_and_keeps_its_rates(tmp_path, monkeypatch):
    meta_train(SMALL, ToySinusoid(), None, tmp_path / "straight")
    meta_train({**SMALL, "iterations": 10}, ToySinusoid(), _StopAt(5), tmp_path / "resumed")
    assert load_checkpoint(tmp_path / "resumed").step == 5
    spy = AdamSpy(monkeypatch)
    assert meta_train(SMALL, ToySinusoid(), None, tmp_path / "resumed").step == 10
    config = parse_config(SMALL)
    assert spy.lrs == pytest.approx([0.01 * meta_lr_factor(config, s) for s in range(6, 11)])
    a, b = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "resumed")
    for name in a.params:
        assert torch.equal(a.params[name], b.params[name]), name


def test_a_cosine_run_cannot_be_resumed_with_other_iterations(tmp_path):
    meta_train({**SMALL, "iterations": 5}, ToySinusoid(), None, tmp_path)
    with pytest.raises(CheckpointError, match="iterations"):
        meta_train(SMALL, ToySinusoid(), None, tmp_path)
    constant = {**SMALL, "meta_lr_schedule": "constant"}
    meta_train({**constant, "iterations": 5}, ToySinusoid(), None, tmp_path / "constant")
    assert meta_train(constant, ToySinusoid(), None, tmp_path / "constant").step == 10


@pytest.mark.parametrize(
    "config,field",
    [
        ({"algorithm": "seed-mnn", "meta_lr_schedule": "cosine"}, "meta_lr_schedule"),
        ({"algorithm": "maml", "meta_lr_schedule": "linear"}, "meta_lr_schedule"),
        ({"algorithm": "maml", "train_ways": 10}, "train_ways"),
        ({"algorithm": "protonet", "train_ways": 1}, "train_ways"),
    ],
)
def test_settings_that_do_not_fit_the_algorithm_name_their_field(config, field):
    with pytest.raises(ConfigError) as info:
        parse_config(config)
    assert field in info.value.errors, info.value.errors


def test_train_ways_beyond_the_train_split_names_train_ways(tmp_path):
    with pytest.raises(ConfigError) as info:
        meta_train({**BLOBS, "train_ways": 21}, ToyBlobs(classes=20), None, tmp_path)
    assert "train_ways" in info.value.errors, info.value.errors


class _StopAt:
    def __init__(self, step: int):
        self.step = step
        self.last = 0

    def on_step(self, step, metrics):
        self.last = step

    def on_eval(self, step, metrics):
        return None

    def should_stop(self):
        return self.last >= self.step

    def before_checkpoint(self, step):
        return None

    def on_checkpoint(self, step):
        return None


class _EpisodeSpy(ToyBlobs):
    def __init__(self):
        super().__init__(input_shape=(1, 16, 16), classes=20, noise=0.8)
        self.ways: dict[str, set[int]] = {"sample": set(), "fixed": set()}

    def sample(self, split, batch_size, episode, seed):
        self.ways["sample"].add(episode.ways)
        return super().sample(split, batch_size, episode, seed)

    def fixed_tasks(self, split, episode, count, start=0):
        self.ways["fixed"].add(episode.ways)
        return super().fixed_tasks(split, episode, count, start)


def test_protonet_trains_on_train_ways_and_is_scored_on_ways(tmp_path):
    family = _EpisodeSpy()
    result = meta_train({**BLOBS, "train_ways": 8}, family, None, tmp_path)
    assert family.ways == {"sample": {8}, "fixed": {3}}
    ckpt = load_checkpoint(tmp_path)
    assert ckpt.family_info.ways == 3 and ckpt.config.train_ways == 8
    scored = evaluate(tmp_path, split="test", count=40, family=family, device="cpu")
    assert scored.mean > 0.6 > 1 / 3, scored.mean  # chance is 1/3
    assert result.metrics["val_accuracy"] > 0.6
    # The same weights' shapes as a run trained on 3-way episodes: the embedding has no head.
    plain = tmp_path / "plain"
    meta_train(BLOBS, _EpisodeSpy(), None, plain)
    assert {k: v.shape for k, v in load_checkpoint(plain).params.items()} == {
        k: v.shape for k, v in ckpt.params.items()
    }
    assert np.isfinite(scored.ci95)
