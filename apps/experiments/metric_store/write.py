"""Storing points: :func:`points_append`, the only writer of metric points."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from django.db import connection, transaction
from django.db.models import Q

from apps.experiments.metric_store.codec import (
    CHUNK_POINTS,
    Steps,
    Values,
    batch_group,
    chunk_fields,
    chunks_split,
    steps_unpack,
    values_unpack,
)
from apps.experiments.models import MetricChunk, MetricSeries

FIGURES = ("count", "last_step", "last_value", "low", "high")
#: A batch with at least this many new points of a metric stores them as chunks of
#: their own; fewer are appended to the series' last chunk while it has room, so
#: slow runs that log a point at a time do not pay a row per point.
MIN_CHUNK_POINTS = 64


def points_append(*, run_id: int, points: Iterable[tuple[str, int, float]]) -> int:
    """Store a batch of ``(name, step, value)`` points of one run; returns how many
    were new. Per (run, name), steps only grow: a point whose step is not above
    the highest step stored for its name is a replay and is skipped (the stored
    value stays); within a batch the first value of a step wins. One transaction
    that locks the batch's series rows, so concurrent writers of one run queue up
    instead of both storing a step: lock, insert the chunks, update the series
    (plus, for metrics with few new points, a read and rewrite of their last chunk)."""
    batch = batch_group(list(points))
    if not batch:
        return 0
    with transaction.atomic():
        series = _series_locked(run_id, sorted(batch))
        fresh: dict[str, tuple[Steps, Values]] = {}
        for name, (steps, values) in batch.items():
            keep = steps > series[name].last_step
            if keep.any():
                fresh[name] = (steps[keep], values[keep])
        small = [series[name] for name, (steps, _) in fresh.items() if steps.size < MIN_CHUNK_POINTS]
        tails = _tails([row for row in small if row.count])
        new_chunks: list[MetricChunk] = []
        for name, (steps, values) in fresh.items():
            row = series[name]
            tail = tails.get(row.pk)
            _figures(row, steps, values)
            if tail is not None and tail.count + steps.size <= CHUNK_POINTS:
                _append(tail, steps, values)
            else:
                new_chunks += [MetricChunk(series=row, **fields) for fields in chunks_split(steps, values)]
        MetricChunk.objects.bulk_create(new_chunks)
        _figures_save([series[name] for name in fresh])
    return sum(steps.size for steps, _ in fresh.values())


def _series_locked(run_id: int, names: list[str]) -> dict[str, MetricSeries]:
    """The run's series of these names, created when missing, locked (FOR UPDATE on
    PostgreSQL; SQLite's immediate transactions hold the write lock already)."""

    def locked() -> dict[str, MetricSeries]:
        rows = MetricSeries.objects.select_for_update().filter(run_id=run_id, name__in=names).order_by("name")
        return {row.name: row for row in rows}

    found = locked()
    missing = [name for name in names if name not in found]
    if missing:
        MetricSeries.objects.bulk_create(
            [MetricSeries(run_id=run_id, name=name) for name in missing], ignore_conflicts=True
        )
        found = locked()
    return found


def _tails(series: list[MetricSeries]) -> dict[int, MetricChunk]:
    """The last chunk of each of these series (the one that ends at its last step)."""
    where = Q()
    for row in series:
        where |= Q(series_id=row.pk, last_step=row.last_step)
    if not where:
        return {}
    return {chunk.series_id: chunk for chunk in MetricChunk.objects.filter(where)}


def _figures(row: MetricSeries, steps: Steps, values: Values) -> None:
    row.count += int(steps.size)
    row.last_step = int(steps[-1])
    row.last_value = float(values[-1])
    finite = values[np.isfinite(values)]
    if finite.size:
        low, high = float(finite.min()), float(finite.max())
        row.low = low if row.low is None else min(row.low, low)
        row.high = high if row.high is None else max(row.high, high)


def _append(tail: MetricChunk, steps: Steps, values: Values) -> None:
    """Rewrite the series' last chunk with these points added at its end."""
    joined_steps = np.concatenate([steps_unpack(tail.steps), steps])
    joined_values = np.concatenate([values_unpack(tail.values), values])
    MetricChunk.objects.filter(pk=tail.pk).update(**chunk_fields(joined_steps, joined_values))


def _figures_save(rows: list[MetricSeries]) -> None:
    """Save the figures of these series: on PostgreSQL one ``UPDATE ... FROM (VALUES
    ...)`` for all of them; SQLite reads no column list on a VALUES alias, and its
    statements cost no round trip, so there one UPDATE each."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        for row in rows:
            MetricSeries.objects.filter(pk=row.pk).update(**{name: getattr(row, name) for name in FIGURES})
        return
    table = connection.ops.quote_name(MetricSeries._meta.db_table)
    real = "CAST(%s AS DOUBLE PRECISION)"
    one = f"(CAST(%s AS BIGINT), CAST(%s AS INTEGER), CAST(%s AS INTEGER), {real}, {real}, {real})"
    params: list[object] = []
    for row in rows:
        params += [row.pk, row.count, row.last_step, row.last_value, row.low, row.high]
    # Only the table name and placeholders are formatted in; every value is a parameter.
    sql = (
        f"UPDATE {table} SET count = v.count, last_step = v.last_step, last_value = v.last_value,"  # noqa: S608
        f" low = v.low, high = v.high FROM (VALUES {', '.join([one] * len(rows))})"
        f" AS v(id, count, last_step, last_value, low, high) WHERE {table}.id = v.id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
