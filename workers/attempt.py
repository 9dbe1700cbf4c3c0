"""One attempt of one run, the same for both Celery tasks (``train_run``, ``adapt_run``).

:func:`run_attempt` claims the run (``run_claim``: ``select_for_update`` and a fresh
ownership token; a duplicate or late delivery returns ``"skipped"``), lets the task
prepare its :class:`Job` (its reporter and the engine call), runs it under a
:class:`~workers.reporting.Heartbeat`, and maps what came out, once, to the service
that marks the run:

* :class:`Finished`: the job's ``store()`` stores the product and marks the run
  succeeded (``run_succeed``, ``adaptation_complete``);
* :class:`Stopped`: a cancel marks it cancelled (``run_mark_cancelled``); a lost
  ownership leaves it to the newer attempt; a stop nobody asked for fails it;
* :class:`Interrupted` (the run-file store cannot be reached): the attempt ends with
  a message naming the store, and the watchdog requeues the run as for a lost
  worker (``run_interrupt``);
* :class:`Failed`, and every exception of the engine: divergence (with its step), a
  config or data error, another engine error (without server paths), the time
  limit, anything unexpected (a short message, logged in full): ``run_fail``.

Every write carries the attempt's token: an attempt that lost the run writes
nothing and returns ``"lost"``. Every database call here goes through
:func:`~workers.dbretry.with_db_retry`: a database outage shorter than
``DB_RETRY_SECONDS`` pauses the attempt instead of ending it. The claim's token is
made before the first try, so a claim retried after its commit landed is the same
claim; a final mark retried after its commit landed finds the run already finished
by this attempt (:func:`_already_finished`) and says so, instead of "lost".
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from apps.experiments.models import Run, RunStatus
from apps.experiments.services import (
    run_claim,
    run_fail,
    run_finish_replay,
    run_interrupt,
    run_mark_cancelled,
    run_stop_reason,
)
from apps.runfiles.store import StoreUnavailable
from apps.tasksets.files import version_data_path
from apps.tasksets.models import TaskSetVersion
from workers.dbretry import with_db_retry
from workers.metalearn.types import ConfigError, DataError, DivergenceError, EngineError
from workers.reporting import Heartbeat, RunReporter

logger = logging.getLogger(__name__)

INTERNAL_ERROR = "The run stopped because of an internal error ({kind}). The worker's log has the details."


@dataclass(frozen=True)
class Finished:
    """The engine finished; ``store()`` stores the product and marks the run
    succeeded, in one transaction, and answers False when the attempt lost the run."""

    step: int
    store: Callable[[], bool]


@dataclass(frozen=True)
class Stopped:
    """The engine stopped early at ``step``: a cancel, a lost ownership, or neither."""

    step: int


@dataclass(frozen=True)
class Failed:
    """The attempt failed with a message for the run's page (and the step, if known)."""

    message: str
    step: int | None = None


@dataclass(frozen=True)
class Interrupted:
    """The attempt cannot go on here, through no fault of the run (the store is
    unreachable): the run is left for the watchdog to requeue."""

    message: str
    step: int | None = None


Outcome = Finished | Stopped | Failed | Interrupted


@dataclass(frozen=True)
class Wording:
    """How a kind of run words its errors: ``noun`` ("run", "adaptation"); the
    ``checkpoint`` folder whose path is shown as ``checkpoint_label``; a hint after a
    divergence; whether failures name the step; the message of a stop nobody asked for
    (``{step}`` is filled in)."""

    noun: str
    checkpoint: Path
    checkpoint_label: str
    unasked_stop: str
    divergence_hint: str = ""
    name_steps: bool = True


@dataclass(frozen=True)
class Attempt:
    """A claimed attempt: the run as loaded before the claim, the token, the device."""

    run_id: int
    token: str
    number: int
    device: str
    run: Run


@dataclass(frozen=True)
class Job:
    """What an attempt runs: its reporter, the engine call, how its errors read."""

    reporter: RunReporter
    work: Callable[[], Outcome]
    wording: Wording


def taskset_data_path(version: TaskSetVersion) -> str | None:
    """The uploaded data file of a task-set version, for ``make_family``: this
    machine's copy (:func:`apps.tasksets.files.version_data_path`)."""
    return version_data_path(version)


def claim_attempt(*, run_id: int, worker: str, kind: str, device_for: Callable[[Run], str]) -> Attempt | None:
    """Claim run ``run_id`` of ``kind`` for this worker, on the device ``device_for``
    picks. None (logged) when the run is missing, of another kind, finished or held
    by a live attempt: the delivery is then ignored."""
    run = with_db_retry(lambda: Run.objects.filter(pk=run_id).only("kind", "queue", "config").first())
    if run is None:
        logger.warning("run %s: no such run, delivery ignored", run_id)
        return None
    if run.kind != kind:
        logger.error("run %s: a %s run was sent to the %s task, delivery ignored", run_id, run.kind, kind)
        return None
    device = device_for(run)
    token = uuid.uuid4().hex  # made once: a retried claim is the same claim
    claim = with_db_retry(run_claim, run_id=run_id, worker=worker, device=device, token=token)
    if claim is None:
        return None
    logger.info("run %s: %s attempt %s on %s (%s)", run_id, kind, claim.attempt, worker, device)
    return Attempt(run_id=run_id, token=claim.token, number=claim.attempt, device=device, run=run)


