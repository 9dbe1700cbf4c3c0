"""External runs: open one, post batches of metric points (idempotent: per metric
name, steps only grow, and replayed steps are skipped), finish it. The user's own
training loop uses these."""

from __future__ import annotations

from typing import Annotated, Any

from django.core.exceptions import ValidationError
from django.http import HttpRequest
from ninja import Router, Schema, Status
from pydantic import Field

from apps.api.auth import caller, team_for
from apps.api.runs import WRITE_ERRORS, launch_targets, run_in_team, run_out
from apps.api.schemas import RunOut
from apps.experiments.services.external import (
    MAX_BATCH_POINTS,
    external_run_create,
    external_run_finish,
    external_run_log,
)
from apps.teams.models import Role

router = Router(tags=["external runs"])


class ExternalRunIn(Schema):
    experiment_id: int = Field(ge=1, le=2**62)
    taskset_id: int = Field(ge=1, le=2**62)
    algorithm: str = Field(max_length=20)
    total_steps: int = Field(0, ge=0, le=2**31 - 1)
    config: dict[str, Any] = Field(default_factory=dict, description="Anything that describes the run.")


class PointIn(Schema):
    name: str = Field(min_length=1, max_length=50)
    step: int = Field(ge=0, le=2**31 - 1)
    value: float = Field(allow_inf_nan=False)


class SeriesIn(Schema):
    """One metric's points as two columns: ``steps[i]`` has ``values[i]``."""

    steps: list[Annotated[int, Field(ge=0, le=2**31 - 1)]] = Field(max_length=MAX_BATCH_POINTS)
    values: list[Annotated[float, Field(allow_inf_nan=False)]] = Field(max_length=MAX_BATCH_POINTS)


class PointsIn(Schema):
    """A batch: ``points`` (one object per point), or the same as columns per metric in
    ``series`` (``{"loss": {"steps": [...], "values": [...]}}``), which is several times
    cheaper to send and to validate; the client library sends ``series``. Both may be
    given; at most 5,000 points in all."""

    points: list[PointIn] = Field(default_factory=list, max_length=MAX_BATCH_POINTS)
    series: dict[Annotated[str, Field(min_length=1, max_length=50)], SeriesIn] = Field(
        default_factory=dict, max_length=1000
    )

    def flat(self) -> list[tuple[str, int, float]]:
        """Every point as ``(name, step, value)``; ValidationError naming the field when a
        metric's columns differ in length or the batch is too big."""
        total = len(self.points) + sum(len(s.steps) for s in self.series.values())
        if total > MAX_BATCH_POINTS:
            raise ValidationError({"points": f"Send at most {MAX_BATCH_POINTS} points per batch."})
        flat = [(p.name, p.step, p.value) for p in self.points]
        for name, columns in self.series.items():
            if len(columns.steps) != len(columns.values):
                raise ValidationError({"series": f"{name}: give as many values as steps."})
            flat.extend(
                (name, step, value) for step, value in zip(columns.steps, columns.values, strict=True)
            )
        return flat


class PointsOut(Schema):
    stored: int = Field(
        description=(
            "Points that were new. Per metric name, steps only grow: a point whose step is not above "
            "the highest step stored for its name is a replay and is skipped."
        )
    )
    stop: bool = Field(description="A cancel was requested: stop and finish as cancelled.")


class FinishIn(Schema):
    status: str = Field(description="succeeded, failed or cancelled", max_length=20)
    error: str = Field("", max_length=10_000)
    summary: dict[str, Any] = Field(default_factory=dict)


@router.post("/teams/{team}/external-runs", response={201: RunOut, **WRITE_ERRORS})
def external_create(request: HttpRequest, team: str, payload: ExternalRunIn) -> Status:
    the_team = team_for(request, team, need=Role.MEMBER)
    experiment, version = launch_targets(
        the_team, experiment_id=payload.experiment_id, taskset_id=payload.taskset_id
    )
    run = external_run_create(
        experiment=experiment,
        actor=caller(request).user,
        taskset_version=version,
        algorithm=payload.algorithm,
        config=payload.config,
        total_steps=payload.total_steps,
    )
    return Status(201, run_out(run))


@router.post("/teams/{team}/runs/{run_id}/points", response={200: PointsOut, **WRITE_ERRORS})
def external_points(request: HttpRequest, team: str, run_id: int, payload: PointsIn) -> PointsOut:
    """Store a batch of points. Per metric name, steps only grow: a point whose step is
    not above the highest step already stored for its name is a replay and is skipped
    (it overwrites nothing), so log each metric's steps in order and resend a batch
    freely. Within a batch, the first value of a (name, step) wins."""
    run = run_in_team(request, team, run_id, need=Role.MEMBER)
    stored, stop = external_run_log(run=run, actor=caller(request).user, points=payload.flat())
    return PointsOut(stored=stored, stop=stop)


@router.post("/teams/{team}/runs/{run_id}/finish", response={200: RunOut, **WRITE_ERRORS})
def external_finish(request: HttpRequest, team: str, run_id: int, payload: FinishIn) -> RunOut:
    run = run_in_team(request, team, run_id, need=Role.MEMBER)
    finished = external_run_finish(
        run=run,
        actor=caller(request).user,
        status=payload.status,
        error=payload.error,
        summary=payload.summary,
    )
    return run_out(finished)
