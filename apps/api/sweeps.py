"""``/teams/{team}/sweeps``: list, launch, get (the leaderboard and the runs pooled
across seeds, as the sweep page shows them) and stop. A sweep is validated and
stored by the same service as the launch form's "Sweep" section."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from django.core.exceptions import ValidationError
from django.http import HttpRequest
from ninja import Query, Router, Schema, Status
from pydantic import Field

from apps.api.auth import caller, team_for
from apps.api.paging import IdPageQuery, id_page
from apps.api.runs import WRITE_ERRORS, launch_targets
from apps.api.schemas import MessageOut, TrainConfigJSON, ValidationErrorOut
from apps.experiments import services
from apps.experiments.models import Sweep
from apps.experiments.sweep_selectors import (
    sweep_get_for_team,
    sweep_leaderboard,
    sweep_list_for_team,
    sweep_seed_groups,
    sweep_setting_importance,
)
from apps.teams.models import Role
from workers.metalearn.config import TrainConfig

router = Router(tags=["sweeps"])

#: One value of a listed dimension: a number, yes/no, or a choice by name.
DimensionItem = bool | int | float | Annotated[str, Field(max_length=100)]
#: A dimension: its text as on the launch form, or the list of its values.
Dimension = Annotated[str, Field(max_length=500)] | Annotated[list[DimensionItem], Field(max_length=1000)]


class SweepIn(Schema):
    experiment_id: int = Field(ge=1, le=2**62)
    taskset_id: int = Field(ge=1, le=2**62)
    queue: str = Field("cpu", max_length=10)
    config: TrainConfigJSON = Field(
        default_factory=dict, description="The settings every run shares (TrainConfig, less family)."
    )
    dimensions: dict[Annotated[str, Field(max_length=40)], Dimension] = Field(
        max_length=40,
        description="Setting -> its values: a list ([0.01, 0.1]; [true, false]; choices by name), or the "
        "launch form's text ('0.01, 0.1', '1..5 step 1', '1e-4..1e-1 log' for random, ASHA and bayes).",
    )
    strategy: Literal["grid", "random", "asha", "bayes"]
    samples: int = Field(0, ge=0, le=100_000, description="Runs of a random, ASHA or bayes sweep.")
    seed: int = Field(0, ge=0, le=2**62, description="The sampling seed of a random, ASHA or bayes sweep.")
    metric: str = Field("val_loss", max_length=50, description="What ranks the runs (and ASHA stops by).")
    max_concurrent: int = Field(1, ge=1, le=1000, description="At most this many runs queued or running.")
    name: str = Field("", max_length=200)
    early_stop: bool = Field(
        False,
        description="Stop poor runs at ASHA's rungs (W&B's early_terminate): a run not in the top third of "
        "those that reached its rung stops. Always on for ASHA; needs an eval_interval below the iterations.",
    )


class SweepOut(Schema):
    id: int
    name: str
    status: str
    message: str
    strategy: str
    experiment_id: int
    taskset_id: int
    taskset_version: int
    queue: str
    metric: str
    maximize: bool
    max_concurrent: int
    early_stop: bool = Field(description="Poor runs stop at ASHA's rungs.")
    dimensions: dict[str, Any]
    planned: int = Field(description="Runs the sweep makes in all.")
    waiting: int = Field(description="Configs not yet launched.")
    created_by: str
    created_at: datetime


class SweepPageOut(Schema):
    next_before: int | None = Field(description="Pass as ``before`` for the next page; null on the last.")
    results: list[SweepOut]


class LeaderOut(Schema):
    rank: int | None = Field(description="1 is the best; null without a finite value yet.")
    run_id: int
    status: str
    step: int
    total_steps: int
    value: float | None = Field(description="The run's latest value of the sweep's metric.")
    value_step: int | None
    point: dict[str, Any] = Field(description="The run's value of each swept setting.")
    order: int = Field(description="The run's place in the sweep's launch order (1: its first run).")


class SeedGroupOut(Schema):
    run_ids: list[int]
    label: dict[str, str] = Field(description="The swept settings that set the group apart.")
    n: int = Field(description="Runs whose final value is pooled.")
    mean: float | None
    half_width: float | None = Field(description="Of the Student-t 95% confidence interval.")


class ImportanceOut(Schema):
    setting: str
    test: str = Field(description="`spearman` (a number; yes/no as 0/1) or `kruskal` (a choice, the seed).")
    n: int = Field(description="Succeeded runs with a final value of the metric.")
    effect: float | None = Field(
        description="Spearman's rho signed so that positive is better as the setting grows; "
        "or Kruskal-Wallis epsilon squared (0 to 1). Null when it cannot be told."
    )
    p: float | None = Field(description="Two-sided p-value, per setting, uncorrected.")
    forest: float | None = Field(
        description="The setting's share (0 to 1; the shares sum to 1) of a random forest's impurity "
        "importance, the forest fitted with the settings as inputs and the metric's ranks as the target "
        "(W&B's importance column). Null under 8 runs."
    )
    forest_r2: float | None = Field(
        description="The forest's out-of-bag R² (the same on every row); "
        "at or under 0, its shares say nothing."
    )
    not_monotone: bool = Field(
        description="No clear rank link, but most of a well-fitting forest's importance: "
        "the setting matters without being monotone (best in the middle of its range)."
    )
    reading: str


class SweepDetailOut(SweepOut):
    leaderboard: list[LeaderOut]
    across_seeds: list[SeedGroupOut] = Field(
        description="Succeeded runs alike but for a swept seed, pooled; best mean first."
    )
    importance: list[ImportanceOut] = Field(
        description="Each swept setting's rank association with the metric's final value, strongest first."
    )


def sweep_out(sweep: Sweep) -> dict[str, Any]:
    return {
        "id": sweep.pk,
        "name": sweep.name,
        "status": sweep.status,
        "message": sweep.message,
        "strategy": sweep.strategy,
        "experiment_id": sweep.experiment_id,
        "taskset_id": sweep.taskset_version.taskset_id,
        "taskset_version": sweep.taskset_version.number,
        "queue": sweep.queue,
        "metric": sweep.metric,
        "maximize": sweep.maximize,
        "max_concurrent": sweep.max_concurrent,
        "early_stop": sweep.early_stop,
        "dimensions": sweep.dimensions if isinstance(sweep.dimensions, dict) else {},
        "planned": sweep.planned,
        "waiting": max(0, sweep.planned - sweep.next_index),
        "created_by": sweep.created_by.get_username(),
        "created_at": sweep.created_at,
    }


def sweep_detail_out(sweep: Sweep) -> SweepDetailOut:
    rows = sweep_leaderboard(sweep=sweep)
    leaderboard = [
        LeaderOut(
            rank=row.rank,
            run_id=row.run.pk,
            status=row.run.status,
            step=row.run.step,
            total_steps=row.run.total_steps,
            value=row.value,
            value_step=row.step,
            point=row.point,
            order=row.order,
        )
        for row in rows
    ]
    groups = []
    for group in sweep_seed_groups(sweep=sweep, rows=rows):
        pooled = group.stats[sweep.metric]
        groups.append(
            SeedGroupOut(
                run_ids=group.run_ids,
                label=group.label,
                n=pooled.n if pooled else 0,
                mean=pooled.mean if pooled else None,
                half_width=pooled.half_width if pooled else None,
            )
        )
    importance = [
        ImportanceOut(
            setting=i.setting,
            test=i.test,
            n=i.n,
            effect=i.effect,
            p=i.p,
            forest=i.forest,
            forest_r2=i.forest_r2,
            not_monotone=i.not_monotone,
            reading=i.reading,
        )
        for i in sweep_setting_importance(sweep=sweep, rows=rows)
    ]
    return SweepDetailOut(
        **sweep_out(sweep), leaderboard=leaderboard, across_seeds=groups, importance=importance
    )


@router.get("/teams/{team}/sweeps", response={200: SweepPageOut, 422: ValidationErrorOut})
def sweep_list(request: HttpRequest, team: str, params: Query[IdPageQuery]) -> SweepPageOut:
    rows = sweep_list_for_team(team=team_for(request, team)).select_related("taskset_version")
    page, next_before = id_page(rows, params)
    return SweepPageOut(next_before=next_before, results=[SweepOut(**sweep_out(sweep)) for sweep in page])


@router.get("/teams/{team}/sweeps/{sweep_id}", response={200: SweepDetailOut, 404: MessageOut})
def sweep_get(request: HttpRequest, team: str, sweep_id: int) -> SweepDetailOut:
    return sweep_detail_out(sweep_get_for_team(team=team_for(request, team), sweep_id=sweep_id))


def _dimension_text(setting: str, value: str | list[Any]) -> str:
    """A dimension as the launch form's text: a list's values joined by commas."""
    if isinstance(value, str):
        return value
    words = []
    for item in value:
        if isinstance(item, bool):
            words.append("true" if item else "false")
        elif isinstance(item, float):
            words.append(repr(item))
        elif isinstance(item, str) and ("," in item or not item.strip()):
            message = f"{item!r} is not a value: it must not be empty or hold a comma."
            raise ValidationError({f"dimensions.{setting}": message})
        else:
            words.append(str(item))
    if not words:
        raise ValidationError({f"dimensions.{setting}": "Give at least one value."})
    return ", ".join(words)


def _api_errors(error: ValidationError) -> ValidationError:
    """The service's errors, keyed by launch-form field, keyed by this body's fields:
    ``dim_<setting>`` -> ``dimensions.<setting>``, ``sweep_<option>`` -> ``<option>``."""
    if not hasattr(error, "error_dict"):
        return error
    renamed: dict[str, list[str]] = {}
    for field, messages in error.message_dict.items():
        if field.startswith("dim_"):
            field = f"dimensions.{field[4:]}"
        elif field.startswith("sweep_"):
            field = field[6:]
        renamed.setdefault(field, []).extend(messages)
    return ValidationError(renamed)


@router.post("/teams/{team}/sweeps", response={201: SweepDetailOut, **WRITE_ERRORS})
def sweep_launch(request: HttpRequest, team: str, payload: SweepIn) -> Status:
    """Store a sweep's configs and queue its first ``max_concurrent`` runs; every
    config is checked as a single run's first, and on any error nothing is queued."""
    the_team = team_for(request, team, need=Role.MEMBER)
    experiment, version = launch_targets(
        the_team, experiment_id=payload.experiment_id, taskset_id=payload.taskset_id
    )
    dimensions = {setting: _dimension_text(setting, value) for setting, value in payload.dimensions.items()}
    config = {"algorithm": TrainConfig.model_fields["algorithm"].default, **payload.config}
    try:
        sweep = services.sweep_create(
            experiment=experiment,
            actor=caller(request).user,
            taskset_version=version,
            base_config=config,
            dimensions=dimensions,
            strategy=payload.strategy,
            metric=payload.metric,
            max_concurrent=payload.max_concurrent,
            samples=payload.samples,
            seed=payload.seed,
            queue=payload.queue,
            name=payload.name,
            early_stop=payload.early_stop,
        )
    except ValidationError as error:
        raise _api_errors(error) from None
    return Status(201, sweep_detail_out(sweep_get_for_team(team=the_team, sweep_id=sweep.pk)))


@router.post("/teams/{team}/sweeps/{sweep_id}/stop", response={200: SweepDetailOut, **WRITE_ERRORS})
def sweep_stop(request: HttpRequest, team: str, sweep_id: int) -> SweepDetailOut:
    """No more runs start, and the sweep's queued and running runs are cancelled."""
    the_team = team_for(request, team, need=Role.MEMBER)
    sweep = sweep_get_for_team(team=the_team, sweep_id=sweep_id)
    services.sweep_stop(sweep=sweep, actor=caller(request).user)
    return sweep_detail_out(sweep_get_for_team(team=the_team, sweep_id=sweep_id))
