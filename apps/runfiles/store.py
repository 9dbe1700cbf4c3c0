"""Reading and writing run files, by key, through Django's storage API.

The store is ``storages["runfiles"]``: a ``FileSystemStorage`` over the data folder
(the default) or django-storages' ``S3Storage``. With the local store a key's file
*is* its path below the data folder (:func:`local_path`), so copying a scratch file
to the store is nothing at all. With an object store :func:`local_path` is this
machine's scratch or cache copy.

Every failure of the store (unreachable, refused, timed out) is raised as
:class:`StoreUnavailable`, whose message names the store and never holds a stack
trace; a missing object is ``None`` or ``False``, not an error.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files import File
from django.core.files.storage import FileSystemStorage, Storage, storages

from metaweb.settings.storage import RUNFILES

__all__ = [
    "StoreUnavailable", "delete_keys", "delete_prefix", "exists", "fetch", "is_local", "list_sizes",
    "listdir", "local_path", "open_stream", "path_bytes", "prefix_bytes", "put_bytes", "put_file",
    "read_bytes", "store", "store_label", "stored_or_none",
]  # fmt: skip

CHUNK = 1024 * 1024
#: The most keys one S3 DeleteObjects request takes.
DELETE_BATCH = 1000
#: Keys per page of an S3 listing (the protocol's most).
LIST_PAGE = 1000
#: Below this size an object goes up in one PUT of the backend's client (what its
#: transfer manager would send too, without a manager per object); above it, through
#: the storage's ``save`` (multipart uploads).
SMALL_OBJECT = 8 * 2**20
_MISSING = {"404", "NoSuchKey", "NotFound"}


class StoreUnavailable(Exception):
    """The store could not be reached or refused a request; the message names it."""


def store() -> Storage:
    return storages[RUNFILES]


def store_label() -> str:
    return str(getattr(settings, "STORAGE_LABEL", "the run-file store"))


def is_local() -> bool:
    """The store is a folder on this machine's disk."""
    return isinstance(store(), FileSystemStorage)


def local_path(key: str) -> Path:
    """This machine's copy of ``key``: the stored file itself with the local store,
    else a scratch or cache path below the data folder."""
    if is_local():
        return Path(store().path(key))
    return Path(settings.DATA_DIR) / key


def _client_error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return None


def is_missing(exc: BaseException) -> bool:
    """``exc`` says the object is not there (not that the store failed)."""
    return isinstance(exc, FileNotFoundError) or _client_error_code(exc) in _MISSING


def _from_boto(exc: BaseException) -> bool:
    return type(exc).__module__.split(".")[0] in {"boto3", "botocore", "s3transfer"}


@contextmanager
def guarded(action: str) -> Iterator[None]:
    """Turn a failure of an object store (any storage backed by boto3) into
    :class:`StoreUnavailable`, and its "no such key" into FileNotFoundError."""
    try:
        yield
    except Exception as exc:
        if not _from_boto(exc):
            raise
        if is_missing(exc):
            raise FileNotFoundError(action) from exc
        code = _client_error_code(exc)
        if code:
            raise StoreUnavailable(f"{store_label()} refused to {action} ({code}).") from None
        raise StoreUnavailable(f"Cannot reach {store_label()} to {action} ({type(exc).__name__}).") from None


def _s3_name(key: str, storage: Storage | None = None) -> str:
    from storages.utils import clean_name

    return (storage or store())._normalize_name(clean_name(key))  # noqa: SLF001 - the backend's own key rule


def _s3_client() -> Any:
    return store().connection.meta.client


def put_file(source: Path, key: str) -> None:
    """Store the file ``source`` under ``key`` (replacing it). An object appears whole
    or not at all."""
    if is_local():
        target = local_path(key)
        if target.resolve() != source.resolve():
            _copy_atomic(source, target)
        return
    with guarded(f"store {key}"):
        if source.stat().st_size < SMALL_OBJECT:
            _put_object(key, source.read_bytes())
            return
        with source.open("rb") as handle:
            store().save(key, File(handle))


def put_bytes(key: str, data: bytes) -> None:
    if is_local():
        from workers.metalearn.fileio import write_atomic

        write_atomic(local_path(key), data)
        return
    from django.core.files.base import ContentFile

    with guarded(f"store {key}"):
        if len(data) < SMALL_OBJECT:
            _put_object(key, data)
        else:
            store().save(key, ContentFile(data))


def _put_object(key: str, data: bytes) -> None:
    _s3_client().put_object(Bucket=store().bucket_name, Key=_s3_name(key), Body=data)


def read_bytes(key: str) -> bytes | None:
    """The object's content, or None when it is missing."""
    try:
        with guarded(f"read {key}"):
            if is_local():
                return local_path(key).read_bytes()
            return _s3_client().get_object(Bucket=store().bucket_name, Key=_s3_name(key))["Body"].read()
    except FileNotFoundError:
        return None


def exists(key: str) -> bool:
    with guarded(f"look up {key}"):
        return store().exists(key)


