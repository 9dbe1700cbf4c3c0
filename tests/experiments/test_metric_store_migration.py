"""Migration 0007 moves every point of the old one-row-per-point table into the metric
store, in order, with the series' figures, and back again. Both databases."""

from __future__ import annotations

import pytest

from tests.migrating import migrate, migrate_latest

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("experiments", "0006_run_dispatched_at")]
AFTER = [("experiments", "0007_metric_store")]


def test_points_move_into_series_and_chunks_and_back():
    from apps.experiments.metric_store.codec import CHUNK_POINTS
    from tests.factories import RunFactory, metric_points

    run, other = RunFactory(), RunFactory()
    old = migrate(BEFORE)
    try:
        Metric = old.get_model("experiments", "Metric")
        n = CHUNK_POINTS + 10  # two chunks
        Metric.objects.bulk_create(
            [Metric(run_id=run.pk, name="loss", step=s, value=1.0 / s) for s in range(1, n + 1)]
            + [Metric(run_id=run.pk, name="val_loss", step=s, value=float(s)) for s in (10, 20)]
            + [Metric(run_id=other.pk, name="loss", step=3, value=-2.0)]
        )
        new = migrate(AFTER)
        series = {
            (row.run_id, row.name): row for row in new.get_model("experiments", "MetricSeries").objects.all()
        }
        loss = series[(run.pk, "loss")]
        assert (loss.count, loss.last_step, loss.last_value) == (n, n, 1.0 / n)
        assert (loss.low, loss.high) == (1.0 / n, 1.0)
        assert new.get_model("experiments", "MetricChunk").objects.filter(series=loss).count() == 2
        assert metric_points(run, "loss") == {s: 1.0 / s for s in range(1, n + 1)}
        assert metric_points(run, "val_loss") == {10: 10.0, 20: 20.0}
        assert metric_points(other, "loss") == {3: -2.0}
        back = migrate(BEFORE).get_model("experiments", "Metric")
        assert back.objects.count() == n + 3
        assert back.objects.get(run_id=other.pk, name="loss", step=3).value == -2.0
    finally:
        migrate_latest()
