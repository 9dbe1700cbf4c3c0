"""The one bridge from the training loop to the database and the channel layer.

:class:`RunReporter` implements the engine's ``Reporter`` protocol (``on_step``,
``on_eval``, ``should_stop``) for one attempt of one run:

* **Database work** (metric INSERTs, stop polls, checkpoint records) runs on the
  reporter's own I/O thread, so the training thread never waits on a round trip;
  it waits only where it must: before a checkpoint and before a stop, until the
  points so far are stored (:meth:`RunReporter.sync`).
* **Metrics** are buffered and written in batches, one transaction per batch
  (``run_metrics_record``), every ``flush_seconds`` (1 s) or ``flush_points`` (500) points,
  at each evaluation, before each checkpoint (the loop calls ``before_checkpoint``:
  a resumed attempt never replays the steps a checkpoint holds, so their points are
  stored before it exists), when stopping, and at the end. What is stored: ``loss``
  at every step while a run has at most ``MAX_POINTS_PER_METRIC`` steps (longer
  runs: every k-th step, k = ceil(total / MAX_POINTS_PER_METRIC)); the other step
  metrics (``grad_norm``, training ``accuracy``) at every ``AUX_EVERY``-th of those
  steps; everything at the last step; every evaluation (``val_*``); with a
  :class:`~workers.system_metrics.SystemSampler`, the system figures (``sys_*``)
  every ``SAMPLE_SECONDS`` and at the last step, at the step they were taken; not ``step_seconds``. The
  metric store skips a step not above a metric's highest stored step, so a
  replayed step after a resume is a no-op.
* **Progress** goes to the group ``run-<id>`` as ``run.progress`` events, at most
  one per ``event_seconds`` (10 a second by default). Each carries the points
  stored since the previous event, never a point not yet stored: a page that
  joins the group, then reads the database, then merges by step (``run.state``
  on connect) misses nothing, because every point sent before it joined is in
  what it reads. So charts grow once per flush, the progress figures 10 times a
  second. Events go through the one send path of every event,
  :func:`apps.experiments.events.group_send_nowait`: ONE persistent loop per
  process, the ASGI server's loop in embedded mode (the in-memory layer lives
  there), otherwise a daemon thread's loop (one Redis connection, no per-message
  ``async_to_sync``). A send still in flight
  makes the next event wait: points are coalesced, never dropped.
* **Checkpoints**: the loop calls ``on_checkpoint(step)`` once a checkpoint is
  durable on the worker's disk; with an :attr:`~RunReporter.uploader`
  (:class:`workers.uploads.CheckpointUploader`) it is then stored off the training
  thread. Only then does ``checkpoint_step`` move, and it is recorded on the run
  (one UPDATE per checkpoint), after the points up to ``step`` are stored.
* **A lost database**: every write above (and the stop poll, and the heartbeat)
  goes through :func:`~workers.dbretry.with_db_retry`: it reconnects and retries
  for up to ``DB_RETRY_SECONDS``, so a database restart pauses the run (the
  training thread waits at its next ``sync``) and costs no point and no attempt.
* **Warnings** (``on_warning``, the engine's loss spikes) are kept in the run's
  history by the I/O thread (``run_warning_record``); the run's page re-reads it.
* **Stopping**: ``should_stop`` has the I/O thread read the run at most every
  ``stop_poll_seconds`` and answers True, at the call after the answer came, when
  a cancel was requested (``stop_reason == "cancel"``) or the attempt lost
  ownership (``"lost"``, also set by the heartbeat thread when its heartbeat is
  refused).

:class:`Heartbeat` is the daemon thread that writes the attempt's heartbeat every
``HEARTBEAT_SECONDS`` while the engine trains.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from django.db import close_old_connections, connection

from apps.experiments.events import RunProgressEvent, group_send_nowait, run_group
from apps.experiments.services import (
    run_checkpointed,
    run_heartbeat,
    run_metrics_record,
    run_stop_reason,
    run_warning_record,
)
from workers.dbretry import with_db_retry

if TYPE_CHECKING:
    from workers.system_metrics import SystemSampler
    from workers.uploads import CheckpointUploader

logger = logging.getLogger(__name__)

#: Steps stored per metric before step metrics are subsampled.
MAX_POINTS_PER_METRIC = 10_000
#: Eval metric names are stored with this prefix unless they carry it already.
VAL_PREFIX = "val_"
#: The meta-validation figure shown in progress, first present wins.
VAL_KEYS = ("accuracy", "mse", "loss")
#: Step metrics that are not curves worth storing (the engine's per-step timing).
NOT_STORED = frozenset({"step_seconds"})
#: Step metrics other than ``loss`` (``grad_norm``, training ``accuracy``) are stored
#: every this many stored steps: noisy diagnostics, not the curve people watch.
AUX_EVERY = 10


def _message(event: RunProgressEvent) -> dict[str, Any]:
    """The event as a channel-layer message: like ``event_message``, but shallow (the
    points lists are handed over, not deep-copied: the reporter never touches them again)."""
    return {f.name: getattr(event, f.name) for f in fields(event)}


def _ensure_connection() -> None:
    connection.ensure_connection()


def _close_connection() -> None:
    """Close the calling thread's database connection (``connection`` is per thread:
    look it up on the thread that owns it)."""
    connection.close()


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


class InlineExecutor(Executor):
    """Runs each job at once on the calling thread: for tests that count queries, and
    for callers that want the reporter's database work on their own thread."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller through the future
            future.set_exception(exc)
        return future


