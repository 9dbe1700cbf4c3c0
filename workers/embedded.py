"""The embedded worker of ``make run``: no Redis, so Celery runs inside the web process.

``manage.py serve`` calls :func:`start` when ``settings.EMBEDDED_WORKER`` is set:

* a Celery worker in a daemon thread (solo pool, one task at a time, queues
  ``gpu`` and ``cpu``) on the ``memory://`` broker, which the views' ``send_task``
  reaches because it is the same process;
* a watchdog thread calling beat's ``workers.tasks.watchdog`` every ``WATCHDOG_INTERVAL_SECONDS``
  (there is no beat process);
* recovery of what the previous process left: queued runs are sent again (the
  in-memory broker forgot them) and runs left ``running`` are requeued at once to
  resume from their checkpoint (their worker was this process, now gone).

* room for the server beside the training thread (:func:`share_with_server`): torch
  gets one core fewer than the process may use, and the interpreter switches threads
  every 0.5 ms instead of 5 ms, so that daphne's loop gets the GIL back quickly after
  each socket write. At 200 sockets on a run (``benchmarks/live_latency.py
  --embedded``, 2 cores) p50/p99 went from 157/611 ms to 52/311 ms; either change
  alone left the p50 above 110 ms.

The ASGI server's event loop is registered with
:func:`apps.experiments.events.set_server_loop` by the serve command, so that the
worker thread's channel-layer sends run on the loop that owns the in-memory layer.
"""

from __future__ import annotations

import logging
import socket
import sys
import threading

from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from apps.experiments.services import run_dispatch_queued, run_requeue_stale
from workers.metalearn.runtime import prepare_process, torch_threads

logger = logging.getLogger(__name__)

QUEUES = ("gpu", "cpu")
#: The interpreter's thread switch interval while the worker trains beside the server
#: (Python's default is 5 ms: an I/O thread that released the GIL waits that long for it).
SWITCH_INTERVAL_SECONDS = 0.0005


def share_with_server(*, cpus: int | None = None) -> None:
    """Leave the ASGI server room beside the training thread (see the module docstring),
    and prepare the process for training (allocator, compile cache:
    :mod:`workers.metalearn.runtime`). Call before the first task imports torch;
    thread counts set in the environment win."""
    threads = max(1, cpus - 1) if cpus is not None else torch_threads(reserve=1)
    prepare_process(threads=threads, compile_cache=settings.DATA_DIR / "compile-cache")
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)


def recover_runs() -> tuple[list[int], list[int]]:
    """Re-send queued runs, and requeue every running run at once. Returns both id lists."""
    dispatched = run_dispatch_queued()
    requeued = run_requeue_stale(older_than=timezone.now())
    if dispatched or requeued:
        logger.info(
            "embedded worker: re-sent queued runs %s, requeued interrupted runs %s", dispatched, requeued
        )
    return dispatched, requeued


def start_worker(*, queues: tuple[str, ...] = QUEUES, loglevel: str = "INFO") -> threading.Thread:
    """Start the Celery worker in a daemon thread; it consumes from the memory broker."""
    from metaweb.celery import app

    def work() -> None:
        worker = app.Worker(
            hostname=f"embedded@{socket.gethostname()}",
            pool="solo",
            concurrency=1,
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
            queues=list(queues),
            loglevel=loglevel,
            redirect_stdouts=False,
        )
        try:
            worker.start()
        except Exception:  # noqa: BLE001 - the server keeps serving; say why runs will not start
            logger.exception("embedded worker stopped")
        finally:
            connection.close()

    thread = threading.Thread(target=work, name="celery-embedded", daemon=True)
    thread.start()
    return thread


def start_watchdog(*, interval: float | None = None) -> threading.Thread:
    """Start the watchdog loop in a daemon thread."""
    seconds = float(interval if interval is not None else settings.WATCHDOG_INTERVAL_SECONDS)
    stop = threading.Event()

    def watch() -> None:
        from workers.tasks import watchdog  # beat's task, run here in a thread

        while not stop.wait(seconds):
            try:
                close_old_connections()
                watchdog()
            except Exception:  # noqa: BLE001 - keep watching
                logger.exception("watchdog: a tick failed")
        connection.close()

    thread = threading.Thread(target=watch, name="runs-watchdog", daemon=True)
    thread.stop = stop  # type: ignore[attr-defined]
    thread.start()
    return thread


def start() -> None:
    """Make room for the server, recover interrupted runs, then start the worker and the watchdog."""
    if settings.CELERY_BROKER_URL != "memory://":
        raise RuntimeError("The embedded worker needs the memory:// broker (no REDIS_URL).")
    share_with_server()
    recover_runs()
    connection.close()
    start_worker()
    start_watchdog()
