"""Checkpoint retention: when a run ends (succeeded, failed, cancelled), keep only its
latest checkpoint (a resume and the downloads read it) and its best one.

Which folders go is the engine's layout rule
(:func:`workers.metalearn.checkpoint_layout.superseded`); the deleting is
:func:`apps.experiments.storage.run_files_delete`. Both run after the run's end
commits, so a rolled-back end deletes nothing.
"""

from __future__ import annotations

import logging
from functools import partial

from django.db import transaction

from apps.experiments.models import Run
from apps.experiments.storage import run_checkpoint_dir, run_files_delete
from apps.teams.quotas import team_storage_refresh
from workers.metalearn.checkpoint_layout import superseded

__all__ = ["run_checkpoints_retain", "run_checkpoints_retain_on_commit"]

logger = logging.getLogger(__name__)


def run_checkpoints_retain(*, run_id: int) -> int:
    """Delete the checkpoints of ended run ``run_id`` other than its latest and best.
    Returns the bytes freed; a run still queued or running is left alone."""
    run = Run.objects.filter(pk=run_id).only("status", "team_id").first()
    if run is None or not run.is_finished:
        return 0
    drop = superseded(run_checkpoint_dir(run_id))
    freed = run_files_delete(run_id=run_id, paths=drop) if drop else 0
    if drop:
        logger.info("run %s: kept its latest and best checkpoints, freed %d bytes", run_id, freed)
    team_storage_refresh(team_id=run.team_id)  # what the run wrote, less what went
    return freed


def run_checkpoints_retain_on_commit(run: Run) -> None:
    """After the transaction that ended ``run`` commits: :func:`run_checkpoints_retain`."""
    transaction.on_commit(partial(run_checkpoints_retain, run_id=run.pk), robust=True)
