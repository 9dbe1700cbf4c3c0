"""``/teams/{team}/experiments``: list (optionally by exact name), create, and
change one (``PATCH``: its name or description). The
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
from apps.experiments.services.runs import experiment_create, experiment_update
from apps.teams.models import Role

router = Router(tags=["experiments"])


class ExperimentOut(Schema):
    id: int
    name: str
    description: str
    created_at: datetime


class ExperimentIn(Schema):
    name: str = Field(max_length=200)
    description: str = Field("", max_length=5000)


class ExperimentPatchIn(Schema):
    """What to change: a field left out stays as it is."""

    name: str | None = Field(None, max_length=200)
    description: str | None = Field(None, max_length=5000)


class ExperimentQuery(Schema):
    name: str = Field("", max_length=200, description="Only the experiment with this name (any case).")


def _out(experiment: Experiment) -> ExperimentOut:
    return ExperimentOut(
        id=experiment.pk,
        name=experiment.name,
        description=experiment.description,
        created_at=experiment.created_at,
    )


@router.get("/teams/{team}/experiments", response={200: list[ExperimentOut], 422: ValidationErrorOut})
def experiment_list(request: HttpRequest, team: str, params: Query[ExperimentQuery]) -> list[ExperimentOut]:
    rows = experiment_list_for_team(team=team_for(request, team))
    if params.name:
        rows = rows.filter(name__iexact=params.name.strip())
    return [_out(e) for e in rows]


@router.post("/teams/{team}/experiments", response={201: ExperimentOut, **WRITE_ERRORS})
def experiment_create_endpoint(request: HttpRequest, team: str, payload: ExperimentIn) -> Status:
    """A new experiment (the experiment form's validation: a name unique in the team)."""
    the_team = team_for(request, team, need=Role.MEMBER)
    experiment = experiment_create(
        team=the_team, actor=caller(request).user, name=payload.name, description=payload.description
    )
    return Status(201, _out(experiment))


@router.patch("/teams/{team}/experiments/{experiment_id}", response={200: ExperimentOut, **WRITE_ERRORS})
def experiment_update_endpoint(
    request: HttpRequest, team: str, experiment_id: int, payload: ExperimentPatchIn
) -> ExperimentOut:
    """Rename an experiment or change its description (the form's rules for a name)."""
    the_team = team_for(request, team, need=Role.MEMBER)
    experiment = Experiment.objects.filter(team=the_team, pk=experiment_id).first()
    if experiment is None:
        raise Http404("No such experiment.")
    fields = payload.dict(exclude_unset=True)
    return _out(experiment_update(experiment=experiment, actor=caller(request).user, **fields))
