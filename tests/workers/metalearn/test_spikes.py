"""SpikeWatch: the loss-spike rule, on measured curves and on made-up ones; and the
training loop telling its reporter."""

from __future__ import annotations

import functools
import json
import math
import random
import statistics

import pytest

from workers.metalearn import loop
from workers.metalearn.checkpoint import META_FILE, latest_checkpoint
from workers.metalearn.config import config_to_dict, parse_config
from workers.metalearn.families import make_family
from workers.metalearn.spikes import SPIKE_WINDOW, SpikeWatch
from workers.metalearn.types import CheckpointError, NullReporter

#: 5-step MAML on sinusoid, seed 1, steps 2006-2070 (measured with this engine): one
#: meta-batch at step 2066 went to 1.1e5, and the next was back under 1.
MAML5_SEED1 = [
    0.901, 0.7251, 0.855, 1.005, 0.807, 1.973, 0.6316, 0.5604, 1.379, 1.527, 0.7406, 1.035, 1.059,
    1.208, 0.9163, 1.163, 1.058, 1.498, 0.8918, 0.6865, 1.788, 0.9692, 1.159, 0.6889, 1.442, 0.8066,
    0.9774, 1.2, 1.219, 0.7745, 0.8643, 1.368, 0.5804, 0.9023, 0.6373, 0.7915, 1.192, 0.6465, 0.926,
    1.265, 0.46, 0.5291, 1.093, 0.8244, 0.7738, 0.6525, 0.9753, 0.4405, 0.9831, 0.9792, 0.8062,
    0.9934, 0.6283, 0.8641, 0.6673, 1.671, 0.6504, 0.5733, 0.9237, 0.7812, 110100.0, 0.7019, 0.8508,
    0.8186, 0.8554,
]  # fmt: skip
#: The MNN (description-conditioned) on sinusoid, seed 1, steps 1980-2034: a near-zero
#: loss that moves by up to 36x from one meta-batch to the next and trained on.
MNN_SEED1 = [
    0.005834, 0.002714, 0.01608, 0.001781, 0.00749, 0.00369, 0.004767, 0.007128, 0.00476, 0.006452,
    0.005252, 0.006156, 0.005482, 0.006106, 0.004064, 0.007955, 0.004459, 0.01148, 0.0106, 0.01158,
    0.004267, 0.008472, 0.006104, 0.01338, 0.004058, 0.002438, 0.006112, 0.002462, 0.007001, 0.004141,
    0.005934, 0.004065, 0.003511, 0.006294, 0.005712, 0.004418, 0.008295, 0.004606, 0.007162, 0.006345,
    0.005131, 0.01573, 0.007503, 0.02775, 0.02147, 0.06982, 0.02899, 0.0428, 0.09531, 0.07402, 0.2219,
    0.158, 0.1355, 0.1399, 0.05618,
]  # fmt: skip


def _watch(losses, first_step=1, watch=None):
    watch = watch or SpikeWatch()
    return [n for step, loss in enumerate(losses, first_step) if (n := watch.observe(step, loss))]


def test_the_measured_maml_spike_is_told_once_at_its_step():
    notices = _watch(MAML5_SEED1, first_step=2006)
    assert [(n.step, n.kind) for n in notices] == [(2066, "spike")]
    assert notices[0].message == (
        "Loss spike at step 2,066: 1.1e+05, 1.21e+05x the median (0.909) of the 50 steps before. "
        "Training goes on."
    )


def test_the_measured_noisy_mnn_curve_stays_quiet():
    assert _watch(MNN_SEED1, first_step=1980) == []


def test_nothing_is_judged_before_the_window_is_full():
    assert _watch([1.0] * (SPIKE_WINDOW - 1) + [1e9]) == []
    assert [n.step for n in _watch([1.0] * SPIKE_WINDOW + [1e9])] == [SPIKE_WINDOW + 1]


def test_a_flat_curve_needs_the_factor_and_a_noisy_one_needs_the_spread():
    flat = [1.0] * SPIKE_WINDOW
    assert _watch(flat + [9.9]) == []  # far outside a zero spread, but under 10x
    assert [n.step for n in _watch(flat + [10.0])] == [51]
    rng = random.Random(0)
    noisy = [math.exp(rng.gauss(0.0, 1.0)) for _ in range(SPIKE_WINDOW)]  # log-MAD 0.80: 15 MADs = 1.7e5x
    median = math.exp(statistics.median(math.log(v) for v in noisy))
    assert _watch(noisy + [30.0 * median]) == []  # 30x, but inside 15 MADs
    assert [n.step for n in _watch(noisy + [2e5 * median])] == [51]


def test_spike_losses_stay_out_of_the_window_and_the_spike_ends_silently():
    watch = SpikeWatch()
    first = _watch([1.0] * SPIKE_WINDOW + [100.0, 200.0, 1.0], watch=watch)
    assert [(n.step, n.kind) for n in first] == [(51, "spike")]
    # Over: the next spike is a new one, judged against the same ordinary window.
    assert [(n.step, n.kind) for n in _watch([50.0], first_step=54, watch=watch)] == [(54, "spike")]


