"""``/teams/{team}/tasksets``: list, get, and create from JSON parameters or from an
uploaded data file (multipart: the task-set form's fields, rules and words)."""

from __future__ import annotations

from django.conf import settings
from django.http import Http404, HttpRequest
from ninja import File, Form, Router, Schema, Status
from ninja.files import UploadedFile
from pydantic import Field

from apps.api.auth import caller, team_for
from apps.api.schemas import MessageOut, TaskSetIn, TaskSetOut, ValidationErrorOut
from apps.api.uploads import json_text_field, refuse_oversized, upload_limit
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


# Before ``/tasksets/{taskset_id}``, whose pattern would take ``upload`` as an id.
class TaskSetUploadForm(Schema):
    name: str = Field(max_length=200)
    family: str = Field("table", max_length=40, description="A family that takes a data file.")
    description: str = Field("", max_length=5000)
    params: str = Field(
        "", max_length=16 * 1024, description="The family's parameters as a JSON object (empty: defaults)."
    )


@router.post(
    "/teams/{team}/tasksets/upload",
    response={201: TaskSetOut, 403: MessageOut, 422: ValidationErrorOut},
)
@upload_limit(lambda: settings.TASKSET_UPLOAD_MAX_BYTES)
def taskset_upload(
    request: HttpRequest,
    team: str,
    form: Form[TaskSetUploadForm],
    data_file: File[UploadedFile],
) -> Status:
    """Create a task set from a CSV, or a zip of ``class/*.png`` folders (multipart).
    The file is checked by the engine's reader before anything is stored."""
    the_team = team_for(request, team, need=Role.MEMBER)
    refuse_oversized(request)
    taskset = taskset_create(
        team=the_team,
        actor=caller(request).user,
        name=form.name,
        family=form.family,
        description=form.description,
        params=json_text_field(form.params, field="params", default={}),
        data_file=data_file,
    )
    return Status(201, _out(taskset, 1))


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
