"""The compare page's analysis: pure functions over arrays, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from apps.experiments.analysis.configdiff import MISSING, config_diff, config_flatten, varying_keys
from apps.experiments.analysis.curves import (
    Series,
    downsample_minmax,
    seconds_per_step,
    series_clean,
    with_edges,
)
from apps.experiments.analysis.summary import (
    duration_display,
    higher_is_better,
    metric_summary,
    run_duration,
)


def _series(y) -> Series:
    series, dropped = series_clean(np.arange(len(y)), y)
    assert dropped == 0
    return series


def test_a_one_step_spike_of_100x_survives_downsampling():
    rng = np.random.default_rng(0)
    y = 1.0 + 0.01 * rng.standard_normal(100_000)
    y[61_234] = 100.0
    out = downsample_minmax(_series(y), points=2000)
    assert len(out) <= 2000
    assert out.y.max() == 100.0
    assert out.x[np.argmax(out.y)] == 61_234


def test_every_buckets_min_and_max_are_kept_at_their_own_x():
    rng = np.random.default_rng(1)
    y = rng.standard_normal(10_000)
    series = _series(y)
    out = downsample_minmax(series, points=200)
    assert len(out) <= 200
    assert np.all(np.diff(out.x) > 0)
    kept = dict(zip(out.x.tolist(), out.y.tolist(), strict=True))
    bucket = np.minimum((series.x / series.x[-1] * 100).astype(int), 99)
    for b in range(100):
        xs, ys = series.x[bucket == b], series.y[bucket == b]
        assert kept[xs[np.argmin(ys)]] == ys.min()
        assert kept[xs[np.argmax(ys)]] == ys.max()


def test_a_dip_survives_as_well_as_a_spike():
    y = np.ones(50_000)
    y[123] = -1e6
    y[40_000] = 1e6
    out = downsample_minmax(_series(y), points=100)
    assert out.y.min() == -1e6 and out.y.max() == 1e6


def test_small_series_are_returned_whole_and_the_range_is_respected():
    assert len(downsample_minmax(_series([]), points=10)) == 0
    one = downsample_minmax(_series([3.0]), points=10)
    assert one.x.tolist() == [0.0] and one.y.tolist() == [3.0]
    out = downsample_minmax(_series(np.arange(1000.0)), points=10, lo=100, hi=199)
    assert len(out) <= 10
    assert out.x.min() >= 100 and out.x.max() <= 199
    assert out.y.min() == 100 and out.y.max() == 199
    whole = downsample_minmax(_series(np.arange(1000.0)), points=2000, lo=10, hi=20)
    assert whole.x.tolist() == list(map(float, range(10, 21)))


def test_points_must_allow_a_min_and_a_max():
    with pytest.raises(ValueError):
        downsample_minmax(_series([1.0, 2.0]), points=1)


def test_a_flat_series_gives_at_most_points():
    out = downsample_minmax(_series(np.zeros(10_001)), points=50)
    assert 0 < len(out) <= 50


def test_with_edges_adds_the_nearest_point_outside_each_end():
    full = Series(np.array([0.0, 5.0, 10.0, 15.0]), np.array([1.0, 2.0, 3.0, 4.0]))
    inside = downsample_minmax(full, points=10, lo=6, hi=9)
    assert len(inside) == 0
    both = with_edges(inside, full, lo=6, hi=9)
    assert (both.x.tolist(), both.y.tolist()) == ([5.0, 10.0], [2.0, 3.0])
    left = with_edges(downsample_minmax(full, points=10, lo=4, hi=20), full, lo=4, hi=20)
    assert left.x.tolist() == [0.0, 5.0, 10.0, 15.0]  # nothing beyond 20
    assert with_edges(full, full, lo=None, hi=None) is full


def test_series_clean_drops_non_finite_points_and_sorts():
    series, dropped = series_clean([3, 1, 2, 4], [3.0, float("nan"), 2.0, float("inf")])
    assert dropped == 2
    assert series.x.tolist() == [2.0, 3.0] and series.y.tolist() == [2.0, 3.0]
    with pytest.raises(ValueError):
        series_clean([1, 2], [1.0])


def test_seconds_per_step():
    assert seconds_per_step(elapsed_seconds=100.0, last_step=50) == 2.0
    assert seconds_per_step(elapsed_seconds=None, last_step=50) is None
    assert seconds_per_step(elapsed_seconds=10.0, last_step=0) is None


def test_config_flatten_and_diff_put_differing_keys_first():
    a = {"inner_lr": 0.01, "model": {"hidden": 40, "layers": 2}, "first_order": False, "ways": 5}
    b = {"inner_lr": 0.1, "model": {"hidden": 40, "layers": 2}, "first_order": False, "ways": 5.0}
    c = {"inner_lr": 0.01, "model": {"hidden": 40}, "first_order": 0, "ways": 5}
    assert config_flatten(a) == {
        "inner_lr": 0.01,
        "model.hidden": 40,
        "model.layers": 2,
        "first_order": False,
        "ways": 5,
    }
    rows = config_diff([a, b, c])
    assert [row.key for row in rows] == ["first_order", "inner_lr", "model.layers", "model.hidden", "ways"]
    assert [row.differs for row in rows] == [True, True, True, False, False]
    layers = rows[2]
    assert layers.values == ("2", "2", MISSING)
    assert rows[0].values == ("false", "false", "0")
    assert varying_keys([a, b, c]) == ["first_order", "inner_lr", "model.layers"]


def test_config_diff_of_identical_configs_has_no_differing_key():
    rows = config_diff([{"a": [1, 2], "b": "x"}, {"a": [1, 2], "b": "x"}])
    assert [(row.key, row.differs) for row in rows] == [("a", False), ("b", False)]
    assert rows[0].values == ("[1, 2]", "[1, 2]")


@pytest.mark.parametrize(
    ("name", "higher"),
    [
        ("accuracy", True),
        ("val_accuracy", True),
        ("val.acc", True),
        ("loss", False),
        ("val_loss", False),
        ("mse", False),
        ("grad_norm", False),
        ("accuracy_drop_loss", False),
    ],
)
def test_direction_per_metric(name, higher):
    assert higher_is_better(name) is higher


def test_metric_summary_picks_best_by_direction():
    loss = metric_summary("val_loss", final=0.4, low=0.3, high=2.0)
    assert (loss.final, loss.best, loss.higher_is_better) == (0.4, 0.3, False)
    acc = metric_summary("val_accuracy", final=0.8, low=0.2, high=0.9)
    assert (acc.final, acc.best) == (0.8, 0.9)
    empty = metric_summary("loss", final=None, low=float("nan"), high=None)
    assert (empty.final, empty.best) == (None, None)
    memory = metric_summary("sys_rss_mb", final=450.0, low=300.0, high=900.0)  # a system figure: its peak
    assert (memory.best, memory.higher_is_better) == (900.0, True)


def test_durations():
    start = datetime(2026, 11, 30, tzinfo=UTC)
    assert run_duration(start, start + timedelta(seconds=3725)) == 3725.0
    assert run_duration(None, start) is None
    assert duration_display(3725.0) == "1 h 02 min"
    assert duration_display(185.0) == "3 min 05 s"
    assert duration_display(42.4) == "42 s"
    assert duration_display(None) == "—"
