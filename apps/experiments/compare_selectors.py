"""Reads for the compare-runs page: the picked runs of a team, their metrics'
summaries, downsampled curves, the rows of the parallel-coordinates chart, and which
of its config keys go with each final metric.
Every read is filtered to one team (the caller checked membership) and costs a
fixed number of queries, whatever the number of runs."""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import numpy as np
from django.utils import timezone

from apps.experiments.analysis.configdiff import DiffRow, config_diff, config_flatten, varying_keys
from apps.experiments.analysis.curves import (
    DEFAULT_POINTS,
    downsample_minmax,
    seconds_per_step,
    series_clean,
    with_edges,
)
from apps.experiments.analysis.importance import Importance, sweep_importance
from apps.experiments.analysis.seeds import SeedGroup, SeedRun, seed_groups
from apps.experiments.analysis.summary import MetricSummary, higher_is_better, metric_summary, run_duration
from apps.experiments.metric_store import ChartPoints, chart_read, series_figures
from apps.experiments.models import Run
from apps.experiments.search import run_search
from apps.experiments.search.fields import HEADLINE_METRICS, SUMMARY_METRIC_SECTIONS
from apps.teams.models import Team

MIN_RUNS = 2
MAX_RUNS = 20
#: Runs a search may bring to the parallel-coordinates chart.
MAX_SEARCH_RUNS = 500
#: Characters of the ``ids`` parameter read at most (20 ids fit many times over).
MAX_IDS_LENGTH = 400

XAxis = Literal["step", "time"]


class CompareError(Exception):
    """The picked runs cannot be compared; ``str(error)`` is the message for the
    page and ``field`` the query parameter at fault."""

    def __init__(self, message: str, *, field: str = "ids") -> None:
        super().__init__(message)
        self.field = field


def compare_ids_parse(raw: str) -> list[int]:
    """``"3,1, 2"`` -> ``[3, 1, 2]`` (order kept, repeats dropped). Raises
    CompareError naming the bad part, too few or too many ids."""
    if len(raw) > MAX_IDS_LENGTH:
        raise CompareError(f"ids: pick at most {MAX_RUNS} runs.")
    ids: list[int] = []
    for part in (p.strip() for p in raw.replace(" ", ",").split(",")):
        if not part:
            continue
        if not part.isdigit() or len(part) > 18:
            raise CompareError(f"ids: {part[:20]!r} is not a run number.")
        if int(part) not in ids:
            ids.append(int(part))
    if len(ids) < MIN_RUNS:
        raise CompareError(f"ids: pick at least {MIN_RUNS} runs to compare (got {len(ids)}).")
    if len(ids) > MAX_RUNS:
        raise CompareError(f"ids: pick at most {MAX_RUNS} runs to compare (got {len(ids)}).")
    return ids


def compare_runs_get(*, team: Team, ids: Sequence[int]) -> list[Run]:
    """The team's runs with these ids, in the order given, in one query. Raises
    CompareError listing the ids that are not runs of this team (another team's
    runs read as not found)."""
    runs = {
        run.pk: run
        for run in Run.objects.filter(team=team, pk__in=list(ids)).select_related(
            "experiment", "taskset_version__taskset", "launched_by"
        )
    }
    missing = [run_id for run_id in ids if run_id not in runs]
    if missing:
        listed = ", ".join(f"#{run_id}" for run_id in missing)
        raise CompareError(f"ids: no run {listed} in this team.")
    return [runs[run_id] for run_id in ids]


def _elapsed(run: Run, now: datetime) -> float | None:
    end = run.finished_at or run.heartbeat_at or (now if run.started_at else None)
    return run_duration(run.started_at, end)


@dataclass(frozen=True)
class RunSummary:
    """A compared run's figures: duration (seconds) and each metric's summary."""

    run: Run
    duration: float | None
    metrics: dict[str, MetricSummary]


def compare_summaries(*, runs: Sequence[Run]) -> tuple[list[str], list[RunSummary]]:
    """The metric names of any of the runs (sorted) and each run's summary, from
    the metric store's per-series figures (final value, lowest, highest): one
    query, no point read."""
    now = timezone.now()
    figures = series_figures(run_ids=[run.pk for run in runs])
    names = sorted({row.name for row in figures})
    per_run: dict[int, dict[str, MetricSummary]] = {run.pk: {} for run in runs}
    for row in figures:
        per_run[row.run_id][row.name] = metric_summary(
            row.name, final=row.last_value, low=row.low, high=row.high
        )
    return names, [RunSummary(run, _elapsed(run, now), per_run[run.pk]) for run in runs]


