"""What workers do to runs: claim, heartbeat, record metrics, checkpoint, finish,
and the watchdog that requeues runs whose worker went silent.

Ownership. Each delivery that claims a run starts a new *attempt* with a fresh
``attempt_token``. Every later write names that token and is refused (``False``)
once the token is no longer the run's: the watchdog requeued the run, or a newer
attempt took it over. A worker that gets ``False`` stops quietly; the new
attempt resumes from the last checkpoint.

Metrics are idempotent by construction: the metric store
(``apps.experiments.metric_store``) skips a point whose step is not above the
highest step stored for its (run, name), so a step replayed after a resume never
duplicates a point (the first value stays).

Every state change publishes ``run.status`` to ``run-<id>`` and ``team-<id>``
after the transaction commits.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.experiments.events import (
    RunWarningEvent,
    publish_on_commit,
    publish_run_status_on_commit,
    run_group,
)
from apps.experiments.metric_store import points_append
from apps.experiments.models import Run, RunEvent, RunKind, RunStatus, SweepStatus
from apps.experiments.services.retention import run_checkpoints_retain_on_commit
from apps.experiments.services.runs import sweep_next_on_commit
from apps.experiments.services.scheduling import queue_dispatch_on_commit, run_dispatch_all
from workers.metalearn.spikes import SPIKE_KINDS

__all__ = [
    "Claim",
    "run_checkpointed",
    "run_claim",
    "run_dispatch_queued",
    "run_fail",
    "run_finish_replay",
    "run_heartbeat",
    "run_interrupt",
    "run_mark_cancelled",
    "run_metrics_record",
    "run_requeue_stale",
    "run_stop_reason",
    "run_succeed",
    "run_warning_record",
]

logger = logging.getLogger(__name__)

#: Longest error text stored on a run; engine messages are short, tracebacks are logged instead.
ERROR_MAX_CHARS = 2000
#: Warnings (loss spikes) kept in one run's history: a run that spikes all the time
#: says so this many times, and its chart shows the rest.
RUN_WARNINGS_MAX = 20


@dataclass(frozen=True)
class Claim:
    """The live attempt a worker holds on a run."""

    run_id: int
    token: str
    attempt: int
    resumed: bool


def _heartbeat_cutoff() -> datetime:
    return timezone.now() - timedelta(seconds=settings.HEARTBEAT_TIMEOUT_SECONDS)


def _event(run: Run, kind: str, message: str = "") -> None:
    RunEvent.objects.create(run=run, kind=kind, message=message, attempt=run.attempt)


def _owned(run_id: int, token: str) -> Run | None:
    """The run, locked, if ``token`` still owns its running attempt."""
    if not token:
        return None
    return (
        Run.objects.select_for_update()
        .filter(pk=run_id, status=RunStatus.RUNNING, attempt_token=token)
        .first()
    )


def run_claim(*, run_id: int, worker: str, device: str, token: str | None = None) -> Claim | None:
    """Start a new attempt on the run, or return None if this delivery must not run it.

    None (quietly) when the run does not exist, is finished, or is held by a live
    attempt (running with a heartbeat fresher than ``HEARTBEAT_TIMEOUT_SECONDS``).
    A run whose cancel was requested while its previous worker died is marked
    cancelled here, and None is returned.

    ``token`` (default: a fresh one) names the new attempt: a claim retried with it
    after its commit landed (a lost connection) returns that claim, not a second one.
    """
    with transaction.atomic():
        run = Run.objects.select_for_update().filter(pk=run_id).first()
        if run is None:
            logger.warning("run %s: claim of a run that does not exist", run_id)
            return None
        if token and run.status == RunStatus.RUNNING and run.attempt_token == token:
            logger.info("run %s: attempt %s already claimed with this token", run_id, run.attempt)
            return Claim(run_id=run.pk, token=token, attempt=run.attempt, resumed=run.attempt > 1)
        if run.is_finished:
            logger.info("run %s: already %s, delivery ignored", run_id, run.status)
            return None
        now = timezone.now()
        if run.status == RunStatus.RUNNING and run.heartbeat_at and run.heartbeat_at >= _heartbeat_cutoff():
            logger.info("run %s: held by live attempt %s, delivery ignored", run_id, run.attempt)
            return None
        if run.cancel_requested_at is not None:
            _finish(run, RunStatus.CANCELLED, now=now)
            _event(run, "cancelled", "Cancelled before a worker picked it up again.")
            return None
        if run.status == RunStatus.RUNNING and _attempts_exhausted(run):
            _fail_worker_lost(run)  # a redelivery found its last attempt dead
            return None

        return _attempt_start(run, worker=worker, device=device, token=token or uuid.uuid4().hex, now=now)


def _attempt_start(run: Run, *, worker: str, device: str, token: str, now: datetime) -> Claim:
    """Make ``run`` (locked, claimable) running under a new attempt holding ``token``."""
    resumed = run.attempt > 0
    run.attempt += 1
    run.attempt_token = token
    run.status = RunStatus.RUNNING
    run.started_at = run.started_at or now
    run.heartbeat_at = now
    run.dispatched_at = run.dispatched_at or now  # a delivery the dispatcher did not send
    run.worker = worker[:200]
    run.device = device[:100]
    fields = [
        "attempt",
        "attempt_token",
        "status",
        "started_at",
        "heartbeat_at",
        "dispatched_at",
        "worker",
        "device",
    ]
    run.save(update_fields=fields)
    where = f"{run.worker} ({run.device})"
    if resumed and run.checkpoint_step is not None:
        resume = f"resuming from the checkpoint at step {run.checkpoint_step}"
        message = f"Attempt {run.attempt} on {where}, {resume}."
    else:
        message = f"Attempt {run.attempt} on {where}."
    _event(run, "claimed", message)
    publish_run_status_on_commit(run)
    return Claim(run_id=run.pk, token=run.attempt_token, attempt=run.attempt, resumed=resumed)


def run_heartbeat(
    *, run_id: int, token: str, step: int | None = None, checkpoint_step: int | None = None
) -> bool:
    """Record that the attempt is alive, its step and its latest checkpoint. False if
    ``token`` lost the run: the worker must stop. One UPDATE, no lock."""
    if not token:
        return False
    fields: dict[str, Any] = {"heartbeat_at": timezone.now()}
    if step is not None:
        fields["step"] = step
    if checkpoint_step is not None:
        fields["checkpoint_step"] = checkpoint_step
    updated = Run.objects.filter(pk=run_id, status=RunStatus.RUNNING, attempt_token=token).update(**fields)
    return updated == 1


def run_metrics_record(*, run_id: int, token: str, points: Iterable[tuple[str, int, float]]) -> int:
    """Store a batch of ``(name, step, value)`` points in one short transaction
    (``metric_store.points_append``: a few statements, whatever the batch).

    A point whose step is not above the highest stored step of its (run, name) (a
    step replayed after a resume) is skipped, never duplicated. ``token`` is not
    checked here, to keep a batch cheap: a worker that lost ownership learns it
    from its next heartbeat or ``should_stop`` poll, and its points for the same
    deterministic steps are no worse than the new attempt's. Returns the number of
    points stored (new).
    """
    return points_append(run_id=run_id, points=points)


def run_warning_record(*, run_id: int, token: str, step: int, kind: str, message: str) -> bool:
    """The attempt's engine warned at ``step`` (a loss spike, :mod:`workers.metalearn.spikes`):
    keep it in the run's history and tell the run's page, on commit. Kept once per kind
    and step (an attempt resumed from a checkpoint replays steps), and at most
    ``RUN_WARNINGS_MAX`` a run. False when not kept: the attempt lost the run, the
    warning is there already, or the run has had its share."""
    with transaction.atomic():
        run = _owned(run_id, token)
        if run is None:
            return False
        kept = RunEvent.objects.filter(run=run, step__isnull=False, kind__in=SPIKE_KINDS)
        if kind not in SPIKE_KINDS or kept.filter(kind=kind, step=step).exists():
            return False
        if kept.count() >= RUN_WARNINGS_MAX:
            return False
        message = message[:ERROR_MAX_CHARS]
        RunEvent.objects.create(run=run, kind=kind, message=message, attempt=run.attempt, step=step)
        event = RunWarningEvent(run_id=run.pk, step=step, kind=kind, message=message)
        publish_on_commit([run_group(run.pk)], event)
    return True


def run_stop_reason(*, run_id: int, token: str) -> str | None:
    """Why the attempt holding ``token`` should stop, if it should: ``"cancel"`` when a
    cancel was requested, ``"lost"`` when the token no longer owns the running run.
    One small read, polled by the worker between iterations; for a run of a running
    sweep that stops early (ASHA's rungs), also that check (``sweep_asha_check``),
    which may stop it.
    """
    row = (
        Run.objects.filter(pk=run_id)
        .values_list("status", "attempt_token", "cancel_requested_at", "sweep__early_stop", "sweep__status")
        .first()
    )
    if row is None:
        return "lost"
    status, current, cancel_requested_at, early_stop, sweep_status = row
    if status != RunStatus.RUNNING or not token or current != token:
        return "lost"
    if cancel_requested_at is not None:
        return "cancel"
    if early_stop and sweep_status == SweepStatus.RUNNING:
        from apps.experiments.services.sweeps import sweep_asha_check  # noqa: PLC0415 (a cycle)

        if sweep_asha_check(run_id=run_id):
            return "cancel"
    return None


def run_checkpointed(*, run_id: int, token: str, step: int) -> bool:
    """The attempt wrote a checkpoint at ``step``: later attempts resume from it."""
    if not token:
        return False
    updated = Run.objects.filter(pk=run_id, status=RunStatus.RUNNING, attempt_token=token).update(
        checkpoint_step=step, heartbeat_at=timezone.now()
    )
    return updated == 1


def _finish(run: Run, status: RunStatus, *, now: datetime | None = None) -> None:
    run.status = status
    run.finished_at = now or timezone.now()
    run.attempt_token = ""
    run.heartbeat_at = None
    run.save(
        update_fields=[
            "status",
            "finished_at",
            "attempt_token",
            "heartbeat_at",
            "step",
            "summary",
            "error",
            "error_step",
        ]
    )
    _after_finish_on_commit(run)


def _after_finish_on_commit(run: Run) -> None:
    """What a finish sets off once it commits: the sweep's next run, the checkpoint
    retention, the queue's dispatch (the run's slot is free), the meta-model of a
    succeeded training run (registered before the status goes out: callbacks run in
    order, so a page that sees "succeeded" finds it) and the status event. Each is
    idempotent (:func:`run_finish_replay` may set them off again)."""
    sweep_next_on_commit(run)
    run_checkpoints_retain_on_commit(run)
    queue_dispatch_on_commit(run.queue)
    if run.kind == RunKind.TRAIN and run.status == RunStatus.SUCCEEDED:
        transaction.on_commit(partial(_register_meta_model, run.pk), robust=True)
    publish_run_status_on_commit(run)


def run_finish_replay(*, run_id: int) -> None:
    """Set off again what a finish sets off after its commit, for a finish whose
    commit landed while its reply was lost: the worker's retry then finds the run
    already finished by its attempt, and the first try's on-commit callbacks never
    ran (Django drops them when the commit raises)."""
    with transaction.atomic():
        run = Run.objects.get(pk=run_id)
        _after_finish_on_commit(run)


def run_succeed(
    *, run_id: int, token: str, summary: dict[str, Any], step: int | None = None, note: str = ""
) -> bool:
    """Mark the run succeeded with its ``summary`` (final metrics), and ``note`` (how the
    engine ran it: its compile decision) in the history. False if not the owner."""
    with transaction.atomic():
        run = _owned(run_id, token)
        if run is None:
            return False
        run.summary = summary
        if step is not None:
            run.step = step
        _finish(run, RunStatus.SUCCEEDED)
        _event(run, "succeeded", f"Finished at step {run.step}" + (f" ({note})." if note else "."))
        return True


def _register_meta_model(run_id: int) -> None:
    """After a training run's success commits: register it as a meta-model. Never
    raises; a failure is logged and recorded as a run event, the run stays succeeded."""
    from apps.registry.services.metamodels import metamodel_autoregister  # the registry imports this app

    metamodel_autoregister(run_id=run_id)


def run_fail(*, run_id: int, token: str, error: str, step: int | None = None) -> bool:
    """Mark the run failed with a user-facing ``error`` and the step it happened at."""
    with transaction.atomic():
        run = _owned(run_id, token)
        if run is None:
            return False
        run.error = (error or "The run failed.")[:ERROR_MAX_CHARS]
        run.error_step = step
        if step is not None:
            run.step = max(run.step, step)
        _finish(run, RunStatus.FAILED)
        where = f" at step {step}" if step is not None else ""
        _event(run, "failed", f"Failed{where}: {run.error}")
        return True


def run_mark_cancelled(*, run_id: int, token: str, step: int | None = None) -> bool:
    """The attempt stopped because a cancel was requested: mark the run cancelled."""
    with transaction.atomic():
        run = _owned(run_id, token)
        if run is None:
            return False
        if step is not None:
            run.step = step
        _finish(run, RunStatus.CANCELLED)
        _event(run, "cancelled", f"Cancelled at step {run.step}.")
        return True


def _attempts_exhausted(run: Run) -> bool:
    """Every attempt of a run that is not finished ended with its worker lost, so
    ``run.attempt`` counts the losses once its current attempt is found dead."""
    return run.attempt >= max(1, settings.RUN_MAX_ATTEMPTS)


def worker_lost_message(*, losses: int) -> str:
    """The error of a run failed by lost workers (the page names the step beside it)."""
    times = "once" if losses == 1 else f"{losses} times"
    return f"Worker lost {times}."


def _fail_worker_lost(run: Run) -> None:
    """Fail a run whose worker died on its last allowed attempt (locked by the caller)."""
    run.error = worker_lost_message(losses=run.attempt)
    run.error_step = run.step
    _finish(run, RunStatus.FAILED)
    _event(run, "failed", f"Failed at step {run.step}: {run.error} It is not requeued again.")
    logger.warning("run %s: %s", run.pk, run.error)


def run_interrupt(*, run_id: int, token: str, message: str, step: int | None = None) -> bool:
    """The attempt cannot go on on its worker through no fault of the run (the
    run-file store is unreachable): record ``message`` in the run's history and drop
    the heartbeat, so that the watchdog requeues the run as for a lost worker, and
    the next attempt resumes from the last stored checkpoint. False if ``token`` no
    longer owns the run."""
    with transaction.atomic():
        run = _owned(run_id, token)
        if run is None:
            return False
        if step is not None:
            run.step = step
        run.heartbeat_at = None
        run.save(update_fields=["step", "heartbeat_at"])
        _event(run, "interrupted", f"{message[:ERROR_MAX_CHARS]} The run will be requeued.")
        return True


def run_requeue_stale(*, older_than: datetime | None = None) -> list[int]:
    """The watchdog: requeue running runs whose heartbeat is older than ``older_than``
    (default: now - ``HEARTBEAT_TIMEOUT_SECONDS``), each as a new attempt.

    The old attempt loses its token, so if its worker is only slow, not dead, its
    next heartbeat fails and it stops. ``train_run`` (``adapt_run`` for an adaptation)
    waits for a slot again (the fair dispatcher sends it on commit); the new attempt
    resumes from the last checkpoint. A run whose cancel was requested is marked
    cancelled instead, and one that has used its ``RUN_MAX_ATTEMPTS`` fails ("Worker
    lost 3 times (last at step N).") instead of crash-looping. Returns the ids requeued.
    A run whose row is locked at that instant (its worker's heartbeat UPDATE in flight,
    a claim) is skipped, not waited for: the next pass takes it if it is still stale.
    """
    cutoff = older_than or _heartbeat_cutoff()
    requeued: list[int] = []
    with transaction.atomic():
        stale = (
            Run.objects.select_for_update(skip_locked=True)
            .filter(status=RunStatus.RUNNING)
            .exclude(kind=RunKind.EXTERNAL)  # no worker to requeue: the user's loop logs it
            .filter(Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True))
            .order_by("pk")
        )
        for run in stale:
            last = run.heartbeat_at.isoformat(timespec="seconds") if run.heartbeat_at else "never"
            if run.cancel_requested_at is not None:
                _finish(run, RunStatus.CANCELLED)
                _event(run, "cancelled", f"Cancelled; its worker went silent (last heartbeat {last}).")
                continue
            if _attempts_exhausted(run):
                _fail_worker_lost(run)
                continue
            run.status = RunStatus.QUEUED
            run.attempt_token = ""
            run.heartbeat_at = None
            run.dispatched_at = None  # it waits for a slot again, in fair-share order
            run.save(update_fields=["status", "attempt_token", "heartbeat_at", "dispatched_at"])
            resume = f"step {run.checkpoint_step}" if run.checkpoint_step is not None else "the start"
            _event(run, "heartbeat_lost", f"Heartbeat lost (last {last}); requeued to resume from {resume}.")
            publish_run_status_on_commit(run)
            requeued.append(run.pk)
        # Fill the free slots of every queue: the requeued runs, and any run whose
        # dispatch failed before.
        transaction.on_commit(run_dispatch_all, robust=True)
    if requeued:
        logger.warning("watchdog: requeued runs %s after a lost heartbeat", requeued)
    return requeued


def run_dispatch_queued() -> list[int]:
    """Send the queued runs again, in fair-share order as slots allow (on commit).

    For the embedded worker only, at start-up: its in-memory broker lost the
    messages of runs queued before the process stopped, so every queued run waits
    for a slot again. Duplicate deliveries are harmless, ``run_claim`` ignores them.
    Returns the queued runs' ids, oldest first.
    """
    with transaction.atomic():
        queued = Run.objects.filter(status=RunStatus.QUEUED).exclude(kind=RunKind.EXTERNAL)
        ids = list(queued.order_by("created_at", "pk").values_list("pk", flat=True))
        queued.update(dispatched_at=None)
        transaction.on_commit(run_dispatch_all, robust=True)
    return ids
