"""The fair dispatcher: runs wait in the database, and each queue sends at most
``RUN_DISPATCH_SLOTS[queue]`` of them to Celery at a time, in fair-share order.

A run is created ``queued`` with no ``dispatched_at``. :func:`run_dispatch` counts the
queue's runs in flight (running, or sent and not yet claimed); while there are
free slots it picks the next waiting runs in :func:`apps.experiments.fairshare.fair_order`
(fewest in flight first, then the team served longest ago, then the oldest run),
stamps their ``dispatched_at`` and sends them after the commit. It runs after every
change that frees or fills a slot (a run queued, ended, cancelled, requeued by the
watchdog) and on each watchdog pass, so a failed send is retried, and a run sent
but not claimed within ``RUN_DISPATCH_CLAIM_SECONDS`` (its message lost) is sent
again. With the slots set to the queue's worker processes, a team's 100 queued runs
take turns with another team's single run instead of filling the broker ahead of it.

Idempotent: dispatchers of one queue take turns (a PostgreSQL advisory lock; SQLite
transactions are ``IMMEDIATE``, one writer at a time), and a run is stamped once
before it is sent. A duplicate delivery is harmless anyway: ``run_claim`` runs a
run once, under its ownership token. Works the same on the in-memory broker of
``make run`` and on Redis: Celery only ever sees the runs that have a slot.
"""

from __future__ import annotations

import logging
import zlib
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Q
from django.utils import timezone

from apps.experiments.fairshare import fair_order
from apps.experiments.models import Queue, Run, RunKind, RunStatus
from apps.experiments.selectors import queue_last_served

__all__ = [
    "TASK_BY_KIND",
    "TRAIN_TASK",
    "dispatch_slots",
    "queue_dispatch_on_commit",
    "queue_in_flight",
    "run_dispatch",
    "run_dispatch_all",
]

logger = logging.getLogger(__name__)

TRAIN_TASK = "workers.tasks.train_run"
#: The task each kind of run is dispatched to, by name.
TASK_BY_KIND = {RunKind.TRAIN: TRAIN_TASK, RunKind.ADAPT: "workers.tasks.adapt_run"}
#: Advisory-lock keys of the queues' dispatchers (PostgreSQL).
_LOCK_BASE = 0x6D770000


def dispatch_slots(queue: str) -> int:
    """How many runs of ``queue`` may be in flight (the queue's worker processes)."""
    return max(1, int(settings.RUN_DISPATCH_SLOTS.get(queue, 1)))


def _in_flight_filter(queue: str) -> Q:
    return Q(queue=queue) & (
        Q(status=RunStatus.RUNNING) | Q(status=RunStatus.QUEUED, dispatched_at__isnull=False)
    )


def queue_in_flight(queue: str) -> dict[int, int]:
    """Runs of ``queue`` in flight per team id: running, or sent and not yet claimed."""
    rows = (
        Run.objects.filter(_in_flight_filter(queue))
        .exclude(kind=RunKind.EXTERNAL)  # no worker, no slot
        .values("team_id")
        .annotate(count=Count("pk"))
        .values_list("team_id", "count")
    )
    return dict(rows)


def _lock(queue: str) -> None:
    """Take the queue's dispatcher lock until the transaction ends."""
    if connection.vendor == "postgresql":
        key = _LOCK_BASE + zlib.crc32(queue.encode()) % 0xFFFF
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])
    # SQLite: the transaction began IMMEDIATE, holding the database's write lock.


def run_dispatch(*, queue: str) -> list[int]:
    """Send the next waiting runs of ``queue`` to Celery while it has free slots, in
    fair-share order; they are sent after the commit. Returns their ids."""
    with transaction.atomic():
        _lock(queue)
        _forget_lost_sends(queue)
        in_flight = queue_in_flight(queue)
        free = dispatch_slots(queue) - sum(in_flight.values())
        if free <= 0:
            return []
        waiting = list(
            Run.objects.filter(queue=queue, status=RunStatus.QUEUED, dispatched_at__isnull=True)
            .exclude(kind=RunKind.EXTERNAL)
            .order_by("created_at", "pk")
            .values_list("pk", "team_id")
        )
        if not waiting:
            return []
        served = queue_last_served(queues=[queue], teams={team for _, team in waiting})
        last_served = {team: last for (_, team), last in served.items()}
        chosen = fair_order(waiting, in_flight=in_flight, last_served=last_served)[:free]
        Run.objects.filter(pk__in=chosen).update(dispatched_at=timezone.now())
        kinds = dict(Run.objects.filter(pk__in=chosen).values_list("pk", "kind"))
        transaction.on_commit(partial(_send, [(pk, kinds[pk]) for pk in chosen], queue))
    logger.info("dispatcher: sent runs %s to the %s queue", chosen, queue)
    return chosen


def _forget_lost_sends(queue: str) -> int:
    """Runs sent longer than ``RUN_DISPATCH_CLAIM_SECONDS`` ago and still not claimed
    lost their message (a broker restarted without persistence, say): they wait for a
    slot again instead of holding theirs forever. Sent again, a message that was only
    slow is a duplicate, which ``run_claim`` ignores."""
    cutoff = timezone.now() - timedelta(seconds=settings.RUN_DISPATCH_CLAIM_SECONDS)
    lost = Run.objects.filter(queue=queue, status=RunStatus.QUEUED, dispatched_at__lt=cutoff)
    count = lost.update(dispatched_at=None)
    if count:
        logger.warning(
            "dispatcher: %d runs of the %s queue were sent but never claimed; sending again", count, queue
        )
    return count


def _send(runs: list[tuple[int, str]], queue: str) -> None:
    """Send each run's task; a run whose send fails waits again (the next pass retries)."""
    from metaweb.celery import app

    for run_id, kind in runs:
        try:
            app.send_task(TASK_BY_KIND.get(kind, TRAIN_TASK), args=[run_id], queue=queue)
        except Exception:  # noqa: BLE001 - the broker is down: the run waits for the next pass
            logger.exception("dispatcher: could not send run %s to the %s queue", run_id, queue)
            Run.objects.filter(pk=run_id, status=RunStatus.QUEUED).update(dispatched_at=None)


def run_dispatch_all() -> dict[str, list[int]]:
    """:func:`run_dispatch` for every queue (the watchdog's pass)."""
    return {queue: run_dispatch(queue=queue) for queue in Queue.values}


def queue_dispatch_on_commit(queue: str) -> None:
    """After the current transaction commits: :func:`run_dispatch` for ``queue``."""
    transaction.on_commit(partial(run_dispatch, queue=queue), robust=True)