class RunReporter:
    """Reporter for one attempt of one run; called from the training thread only
    (except :meth:`mark_lost`, which the heartbeat thread calls). Its database work
    runs on its own I/O thread; :meth:`close` stops that thread."""

    #: Stores each checkpoint before ``checkpoint_step`` moves (set by the training
    #: task); None: the checkpoint on this disk is the stored one.
    uploader: CheckpointUploader | None = None

    def __init__(
        self,
        *,
        run_id: int,
        token: str,
        total_steps: int,
        flush_seconds: float = 1.0,
        flush_points: int = 500,
        first_points_at_once: bool = False,
        event_seconds: float = 0.1,
        stop_poll_seconds: float = 0.5,
        device_memory_mb: Callable[[], float | None] | None = None,
        system: SystemSampler | None = None,
        aux_every: int = AUX_EVERY,
        send: Callable[[str, dict[str, Any]], Future | None] = group_send_nowait,
        executor: Executor | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.run_id = run_id
        self.token = token
        self.total_steps = total_steps
        self.flush_seconds = flush_seconds
        self.flush_points = flush_points
        self.first_points_at_once = first_points_at_once
        self.event_seconds = event_seconds
        self.stop_poll_seconds = stop_poll_seconds
        self.store_every = max(1, math.ceil(total_steps / MAX_POINTS_PER_METRIC)) if total_steps else 1
        # Step metrics other than ``loss`` are stored every this many stored steps
        # (1: every step, as adaptation curves want).
        self.aux_every = max(1, int(aux_every))
        self._device_memory_mb, self._system = device_memory_mb, system
        self._send, self._clock = send, clock
        # Database work runs on this executor: by default one thread of the reporter's
        # own, so that the training thread never waits on a round trip.
        self._io = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"run-{run_id}-db")
        self._owns_io = executor is None
        if self._owns_io:
            self._io.submit(_ensure_connection)  # connect now, not at the first flush
        self._writes: list[Future] = []
        self._poll: Future | None = None
        self._closed = False
        self.step = 0
        self.loss: float | None = None
        self.val_metric: float | None = None
        self.last_step_metrics: dict[str, float] = {}
        self.last_eval_metrics: dict[str, float] = {}
        self.stop_reason: str | None = None
        #: The latest step known to be checkpointed (recorded on the run).
        self.checkpoint_step: int | None = None
        self.events_sent = self.points_stored = 0
        self._lost = threading.Event()
        self._buffer: list[tuple[str, int, float]] = []
        # Points stored (by the I/O thread) and not yet sent in an event.
        self._stored: dict[str, list[list[float]]] = {}
        self._stored_lock = threading.Lock()
        self._pending: Future | None = None
        self._last_flush = clock()
        self._last_event = self._last_poll = -math.inf
        self._rate_window: deque[tuple[float, int]] = deque()

    # -- the Reporter protocol -------------------------------------------------

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        now = self._clock()
        self.step = step
        clean = {
            name: v
            for name, value in metrics.items()
            if name not in NOT_STORED and (v := _finite(value)) is not None
        }
        self.last_step_metrics = clean
        if "loss" in clean:
            self.loss = clean["loss"]
        self._rate_window.append((now, step))
        while len(self._rate_window) > 2 and now - self._rate_window[0][0] > 5.0:
            self._rate_window.popleft()
        last = step >= self.total_steps
        if step % self.store_every == 0 or last:
            aux = last or step % (self.store_every * self.aux_every) == 0
            for name, value in clean.items():
                if name == "loss" or aux:
                    self._add(name, step, value)
        figures = self._system.sample(now, force=last) if self._system is not None else None
        for name, value in (figures or {}).items():
            self._add(name, step, value)
        if last or (self.first_points_at_once and not self.events_sent and self._buffer):
            # The final points (and with first_points_at_once the first) are stored at
            # once, so that the next event carries them: a page open from the start
            # draws an adaptation's curve from its first inner step, though its steps
            # take milliseconds.
            self.flush()
            self.sync()
        elif len(self._buffer) >= self.flush_points or now - self._last_flush >= self.flush_seconds:
            self.flush()
        if now - self._last_event >= self.event_seconds:
            self._emit(now)

    def on_warning(self, step: int, kind: str, message: str) -> None:
        """Keep the engine's warning (a loss spike) in the run's history, on the I/O
        thread; one that cannot be stored is logged, and training goes on."""
        args = {"run_id": self.run_id, "token": self.token, "step": step, "kind": kind, "message": message}
        future = self._io.submit(with_db_retry, run_warning_record, **args)
        future.add_done_callback(self._after_warning)

    def _after_warning(self, future: Future) -> None:
        if future.exception() is not None:
            logger.warning("run %s: warning not stored", self.run_id, exc_info=future.exception())

    def on_eval(self, step: int, metrics: dict[str, float]) -> None:
        self.step = max(self.step, step)
        clean = {name: v for name, value in metrics.items() if (v := _finite(value)) is not None}
        self.last_eval_metrics = clean
        for key in VAL_KEYS:
            if key in clean or VAL_PREFIX + key in clean:
                self.val_metric = clean.get(key, clean.get(VAL_PREFIX + key))
                break
        else:
            if clean:
                self.val_metric = next(iter(clean.values()))
        for name, value in clean.items():
            self._add(name if name.startswith(VAL_PREFIX) else VAL_PREFIX + name, step, value)
        self.flush()
        self._emit(self._clock(), force=True)

    def should_stop(self) -> bool:
        """Never waits on the database: the poll runs on the I/O thread, and its answer
        is read at a later call (at once with an inline executor)."""
        if self.stop_reason is not None:
            return True
        reason = "lost" if self._lost.is_set() else self._poll_answer()
        if reason is None and self._poll is None:
            now = self._clock()
            if now - self._last_poll >= self.stop_poll_seconds:
                self._last_poll = now
                self._poll = self._io.submit(
                    with_db_retry, run_stop_reason, run_id=self.run_id, token=self.token
                )
                reason = self._poll_answer()
        if reason is None:
            return False
        self.stop_reason = reason
        self.flush()
        self.sync()  # a stop leaves every point reported so far stored
        return True

    def _poll_answer(self) -> str | None:
        poll = self._poll
        if poll is None or not poll.done():
            return None
        self._poll = None
        try:
            return poll.result()
        except Exception:  # noqa: BLE001 - a failed poll is retried at the next interval
            logger.warning("run %s: stop poll failed", self.run_id, exc_info=True)
            return None

    def before_checkpoint(self, step: int) -> None:
        """The loop is about to checkpoint ``step``: store every point up to it now
        (the attempt that resumes from that checkpoint never replays those steps)."""
        self.flush()
        self.sync()

    def on_checkpoint(self, step: int) -> None:
        """The checkpoint of ``step`` is durable: once the points up to ``step`` are
        stored (and, with an uploader, the checkpoint too, in the background), move
        ``checkpoint_step`` and record it on the run."""
        self.flush()
        self.sync()
        if self.uploader is None:
            self._checkpointed(step)
        else:
            self.uploader.submit(step, then=self._checkpointed)

    # -- beyond the protocol ---------------------------------------------------

    def _checkpointed(self, step: int) -> None:
        self.checkpoint_step = step
        future = self._io.submit(
            with_db_retry, run_checkpointed, run_id=self.run_id, token=self.token, step=step
        )
        future.add_done_callback(self._after_checkpointed)

    def _after_checkpointed(self, future: Future) -> None:
        if future.exception() is not None:
            logger.warning("run %s: checkpoint step not recorded", self.run_id, exc_info=future.exception())
        elif not future.result():
            self.mark_lost()

    def mark_lost(self) -> None:
        """Ownership is gone (heartbeat refused): stop at the next ``should_stop``."""
        self._lost.set()

    @property
    def lost(self) -> bool:
        return self._lost.is_set() or self.stop_reason == "lost"

    def flush(self) -> None:
        """Hand the buffered points to the I/O thread: one INSERT. See :meth:`sync`."""
        self._last_flush = self._clock()
        self._writes = [f for f in self._writes if not f.done() or f.exception() is not None]
        if not self._buffer:
            return
        points, self._buffer = self._buffer, []
        self._writes.append(self._io.submit(self._write, points))

    def sync(self) -> None:
        """Wait until every flushed point is stored; raise if a write failed for good."""
        writes, self._writes = self._writes, []
        for future in writes:
            future.result()

    def close(self) -> None:
        """Store what is left, send the last progress event, stop the I/O thread.
        Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self.uploader is not None:
            self.uploader.close()  # its last checkpoint_step goes through the I/O thread
        try:
            self.flush()
            self.sync()
        finally:
            if self._stored:
                self._emit(self._clock(), force=True, wait=True)
            if self._owns_io:
                self._io.submit(_close_connection)  # the I/O thread's own connection
                self._io.shutdown(wait=True)

    def _write(self, points: list[tuple[str, int, float]]) -> None:
        """On the I/O thread: store one batch, retried on a lost connection (points are
        idempotent: unique per run, name and step); a failure past the bound is raised
        at the next sync."""
        self.points_stored += with_db_retry(
            run_metrics_record, run_id=self.run_id, token=self.token, points=points
        )
        self._sendable(points)

    @property
    def steps_per_sec(self) -> float | None:
        if len(self._rate_window) < 2:
            return None
        (t0, s0), (t1, s1) = self._rate_window[0], self._rate_window[-1]
        return (s1 - s0) / (t1 - t0) if t1 > t0 and s1 > s0 else None

    def progress(self) -> dict[str, Any]:
        """The current figures, e.g. for the run's summary."""
        rate = self.steps_per_sec
        eta = max(self.total_steps - self.step, 0) / rate if rate else None
        return {
            "step": self.step,
            "loss": self.loss,
            "val_metric": self.val_metric,
            "steps_per_sec": rate,
            "eta_seconds": eta,
        }

    # -- internals -------------------------------------------------------------

    def _add(self, name: str, step: int, value: float) -> None:
        self._buffer.append((name, step, value))

    def _sendable(self, points: list[tuple[str, int, float]]) -> None:
        """On the I/O thread, once ``points`` are stored: the next event carries them."""
        with self._stored_lock:
            for name, step, value in points:
                self._stored.setdefault(name, []).append([step, value])

    def _take_stored(self) -> dict[str, list[list[float]]]:
        with self._stored_lock:
            points, self._stored = self._stored, {}
        return points

    def _emit(self, now: float, *, force: bool = False, wait: bool = False) -> None:
        if self._pending is not None and not self._pending.done() and not wait:
            if not force:
                return  # the previous send is still in flight: coalesce into the next one
        figures = self.progress()
        memory = None
        if self._device_memory_mb is not None:
            try:
                memory = self._device_memory_mb()
            except Exception:  # noqa: BLE001 - progress must never break training
                memory = None
        event = RunProgressEvent(
            run_id=self.run_id,
            step=self.step,
            total_steps=self.total_steps,
            loss=figures["loss"],
            val_metric=figures["val_metric"],
            steps_per_sec=figures["steps_per_sec"],
            eta_seconds=figures["eta_seconds"],
            device_memory_mb=memory,
            points=self._take_stored(),
            sent_at=time.time(),
        )
        self._last_event = now
        try:
            self._pending = self._send(run_group(self.run_id), _message(event))
            self.events_sent += 1
            if wait and self._pending is not None:
                self._pending.result(timeout=5)
        except Exception:  # noqa: BLE001 - the database is the truth; a lost event is only late
            logger.warning("run %s: progress event not sent", self.run_id, exc_info=True)


class Heartbeat:
    """A daemon thread writing the attempt's heartbeat (and step) every ``interval``
    seconds. A refused heartbeat (ownership lost) tells the reporter to stop."""

    def __init__(self, *, run_id: int, token: str, reporter: RunReporter, interval: float):
        self.run_id = run_id
        self.token = token
        self.reporter = reporter
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-run-{run_id}", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def __enter__(self) -> Heartbeat:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                try:
                    close_old_connections()
                    alive = with_db_retry(
                        run_heartbeat, run_id=self.run_id, token=self.token, step=self.reporter.step
                    )
                except Exception:  # noqa: BLE001 - an outage past the bound: try again next beat
                    logger.warning("run %s: heartbeat failed", self.run_id, exc_info=True)
                    continue
                if not alive:
                    logger.warning("run %s: attempt lost ownership; stopping", self.run_id)
                    self.reporter.mark_lost()
                    return
        finally:
            connection.close()
