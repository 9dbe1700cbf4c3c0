"""Staging a meta-model's files: write them into a temporary folder beside the
meta-model folders, then publish the folder under the new row's id, atomically.

A meta-model's folder ``<registry>/meta/<pk>/`` holds ``params.safetensors`` and
``checkpoint.json`` in the engine's checkpoint format, so
``workers.metalearn.load_checkpoint`` reads it as it is. Files are written into a
temporary folder beside it first; the row is created, then the folder is moved
into the store (:func:`apps.runfiles.folders.publish`: one ``os.replace`` with the
local store), inside the transaction. On any error the temporary
folder (or the renamed one) is removed and the transaction rolls back, so neither a
row without files nor files without a row remain.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from django.core.exceptions import ValidationError
from django.db import transaction

from apps.registry import storage
from apps.registry.models import MetaModel
from apps.runfiles import keys
from apps.runfiles.folders import publish, unpublish
from apps.runfiles.store import StoreUnavailable

__all__ = ["copy_hashed", "file_chunks", "read_chunks", "staging_dir", "with_files"]

COPY_CHUNK = 1024 * 1024


def staging_dir() -> Path:
    """A fresh temporary folder beside the meta-model folders (same file system, so
    the final ``os.replace`` is atomic)."""
    parent = storage.registry_root() / "meta"
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".tmp-", dir=parent))


def copy_hashed(
    chunks: Iterator[bytes], target: Path, *, limit: int | None = None, field: str = "weights_file"
) -> tuple[str, int]:
    """Write ``chunks`` to ``target``; return its sha256 and size. Stops with a
    ValidationError on ``field`` once more than ``limit`` bytes came."""
    digest = hashlib.sha256()
    size = 0
    with target.open("wb") as out:
        for chunk in chunks:
            size += len(chunk)
            if limit is not None and size > limit:
                raise ValidationError({field: f"The file is larger than the limit of {limit // 2**20} MiB."})
            digest.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest(), size


def file_chunks(handle: IO[bytes]) -> Iterator[bytes]:
    if hasattr(handle, "chunks"):
        yield from handle.chunks(COPY_CHUNK)  # Django's UploadedFile
        return
    while chunk := handle.read(COPY_CHUNK):
        yield chunk


def _publish(staged: Path, meta_model_id: int) -> str:
    """Move the staged folder into the store as the meta-model's folder (replacing a
    stale one that a rolled-back transaction may have left under the same id)."""
    prefix = keys.meta_model(meta_model_id)
    publish(staged, prefix, storage.meta_model_files)
    return prefix


def with_files(staged: Path, create: Callable[[], MetaModel], *, field: str = "weights_file") -> MetaModel:
    """Create the row with ``create`` and move ``staged`` into its folder, in one
    transaction. On any error no row and no folder remain; a store that cannot be
    reached is a ValidationError on ``field`` that names it."""
    final: str | None = None
    try:
        with transaction.atomic():
            meta_model = create()
            final = _publish(staged, meta_model.pk)
        return meta_model
    except BaseException as exc:
        shutil.rmtree(staged, ignore_errors=True)
        if final is not None:
            unpublish(final)
        if isinstance(exc, StoreUnavailable):
            raise ValidationError({field: str(exc)}) from None
        raise


def read_chunks(path: Path) -> Iterator[bytes]:
    """The file at ``path`` in chunks."""
    with path.open("rb") as handle:
        yield from file_chunks(handle)
