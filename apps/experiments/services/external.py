"""External runs: the user's own training loop logs a run through the API.

Such a run has kind ``external``: no worker claims it and the watchdog leaves it
alone. Points go through the workers' own :func:`run_metrics_record`, so the
metric store's rule holds: per (run, name), steps only grow, and a point whose
step is not above the highest stored step of its name is a replay, skipped: it
overwrites nothing and duplicates nothing. Each batch publishes ``run.progress`` with the points it
stored (never one it skipped), and every status change ``run.status``, after
commit, exactly as a worker's run does, so pages follow it live.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from apps.experiments.events import (
    RunProgressEvent,
    publish_on_commit,
    publish_run_status_on_commit,
    run_group,
)
from apps.experiments.metric_store import series_last_steps
from apps.experiments.models import Experiment, Run, RunEvent, RunKind, RunStatus
from apps.experiments.services.execution import ERROR_MAX_CHARS, run_metrics_record
from apps.experiments.services.runs import MAX_CONFIG_BYTES, code_version
from apps.tasksets.models import TaskSetVersion
from apps.teams.models import Role
from apps.teams.services import ensure_role
from apps.teams.types import AnyUser
from workers.metalearn.config import ALGORITHMS

#: Most points in one batch, and the longest metric name (``MetricSeries.name``).
MAX_BATCH_POINTS = 5000
METRIC_NAME_MAX = 50
#: The metric store keeps steps as int32: 0 .. 2**31 - 1.
MAX_STEP = 2**31 - 1
#: How an external run may end.
END_STATUSES = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


@transaction.atomic
def external_run_create(
    *,
    experiment: Experiment,
    actor: AnyUser,
    taskset_version: TaskSetVersion,
    algorithm: str,
    config: dict[str, Any],
    total_steps: int,
) -> Run:
    """Open a running external run in the experiment. Members and admins only."""
    ensure_role(user=actor, team=experiment.team_id, required=Role.MEMBER)
    errors: dict[str, str] = {}
    if taskset_version.taskset.team_id != experiment.team_id:
        errors["taskset"] = "Choose one of this team's task sets."
    if algorithm not in ALGORITHMS:
        errors["algorithm"] = f"Choose one of: {', '.join(ALGORITHMS)}."
    if not 0 <= total_steps <= MAX_STEP:
        errors["total_steps"] = f"Give a number of steps between 0 and {MAX_STEP}."
    if errors:
        raise ValidationError(errors)
    _check_json_size("config", config)
    now = timezone.now()
    run = Run.objects.create(
        experiment=experiment,
        team_id=experiment.team_id,
        kind=RunKind.EXTERNAL,
        algorithm=algorithm,
        taskset_version=taskset_version,
        config=config,
        status=RunStatus.RUNNING,
        code_version=code_version(),
        launched_by=actor,
        total_steps=total_steps,
        started_at=now,
        heartbeat_at=now,
    )
    RunEvent.objects.create(
        run=run, kind="started", message=f"External run opened by {actor.get_username()}."
    )
    publish_run_status_on_commit(run)
    return run


def _check_json_size(field: str, value: dict[str, Any]) -> None:
    size = len(json.dumps(value, separators=(",", ":"), allow_nan=False).encode())
    if size > MAX_CONFIG_BYTES:
        raise ValidationError({field: f"The {field} is {size:,} bytes; the limit is {MAX_CONFIG_BYTES:,}."})


def _checked_points(points: Sequence[tuple[str, int, float]]) -> list[tuple[str, int, float]]:
    if len(points) > MAX_BATCH_POINTS:
        raise ValidationError({"points": f"Send at most {MAX_BATCH_POINTS} points per batch."})
    for i, (name, step, value) in enumerate(points):
        if not name or len(name) > METRIC_NAME_MAX:
            raise ValidationError(
                {"points": f"Point {i}: a metric name is 1 to {METRIC_NAME_MAX} characters."}
            )
        if not 0 <= step <= MAX_STEP:
            raise ValidationError({"points": f"Point {i}: the step must be between 0 and {MAX_STEP}."})
        if not math.isfinite(value):
            raise ValidationError({"points": f"Point {i}: the value must be a finite number."})
    return list(points)


def _locked_external(run: Run, actor: AnyUser) -> Run:
    ensure_role(user=actor, team=run.team_id, required=Role.MEMBER)
    locked = Run.objects.select_for_update().get(pk=run.pk)
    if locked.kind != RunKind.EXTERNAL:
        raise ValidationError({"run": "Only external runs take points from the API."})
    if locked.status != RunStatus.RUNNING:
        raise ValidationError({"status": f"This run has {locked.get_status_display().lower()} already."})
    return locked


@transaction.atomic
def external_run_log(
    *, run: Run, actor: AnyUser, points: Sequence[tuple[str, int, float]]
) -> tuple[int, bool]:
    """Store a batch of ``(name, step, value)`` points; returns how many were new, and
    whether a cancel was requested (the loop should stop and finish as cancelled)."""
    batch = _checked_points(points)
    locked = _locked_external(run, actor)
    stored: dict[tuple[str, int], float] = {}
    for name, step, value in batch:
        stored.setdefault((name, int(step)), float(value))  # the first value of a step in a batch wins
    if stored:
        # Per name, steps only grow (the metric store's rule): a step not above the
        # highest stored one is a replay. The run's row lock keeps this read true.
        heads = series_last_steps(run_id=locked.pk, names={n for n, _ in stored})
        stored = {(n, s): value for (n, s), value in stored.items() if s > heads.get(n, -1)}
        run_metrics_record(run_id=locked.pk, token="", points=[(n, s, v) for (n, s), v in stored.items()])
    locked.step = max([locked.step, *(s for _, s in stored)])
    locked.heartbeat_at = timezone.now()
    locked.save(update_fields=["step", "heartbeat_at"])
    series: dict[str, list[list[float]]] = {}
    for (name, step), value in sorted(stored.items(), key=lambda item: (item[0][0], item[0][1])):
        series.setdefault(name, []).append([step, value])
    event = RunProgressEvent(
        run_id=locked.pk, step=locked.step, total_steps=locked.total_steps, points=series
    )
    publish_on_commit([run_group(locked.pk)], event)
    return len(stored), locked.cancel_requested_at is not None


@transaction.atomic
def external_run_finish(
    *, run: Run, actor: AnyUser, status: str, error: str = "", summary: dict[str, Any] | None = None
) -> Run:
    """End an external run as succeeded, failed (with ``error``) or cancelled."""
    if status not in END_STATUSES:
        raise ValidationError({"status": f"Choose one of: {', '.join(END_STATUSES)}."})
    if status == RunStatus.FAILED and not error.strip():
        raise ValidationError({"error": "Say why the run failed."})
    _check_json_size("summary", summary or {})
    locked = _locked_external(run, actor)
    locked.status = status
    locked.finished_at = timezone.now()
    locked.heartbeat_at = None
    locked.error = error.strip()[:ERROR_MAX_CHARS] if status == RunStatus.FAILED else ""
    locked.error_step = locked.step if status == RunStatus.FAILED else None
    locked.summary = summary or {}
    locked.save(update_fields=["status", "finished_at", "heartbeat_at", "error", "error_step", "summary"])
    message = locked.error or f"{locked.get_status_display()} (reported by {actor.get_username()})."
    RunEvent.objects.create(run=locked, kind=status, message=message)
    publish_run_status_on_commit(locked)
    return locked
