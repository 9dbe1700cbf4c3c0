"""``/teams/{team}/runs``: list (cursor pages, the run search language, or a saved view), get,
launch, cancel, clone, archive and restore, metrics over a range, events,
checkpoint download."""

from __future__ import annotations

from typing import Literal

from django.core.exceptions import ValidationError
from django.db.models import prefetch_related_objects
from django.http import FileResponse, Http404, HttpRequest, QueryDict, StreamingHttpResponse
from ninja import Query, Router, Schema, Status
from pydantic import Field

from apps.api.auth import caller, team_for
from apps.api.schemas import (
    MessageOut,
    RunCloneIn,
    RunEventOut,
    RunIdsIn,
    RunLaunchIn,
    RunOut,
    RunPageOut,
    SeriesOut,
    ValidationErrorOut,
)
from apps.experiments.analysis.curves import MAX_POINTS
from apps.experiments.compare_selectors import compare_series
from apps.experiments.filters import RunListParams, run_list_params, saved_view_query
from apps.experiments.listing.columns import sort_parse
from apps.experiments.listing.selectors import (
    ARCHIVED_ONLY,
    ARCHIVED_TOO,
    run_page_for_team,
    saved_view_named,
)
from apps.experiments.models import Experiment, Run
from apps.experiments.selectors import run_events, run_get_visible, run_metrics_csv
from apps.experiments.services.annotations import note_version
from apps.experiments.services.archive import runs_archive, runs_restore
from apps.experiments.services.runs import run_cancel, run_create
from apps.registry.downloads import checkpoint_response
from apps.tasksets.models import TaskSet, TaskSetVersion
from apps.tasksets.selectors import taskset_version_latest
from apps.teams.models import Role, Team
from metaweb.streaming import csv_response

router = Router(tags=["runs"])

WRITE_ERRORS = {403: MessageOut, 404: MessageOut, 422: ValidationErrorOut}


def run_out(run: Run) -> RunOut:
    return RunOut(
        id=run.pk,
        kind=run.kind,
        status=run.status,
        algorithm=run.algorithm,
        experiment_id=run.experiment_id,
        taskset_id=run.taskset_version.taskset_id,
        taskset_version=run.taskset_version.number,
        queue=run.queue,
        step=run.step,
        total_steps=run.total_steps,
        seed=run.seed,
        config=run.config if isinstance(run.config, dict) else {},
        summary=run.summary if isinstance(run.summary, dict) else {},
        error=run.error,
        cloned_from_id=run.cloned_from_id,
        created_at=run.created_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        archived_at=run.archived_at,
        tags=[tag.name for tag in run.tags.all()],  # prefetched by the lists
        note=run.note,
        note_version=note_version(run),
    )


def run_in_team(request: HttpRequest, team: str, run_id: int, *, need: Role = Role.VIEWER) -> Run:
    """The run if it belongs to the team in the URL, which the caller may act in."""
    the_team = team_for(request, team, need=need)
    run = run_get_visible(user=caller(request).user, run_id=run_id)
    if run.team_id != the_team.pk:
        raise Http404("No such run.")
    return run


class RunListQuery(Schema):
    q: str = Field("", max_length=2000, description="The run search language, as on the run list.")
    sort: str = Field("", max_length=200, description="A column, '-' first for descending.")
    cursor: str = Field("", max_length=2000)
    limit: int = Field(50, ge=1, le=200)
    archived: Literal["hide", "only", "include"] = Field(
        "hide", description="Archived runs: left out (hide), the only ones listed, or listed with the others."
    )
    view: str = Field(
        "",
        max_length=200,
        description="A saved view's name (any case): the runs it shows on the run list, in its order "
        "(its search, filters, kind and sort; not with q, sort or archived).",
    )


