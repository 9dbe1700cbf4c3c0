"""``/teams/{team}/tasksets``: list, get, and create from JSON parameters."""

from __future__ import annotations

from django.http import Http404, HttpRequest
from ninja import Router, Status

from apps.api.auth import caller, team_for
from apps.api.schemas import MessageOut, TaskSetIn, TaskSetOut, ValidationErrorOut
from apps.tasksets.models import TaskSet
from apps.tasksets.selectors import taskset_list_for_team
from apps.tasksets.services import taskset_create
from apps.teams.models import Role

router = Router(tags=["task sets"])


def _out(taskset: TaskSet, latest: int | None) -> TaskSetOut:
    return TaskSetOut(
        id=taskset.pk,
        name=taskset.name,
        family=taskset.family,
        created_at=taskset.created_at,
        latest_version=latest,
    )


@router.get("/teams/{team}/tasksets", response=list[TaskSetOut])
def taskset_list(request: HttpRequest, team: str) -> list[TaskSetOut]:
    rows = taskset_list_for_team(team=team_for(request, team))
    return [_out(t, t.latest_number) for t in rows]


@router.get("/teams/{team}/tasksets/{taskset_id}", response={200: TaskSetOut, 404: MessageOut})
def taskset_get(request: HttpRequest, team: str, taskset_id: int) -> TaskSetOut:
    taskset = taskset_list_for_team(team=team_for(request, team)).filter(pk=taskset_id).first()
    if taskset is None:
        raise Http404("No such task set.")
    return _out(taskset, taskset.latest_number)


@router.post(
    "/teams/{team}/tasksets",
    response={201: TaskSetOut, 403: MessageOut, 422: ValidationErrorOut},
)
def taskset_create_endpoint(request: HttpRequest, team: str, payload: TaskSetIn) -> Status:
    """Create a task set of a generated family from its parameters (the form's validation)."""
    the_team = team_for(request, team, need=Role.MEMBER)
    taskset = taskset_create(
        team=the_team,
        actor=caller(request).user,
        name=payload.name,
        family=payload.family,
        description=payload.description,
        params=payload.params,
    )
    return Status(201, _out(taskset, 1))
