"""Deleting a run's files, in one place: on this machine's disk (:func:`run_files_delete`)
and in the store (:func:`~apps.runfiles.checkpoints.retain_stored`), both by the
engine's retention rule (:func:`~workers.metalearn.checkpoint_layout.kept_names`).

Folders are named by database ids only (:mod:`apps.runfiles.keys`), never from user
input. With the local store the run's folder *is* the stored one; with an object
store it is this machine's scratch or cache copy, and the store is trimmed too.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable
from pathlib import Path

from apps.runfiles import keys
from apps.runfiles.checkpoints import local_root, retain_stored
from apps.runfiles.store import local_path, path_bytes
from workers.metalearn.checkpoint_layout import superseded

__all__ = ["run_checkpoints_trim", "run_files_delete"]

logger = logging.getLogger(__name__)


def run_files_delete(*, run_id: int, paths: Iterable[Path]) -> int:
    """Delete ``paths`` (files or folders on this machine) of run ``run_id``; each must
    lie inside the run's folder, or it is refused (logged) and kept. Returns how many
    bytes were freed. A path already gone is no error: a retry deletes nothing twice."""
    root = local_path(keys.run(run_id)).resolve()
    freed = 0
    for path in paths:
        target = Path(path)
        if not target.resolve().is_relative_to(root) or target.resolve() == root:
            logger.error("run %s: refused to delete %s, outside the run's folder", run_id, target)
            continue
        size = path_bytes(target)
        try:
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink()
        except FileNotFoundError:
            continue
        except OSError:
            logger.exception("run %s: could not delete %s", run_id, target)
            continue
        freed += size
    return freed


def run_checkpoints_trim(*, run_id: int) -> int:
    """Keep only an ended run's latest and best checkpoints, on this machine and in
    the store. Returns the bytes freed."""
    drop = superseded(local_root(run_id))
    freed = run_files_delete(run_id=run_id, paths=drop) if drop else 0
    return freed + retain_stored(run_id)
