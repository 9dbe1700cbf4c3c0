"""Registry folders in the store: a meta-model's ``params.safetensors`` and
``checkpoint.json``, an adapted model's weights.

:func:`publish` moves a folder staged on this machine into the store (with the local
store: one ``os.replace``, as before; with an object store: the weights, then the
record, which marks the folder complete). :func:`fetch_folder` gives the engine a
local folder to read: the stored one itself, or this machine's cached copy.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from apps.runfiles import keys
from apps.runfiles.store import delete_prefix, fetch, is_local, local_path, put_file
from workers.metalearn.fileio import fsync_path

__all__ = ["fetch_folder", "publish", "unpublish"]


def publish(staged: Path, prefix: str, names: Sequence[str]) -> None:
    """Store ``names`` from the folder ``staged`` under ``prefix`` (replacing a stale
    folder a rolled-back transaction may have left), in that order; ``staged`` is gone
    afterwards, whatever happens."""
    if is_local():
        final = local_path(prefix)
        for name in names:
            fsync_path(staged / name)
        if final.exists():
            shutil.rmtree(final)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, final)
        fsync_path(final.parent)
        return
    try:
        delete_prefix(prefix)
        for name in names:
            put_file(staged / name, keys.join(prefix, name))
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def unpublish(prefix: str) -> None:
    """Remove a published folder (a transaction that published it rolled back)."""
    delete_prefix(prefix)
    if not is_local():
        shutil.rmtree(local_path(prefix), ignore_errors=True)


def fetch_folder(prefix: str, names: Sequence[str]) -> Path:
    """A local folder holding ``names`` from ``prefix``: the stored folder itself with
    the local store, else this machine's cache (filled on first use; registry folders
    never change once published). Raises FileNotFoundError naming what is missing."""
    folder = local_path(prefix)
    if is_local():
        return folder
    for name in names:
        if not (folder / name).is_file() and not fetch(keys.join(prefix, name), folder / name):
            raise FileNotFoundError(f"{prefix}/{name} is not in the store")
    return folder
