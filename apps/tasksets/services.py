"""Writes about task sets: creating them, and editing them into new versions.

A task set's versions are immutable. Editing makes a new version with the next
number; runs keep pointing at the version they used. For the ``table`` family a
version also holds an uploaded data file. Uploads are validated before anything
is stored: the size from the upload's metadata first, then the engine's
``inspect_table`` on a temporary copy. The file is stored (under a name built
from ids and a random token) only once it is valid, and removed again if the
database write fails, so an error never leaves rows or files behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files import File
from django.db import IntegrityError, transaction
from django.db.models import Max
from pydantic import BaseModel

from apps.runfiles.store import StoreUnavailable, guarded
from apps.tasksets.models import ALLOWED_DATA_SUFFIXES, TaskSet, TaskSetVersion
from apps.tasksets.uploads import DATA_FAMILIES, format_bytes
from apps.teams.models import Role, Team
from apps.teams.quotas import quota_check_storage
from apps.teams.services import ensure_role
from apps.teams.types import AnyUser
from workers.metalearn.config import ConfigError
from workers.metalearn.families import FAMILY_PARAMS, inspect_table, parse_family_params
from workers.metalearn.types import DataError
from workers.metalearn.uploads import DEFAULT_LIMITS, UploadLimits

logger = logging.getLogger(__name__)


NAME_MAX_LENGTH = TaskSet._meta.get_field("name").max_length
DESCRIPTION_MAX_LENGTH = 5000
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class CheckedData:
    """An upload the engine accepted: a temporary copy, its digest and summary."""

    path: Path
    sha256: str
    size: int
    summary: dict[str, Any]
    original_name: str


# -- validation helpers -----------------------------------------------------------------------------


def _clean_name(*, team: Team, name: str, exclude_pk: int | None = None) -> str:
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": "Give the task set a name."})
    if len(name) > NAME_MAX_LENGTH:
        raise ValidationError({"name": f"Keep the name to {NAME_MAX_LENGTH} characters."})
    clash = TaskSet.objects.filter(team=team, name__iexact=name)
    if exclude_pk is not None:
        clash = clash.exclude(pk=exclude_pk)
    if clash.exists():
        raise ValidationError({"name": f"This team already has a task set called '{name}'."})
    return name


def _clean_description(description: str) -> str:
    description = (description or "").strip()
    if len(description) > DESCRIPTION_MAX_LENGTH:
        raise ValidationError(
            {"description": f"Keep the description to {DESCRIPTION_MAX_LENGTH} characters."}
        )
    return description


def _clean_params(*, family: str, params: dict[str, Any] | None) -> BaseModel:
    """The family's validated parameter model; errors keyed ``params.<field>``."""
    if params is not None and not isinstance(params, dict):
        raise ValidationError({"params": "Parameters must be a JSON object."})
    try:
        return parse_family_params(family, params or {})
    except ConfigError as error:
        raise ValidationError(
            {"params" + key.removeprefix("family.params"): message for key, message in error.errors.items()}
        ) from None


def _jsonable(value: Any) -> Any:
    """The engine's summary as plain JSON (dicts, lists, numbers, strings)."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)

    def default(obj: Any) -> Any:
        if hasattr(obj, "tolist"):  # numpy arrays and scalars
            return obj.tolist()
        if isinstance(obj, set | frozenset | tuple):
            return list(obj)
        return str(obj)

    data = json.loads(json.dumps(value, default=default))
    return data if isinstance(data, dict) else {"summary": data}


def _suffix_of(name: str) -> str:
    return PurePosixPath(name or "").suffix.lower()


@contextlib.contextmanager
def _checked_upload(*, upload: File, params: BaseModel) -> Iterator[CheckedData]:
    """Validate an upload for the ``table`` family and yield it as a temporary file.

    The size is checked from the upload's metadata before reading; the copy is
    hashed while written; the engine's ``inspect_table`` reads the copy. Every
    problem is a ValidationError on ``data_file``. The copy is gone on exit.
    """
    limit = settings.TASKSET_UPLOAD_MAX_BYTES
    size = getattr(upload, "size", None)
    if size is not None and size > limit:
        raise ValidationError(
            {"data_file": f"The file is {format_bytes(size)}; the limit is {format_bytes(limit)}."}
        )
    if size == 0:
        raise ValidationError({"data_file": "The file is empty."})
    original_name = PurePosixPath(str(getattr(upload, "name", "") or "")).name[:200]
    suffix = _suffix_of(original_name)
    if suffix not in ALLOWED_DATA_SUFFIXES:
        raise ValidationError({"data_file": "Upload a .csv file, or a .zip of class folders of PNG images."})

    with tempfile.TemporaryDirectory(prefix="metaweb-upload-") as tmp:
        path = Path(tmp) / f"data{suffix}"
        digest = hashlib.sha256()
        written = 0
        upload.seek(0)
        with path.open("wb") as out:
            for chunk in upload.chunks(_CHUNK):
                written += len(chunk)
                if written > limit:
                    raise ValidationError({"data_file": f"The file is larger than {format_bytes(limit)}."})
                digest.update(chunk)
                out.write(chunk)
        if written == 0:
            raise ValidationError({"data_file": "The file is empty."})
        summary = _inspect(path=path, params=params)
        yield CheckedData(
            path=path, sha256=digest.hexdigest(), size=written, summary=summary, original_name=original_name
        )


@contextlib.contextmanager
def _checked_stored(*, version: TaskSetVersion, params: BaseModel) -> Iterator[CheckedData]:
    """Re-check a version's stored file against new parameters (an edit that keeps the file)."""
    if not version.data_file:
        raise ValidationError({"data_file": "This family needs a data file."})
    suffix = _suffix_of(version.data_file.name)
    with tempfile.TemporaryDirectory(prefix="metaweb-upload-") as tmp:
        path = Path(tmp) / f"data{suffix}"
        try:
            with (
                guarded("read the data file"),
                version.data_file.open("rb") as source,
                path.open("wb") as out,
            ):
                for chunk in source.chunks(_CHUNK):
                    out.write(chunk)
        except FileNotFoundError:
            raise ValidationError(
                {"data_file": "The current data file is missing from storage; upload it again."}
            ) from None
        except StoreUnavailable as exc:
            raise ValidationError({"data_file": str(exc)}) from None
        summary = _inspect(path=path, params=params)
        upload_info = version.data_summary.get("upload", {}) if isinstance(version.data_summary, dict) else {}
        yield CheckedData(
            path=path,
            sha256=version.data_sha256,
            size=int(upload_info.get("bytes") or path.stat().st_size),
            summary=summary,
            original_name=str(upload_info.get("name") or ""),
        )