def run_attempt(
    *,
    run_id: int,
    worker: str,
    kind: str,
    device_for: Callable[[Run], str],
    prepare: Callable[[Attempt], Job | Failed | Interrupted],
) -> str:
    """Claim, prepare, work under a heartbeat, and mark the run. Returns what happened
    (for logs): ``succeeded``, ``failed``, ``cancelled``, ``lost`` or ``skipped``."""
    attempt = claim_attempt(run_id=run_id, worker=worker, kind=kind, device_for=device_for)
    if attempt is None:
        return "skipped"
    try:
        job = with_db_retry(prepare, attempt)  # reads only, before any thread starts
    except StoreUnavailable as exc:
        job = Interrupted(str(exc))
    if isinstance(job, Failed | Interrupted):
        return settle(attempt, job)
    return settle(attempt, _work(attempt, job), reporter=job.reporter, wording=job.wording)


def _work(attempt: Attempt, job: Job) -> Outcome:
    heartbeat = Heartbeat(
        run_id=attempt.run_id, token=attempt.token, reporter=job.reporter, interval=settings.HEARTBEAT_SECONDS
    )
    with heartbeat:
        try:
            return job.work()
        except Exception as exc:  # noqa: BLE001 - every error becomes a message for the page
            return failure(exc, job.wording, run_id=attempt.run_id, step=job.reporter.step)
        finally:
            try:
                job.reporter.close()
            except Exception:  # noqa: BLE001
                logger.exception("run %s: could not store the last metrics", attempt.run_id)


def failure(exc: Exception, wording: Wording, *, run_id: int, step: int) -> Failed | Interrupted:
    """The message (and step) an exception of the engine shows on the run's page."""
    at = (step or None) if wording.name_steps else None
    if isinstance(exc, StoreUnavailable):
        return Interrupted(str(exc), at)
    if isinstance(exc, DivergenceError):
        if wording.name_steps:  # the page says "Failed at step N:" before the message
            return Failed(f"{exc.reason}{wording.divergence_hint}", exc.step)
        return Failed(f"{exc}{wording.divergence_hint}")
    if isinstance(exc, ConfigError):
        return Failed(f"Invalid configuration: {exc}")
    if isinstance(exc, DataError):
        return Failed(f"Problem with the task data: {exc}")
    if isinstance(exc, EngineError):  # CheckpointError and the like: name no server paths
        return Failed(str(exc).replace(str(wording.checkpoint), wording.checkpoint_label), at)
    if isinstance(exc, SoftTimeLimitExceeded):
        limit = settings.CELERY_TASK_SOFT_TIME_LIMIT
        return Failed(f"The {wording.noun} exceeded the time limit of {limit} seconds.", at)
    logger.error("run %s: the engine raised", run_id, exc_info=exc)
    return Failed(INTERNAL_ERROR.format(kind=type(exc).__name__), at)


def settle(
    attempt: Attempt, outcome: Outcome, *, reporter: RunReporter | None = None, wording: Wording | None = None
) -> str:
    """Mark the run as ``outcome`` says, with the attempt's token (``lost`` when it no
    longer owns the run)."""
    run_id, token = attempt.run_id, attempt.token
    if isinstance(outcome, Finished):
        try:
            return _mark(attempt, RunStatus.SUCCEEDED, outcome.store)
        except StoreUnavailable as exc:  # the product could not be stored: try again elsewhere
            outcome = Interrupted(str(exc), outcome.step)
    if isinstance(outcome, Interrupted):
        logger.warning("run %s: attempt %s interrupted: %s", run_id, attempt.number, outcome.message)
        interrupted = with_db_retry(
            run_interrupt, run_id=run_id, token=token, message=outcome.message, step=outcome.step
        )
        return "interrupted" if interrupted else "lost"
    if isinstance(outcome, Stopped):
        reason = (reporter.stop_reason if reporter else None) or with_db_retry(
            run_stop_reason, run_id=run_id, token=token
        )
        if reason == "cancel":
            return _mark(
                attempt,
                RunStatus.CANCELLED,
                lambda: run_mark_cancelled(run_id=run_id, token=token, step=outcome.step),
            )
        if reason is not None:
            logger.info("run %s: attempt %s stopped, the run is a newer attempt's", run_id, attempt.number)
            return "lost"
        assert wording is not None, "a stopped job has its wording"
        outcome = _unasked_stop(outcome, wording)
    logger.info("run %s: failed at step %s: %s", run_id, outcome.step, outcome.message)
    failed = outcome
    return _mark(
        attempt,
        RunStatus.FAILED,
        lambda: run_fail(run_id=run_id, token=token, error=failed.message, step=failed.step),
    )


def _mark(attempt: Attempt, status: RunStatus, write: Callable[[], bool]) -> str:
    """Run the final ``write`` (retried on a lost connection); ``status`` as a word
    if it marked the run, or if a try whose commit landed before the connection died
    already had; otherwise ``lost``."""
    if with_db_retry(write):
        return str(status)
    if with_db_retry(_already_finished, attempt, status):
        # That try's commit landed, but Django dropped its on-commit work (the
        # commit raised): set it off now (the meta-model, the status, the dispatch).
        with_db_retry(run_finish_replay, run_id=attempt.run_id)
        return str(status)
    return "lost"


def _already_finished(attempt: Attempt, status: RunStatus) -> bool:
    """Whether this attempt already finished the run as ``status``: a final write
    refused because an earlier try of it committed (the token is cleared on finish;
    the attempt number stays, and no other attempt can have taken it)."""
    return Run.objects.filter(pk=attempt.run_id, attempt=attempt.number, status=status).exists()


def _unasked_stop(stopped: Stopped, wording: Wording) -> Failed:
    """The engine stopped although nobody asked: say so rather than hang."""
    step = stopped.step if wording.name_steps else None
    return Failed(wording.unasked_stop.format(step=stopped.step), step)