def test_a_loss_that_stays_high_becomes_the_new_level_once():
    watch = SpikeWatch()
    notices = _watch([1.0] * SPIKE_WINDOW + [100.0] * (2 * SPIKE_WINDOW + 10), watch=watch)
    assert [(n.step, n.kind) for n in notices] == [(51, "spike"), (100, "spike_level")]
    assert notices[1].message == (
        "The loss has stayed high since its spike at step 51 (50 steps): 100 at step 100, against 1 "
        "before it. Later steps are judged against this level."
    )
    # Judged against the new level from then on: a fall is no spike, a rise from it is.
    assert [n.step for n in _watch([100.0] * 5 + [1e4], first_step=161, watch=watch)] == [166]


def test_losses_that_cannot_be_judged_are_skipped():
    watch = SpikeWatch()
    assert _watch([1.0] * SPIKE_WINDOW + [math.nan, math.inf, 0.0, -3.0, 1.0], watch=watch) == []
    assert [n.step for n in _watch([1e3], first_step=56, watch=watch)] == [56]


class Told(NullReporter):
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def on_step(self, step, metrics):
        self.calls.append(("step", step))

    def on_warning(self, step, kind, message):
        self.calls.append(("warning", step, kind))


def test_the_loop_tells_the_reporter_after_the_step(monkeypatch):
    """A real training run and a real watch, made touchy (a window of 3, any 1% rise)
    so that a short run has spikes: each is told after its own step's on_step."""
    monkeypatch.setattr(loop, "SpikeWatch", functools.partial(SpikeWatch, window=3, factor=1.01, mads=0))
    told = Told()
    config = {"algorithm": "maml", "iterations": 40, "eval_interval": 40, "meta_batch": 4, "seed": 3}
    parsed = parse_config(config)
    loop.meta_train(parsed, make_family(parsed.family), told)
    warnings = [call for call in told.calls if call[0] == "warning"]
    assert warnings, told.calls
    for call in warnings:
        index = told.calls.index(call)
        assert told.calls[index - 1] == ("step", call[1]) and call[2] in ("spike", "spike_level")


def test_the_window_and_a_spike_in_progress_survive_a_checkpoint():
    """Cut anywhere, even inside a spike that becomes a level: a watch restored from
    the first part's state (through JSON, as the checkpoint keeps it) tells the second
    part exactly what the uninterrupted watch tells."""
    losses = MAML5_SEED1[:55] + [40.0] * (2 * SPIKE_WINDOW + 5) + [1e4, 39.0]
    whole = _watch(losses)
    assert [n.kind for n in whole] == ["spike", "spike_level", "spike"]
    for cut in (20, 55, 56, 80, 105, 130, len(losses) - 2):
        first = SpikeWatch()
        _watch(losses[:cut], watch=first)
        resumed = SpikeWatch()
        resumed.restore(json.loads(json.dumps(first.state())))
        told = _watch(losses[cut:], first_step=cut + 1, watch=resumed)
        assert told == [n for n in whole if n.step > cut], cut


def test_a_malformed_state_is_refused():
    watch = SpikeWatch()
    for bad in ({"logs": [0.0, math.nan], "start": None, "length": 0, "median": 0.0},
                {"logs": [0.0], "start": "3", "length": 0, "median": 0.0},
                {"logs": [0.0], "start": None}):  # fmt: skip
        with pytest.raises((ValueError, KeyError)):
            watch.restore(bad)


def test_a_resumed_run_tells_what_the_uninterrupted_run_tells(monkeypatch, tmp_path):
    """Stopped at step 20 and resumed, a run with a touchy watch (a window of 10, any 1%
    rise) tells the same warnings after step 20 as the run that never stopped; without
    the window in the checkpoint, steps 21-30 would go unjudged."""
    monkeypatch.setattr(loop, "SpikeWatch", functools.partial(SpikeWatch, window=10, factor=1.01, mads=0))
    base = {"algorithm": "maml", "eval_interval": 20, "checkpoint_interval": 20, "meta_batch": 4, "seed": 3}

    def warnings(iterations, folder):
        told = Told()
        parsed = parse_config({**base, "iterations": iterations})
        loop.meta_train(parsed, make_family(parsed.family), told, checkpoint_dir=folder)
        return [call for call in told.calls if call[0] == "warning"]

    whole = warnings(40, tmp_path / "whole")
    warnings(20, tmp_path / "cut")
    resumed = warnings(40, tmp_path / "cut")
    assert [w for w in whole if 20 < w[1] <= 30], whole  # the steps a refilling window would miss
    assert resumed == [w for w in whole if w[1] > 20]


def test_a_checkpoint_with_a_malformed_window_is_refused_by_name(tmp_path):
    config = parse_config({"algorithm": "maml", "iterations": 3, "eval_interval": 3, "meta_batch": 2})
    loop.meta_train(config, make_family(config.family), checkpoint_dir=tmp_path)
    record_path = latest_checkpoint(tmp_path) / META_FILE
    record = json.loads(record_path.read_text())
    assert len(record["spikes"]["logs"]) == 3  # the window so far
    record["spikes"]["logs"] = ["NaN"]
    record_path.write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match="malformed spike window"):
        loop.meta_train(
            {**config_to_dict(config), "iterations": 6}, make_family(config.family), checkpoint_dir=tmp_path
        )
