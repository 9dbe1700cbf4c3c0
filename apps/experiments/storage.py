"""Where a run's files live on this machine: the run-file store's keys
(:mod:`apps.runfiles.keys`) as local paths (:func:`apps.runfiles.store.local_path`),
with the local store the stored folders themselves. Deleting them is
:mod:`apps.runfiles.retention`'s."""

from __future__ import annotations

from pathlib import Path

from apps.runfiles import keys
from apps.runfiles.checkpoints import local_root as run_checkpoint_dir
from apps.runfiles.store import local_path

__all__ = ["run_checkpoint_dir", "run_dir"]


def run_dir(run_id: int) -> Path:
    """Everything the run's workers wrote on this machine (``runs/<id>``)."""
    return local_path(keys.run(run_id))
