"""Checkpoint retention: when a run ends (succeeded, failed, cancelled), keep only its
latest checkpoint (a resume and the downloads read it) and its best one.

Which folders go is the engine's layout rule
(:func:`workers.metalearn.checkpoint_layout.kept_names`); the deleting, on this
machine and in the run-file store, is :func:`apps.runfiles.retention.run_checkpoints_trim`.
Both run after the run's end commits, so a rolled-back end deletes nothing.
"""

from __future__ import annotations

import logging
from functools import partial

from django.db import transaction

from apps.experiments.models import Run
from apps.runfiles.retention import run_checkpoints_trim
from apps.runfiles.store import StoreUnavailable
from apps.teams.quotas import team_storage_refresh

__all__ = ["run_checkpoints_retain", "run_checkpoints_retain_on_commit"]

logger = logging.getLogger(__name__)


def run_checkpoints_retain(*, run_id: int) -> int:
    """Delete the checkpoints of ended run ``run_id`` other than its latest and best.
    Returns the bytes freed; a run still queued or running is left alone."""
    run = Run.objects.filter(pk=run_id).only("status", "team_id").first()
    if run is None or not run.is_finished:
        return 0
    try:
        freed = run_checkpoints_trim(run_id=run_id)
        team_storage_refresh(team_id=run.team_id)  # what the run wrote, less what went
    except StoreUnavailable as exc:  # the store keeps them; the quota keeps its last measure
        logger.warning("run %s: checkpoints not trimmed: %s", run_id, exc)
        return 0
    if freed:
        logger.info("run %s: kept its latest and best checkpoints, freed %d bytes", run_id, freed)
    return freed


def run_checkpoints_retain_on_commit(run: Run) -> None:
    """After the transaction that ended ``run`` commits: :func:`run_checkpoints_retain`."""
    transaction.on_commit(partial(run_checkpoints_retain, run_id=run.pk), robust=True)
