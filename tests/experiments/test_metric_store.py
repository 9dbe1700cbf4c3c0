"""The metric store: writing, the replay rule, ranges, chart reads (envelopes keep a
spike), figures, values at a step and the CSV's one pass. Both databases."""

from __future__ import annotations

import numpy as np
import pytest
from django.db import connection

from apps.experiments import metric_store
from apps.experiments.analysis.curves import downsample_minmax, series_clean
from apps.experiments.metric_store import CHUNK_POINTS
from apps.experiments.metric_store.codec import ENVELOPE_BLOCK, batch_group, envelope_pack, envelope_unpack
from apps.experiments.metric_store.write import MIN_CHUNK_POINTS
from apps.experiments.models import MetricChunk, MetricSeries
from tests.factories import RunFactory, metric_points, metric_points_add

pytestmark = pytest.mark.django_db


def _losses(steps, scale=1.0):
    return [("loss", int(s), scale / (int(s) + 1)) for s in steps]


def test_points_are_stored_and_read_back_exactly():
    run = RunFactory()
    assert metric_points_add(run, _losses(range(10)) + [("val_loss", 5, 0.5)]) == 11
    assert metric_points(run, "loss") == {s: 1.0 / (s + 1) for s in range(10)}
    assert metric_points(run, "val_loss") == {5: 0.5}
    assert metric_points(RunFactory(), "loss") == {}


def test_a_replayed_step_is_skipped_and_overwrites_nothing():
    run = RunFactory()
    metric_points_add(run, _losses(range(1, 11)))
    # A resumed attempt replays steps 5..10 with other values, then goes on to 15.
    assert metric_points_add(run, _losses(range(5, 16), scale=99.0)) == 5
    stored = metric_points(run, "loss")
    assert sorted(stored) == list(range(1, 16))
    assert stored[7] == pytest.approx(1 / 8) and stored[12] == pytest.approx(99 / 13)
    # The same batch twice stores nothing the second time.
    assert metric_points_add(run, _losses(range(5, 16))) == 0
    assert metric_points_add(run, []) == 0
    series = MetricSeries.objects.get(run=run, name="loss")
    assert series.count == 15 and series.last_step == 15


def test_within_a_batch_steps_are_sorted_and_the_first_value_of_a_step_wins():
    run = RunFactory()
    assert (
        metric_points_add(run, [("loss", 3, 3.0), ("loss", 1, 1.0), ("loss", 3, 30.0), ("loss", 2, 2.0)]) == 3
    )
    assert metric_points(run, "loss") == {1: 1.0, 2: 2.0, 3: 3.0}


def test_steps_outside_int32_are_refused_by_name():
    with pytest.raises(ValueError, match="loss: a step must be between 0 and 2147483647"):
        batch_group([("loss", -1, 1.0)])
    with pytest.raises(ValueError, match="between 0 and"):
        metric_points_add(RunFactory(), [("loss", 2**31, 1.0)])


def test_big_batches_make_chunks_and_small_ones_fill_the_last_chunk():
    run = RunFactory()
    first = 2 * CHUNK_POINTS + 400
    metric_points_add(run, _losses(range(first)))  # split at CHUNK_POINTS
    for start in range(first, first + 100, 10):  # slow logging: 10 points at a time
        metric_points_add(run, _losses(range(start, start + 10)))
    big = first + 100
    metric_points_add(run, _losses(range(big, big + MIN_CHUNK_POINTS)))  # big enough for its own chunk
    twenties = CHUNK_POINTS // 20 + 5
    end = big + MIN_CHUNK_POINTS + 20 * twenties
    for start in range(big + MIN_CHUNK_POINTS, end, 20):
        metric_points_add(run, _losses(range(start, start + 20)))
    counts = list(
        MetricChunk.objects.filter(series__run=run).order_by("first_step").values_list("count", flat=True)
    )
    # Two full chunks, the rest of the first batch with the 10-point batches appended,
    # the 64-point batch's chunk filled up by 20-point ones, then a chunk for the rest.
    fit = (CHUNK_POINTS - MIN_CHUNK_POINTS) // 20
    assert counts == [CHUNK_POINTS, CHUNK_POINTS, 500, MIN_CHUNK_POINTS + 20 * fit, 20 * (twenties - fit)]
    assert metric_points(run, "loss") == {s: pytest.approx(1.0 / (s + 1)) for s in range(end)}


def test_a_batch_costs_a_fixed_number_of_queries(django_assert_max_num_queries):
    run = RunFactory()
    metric_points_add(run, _losses(range(100)) + [("acc", s, 0.5) for s in range(100)])
    batch = _losses(range(100, 2600)) + [("acc", s, 0.5) for s in range(100, 2600)] + [("new", 1, 1.0)]
    # SAVEPOINT, lock, create the new series, lock again, its chunks and the others',
    # the series' figures (one UPDATE on PostgreSQL, one per series on SQLite), RELEASE.
    with django_assert_max_num_queries(7 if connection.vendor == "postgresql" else 9):
        assert metric_points_add(run, batch) == 5001


