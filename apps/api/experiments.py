"""``/teams/{team}/experiments``: list (optionally by exact name or by tag), create,
and change one (``PATCH``: its name or description). The
command line and the Python client find an experiment by its name (``track``
opens it when missing)."""

from __future__ import annotations

from datetime import datetime

from django.http import Http404, HttpRequest
from ninja import Query, Router, Schema, Status
from pydantic import Field

from apps.api.auth import caller, team_for
from apps.api.runs import WRITE_ERRORS
from apps.api.schemas import ValidationErrorOut
from apps.experiments.models import Experiment
from apps.experiments.selectors import experiment_list_for_team
from apps.experiments.services.annotations import note_version
from apps.experiments.services.runs import experiment_create, experiment_update
from apps.teams.models import Role

router = Router(tags=["experiments"])


class ExperimentOut(Schema):
    id: int
    name: str
    description: str
    created_at: datetime
    tags: list[str]
    note: str = Field(description="The experiment's Markdown note.")
    note_version: str = Field(description="Send it back with a new note (see PUT .../note).")


class ExperimentIn(Schema):
    name: str = Field(max_length=200)
    description: str = Field("", max_length=5000)


class ExperimentPatchIn(Schema):
    """What to change: a field left out stays as it is."""

    name: str | None = Field(None, max_length=200)
    description: str | None = Field(None, max_length=5000)


class ExperimentQuery(Schema):
    name: str = Field("", max_length=200, description="Only the experiment with this name (any case).")
    tag: str = Field("", max_length=100, description="Only experiments that carry this tag.")


def experiment_out(experiment: Experiment) -> ExperimentOut:
    return ExperimentOut(
        id=experiment.pk,
        name=experiment.name,
        description=experiment.description,
        created_at=experiment.created_at,
        tags=[tag.name for tag in experiment.tags.all()],  # prefetched by the list
        note=experiment.note,
        note_version=note_version(experiment),
    )


def experiment_in_team(
    request: HttpRequest, team: str, experiment_id: int, *, need: Role = Role.VIEWER
) -> Experiment:
    """The team's experiment, which the caller may act on with role ``need``; 404 otherwise."""
    the_team = team_for(request, team, need=need)
    experiment = Experiment.objects.filter(team=the_team, pk=experiment_id).first()
    if experiment is None:
        raise Http404("No such experiment.")
    return experiment


@router.get("/teams/{team}/experiments", response={200: list[ExperimentOut], 422: ValidationErrorOut})
def experiment_list(request: HttpRequest, team: str, params: Query[ExperimentQuery]) -> list[ExperimentOut]:
    rows = experiment_list_for_team(team=team_for(request, team), tag=params.tag.strip().lower())
    if params.name:
        rows = rows.filter(name__iexact=params.name.strip())
    return [experiment_out(e) for e in rows]


@router.post("/teams/{team}/experiments", response={201: ExperimentOut, **WRITE_ERRORS})
def experiment_create_endpoint(request: HttpRequest, team: str, payload: ExperimentIn) -> Status:
    """A new experiment (the experiment form's validation: a name unique in the team)."""
    the_team = team_for(request, team, need=Role.MEMBER)
    experiment = experiment_create(
        team=the_team, actor=caller(request).user, name=payload.name, description=payload.description
    )
    return Status(201, experiment_out(experiment))


@router.patch("/teams/{team}/experiments/{experiment_id}", response={200: ExperimentOut, **WRITE_ERRORS})
def experiment_update_endpoint(
    request: HttpRequest, team: str, experiment_id: int, payload: ExperimentPatchIn
) -> ExperimentOut:
    """Rename an experiment or change its description (the form's rules for a name)."""
    experiment = experiment_in_team(request, team, experiment_id, need=Role.MEMBER)
    fields = payload.dict(exclude_unset=True)
    return experiment_out(experiment_update(experiment=experiment, actor=caller(request).user, **fields))
