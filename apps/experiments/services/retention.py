"""Checkpoint retention: when a run ends (succeeded, failed, cancelled), keep only its
latest checkpoint (a resume and the downloads read it) and its best one.

Which folders go is the engine's layout rule
(:func:`workers.metalearn.checkpoint_layout.kept_names`); the deleting, on this
machine and in the run-file store, is :func:`apps.runfiles.retention.run_checkpoints_trim`.
Both run after the run's end commits, so a rolled-back end deletes nothing. A trim
that the run-file store refused (it was down) is retried by the watchdog
(:func:`run_checkpoints_retain_pending`) until it happens: a trimmed run has
``checkpoints_retained_at``.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import partial

from django.db import transaction
from django.utils import timezone

from apps.experiments.models import FINISHED_STATUSES, Run
from apps.runfiles.retention import run_checkpoints_trim
from apps.runfiles.store import StoreUnavailable
from apps.teams.quotas import team_storage_refresh

__all__ = ["run_checkpoints_retain", "run_checkpoints_retain_on_commit", "run_checkpoints_retain_pending"]

logger = logging.getLogger(__name__)

#: The watchdog retries a trim only this long after the run ended (its own on-commit
#: trim goes first) ...
RETRY_AFTER = timedelta(minutes=1)
#: ... and at most this many runs per tick (it stops at the first refusal anyway).
RETRY_BATCH = 20


def run_checkpoints_retain(*, run_id: int) -> int:
    """Delete the checkpoints of ended run ``run_id`` other than its latest and best.
    Returns the bytes freed; a run still queued or running is left alone."""
    return _retain(run_id) or 0


def _retain(run_id: int) -> int | None:
    """:func:`run_checkpoints_retain`; None when the store refused (kept for a retry)."""
    run = Run.objects.filter(pk=run_id).only("status", "team_id").first()
    if run is None or not run.is_finished:
        return 0
    try:
        freed = run_checkpoints_trim(run_id=run_id)
        team_storage_refresh(team_id=run.team_id)  # what the run wrote, less what went
    except StoreUnavailable as exc:  # the store keeps them; the quota keeps its last measure
        logger.warning("run %s: checkpoints not trimmed (the watchdog retries): %s", run_id, exc)
        return None
    Run.objects.filter(pk=run_id).update(checkpoints_retained_at=timezone.now())
    if freed:
        logger.info("run %s: kept its latest and best checkpoints, freed %d bytes", run_id, freed)
    return freed


def run_checkpoints_retain_pending() -> list[int]:
    """Trim the ended runs whose trim has not happened (the store was down when they
    ended), oldest first, stopping at the first refusal. The watchdog calls this.
    Returns the ids of the runs trimmed."""
    cutoff = timezone.now() - RETRY_AFTER
    pending = (
        Run.objects.filter(
            status__in=FINISHED_STATUSES, checkpoints_retained_at__isnull=True, finished_at__lt=cutoff
        )
        .order_by("finished_at", "pk")
        .values_list("pk", flat=True)[:RETRY_BATCH]
    )
    trimmed: list[int] = []
    for run_id in pending:
        if _retain(run_id) is None:
            break
        trimmed.append(run_id)
    return trimmed


def run_checkpoints_retain_on_commit(run: Run) -> None:
    """After the transaction that ended ``run`` commits: :func:`run_checkpoints_retain`."""
    transaction.on_commit(partial(run_checkpoints_retain, run_id=run.pk), robust=True)