def stored_or_none(key: str) -> str | None:
    """``key`` when the object is stored, None when it is missing; ``key`` as well when
    the store cannot be asked (a download then says why)."""
    try:
        return key if exists(key) else None
    except StoreUnavailable:
        return key


def listdir(prefix: str) -> tuple[list[str], list[str]]:
    """The folders and files directly under ``prefix``; empty when there is none."""
    try:
        with guarded(f"list {prefix}"):
            return store().listdir(prefix)
    except FileNotFoundError:
        return [], []


def fetch(key: str, target: Path) -> bool:
    """Copy ``key`` to ``target`` (atomically: a temporary file, then a rename).
    False when the object is missing."""
    try:
        with guarded(f"read {key}"):
            if is_local():
                source = local_path(key)
                if source.resolve() != target.resolve():
                    _copy_atomic(source, target)
                return source.is_file()
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
            try:
                with os.fdopen(fd, "wb") as out:
                    _s3_client().download_fileobj(store().bucket_name, _s3_name(key), out)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, target)
            finally:
                Path(tmp).unlink(missing_ok=True)
            return True
    except FileNotFoundError:
        return False


def open_stream(key: str) -> tuple[Iterator[bytes], int] | None:
    """The object as chunks straight from the store, and its size; None when missing."""
    try:
        with guarded(f"read {key}"):
            if is_local():
                path = local_path(key)
                handle = path.open("rb")
                return _chunks(handle), path.stat().st_size
            body = _s3_client().get_object(Bucket=store().bucket_name, Key=_s3_name(key))
            return _chunks(body["Body"]), int(body["ContentLength"])
    except FileNotFoundError:
        return None


def _chunks(handle: Any) -> Iterator[bytes]:
    try:
        while chunk := handle.read(CHUNK):
            yield chunk
    finally:
        handle.close()


def delete_prefix(prefix: str) -> None:
    """Remove every object below ``prefix`` (a folder with the local store)."""
    if is_local():
        shutil.rmtree(local_path(prefix), ignore_errors=True)
        return
    name = _s3_name(prefix).rstrip("/") + "/"
    with guarded(f"delete {prefix}"):
        store().bucket.objects.filter(Prefix=name).delete()


def delete_keys(names: list[str]) -> None:
    """Remove these objects (missing ones are no error): one request to an object store."""
    if is_local():
        for key in names:
            local_path(key).unlink(missing_ok=True)
        return
    for start in range(0, len(names), DELETE_BATCH):
        objects = [{"Key": _s3_name(key)} for key in names[start : start + DELETE_BATCH]]
        with guarded(f"delete {names[start]}"):
            _s3_client().delete_objects(
                Bucket=store().bucket_name, Delete={"Objects": objects, "Quiet": True}
            )


def list_sizes(prefix: str, *, storage: Storage | None = None) -> dict[str, int]:
    """Every object below the folder ``prefix`` (at any depth), or the one object
    ``prefix`` names, with its size in bytes, keyed by its path relative to ``prefix``
    (``""``: ``prefix`` itself). Empty when there is none. ``storage``: another of
    Django's storages (the task-set uploads'), else the run-file store. Locally a walk
    of the folder (links not followed); on S3 a paginated ``list_objects_v2``."""
    storage = storage or store()
    if isinstance(storage, FileSystemStorage):
        return _local_sizes(Path(storage.path(prefix)))
    name = _s3_name(prefix, storage).rstrip("/")
    sizes: dict[str, int] = {}
    with guarded(f"list {prefix}"):
        pages = storage.connection.meta.client.get_paginator("list_objects_v2")
        config = {"PageSize": LIST_PAGE}
        for page in pages.paginate(Bucket=storage.bucket_name, Prefix=f"{name}/", PaginationConfig=config):
            for item in page.get("Contents", []):
                sizes[item["Key"][len(name) + 1 :]] = int(item["Size"])
    if not sizes:
        try:
            with guarded(f"look up {prefix}"):
                sizes[""] = int(storage.size(prefix))
        except FileNotFoundError:
            pass
    return sizes


def _local_sizes(root: Path) -> dict[str, int]:
    try:
        if root.is_symlink() or root.is_file():
            return {"": root.lstat().st_size}
        sizes = {}
        for folder, _, files in os.walk(root):
            for file_name in files:
                path = Path(folder) / file_name
                sizes[path.relative_to(root).as_posix()] = path.lstat().st_size
        return sizes
    except OSError:
        return {}


def path_bytes(path: Path) -> int:
    """Bytes of a file on this machine, or of every file under a folder (links not
    followed); 0 when absent."""
    return sum(_local_sizes(path).values())


def prefix_bytes(prefix: str, *, storage: Storage | None = None) -> int:
    """The bytes stored under ``prefix`` (:func:`list_sizes`)."""
    return sum(list_sizes(prefix, storage=storage).values())


def _copy_atomic(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out, source.open("rb") as src:
            shutil.copyfileobj(src, out, CHUNK)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
