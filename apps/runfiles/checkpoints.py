"""A run's checkpoints in the store, in the engine's layout
(:mod:`workers.metalearn.checkpoint_layout`) below ``runs/<id>/checkpoints``.

Write, then point: a checkpoint's files are stored record last, then the ``latest``
pointer names the folder, then the folders the retention rule lets go are removed
(:func:`~workers.metalearn.checkpoint_layout.kept_names`: the latest, the best by
the records' ``val_loss``, and the newest ``KEEP`` while the run trains; only the
latest and the best once it has ended, :func:`retain_stored`). A
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
    list_sizes,
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
    kept_names,
    latest_checkpoint,
    parse_record,
    read_record,
    record_metric,
    step_of,
)
from workers.metalearn.fileio import fsync_path, write_atomic

__all__ = [
    "Stored", "fetch_newest", "local_root", "retain_stored", "stored_latest", "stored_weights_key", "upload",
]  # fmt: skip

#: Step folders in the store, with the ``val_loss`` their records hold (None: none).
Stored = dict[str, float | None]


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


def upload(run_id: int, folder: Path, *, keep: int = KEEP, stored: Stored | None = None) -> Stored:
    """Store the checkpoint ``folder`` (a ``step-NNNNNN`` folder the engine wrote),
    point ``latest`` at it, and drop the stored checkpoints the retention rule lets go
    (the best and the newest ``keep`` stay). ``stored`` is what the previous call
    returned (the step folders in the store and their records' metric), so that
    pruning lists and reads nothing; None: list them, reading each record once.
    Returns the same for the folders stored now. Raises FileNotFoundError when the
    folder is gone (pruned: a newer one follows)."""
    prefix = keys.run_checkpoints(run_id)
    name = folder.name
    if is_local() and local_path(prefix).resolve() == folder.parent.resolve():
        return {name: None}  # the engine wrote it into the store itself, and prunes it
    for file_name in STORE_ORDER:
        source = folder / file_name
        if file_name != STORE_ORDER[0] or source.is_file():  # the optimiser's state is optional
            put_file(source, keys.join(prefix, name, file_name))
    put_bytes(keys.join(prefix, LATEST), f"{name}\n".encode())
    known = _stored_metrics(prefix) if stored is None else dict(stored)
    known[name] = _local_metric(folder)
    return _prune(prefix, known, name, keep=keep)


def _local_metric(folder: Path) -> float | None:
    try:
        return record_metric(read_record(folder))
    except (OSError, ValueError):
        return None


def _stored_metric(key: str) -> float | None:
    data = read_bytes(key)
    try:
        return None if data is None else record_metric(parse_record(data))
    except ValueError:
        return None


def _stored_metrics(prefix: str) -> Stored:
    """The step folders under ``prefix`` and their records' metric (one read each)."""
    folders, _ = listdir(prefix)
    steps = [name for name in folders if step_of(name) is not None]
    return {name: _stored_metric(keys.join(prefix, name, META_FILE)) for name in steps}


def _prune(prefix: str, stored: Stored, newest: str, *, keep: int) -> Stored:
    kept = kept_names(stored, latest=newest, newest=max(1, keep))
    old = [name for name in stored if name not in kept]
    delete_keys([keys.join(prefix, name, file_name) for name in old for file_name in STORE_ORDER])
    return {name: value for name, value in stored.items() if name in kept}


def retain_stored(run_id: int) -> int:
    """For a run that has ended: delete from the store every step folder but its
    latest and its best (:func:`~workers.metalearn.checkpoint_layout.kept_names`),
    incomplete ones included; the ``latest`` pointer stays, so a resume finds the
    latest. One listing, one read per complete record, one delete request per 1,000
    objects. Returns the bytes freed; nothing with the local store (the run's folder
    there is the stored one, trimmed by the caller)."""
    if is_local():
        return 0
    prefix = keys.run_checkpoints(run_id)
    sizes = list_sizes(prefix)
    files: dict[str, dict[str, int]] = {}
    for relative, size in sizes.items():
        name, _, file_name = relative.partition("/")
        if step_of(name) is not None and file_name:
            files.setdefault(name, {})[file_name] = size
    complete = {name for name, held in files.items() if META_FILE in held and PARAMS_FILE in held}
    pointer = read_bytes(keys.join(prefix, LATEST))
    latest = choose_latest(pointer.decode("utf-8", "replace") if pointer else None, complete)
    metrics = {name: _stored_metric(keys.join(prefix, name, META_FILE)) for name in complete}
    kept = kept_names(metrics, latest=latest)
    drop = [name for name in files if name not in kept]
    delete_keys([keys.join(prefix, name, file_name) for name in drop for file_name in files[name]])
    return sum(sum(files[name].values()) for name in drop)


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