def compare_seed_groups(*, summaries: Sequence[RunSummary]) -> tuple[list[str], list[SeedGroup]]:
    """The headline metrics that the runs have, and the groups of runs alike but for
    the seed with those metrics' final values pooled (mean and 95% CI over seeds)."""
    have = set().union(*(summary.metrics for summary in summaries)) if summaries else set()
    metrics = [name for name in HEADLINE_METRICS["train"] if name in have]
    runs = [
        SeedRun(
            run_id=summary.run.pk,
            algorithm=summary.run.algorithm,
            taskset=f"{summary.run.taskset_version.taskset.name} v{summary.run.taskset_version.number}",
            config=summary.run.config if isinstance(summary.run.config, dict) else {},
            finals={name: m.final for name, m in summary.metrics.items()},
        )
        for summary in summaries
    ]
    return metrics, seed_groups(runs, metrics)


def run_metric_summaries(*, run: Run) -> list[MetricSummary]:
    """One run's metrics, final and best value each, its headline metrics
    (``HEADLINE_METRICS`` of its kind) first and then the others by name. One query."""
    headline = HEADLINE_METRICS.get(run.kind) or HEADLINE_METRICS["train"]
    _names, (summary,) = compare_summaries(runs=[run])
    rank = {name: i for i, name in enumerate(headline)}
    return sorted(summary.metrics.values(), key=lambda m: (rank.get(m.name, len(rank)), m.name))


def compare_config_diff(*, runs: Sequence[Run]) -> list[DiffRow]:
    """The config diff of the runs, with the run's own columns (task-set version,
    seed, code version, who launched) as keys beside the config's."""
    return config_diff([_config_with_facts(run) for run in runs])


def _config_with_facts(run: Run) -> dict[str, Any]:
    """The config with the run's own facts under ``run.``; the seed only when the
    config does not carry it already (it is the same fact)."""
    version = run.taskset_version
    facts: dict[str, Any] = {
        "run.algorithm": run.algorithm,
        "run.taskset": f"{version.taskset.name} v{version.number}",
        "run.code_version": run.code_version or "",
        "run.launched_by": run.launched_by.get_username(),
    }
    if "seed" not in run.config:
        facts["run.seed"] = run.seed
    return {**run.config, **facts}


def _rates(runs: Sequence[Run], now: datetime) -> dict[int, float | None]:
    """Seconds per step of each run: the wall-time axis is estimated from the run's
    start, its last heartbeat or finish, and its last step (no point stores a time)."""
    return {run.pk: seconds_per_step(elapsed_seconds=_elapsed(run, now), last_step=run.step) for run in runs}


def compare_series(
    *,
    runs: Sequence[Run],
    metric: str,
    x: XAxis = "step",
    lo: float | None = None,
    hi: float | None = None,
    points: int = DEFAULT_POINTS,
    edges: bool = False,
) -> dict[str, Any]:
    """One metric of every run as chart data, reading only the chunks that overlap
    ``[lo, hi]`` (in the units of ``x``: steps, or seconds since the run's start;
    two queries, ``metric_store.chart_read``), downsampled to at most ``points`` per
    run by min-max per bucket; with ``edges``, plus each run's nearest point outside
    the range on either side that those chunks hold (``analysis.curves.with_edges``).
    ``{"metric", "x", "runs": [{"id", "x": [...], "y": [...], "total", "dropped"}]}``;
    on the time axis a run that never started has no points."""
    found = compare_series_many(runs=runs, metrics=[metric], x=x, lo=lo, hi=hi, points=points, edges=edges)
    return found[metric]