def upload_limits() -> UploadLimits:
    """The engine's upload caps, the file size lowered to ``TASKSET_UPLOAD_MAX_BYTES``."""
    return DEFAULT_LIMITS.tightened(max_file_bytes=settings.TASKSET_UPLOAD_MAX_BYTES)


def _inspect(*, path: Path, params: BaseModel) -> dict[str, Any]:
    """Ask the engine whether the file fits the family; its message goes on the field."""
    try:
        summary = inspect_table(path, params, limits=upload_limits())
    except DataError as error:
        # The field names the row, column, zip entry or class at fault; when it is
        # just our temporary file's name, the message is about "the file".
        field = str(error.field or "").strip()
        text = f"{field}: {error.message}"
        if field in {"", path.name, "data", "data_file"}:
            text = error.message if error.message.startswith("the file") else f"the file {error.message}"
            text = text[:1].upper() + text[1:]
        raise ValidationError({"data_file": text}) from None
    except ConfigError as error:
        raise ValidationError(
            {"params" + key.removeprefix("family.params"): message for key, message in error.errors.items()}
        ) from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, MemoryError) as error:
        logger.info("inspect_table refused an upload: %r", error)
        raise ValidationError(
            {"data_file": "The file could not be read as a CSV or a zip of PNG images."}
        ) from None
    return _jsonable(summary)


def _next_number(taskset: TaskSet) -> int:
    latest = TaskSetVersion.objects.filter(taskset=taskset).aggregate(n=Max("number"))["n"]
    return (latest or 0) + 1


def _store_version(
    *,
    taskset: TaskSet,
    actor: AnyUser,
    number: int,
    description: str,
    params: dict[str, Any],
    data: CheckedData | None,
    reuse_file_from: TaskSetVersion | None = None,
) -> TaskSetVersion:
    """Insert the version; store a new file under the FileField's ``upload_to`` name.

    Must run inside a transaction. A file stored here is deleted again if the
    insert fails; the caller deletes it if the surrounding transaction fails.
    """
    version = TaskSetVersion(
        taskset=taskset, number=number, description=description, params=params, created_by=actor
    )
    if data is not None:
        version.data_sha256 = data.sha256
        version.data_summary = {**data.summary, "upload": {"name": data.original_name, "bytes": data.size}}
        if reuse_file_from is not None:
            version.data_file.name = reuse_file_from.data_file.name
        else:
            _save_upload(version, data.path)
    try:
        version.save()
    except Exception:
        if data is not None and reuse_file_from is None:
            _delete_files([version])
        raise
    return version


def _save_upload(version: TaskSetVersion, path: Path) -> None:
    """Store the checked file under the FileField's name; a store that cannot be
    reached is an error on ``data_file`` that names it."""
    try:
        with guarded("store the data file"), path.open("rb") as handle:
            version.data_file.save(f"data{path.suffix}", File(handle), save=False)
    except StoreUnavailable as exc:
        raise ValidationError({"data_file": str(exc)}) from None


# -- services -------------------------------------------------------------------------------------


