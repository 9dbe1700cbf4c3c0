"""Reads for sweeps: a team's sweeps with their runs' counts, one sweep if the user
may see it, its leaderboard (each run's latest value of the sweep's metric), and its
runs pooled across seeds, and which swept settings go with the metric."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, OuterRef, Q, QuerySet, Subquery
from django.http import Http404

from apps.experiments.analysis.importance import Importance, sweep_importance
from apps.experiments.analysis.seeds import SeedGroup, SeedRun, seed_groups
from apps.experiments.models import MetricSeries, Run, RunStatus, Sweep
from apps.teams.models import Team


def sweep_list_for_team(*, team: Team) -> QuerySet[Sweep]:
    """The team's sweeps, newest first, with their runs counted by state (one query)."""
    return (
        Sweep.objects.filter(team=team)
        .defer("configs", "base_config")
        .select_related("experiment", "created_by")
        .annotate(
            run_count=Count("runs"),
            active_count=Count("runs", filter=Q(runs__status__in=[RunStatus.QUEUED, RunStatus.RUNNING])),
            succeeded_count=Count("runs", filter=Q(runs__status=RunStatus.SUCCEEDED)),
        )
        .order_by("-created_at", "-pk")
    )


def sweep_get_for_team(*, team: Team, sweep_id: int) -> Sweep:
    """The team's sweep (the caller checked membership: ``team_get_for_user``); Http404 otherwise."""
    sweep = (
        Sweep.objects.defer("configs")
        .select_related("experiment", "created_by", "team", "taskset_version")
        .filter(pk=sweep_id, team=team)
        .first()
    )
    if sweep is None:
        raise Http404("No such sweep.")
    return sweep


@dataclass(frozen=True)
class LeaderRow:
    rank: int | None
    run: Run
    value: float | None
    step: int | None
    point: dict[str, Any]
    #: The run's place in the sweep's launch order (1: its first run).
    order: int = 0


def sweep_leaderboard(*, sweep: Sweep) -> list[LeaderRow]:
    """The sweep's runs, best latest ``sweep.metric`` first, runs without it last
    (newest first among them). One query, however many runs."""
    # The metric store keeps each series' last step and value on its one row.
    latest = MetricSeries.objects.filter(run=OuterRef("pk"), name=sweep.metric, count__gt=0)
    runs = list(
        Run.objects.filter(sweep=sweep)
        .only("pk", "status", "step", "total_steps", "config", "algorithm", "team_id", "created_at")
        .annotate(
            metric_value=Subquery(latest.values("last_value")[:1]),
            metric_step=Subquery(latest.values("last_step")[:1]),
        )
        .order_by("-pk")
    )
    fields = list(sweep.dimensions or {})
    sign = -1.0 if sweep.maximize else 1.0

    def key(run: Run) -> tuple[int, float]:
        value = run.metric_value  # type: ignore[attr-defined]
        if value is None or not math.isfinite(value):
            return (1, 0.0)
        return (0, sign * value)

    order = {run.pk: len(runs) - i for i, run in enumerate(runs)}  # runs are newest first
    ranked = sorted(runs, key=key)  # stable: ties and runs without a value stay newest first
    rows = []
    for index, run in enumerate(ranked):
        value = run.metric_value  # type: ignore[attr-defined]
        has_value = value is not None and math.isfinite(value)
        config = run.config if isinstance(run.config, dict) else {}
        rows.append(
            LeaderRow(
                rank=index + 1 if has_value else None,
                run=run,
                value=value if has_value else None,
                step=run.metric_step if has_value else None,  # type: ignore[attr-defined]
                point={name: config.get(name) for name in fields},
                order=order[run.pk],
            )
        )
    return rows


def sweep_parallel_data(*, sweep: Sweep, rows: list[LeaderRow]) -> dict[str, Any]:
    """What ``parallel_coords.js`` draws: one axis per dimension, then the metric."""
    return {
        "keys": list(sweep.dimensions or {}),
        "metric": sweep.metric,
        "rows": [
            {"id": row.run.pk, "config": row.point, "metrics": {sweep.metric: row.value}} for row in rows
        ],
    }


def sweep_seed_groups(*, sweep: Sweep, rows: list[LeaderRow]) -> list[SeedGroup]:
    """The sweep's succeeded runs whose swept settings agree but for the seed, pooled:
    the mean and 95% CI of the metric's final value, best mean first (groups with
    fewer than two values last). Empty unless the seed is swept (runs of one seed that
    agree are repeats, not seeds) or when no two such runs agree. No query."""
    if "seed" not in (sweep.dimensions or {}):
        return []
    runs = [
        SeedRun(
            run_id=row.run.pk,
            algorithm=row.run.algorithm,
            taskset="",  # one task-set version per sweep
            config=row.point,
            finals={sweep.metric: row.value},
        )
        for row in sorted(rows, key=lambda row: row.run.pk)
        if row.run.status == RunStatus.SUCCEEDED
    ]
    sign = -1.0 if sweep.maximize else 1.0

    def key(group: SeedGroup) -> tuple[int, float]:
        pooled = group.stats[sweep.metric]
        return (1, 0.0) if pooled is None else (0, sign * pooled.mean)

    return sorted(seed_groups(runs, [sweep.metric]), key=key)


def sweep_setting_importance(*, sweep: Sweep, rows: list[LeaderRow]) -> list[Importance]:
    """Each swept setting's rank association with the metric's final value over the
    sweep's succeeded runs (``analysis/importance.py``), strongest first. No query."""
    runs = [
        (row.point, row.value)
        for row in rows
        if row.run.status == RunStatus.SUCCEEDED and row.value is not None
    ]
    return sweep_importance(list(sweep.dimensions or {}), runs, metric=sweep.metric, maximize=sweep.maximize)
