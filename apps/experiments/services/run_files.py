"""Files a run keeps beside its metrics (MLflow's artifacts): uploaded by members (the
script that logs an external run, through the API or ``track``), listed and
downloaded by everyone in the team.

The rules live here once: a name is a file name, not a path (1-200 characters, no
slash, backslash or control character, not ``.`` or ``..``), unique in the run; a file
is at most ``RUN_FILE_MAX_BYTES``, a run keeps at most ``RUN_FILES_MAX``, and the
team's storage quota counts them. The upload is copied into a scratch file while its
sha256 is computed (the web process holds one chunk), then stored under a key of
ids only, in the transaction that creates the row: on any error neither the row nor
the stored file remains.
"""

from __future__ import annotations

import shutil
import tempfile
import unicodedata
from pathlib import Path
from typing import IO

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from apps.experiments.models import Run, RunFile
from apps.registry.services.staging import copy_hashed, file_chunks
from apps.runfiles import keys
from apps.runfiles.store import StoreUnavailable, delete_keys, put_file
from apps.teams.models import Role
from apps.teams.quotas import quota_check_storage, team_storage_refresh_on_commit
from apps.teams.services import ensure_role
from apps.teams.types import AnyUser

__all__ = ["run_file_name_problem", "run_file_upload"]

#: The longest name (``RunFile.name``).
NAME_MAX = 200


def run_file_name_problem(name: str) -> str:
    """What is wrong with ``name`` as a run file's name ('' when nothing)."""
    if not name:
        return "Give the file a name."
    if len(name) > NAME_MAX:
        return f"A file name is at most {NAME_MAX} characters."
    if name in (".", "..") or "/" in name or "\\" in name:
        return "A file name is a name, not a path: no / or \\, and not . or .."
    if any(unicodedata.category(char).startswith("C") for char in name):
        return "A file name holds no control or invisible characters."
    return ""


def _checked_name(run: Run, name: str) -> str:
    name = unicodedata.normalize("NFC", (name or "").strip())
    problem = run_file_name_problem(name)
    if problem:
        raise ValidationError({"name": problem})
    if RunFile.objects.filter(run=run, name=name).exists():
        raise _name_taken(run, name)
    return name


def _name_taken(run: Run, name: str) -> ValidationError:
    return ValidationError({"name": f"Run #{run.pk} already keeps a file called {name!r}."})


def _stage(upload: IO[bytes]) -> tuple[Path, str, int]:
    """The upload in a scratch file below the data folder, with its sha256 and size;
    too large a file stops the copy (ValidationError on ``file``)."""
    Path(settings.DATA_DIR).mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".upload-", dir=settings.DATA_DIR))
    try:
        target = scratch / "file"
        sha256, size = copy_hashed(
            file_chunks(upload), target, limit=settings.RUN_FILE_MAX_BYTES, field="file"
        )
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return target, sha256, size


def run_file_upload(*, run: Run, actor: AnyUser, upload: IO[bytes], name: str) -> RunFile:
    """Keep ``upload`` as the run's file called ``name``. Members and admins only.
    ValidationErrors name the field (``name`` or ``file``); nothing is kept on error."""
    ensure_role(user=actor, team=run.team_id, required=Role.MEMBER)
    name = _checked_name(run, name)
    if RunFile.objects.filter(run=run).count() >= settings.RUN_FILES_MAX:
        raise ValidationError({"file": f"A run keeps at most {settings.RUN_FILES_MAX} files."})
    quota_check_storage(team_id=run.team_id, adding=int(getattr(upload, "size", 0) or 0), field="file")
    staged, sha256, size = _stage(upload)
    key = None
    try:
        with transaction.atomic():
            kept = RunFile.objects.create(run=run, name=name, size=size, sha256=sha256, created_by=actor)
            key = keys.run_file(run.pk, kept.pk)
            put_file(staged, key)
            team_storage_refresh_on_commit(run.team_id)
        return kept
    except BaseException as exc:
        if key is not None:
            _forget(key)
        if isinstance(exc, StoreUnavailable):
            raise ValidationError({"file": str(exc)}) from None
        if isinstance(exc, IntegrityError):  # the same name, kept by a request at the same time
            raise _name_taken(run, name) from None
        raise
    finally:
        shutil.rmtree(staged.parent, ignore_errors=True)


def _forget(key: str) -> None:
    """Remove a file stored for a row that was rolled back (best effort: a store that
    cannot be reached keeps an orphan, counted in the quota until removed)."""
    try:
        delete_keys([key])
    except StoreUnavailable:
        pass
