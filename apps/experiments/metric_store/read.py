"""Reading points: exact ranges, chart data (raw points, or chunk envelopes for wide
ranges), values at a step, the series' figures, and the CSV's one pass."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from django.db.models import BinaryField, Case, F, Q, Value, When

from apps.experiments.metric_store.codec import (
    ENVELOPE_BLOCK,
    Steps,
    Values,
    envelope_unpack,
    steps_unpack,
    values_unpack,
)
from apps.experiments.models import MetricChunk, MetricSeries

#: ``(run_id, name)``
Key = tuple[int, str]
#: Steps ``lo .. hi`` (both included); None is open.
Bounds = tuple[int | None, int | None]
#: Chunks read per query of the CSV's keyset pass (about 64k points).
CSV_PAGE_CHUNKS = 16
EMPTY: tuple[Steps, Values] = (np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64))


@dataclass(frozen=True)
class ChartPoints:
    """A series' points for a chart: ``steps`` ascending and ``values`` (every stored
    point of the range, or, for wide ranges, the chunks' envelopes), and ``total``,
    the number of stored points in the range."""

    steps: Steps
    values: Values
    total: int


def _range(lo: int | None, hi: int | None) -> Q:
    where = Q()
    if lo is not None:
        where &= Q(last_step__gte=lo)
    if hi is not None:
        where &= Q(first_step__lte=hi)
    return where


def _trim(steps: Steps, values: Values, bounds: Bounds, *, edges: bool = False) -> tuple[Steps, Values]:
    """The points within ``bounds``; with ``edges``, also the nearest one past each bound."""
    lo, hi = bounds
    start = 0 if lo is None else int(np.searchsorted(steps, lo, side="left"))
    end = steps.size if hi is None else int(np.searchsorted(steps, hi, side="right"))
    if edges:
        start, end = max(start - (lo is not None), 0), min(end + (hi is not None), steps.size)
    return steps[start:end], values[start:end]


def _join(parts: list[tuple[Steps, Values]]) -> tuple[Steps, Values]:
    if not parts:
        return EMPTY
    if len(parts) == 1:
        return parts[0]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def points_read(
    *, run_ids: Sequence[int], name: str, lo: int | None = None, hi: int | None = None
) -> dict[int, tuple[Steps, Values]]:
    """Every stored point of metric ``name`` of these runs with ``lo <= step <= hi``,
    as ``{run_id: (steps, values)}`` ascending by step. One query."""
    rows = (
        MetricChunk.objects.filter(_range(lo, hi), series__run_id__in=list(run_ids), series__name=name)
        .order_by("series__run_id", "first_step")
        .values_list("series__run_id", "steps", "values")
    )
    parts: dict[int, tuple[list[bytes], list[bytes]]] = {}
    for run_id, steps, values in rows:
        found = parts.setdefault(run_id, ([], []))
        found[0].append(steps)
        found[1].append(values)
    return {
        run_id: _trim(steps_unpack(b"".join(steps)), values_unpack(b"".join(values)), (lo, hi))
        for run_id, (steps, values) in parts.items()
    }


def chart_read(*, bounds: dict[Key, Bounds], points: int, edges: bool = False) -> dict[Key, ChartPoints]:
    """The points to draw of each ``(run_id, name)`` over its step bounds, in two
    queries: the chunks' sizes, then their bytes; with ``edges``, also the nearest
    point past each bound that the chunks read hold (``total`` counts those within).
    A series is wide when each of the ``points // 2`` buckets of min-max
    downsampling spans at least a block of ``ENVELOPE_BLOCK`` points (64,000 points
    in range for 2,000 points): its chunks inside the range send their envelopes (2
    of every 64 points, each block's lowest and highest), the chunks at the range's
    edges their points. Downsampling them draws the same extremes, at most a block
    (about a bucket, a pixel) away; a spike is its block's highest point, so it is drawn."""
    where = Q()
    for (run_id, name), (lo, hi) in bounds.items():
        where |= Q(series__run_id=run_id, series__name=name) & _range(lo, hi)
    if not where:
        return {}
    sizes: dict[Key, int] = {}
    for run_id, name, count in MetricChunk.objects.filter(where).values_list(
        "series__run_id", "series__name", "count"
    ):
        sizes[(run_id, name)] = sizes.get((run_id, name), 0) + count
    wide = {key for key, size in sizes.items() if size >= points * ENVELOPE_BLOCK // 2}
    return _chart_fetch(where, bounds, wide, edges=edges)


def _chart_fetch(
    where: Q, bounds: dict[Key, Bounds], wide: set[Key], *, edges: bool = False
) -> dict[Key, ChartPoints]:
    raw = Q()
    for key, (lo, hi) in bounds.items():
        of_key = Q(series__run_id=key[0], series__name=key[1])
        if key not in wide:
            raw |= of_key
        else:
            edge = Q()
            if lo is not None:
                edge |= Q(first_step__lt=lo)
            if hi is not None:
                edge |= Q(last_step__gt=hi)
            if edge:
                raw |= of_key & edge
    chosen = (
        {
            "raw_steps": Case(When(raw, then=F("steps")), default=Value(None), output_field=BinaryField()),
            "raw_values": Case(When(raw, then=F("values")), default=Value(None), output_field=BinaryField()),
            "env": Case(When(raw, then=Value(None)), default=F("envelope"), output_field=BinaryField()),
        }
        if raw
        else {
            "raw_steps": Value(None, output_field=BinaryField()),
            "raw_values": Value(None, output_field=BinaryField()),
            "env": F("envelope"),
        }
    )
    rows = (
        MetricChunk.objects.filter(where)
        .annotate(**chosen)
        .order_by("series__run_id", "series__name", "first_step")
        .values_list("series__run_id", "series__name", "count", "raw_steps", "raw_values", "env")
    )
    pieces: dict[Key, _Pieces] = {}
    for run_id, name, count, raw_steps, raw_values, env in rows:
        key = (run_id, name)
        found = pieces.get(key) or pieces.setdefault(key, _Pieces(bounds[key], edges=edges))
        if raw_steps is None:
            found.envelope(env, count)
        else:
            found.raw(raw_steps, raw_values)
    return {key: found.done() for key, found in pieces.items()}


class _Pieces:
    """One series' chunks as they arrive in step order: runs of consecutive raw chunks
    and runs of envelopes are each joined as bytes and decoded once (a query brings
    thousands of chunks; one numpy call per chunk would cost more than the read)."""

    def __init__(self, bounds: Bounds, *, edges: bool = False) -> None:
        self.bounds = bounds
        self.edges = edges
        self.parts: list[tuple[Steps, Values]] = []
        self.steps: list[bytes] = []
        self.values: list[bytes] = []
        self.envelopes: list[bytes] = []
        self.total = 0

    def raw(self, steps: bytes, values: bytes) -> None:
        self._flush_envelopes()
        self.steps.append(steps)
        self.values.append(values)

    def envelope(self, blob: bytes, count: int) -> None:
        self._flush_raw()
        self.envelopes.append(blob)
        self.total += count

    def _flush_raw(self) -> None:
        if self.steps:
            steps, values = steps_unpack(b"".join(self.steps)), values_unpack(b"".join(self.values))
            inside = _trim(steps, values, self.bounds)
            self.parts.append(_trim(steps, values, self.bounds, edges=True) if self.edges else inside)
            self.total += int(inside[0].size)
            self.steps, self.values = [], []

    def _flush_envelopes(self) -> None:
        if self.envelopes:
            self.parts.append(envelope_unpack(b"".join(self.envelopes)))
            self.envelopes = []

    def done(self) -> ChartPoints:
        self._flush_raw()
        self._flush_envelopes()
        return ChartPoints(*_join(self.parts), self.total)


def run_series_names(*, run_id: int) -> list[str]:
    """The names of the run's metrics, sorted. One query."""
    return list(MetricSeries.objects.filter(run_id=run_id).order_by("name").values_list("name", flat=True))


def series_figures(*, run_ids: Sequence[int]) -> list[MetricSeries]:
    """Each series of these runs with its figures (count, last step and value, lowest
    and highest finite value), ordered by run and name. One query, no points read."""
    return list(MetricSeries.objects.filter(run_id__in=list(run_ids)).order_by("run_id", "name"))


def points_count(*, run_id: int, name: str | None = None) -> int:
    """How many points the run (its metric ``name``) has stored. One query."""
    rows = MetricSeries.objects.filter(run_id=run_id, **({"name": name} if name is not None else {}))
    return sum(rows.values_list("count", flat=True))


def values_at(
    *, name: str, step: int, run_ids: Sequence[int] | None = None, sweep_id: int | None = None
) -> dict[int, float]:
    """``{run_id: value}`` of metric ``name`` at exactly ``step``, for these runs or
    the runs of a sweep; runs without a point there are absent. One query."""
    where = Q(series__name=name, first_step__lte=step, last_step__gte=step)
    where &= Q(series__run_id__in=list(run_ids)) if run_ids is not None else Q(series__run__sweep_id=sweep_id)
    found = {}
    for run_id, steps, values in MetricChunk.objects.filter(where).values_list(
        "series__run_id", "steps", "values"
    ):
        unpacked = steps_unpack(steps)
        at = int(np.searchsorted(unpacked, step))
        if at < unpacked.size and unpacked[at] == step:
            found[run_id] = float(values_unpack(values)[at])
    return found


def run_chunks(*, run_id: int) -> Iterator[tuple[str, Steps, Values]]:
    """Every chunk of the run as ``(name, steps, values)``, by name then step: a keyset
    pass (each query resumes after the last chunk read, by the (series, first step)
    index), so no point is read or sorted twice."""
    for series_id, name in (
        MetricSeries.objects.filter(run_id=run_id).order_by("name").values_list("pk", "name")
    ):
        after = -1
        while True:
            page = list(
                MetricChunk.objects.filter(series_id=series_id, first_step__gt=after)
                .order_by("first_step")
                .values_list("first_step", "steps", "values")[:CSV_PAGE_CHUNKS]
            )
            for first_step, steps, values in page:
                yield name, steps_unpack(steps), values_unpack(values)
                after = first_step
            if len(page) < CSV_PAGE_CHUNKS:
                break


def series_last_steps(*, run_id: int, names: set[str] | Sequence[str]) -> dict[str, int]:
    """``{name: highest stored step}`` of the run's metrics among ``names``. One query."""
    rows = MetricSeries.objects.filter(run_id=run_id, name__in=list(names)).values_list("name", "last_step")
    return dict(rows)