@router.get("/teams/{team}/runs", response={200: RunPageOut, 422: ValidationErrorOut})
def run_list(request: HttpRequest, team: str, filters: Query[RunListQuery]) -> RunPageOut:
    the_team = team_for(request, team)
    if filters.view.strip():
        params = _view_params(the_team, filters)
        listed = {"filters": params.filters, "query": params.query, "sort": params.sort}
    else:
        archived = {"only": ARCHIVED_ONLY, "include": ARCHIVED_TOO}.get(filters.archived)
        listed = {
            "filters": {"kind": "all", **({"archived": archived} if archived else {})},
            "query": filters.q,
            "sort": sort_parse(filters.sort),
        }
    page = run_page_for_team(team=the_team, cursor=filters.cursor, per_page=filters.limit, **listed)
    prefetch_related_objects(page.runs, "tags")
    return RunPageOut(
        count=page.count,
        next_cursor=page.next_cursor,
        prev_cursor=page.prev_cursor,
        results=[run_out(run) for run in page.runs],
    )


def _view_params(team: Team, filters: RunListQuery) -> RunListParams:
    """What the run list reads for the team's saved view ``filters.view`` (any case);
    ValidationError on ``view`` when there is none, or when q, sort or archived are
    given too (the view sets them)."""
    if filters.q or filters.sort or filters.archived != "hide":
        message = "A saved view sets the search, sort and archived filter: send no q, sort or archived."
        raise ValidationError({"view": message})
    name = filters.view.strip()
    view = saved_view_named(team=team, name=name)
    if view is None:
        raise ValidationError({"view": f"This team has no saved view called {name[:80]!r}."})
    return run_list_params(QueryDict(saved_view_query(**view.list_fields())), team=team)


def launch_targets(team: Team, *, experiment_id: int, taskset_id: int) -> tuple[Experiment, TaskSetVersion]:
    """The team's experiment and its task set's latest version for a new run (a worker's
    or an external one); ValidationError naming the field otherwise."""
    experiment = Experiment.objects.filter(team=team, pk=experiment_id).first()
    taskset = TaskSet.objects.filter(team=team, pk=taskset_id).first()
    errors: dict[str, str] = {}
    if experiment is None:
        errors["experiment"] = "Choose one of this team's experiments."
    if taskset is None:
        errors["taskset"] = "Choose one of this team's task sets."
    if errors:
        raise ValidationError(errors)
    version = taskset_version_latest(taskset=taskset)
    if version is None:
        raise ValidationError({"taskset": "This task set has no version yet."})
    return experiment, version  # type: ignore[return-value]


@router.post("/teams/{team}/runs", response={201: RunOut, **WRITE_ERRORS})
def run_launch(request: HttpRequest, team: str, payload: RunLaunchIn) -> Status:
    """Queue a meta-training run: ``config`` is the engine's TrainConfig (less ``family``,
    which comes from the task set's latest version)."""
    the_team = team_for(request, team, need=Role.MEMBER)
    experiment, version = launch_targets(
        the_team, experiment_id=payload.experiment_id, taskset_id=payload.taskset_id
    )
    run = run_create(
        experiment=experiment,
        actor=caller(request).user,
        taskset_version=version,
        config=payload.config,
        queue=payload.queue,
    )
    return Status(201, run_out(run))


# Before /runs/{run_id}: its str parameter would take 'archive' and 'restore'.
@router.post("/teams/{team}/runs/archive", response={200: list[RunOut], **WRITE_ERRORS})
def runs_archive_endpoint(request: HttpRequest, team: str, payload: RunIdsIn) -> list[RunOut]:
    """Archive ended runs: the run lists leave them out unless asked (``archived``)."""
    the_team = team_for(request, team, need=Role.MEMBER)
    return _outs(runs_archive(team=the_team, run_ids=payload.ids, actor=caller(request).user))


@router.post("/teams/{team}/runs/restore", response={200: list[RunOut], **WRITE_ERRORS})
def runs_restore_endpoint(request: HttpRequest, team: str, payload: RunIdsIn) -> list[RunOut]:
    """Bring archived runs back to the run lists."""
    the_team = team_for(request, team, need=Role.MEMBER)
    return _outs(runs_restore(team=the_team, run_ids=payload.ids, actor=caller(request).user))


def _outs(runs: list[Run]) -> list[RunOut]:
    prefetch_related_objects(runs, "tags")
    return [run_out(run) for run in runs]


