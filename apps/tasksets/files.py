"""A task-set version's data file as a local path, for ``make_family``.

Uploads are stored in the default storage (``STORAGES["default"]``): a folder of
this machine, or the object store shared with the workers. With an object store
each machine keeps a cache of the files it has read, named by their sha256
(``<data>/cache/tasksets/<sha256>.<csv|zip>``): a file is downloaded once per
machine, checked against the hash the upload recorded, and renamed into place.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from django.conf import settings
from django.core.files.storage import FileSystemStorage

from apps.runfiles.store import CHUNK, guarded
from apps.tasksets.models import ALLOWED_DATA_SUFFIXES, TaskSetVersion

__all__ = ["version_data_path"]


def _cache_name(version: TaskSetVersion) -> str:
    suffix = Path(version.data_file.name).suffix.lower()
    suffix = suffix if suffix in ALLOWED_DATA_SUFFIXES else ".bin"
    digest = version.data_sha256.lower()
    stem = digest if len(digest) == 64 and all(c in "0123456789abcdef" for c in digest) else f"v{version.pk}"
    return f"{stem}{suffix}"


def version_data_path(version: TaskSetVersion) -> str | None:
    """The local path of the version's data file (None when it has none). Raises
    FileNotFoundError when it is missing from storage, ``StoreUnavailable`` when the
    store cannot be reached, OSError when the download does not match its hash."""
    if not version.data_file:
        return None
    storage = version.data_file.storage
    if isinstance(storage, FileSystemStorage):
        path = version.data_file.path
        if not os.path.isfile(path):
            raise FileNotFoundError(version.data_file.name)
        return path
    target = Path(settings.DATA_DIR) / "cache" / "tasksets" / _cache_name(version)
    if not target.is_file():
        _download(version, target)
    return str(target)


def _download(version: TaskSetVersion, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            with guarded(f"read the task set's data file {version.data_file.name}"):
                with version.data_file.storage.open(version.data_file.name, "rb") as source:
                    while chunk := source.read(CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if version.data_sha256 and digest.hexdigest() != version.data_sha256.lower():
            raise OSError(f"the stored data file of version {version.pk} does not match its sha256")
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
