"""A run's checkpoints in the store, in the engine's layout
(:mod:`workers.metalearn.checkpoint_layout`) below ``runs/<id>/checkpoints``.

Write, then point: a checkpoint's files are stored record last, then the ``latest``
pointer names the folder, then folders beyond the newest ``KEEP`` are removed. A
folder counts only once its record and its weights are both stored, so a
checkpoint cut off mid-upload is never used: the lookup (:func:`stored_latest`,
the same rule as on disk, :func:`~workers.metalearn.checkpoint_layout.choose_latest`)
falls back to the newest complete one.

With the local store the worker's checkpoint folder *is* the stored one, and
:func:`upload` and :func:`fetch_newest` have nothing to copy.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from apps.runfiles import keys
from apps.runfiles.store import (
    delete_keys,
    fetch,
    is_local,
    listdir,
    local_path,
    put_bytes,
    put_file,
    read_bytes,
)
from workers.metalearn.checkpoint_layout import (
    KEEP,
    LATEST,
    META_FILE,
    PARAMS_FILE,
    STORE_ORDER,
    TMP_PREFIX,
    choose_latest,
    latest_checkpoint,
    step_of,
)
from workers.metalearn.fileio import fsync_path, write_atomic

__all__ = ["fetch_newest", "local_root", "stored_latest", "stored_weights_key", "upload"]


def local_root(run_id: int) -> Path:
    """The folder the engine writes the run's checkpoints into on this machine."""
    return local_path(keys.run_checkpoints(run_id))


def _complete_in_store(prefix: str, name: str) -> bool:
    _, files = listdir(keys.join(prefix, name))
    return META_FILE in files and PARAMS_FILE in files


def stored_latest(run_id: int) -> str | None:
    """The ``step-NNNNNN`` name of the run's newest complete stored checkpoint."""
    prefix = keys.run_checkpoints(run_id)
    if is_local():
        found = latest_checkpoint(local_path(prefix))
        return None if found is None else found.name
    folders, _ = listdir(prefix)
    complete = {name for name in folders if step_of(name) is not None and _complete_in_store(prefix, name)}
    if not complete:
        return None
    pointer = read_bytes(keys.join(prefix, LATEST))
    return choose_latest(pointer.decode("utf-8", "replace") if pointer else None, complete)


def stored_weights_key(run_id: int) -> str | None:
    """The key of the newest complete checkpoint's ``params.safetensors``."""
    name = stored_latest(run_id)
    return None if name is None else keys.join(keys.run_checkpoints(run_id), name, PARAMS_FILE)


def upload(run_id: int, folder: Path, *, keep: int = KEEP, stored: list[str] | None = None) -> list[str]:
    """Store the checkpoint ``folder`` (a ``step-NNNNNN`` folder the engine wrote),
    point ``latest`` at it, and drop stored checkpoints beyond the newest ``keep``.
    ``stored`` names the step folders known to be in the store (what the previous
    call returned), so that pruning lists nothing; None: list them. Returns the step
    folders stored now. Raises FileNotFoundError when the folder is gone (pruned: a
    newer one follows)."""
    prefix = keys.run_checkpoints(run_id)
    name = folder.name
    if is_local() and local_path(prefix).resolve() == folder.parent.resolve():
        return [name]  # the engine wrote it into the store itself
    for file_name in STORE_ORDER:
        source = folder / file_name
        if file_name != STORE_ORDER[0] or source.is_file():  # the optimiser's state is optional
            put_file(source, keys.join(prefix, name, file_name))
    put_bytes(keys.join(prefix, LATEST), f"{name}\n".encode())
    return _prune(prefix, _stored_steps(prefix) if stored is None else stored, name, keep=keep)


def _stored_steps(prefix: str) -> list[str]:
    folders, _ = listdir(prefix)
    return [name for name in folders if step_of(name) is not None]


def _prune(prefix: str, stored: list[str], newest: str, *, keep: int) -> list[str]:
    names = sorted(set(stored) | {newest}, key=lambda n: step_of(n) or 0)
    old = [name for name in names[: max(0, len(names) - max(1, keep))] if name != newest]
    delete_keys([keys.join(prefix, name, file_name) for name in old for file_name in STORE_ORDER])
    return [name for name in names if name not in old]


def fetch_newest(run_id: int) -> int | None:
    """Bring the run's newest stored checkpoint onto this machine (unless this
    machine already holds it or a newer one); its step, or None when none is stored.
    The folder is downloaded into a temporary folder and renamed into place, then
    ``latest`` points at it: the engine resumes from it as from its own."""
    name = stored_latest(run_id)
    if name is None or is_local():
        return None if name is None else step_of(name)
    root = local_root(run_id)
    mine = latest_checkpoint(root)
    step = step_of(name)
    assert step is not None
    if mine is not None and (step_of(mine.name) or 0) >= step:
        return step
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{name}-", dir=root))
    try:
        prefix = keys.join(keys.run_checkpoints(run_id), name)
        for file_name in STORE_ORDER:
            if not fetch(keys.join(prefix, file_name), tmp / file_name) and file_name != STORE_ORDER[0]:
                raise FileNotFoundError(f"{prefix}/{file_name}")
        fsync_path(tmp)
        final = root / name
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        fsync_path(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    write_atomic(root / LATEST, f"{name}\n")
    return step