def compare_series_many(
    *,
    runs: Sequence[Run],
    metrics: Sequence[str],
    x: XAxis = "step",
    lo: float | None = None,
    hi: float | None = None,
    points: int = DEFAULT_POINTS,
    edges: bool = False,
) -> dict[str, dict[str, Any]]:
    """:func:`compare_series` of several metrics at once, in the same two queries (the
    compare page sends every chart's first data with the page)."""
    rates = _rates(runs, timezone.now()) if x == "time" else {run.pk: 1.0 for run in runs}
    bounds = {}
    for run in runs:
        rate = rates[run.pk]
        if rate is None:
            continue
        first = max(math.floor(lo / rate) if rate else 0, 0) if lo is not None else None
        last = max(math.ceil(hi / rate) if rate else 0, 0) if hi is not None else None
        for metric in metrics:
            bounds[(run.pk, metric)] = (first, last)
    read = chart_read(bounds=bounds, points=points, edges=edges)
    return {
        metric: {
            "metric": metric,
            "x": x,
            "runs": [
                _chart_run(
                    run.pk, read.get((run.pk, metric)), rates[run.pk] or 0.0, x, lo, hi, points, edges=edges
                )
                for run in runs
            ],
        }
        for metric in metrics
    }


def _chart_run(
    run_id: int,
    found: ChartPoints | None,
    rate: float,
    x: XAxis,
    lo: float | None,
    hi: float | None,
    points: int,
    *,
    edges: bool,
) -> dict[str, Any]:
    steps, values = (found.steps, found.values) if found else (np.empty(0), np.empty(0))
    full, dropped = series_clean(steps * rate if x == "time" else steps, values)
    series = downsample_minmax(full, points=points, lo=lo, hi=hi) if len(full) else full
    if edges and len(full):
        series = with_edges(series, full, lo=lo, hi=hi)
    return {
        "id": run_id,
        "x": (series.x.astype(np.int64) if x == "step" else series.x).tolist(),
        "y": series.y.tolist(),
        "total": found.total - dropped if found else 0,
        "dropped": dropped,
    }


def compare_search_runs(*, team: Team, query: str) -> list[Run]:
    """Up to ``MAX_SEARCH_RUNS`` of the team's runs matching a run search (archived
    runs left out, as on the run list), newest first, in one query. Raises the
    search's QueryError."""
    queryset = run_search(queryset=Run.objects.filter(team=team, archived_at__isnull=True), query=query)
    return list(queryset.order_by("-created_at", "-pk")[:MAX_SEARCH_RUNS])


def summary_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """A run's final metrics from ``Run.summary``, keyed ``<section>.<name>``
    (``val.accuracy``, ``metrics.loss``); non-numbers are skipped."""
    found: dict[str, float] = {}
    for section in SUMMARY_METRIC_SECTIONS:
        block = summary.get(section) if isinstance(summary, dict) else None
        for name, value in (block or {}).items() if isinstance(block, dict) else ():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                found[f"{section}.{name}"] = float(value)
    return found


def parallel_coordinates(*, runs: Sequence[Run]) -> dict[str, Any]:
    """Rows for the parallel-coordinates chart: the config keys that vary between
    the runs (each axis numeric when all its values are numbers, else categorical),
    and every final metric of the runs' summaries, the first ``val.`` one (a
    meta-validation figure) chosen by default. No query: runs are loaded."""
    configs = [run.config for run in runs]
    keys = varying_keys(configs)
    flats = [config_flatten(config) for config in configs]
    finals = [summary_metrics(run.summary) for run in runs]
    metrics = sorted({name for final in finals for name in final})
    default = next((name for name in metrics if name.startswith("val.")), metrics[0] if metrics else "")
    rows = [
        {"id": run.pk, "status": run.status, "config": {key: flat.get(key) for key in keys}, "metrics": final}
        for run, flat, final in zip(runs, flats, finals, strict=True)
    ]
    return {"keys": keys, "metrics": metrics, "default_metric": default, "rows": rows}


def parallel_importance(
    parallel: dict[str, Any], *, metrics: Sequence[str] | None = None, forest: Collection[str] = ()
) -> dict[str, list[Importance]]:
    """For each final metric of :func:`parallel_coordinates`' rows (or of ``metrics``),
    which of its varying config keys go with it over the succeeded runs that have it
    (``analysis/importance.py``; better is higher for an accuracy, lower otherwise),
    strongest first, with a random forest's shares for the metrics in ``forest``. No query."""
    found = {}
    for metric in parallel["metrics"] if metrics is None else metrics:
        runs = [
            (row["config"], row["metrics"][metric])
            for row in parallel["rows"]
            if row["status"] == "succeeded" and metric in row["metrics"]
        ]
        maximize = higher_is_better(metric)
        found[metric] = sweep_importance(
            parallel["keys"], runs, metric=metric, maximize=maximize, forest=metric in forest
        )
    return found
