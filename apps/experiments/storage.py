"""Where a run's files live, and the one function that deletes them.

Folders are named by database ids only (``RUNS_DIR/<run id>/checkpoints``), never
from user input. Every deletion of run files goes through :func:`run_files_delete`,
so that moving run files to another store (S3, say) changes this module only.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable
from pathlib import Path

from django.conf import settings

from apps.teams.quotas import path_bytes

__all__ = ["run_checkpoint_dir", "run_dir", "run_files_delete"]

logger = logging.getLogger(__name__)


def run_dir(run_id: int) -> Path:
    """``RUNS_DIR/<id>``: everything the run's workers wrote."""
    return Path(settings.RUNS_DIR) / str(int(run_id))


def run_checkpoint_dir(run_id: int) -> Path:
    """Where the engine writes the run's checkpoints."""
    return run_dir(run_id) / "checkpoints"


def run_files_delete(*, run_id: int, paths: Iterable[Path]) -> int:
    """Delete ``paths`` (files or folders) of run ``run_id``; each must lie inside the
    run's folder, or it is refused (logged) and kept. Returns how many bytes were freed.
    A path already gone is no error: a retry deletes nothing twice."""
    root = run_dir(run_id).resolve()
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