def taskset_create(
    *,
    team: Team,
    actor: AnyUser,
    name: str,
    family: str,
    description: str = "",
    params: dict[str, Any] | None = None,
    data_file: File | None = None,
) -> TaskSet:
    """Create a task set with its version 1. Members and admins only.

    ``params`` are the family's parameters (validated by the engine's model and
    stored in full, defaults included). The ``table`` family needs ``data_file``;
    other families refuse one. Raises ValidationError naming the field
    (``name``, ``family``, ``description``, ``params.<field>``, ``data_file``).
    """
    ensure_role(user=actor, team=team, required=Role.MEMBER)
    name = _clean_name(team=team, name=name)
    if family not in FAMILY_PARAMS:
        raise ValidationError({"family": f"Choose one of: {', '.join(FAMILY_PARAMS)}."})
    description = _clean_description(description)
    model = _clean_params(family=family, params=params)
    if family in DATA_FAMILIES and data_file is None:
        raise ValidationError({"data_file": "This family needs a data file."})
    if family not in DATA_FAMILIES and data_file is not None:
        raise ValidationError({"data_file": f"The {family} family takes no data file."})
    if data_file is not None:
        size = int(getattr(data_file, "size", 0) or 0)
        quota_check_storage(team_id=team.pk, adding=size, field="data_file")

    with contextlib.ExitStack() as stack:
        data = stack.enter_context(_checked_upload(upload=data_file, params=model)) if data_file else None
        stored: list[TaskSetVersion] = []
        try:
            with transaction.atomic():
                try:
                    with transaction.atomic():
                        taskset = TaskSet.objects.create(
                            team=team, name=name, family=family, created_by=actor
                        )
                except IntegrityError:
                    raise ValidationError(
                        {"name": f"This team already has a task set called '{name}'."}
                    ) from None
                stored.append(
                    _store_version(
                        taskset=taskset,
                        actor=actor,
                        number=1,
                        description=description,
                        params=model.model_dump(mode="json"),
                        data=data,
                    )
                )
        except BaseException:
            _delete_files(stored)
            raise
    return taskset


def taskset_version_create(
    *,
    taskset: TaskSet,
    actor: AnyUser,
    description: str = "",
    params: dict[str, Any] | None = None,
    data_file: File | None = None,
) -> TaskSetVersion:
    """Edit a task set: a new version numbered after the latest. Members and admins only.

    For the ``table`` family, ``data_file`` replaces the data; without it the
    latest version's file is kept (and checked again against the new parameters).
    """
    ensure_role(user=actor, team=taskset.team_id, required=Role.MEMBER)
    description = _clean_description(description)
    model = _clean_params(family=taskset.family, params=params)
    if taskset.family not in DATA_FAMILIES and data_file is not None:
        raise ValidationError({"data_file": f"The {taskset.family} family takes no data file."})

    if data_file is not None:
        size = int(getattr(data_file, "size", 0) or 0)
        quota_check_storage(team_id=taskset.team_id, adding=size, field="data_file")

    previous = TaskSetVersion.objects.filter(taskset=taskset).order_by("-number").first()
    with contextlib.ExitStack() as stack:
        data: CheckedData | None = None
        reuse = None
        if data_file is not None:
            data = stack.enter_context(_checked_upload(upload=data_file, params=model))
        elif taskset.family in DATA_FAMILIES:
            if previous is None or not previous.data_file:
                raise ValidationError({"data_file": "This family needs a data file."})
            data = stack.enter_context(_checked_stored(version=previous, params=model))
            reuse = previous
        stored: list[TaskSetVersion] = []
        try:
            with transaction.atomic():
                locked = TaskSet.objects.select_for_update().get(pk=taskset.pk)
                version = _store_version(
                    taskset=locked,
                    actor=actor,
                    number=_next_number(locked),
                    description=description,
                    params=model.model_dump(mode="json"),
                    data=data,
                    reuse_file_from=reuse,
                )
                if reuse is None:
                    stored.append(version)
        except BaseException:
            _delete_files(stored)
            raise
    return version


def taskset_version_summary_refresh(*, version: TaskSetVersion) -> bool:
    """Read a data version's stored file again and store its summary as the engine
    makes it today: summaries of older uploads lack later facts, such as the largest
    episode every task gives (``episode_room``). The upload's name and size stay;
    the file, parameters and runs are untouched. False for a version without a data
    file; ValidationError (``data_file``) when the file is missing or no longer reads."""
    if version.taskset.family not in DATA_FAMILIES or not version.data_file:
        return False
    model = _clean_params(family=version.taskset.family, params=version.params)
    old = version.data_summary if isinstance(version.data_summary, dict) else {}
    with _checked_stored(version=version, params=model) as data:
        summary = {**data.summary, "upload": old.get("upload", {})}
    TaskSetVersion.objects.filter(pk=version.pk).update(data_summary=summary)
    version.data_summary = summary
    return True


def _delete_files(versions: list[TaskSetVersion]) -> None:
    for version in versions:
        if version.data_file:
            try:
                with guarded(f"delete {version.data_file.name}"):
                    version.data_file.delete(save=False)
            except (OSError, StoreUnavailable):  # pragma: no cover - best effort
                logger.warning("could not delete %s after a failed write", version.data_file.name)
