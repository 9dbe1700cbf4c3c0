"""``/teams/{team}/runs/{run_id}/files``: the files a run keeps (MLflow's artifacts).
List them, upload one (multipart: ``file``, and ``name``, by default the uploaded
file's own name), download one; the rules are ``services/run_files.py``'s."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.http import FileResponse, HttpRequest
from ninja import File, Form, Router, Schema, Status
from ninja.files import UploadedFile
from pydantic import Field

from apps.api.auth import caller
from apps.api.runs import WRITE_ERRORS, run_in_team
from apps.api.schemas import MessageOut
from apps.api.uploads import refuse_oversized, upload_limit
from apps.experiments.models import RunFile
from apps.experiments.selectors import run_file_get
from apps.experiments.services import run_file_upload
from apps.registry.downloads import run_file_response
from apps.teams.models import Role

router = Router(tags=["runs"])


class RunFileOut(Schema):
    id: int
    name: str
    size: int = Field(description="Bytes.")
    sha256: str
    created_by: str
    created_at: datetime


class RunFileForm(Schema):
    name: str = Field(
        "", max_length=400, description="The file's name in the run (default: the uploaded file's own name)."
    )


def run_file_out(kept: RunFile) -> RunFileOut:
    return RunFileOut(
        id=kept.pk,
        name=kept.name,
        size=kept.size,
        sha256=kept.sha256,
        created_by=kept.created_by.get_username(),
        created_at=kept.created_at,
    )


@router.get("/teams/{team}/runs/{run_id}/files", response={200: list[RunFileOut], 404: MessageOut})
def run_files(request: HttpRequest, team: str, run_id: int) -> list[RunFileOut]:
    """The run's files, by name."""
    run = run_in_team(request, team, run_id)
    return [run_file_out(kept) for kept in run.files.select_related("created_by")]


@router.post("/teams/{team}/runs/{run_id}/files", response={201: RunFileOut, **WRITE_ERRORS})
@upload_limit(lambda: settings.RUN_FILE_MAX_BYTES)
def run_file_create(
    request: HttpRequest, team: str, run_id: int, form: Form[RunFileForm], file: File[UploadedFile]
) -> Status:
    """Keep a file with the run (multipart). A name is a file name, not a path, and
    unique in the run; a file past the size limit is dropped as it arrives."""
    run = run_in_team(request, team, run_id, need=Role.MEMBER)
    refuse_oversized(request)
    kept = run_file_upload(
        run=run, actor=caller(request).user, upload=file, name=form.name or file.name or ""
    )
    return Status(201, run_file_out(kept))


@router.get(
    "/teams/{team}/runs/{run_id}/files/{file_id}",
    response={200: bytes, 404: MessageOut},
    openapi_extra={"responses": {200: {"content": {"application/octet-stream": {}}}}},
)
def run_file_download(request: HttpRequest, team: str, run_id: int, file_id: int) -> FileResponse:
    """The file's bytes, as uploaded, under its name."""
    run = run_in_team(request, team, run_id)
    return run_file_response(request, run_file_get(run=run, file_id=file_id))