@router.get("/teams/{team}/runs/{run_id}", response={200: RunOut, 404: MessageOut})
def run_get(request: HttpRequest, team: str, run_id: int) -> RunOut:
    return run_out(run_in_team(request, team, run_id))


@router.post("/teams/{team}/runs/{run_id}/cancel", response={200: RunOut, **WRITE_ERRORS})
def run_cancel_endpoint(request: HttpRequest, team: str, run_id: int) -> RunOut:
    run = run_in_team(request, team, run_id, need=Role.MEMBER)
    return run_out(run_cancel(run=run, actor=caller(request).user))


@router.post("/teams/{team}/runs/{run_id}/clone", response={201: RunOut, **WRITE_ERRORS})
def run_clone(request: HttpRequest, team: str, run_id: int, payload: RunCloneIn) -> Status:
    """A new run on the same task-set version with the same configuration, changed by ``config``."""
    run = run_in_team(request, team, run_id, need=Role.MEMBER)
    config = dict(run.config if isinstance(run.config, dict) else {})
    config.pop("family", None)
    config.update(payload.config)
    clone = run_create(
        experiment=run.experiment,
        actor=caller(request).user,
        taskset_version=run.taskset_version,
        config=config,
        queue=run.queue,
        cloned_from=run,
    )
    return Status(201, run_out(clone))


class MetricQuery(Schema):
    name: str = Field(max_length=50, description="The metric, e.g. train_loss.")
    lo: float | None = Field(None, ge=0, le=1e12, description="First step of the range.")
    hi: float | None = Field(None, ge=0, le=1e12, description="Last step of the range.")
    points: int = Field(500, ge=2, le=MAX_POINTS, description="At most this many points (min-max buckets).")
    edges: bool = Field(
        False,
        description="Add the nearest point before lo and after hi, so a chart's line crosses its edges.",
    )


@router.get(
    "/teams/{team}/runs/{run_id}/metrics", response={200: SeriesOut, 404: MessageOut, 422: ValidationErrorOut}
)
def run_metrics(request: HttpRequest, team: str, run_id: int, params: Query[MetricQuery]) -> SeriesOut:
    run = run_in_team(request, team, run_id)
    data = compare_series(
        runs=[run], metric=params.name, lo=params.lo, hi=params.hi, points=params.points, edges=params.edges
    )
    series = data["runs"][0]
    return SeriesOut(
        metric=params.name, x=series["x"], y=series["y"], total=series["total"], dropped=series["dropped"]
    )


@router.get("/teams/{team}/runs/{run_id}/events", response={200: list[RunEventOut], 404: MessageOut})
def run_event_list(request: HttpRequest, team: str, run_id: int) -> list[RunEventOut]:
    run = run_in_team(request, team, run_id)
    return [
        RunEventOut(created_at=e.created_at, kind=e.kind, message=e.message, attempt=e.attempt, step=e.step)
        for e in run_events(run=run)
    ]


@router.get(
    "/teams/{team}/runs/{run_id}/checkpoint",
    response={200: bytes, 404: MessageOut},
    openapi_extra={"responses": {200: {"content": {"application/octet-stream": {}}}}},
)
def run_checkpoint(request: HttpRequest, team: str, run_id: int) -> FileResponse:
    """The newest complete checkpoint's weights (safetensors), streamed."""
    return checkpoint_response(request, run_in_team(request, team, run_id))


@router.get(
    "/teams/{team}/runs/{run_id}/metrics.csv",
    response={200: bytes, 404: MessageOut},
    openapi_extra={"responses": {200: {"content": {"text/csv": {}}}}},
)
def run_metrics_csv_endpoint(request: HttpRequest, team: str, run_id: int) -> StreamingHttpResponse:
    """Every stored point of the run, ``step,name,value`` (by name, then step), streamed
    as the run page's CSV download is."""
    run = run_in_team(request, team, run_id)
    return csv_response(request, run_metrics_csv(run=run), filename=f"run-{run.pk}-metrics.csv")