def test_ranges_read_only_the_steps_asked_for():
    run, other = RunFactory(), RunFactory()
    metric_points_add(run, _losses(range(5000)))
    metric_points_add(other, _losses(range(0, 5000, 10)))
    read = metric_store.points_read(run_ids=[run.pk, other.pk], name="loss", lo=1500, hi=2600)
    assert read[run.pk][0].tolist() == list(range(1500, 2601))
    assert read[other.pk][0].tolist() == list(range(1500, 2601, 10))
    assert metric_store.points_read(run_ids=[run.pk], name="loss", lo=6000) == {}


def test_figures_and_values_at_a_step():
    run, other = RunFactory(), RunFactory()
    metric_points_add(run, [("loss", 1, 3.0), ("loss", 2, float("nan")), ("loss", 3, -1.0), ("loss", 4, 2.0)])
    metric_points_add(other, [("loss", 3, 7.0)])
    figures = {(row.run_id, row.name): row for row in metric_store.series_figures(run_ids=[run.pk, other.pk])}
    mine = figures[(run.pk, "loss")]
    assert (mine.count, mine.last_step, mine.last_value, mine.low, mine.high) == (4, 4, 2.0, -1.0, 3.0)
    assert metric_store.values_at(name="loss", step=3, run_ids=[run.pk, other.pk]) == {
        run.pk: -1.0,
        other.pk: 7.0,
    }
    assert metric_store.values_at(name="loss", step=4, run_ids=[run.pk, other.pk]) == {run.pk: 2.0}
    assert metric_store.points_count(run_id=run.pk) == 4
    assert metric_store.series_last_steps(run_id=run.pk, names={"loss", "acc"}) == {"loss": 4}


def test_the_envelope_keeps_each_blocks_extremes():
    steps = np.arange(40)
    values = np.sin(steps / 3.0)
    values[21] = 100.0
    env_steps, env_values = envelope_unpack(envelope_pack(steps, values))
    assert 21 in env_steps.tolist() and env_values.max() == 100.0
    for start in range(0, 40, ENVELOPE_BLOCK):
        block = values[start : start + ENVELOPE_BLOCK]
        inside = (env_steps >= start) & (env_steps < start + ENVELOPE_BLOCK)
        assert env_values[inside].min() == block.min() and env_values[inside].max() == block.max()


def test_a_wide_chart_reads_envelopes_and_keeps_a_100x_spike(django_assert_num_queries):
    run = RunFactory()
    steps = np.arange(100_000)
    values = 1.0 + 0.1 * np.sin(steps / 50.0)
    values[73_210] = 100.0 * values[73_210]
    metric_points_add(run, [("loss", int(s), float(v)) for s, v in zip(steps, values, strict=True)])
    key = (run.pk, "loss")
    with django_assert_num_queries(2):
        read = metric_store.chart_read(bounds={key: (None, None)}, points=2000)[key]
    assert read.total == 100_000
    assert read.steps.size <= 100_000 * 2 // ENVELOPE_BLOCK + 2  # envelopes, not points
    series, _ = series_clean(read.steps, read.values)
    drawn = downsample_minmax(series, points=2000)
    assert len(drawn) <= 2000 and drawn.y.max() == values[73_210]
    assert 73_210 in drawn.x.tolist()
    # Zoomed in, the finer range is read point by point (and edges are cut exactly).
    zoom = metric_store.chart_read(bounds={key: (73_000, 73_500)}, points=2000)[key]
    assert zoom.steps.tolist() == list(range(73_000, 73_501)) and zoom.total == 501
    # A range wide enough for envelopes inside, with raw edges: the total is exact.
    mid = metric_store.chart_read(bounds={key: (10_001, 90_000)}, points=2000)[key]
    assert mid.total == 80_000 and mid.steps.min() == 10_001 and mid.steps.max() == 90_000
    assert 73_210 in mid.steps.tolist()


def test_the_csv_pass_reads_each_chunk_once(django_assert_num_queries):
    run = RunFactory()
    n = metric_store.read.CSV_PAGE_CHUNKS * CHUNK_POINTS + 10  # just over one page of chunks
    metric_points_add(run, _losses(range(n)) + [("acc", 1, 0.5)])
    # The series, then per series one keyset page per 16 chunks: acc 1, loss 2.
    with django_assert_num_queries(4):
        chunks = list(metric_store.run_chunks(run_id=run.pk))
    assert [name for name, _, _ in chunks][:2] == ["acc", "loss"]
    loss_steps = np.concatenate([steps for name, steps, _ in chunks if name == "loss"])
    assert loss_steps.tolist() == list(range(n))
