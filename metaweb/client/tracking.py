"""``client.track(...)``: your own training loop, logged as an external run.

    with client.track(team="demo", experiment="my-idea", config={"lr": 0.01}) as run:
        for step in range(1000):
            run.log({"loss": loss, "acc": acc}, step=step)

``log()`` only appends to an in-memory buffer; a background thread sends the
points in batches (up to ``batch_points``, or whatever is there every
``flush_interval`` seconds) and retries network errors, 5xx and 429 with capped
exponential backoff. Batches are idempotent on the server (one point per
(run, name, step); a replayed step is skipped), so a resend after a lost answer
duplicates nothing.

Bounded: the buffer holds at most ``max_pending`` points. When it is full (the
server has been unreachable for a while), ``log()`` waits for room up to
``block_seconds`` (1 s by default) and then drops the *oldest* pending points to
make room, counting them in ``run.dropped`` and warning once on the
``metaweb.client`` logger. So ``log()`` never blocks for more than
``block_seconds``.

On leaving the block the buffer is flushed (for at most ``flush_timeout``
seconds) and the run is finished: ``succeeded``; ``failed`` with the exception's
last traceback line (``ValueError: boom``) when the block raised (the exception
still propagates); ``cancelled`` on Ctrl-C, or when someone cancelled the run in
MetaWeb (``run.should_stop`` turns true: check it in your loop).
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
import traceback
from collections import deque
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from metaweb.client.errors import ApiError, NetworkError

if TYPE_CHECKING:
    from metaweb.client.api import Client

logger = logging.getLogger("metaweb.client")

#: The server's limits (apps/experiments/services/external.py): points per batch, name length, step.
MAX_BATCH_POINTS = 5000
METRIC_NAME_MAX = 50
MAX_STEP = 2**31 - 1
BACKOFF_FIRST, BACKOFF_MAX = 0.2, 5.0


class TrackedRun:
    """An open external run. Use it as a context manager (``with client.track(...)``)."""

    def __init__(
        self,
        client: Client,
        run: dict[str, Any],
        *,
        team: str,
        max_pending: int = 200_000,
        block_seconds: float = 1.0,
        batch_points: int = MAX_BATCH_POINTS,
        flush_interval: float = 0.5,
        flush_timeout: float = 120.0,
    ) -> None:
        self.client, self.run, self.team = client, run, team
        self.id: int = run["id"]
        self.max_pending = max(1, max_pending)
        self.block_seconds = block_seconds
        self.batch_points = max(1, min(batch_points, MAX_BATCH_POINTS))
        self.flush_interval = flush_interval
        self.flush_timeout = flush_timeout
        self.sent = 0  # points the server acknowledged (stored now or before)
        self.stored = 0  # points the server stored as new
        self.dropped = 0  # oldest points dropped because the buffer was full
        self.lost = 0  # points still unsent when the flush gave up
        self.retries = 0
        self.should_stop = False  # a cancel was requested in MetaWeb
        self.failure: ApiError | None = None  # the server refused a batch: logging stopped
        self.finished: dict[str, Any] | None = None
        self._last: dict[str, tuple[int, float]] = {}
        self._next_step = 0
        self._pending: deque[tuple[str, int, float]] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._flush_deadline = math.inf
        self._sender = threading.Thread(target=self._send_loop, name=f"metaweb-run-{self.id}", daemon=True)
        self._sender.start()

    @property
    def url(self) -> str:
        return f"{self.client.url}/runs/{self.id}/"

    # -- the training loop's side --------------------------------------------------

    def log(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Record ``metrics`` at ``step`` (default: one past the last step logged).
        Returns at once unless the buffer is full (then at most ``block_seconds``)."""
        if self.failure is not None:
            raise self.failure
        if step is None:
            step = self._next_step
        points = _checked(metrics, step)
        self._next_step = max(self._next_step, step + 1)
        with self._cond:
            if len(self._pending) + len(points) > self.max_pending:
                self._make_room(len(points))
            self._pending.extend(points)
            if len(self._pending) >= self.batch_points:
                self._cond.notify_all()
        for name, at, value in points:  # the summary: each metric at its highest step, first value kept
            if at > self._last.get(name, (-1, 0.0))[0]:
                self._last[name] = (at, value)

    def log_file(self, path: str | os.PathLike[str], *, name: str = "") -> dict[str, Any]:
        """Keep the local file ``path`` with the run (MLflow's ``log_artifact``), as
        ``name`` (default: its own name); returns the kept file (id, size, sha256).
        Uploads now, in this thread, while points keep going out in the background;
        a refusal (a name the run has, too large a file) raises ``ApiError``."""
        return dict(self.client.run_file_upload(self.id, path, name=name, team=self.team))

    def _make_room(self, wanted: int) -> None:
        deadline = time.monotonic() + self.block_seconds
        while len(self._pending) + wanted > self.max_pending:
            left = deadline - time.monotonic()
            if left <= 0:
                drop = min(len(self._pending), len(self._pending) + wanted - self.max_pending)
                for _ in range(drop):
                    self._pending.popleft()
                if self.dropped == 0:
                    logger.warning(
                        "Run %s: the server is not keeping up; dropping the oldest pending points "
                        "(run.dropped counts them).",
                        self.id,
                    )
                self.dropped += drop
                return
            self._cond.notify_all()
            self._cond.wait(left)

    # -- the sender thread ------------------------------------------------------------

    def _take_batch(self) -> list[tuple[str, int, float]] | None:
        """The next batch, once full, old enough or closing; None when done."""
        with self._cond:
            first_seen = time.monotonic()
            while True:
                if self._pending and (
                    self._closing
                    or len(self._pending) >= self.batch_points
                    or time.monotonic() - first_seen >= self.flush_interval
                ):
                    count = min(self.batch_points, len(self._pending))
                    batch = [self._pending.popleft() for _ in range(count)]
                    self._cond.notify_all()  # room for a waiting log()
                    return batch
                if self._closing:
                    return None
                if not self._pending:
                    first_seen = time.monotonic()
                self._cond.wait(self.flush_interval)

    def _send_loop(self) -> None:
        while (batch := self._take_batch()) is not None:
            if not self._send(batch):
                with self._cond:
                    self.lost += len(batch) + len(self._pending)
                    self._pending.clear()
                return

    def _send(self, batch: list[tuple[str, int, float]]) -> bool:
        """POST one batch until it is acknowledged; False if refused or out of time."""
        body = _columns(batch)
        path = f"/teams/{self.team}/runs/{self.id}/points"
        delay = BACKOFF_FIRST
        while True:
            try:
                answer = self.client.http.json(
                    "POST", path, data=body, headers={"Content-Type": "application/json"}
                )
            except ApiError as exc:
                if not _retryable(exc):
                    self.failure = exc
                    logger.error("Run %s: the server refused points: %s", self.id, exc)
                    return False
                if time.monotonic() + delay > self._flush_deadline:
                    return False
                self.retries += 1
                time.sleep(delay)
                delay = min(BACKOFF_MAX, delay * 2)
                continue
            self.sent += len(batch)
            self.stored += int(answer.get("stored", 0))
            self.should_stop = self.should_stop or bool(answer.get("stop"))
            return True

    # -- ending -----------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything pending and stop the sender; True if nothing was lost."""
        timeout = self.flush_timeout if timeout is None else timeout
        with self._cond:
            self._closing = True
            self._flush_deadline = time.monotonic() + timeout
            self._cond.notify_all()
        self._sender.join(timeout + 1)
        if self.lost:
            logger.warning("Run %s: %d points could not be sent.", self.id, self.lost)
        return self.lost == 0 and not self._sender.is_alive()

    def finish(self, status: str = "succeeded", error: str = "") -> dict[str, Any]:
        """Flush, then end the run as ``status``; idempotent."""
        if self.finished is not None:
            return self.finished
        self.flush()
        if self.should_stop and status == "succeeded":
            status = "cancelled"
        summary = {"metrics": {name: value for name, (_, value) in self._last.items()}}
        self.finished = self.client.external_run_finish(
            self.id, status=status, error=error, summary=summary, team=self.team
        )
        return self.finished

    def __enter__(self) -> TrackedRun:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None:
            self.finish("succeeded")
        elif issubclass(kind, KeyboardInterrupt):
            self._finish_quietly("cancelled", "")
        else:
            self._finish_quietly("failed", traceback.format_exception_only(kind, exc)[-1].strip())

    def _finish_quietly(self, status: str, error: str) -> None:
        """Finish while an exception is on its way out: never mask it."""
        try:
            self.finish(status, error or "Interrupted.")
        except ApiError as failure:
            logger.error("Run %s could not be marked %s: %s", self.id, status, failure)


def _columns(batch: list[tuple[str, int, float]]) -> str:
    """The batch as the API's ``series`` body: per metric, its steps and values as columns
    (a third of the bytes of one object per point, and far cheaper to validate)."""
    series: dict[str, tuple[list[int], list[float]]] = {}
    for name, step, value in batch:
        steps, values = series.setdefault(name, ([], []))
        steps.append(step)
        values.append(value)
    return json.dumps({"series": {n: {"steps": s, "values": v} for n, (s, v) in series.items()}})


def _retryable(exc: ApiError) -> bool:
    return isinstance(exc, NetworkError) or exc.status in (429, 502, 503, 504) or exc.status >= 500


def _checked(metrics: Mapping[str, float], step: int) -> list[tuple[str, int, float]]:
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= MAX_STEP:
        raise ValueError(f"step must be an integer from 0 to {MAX_STEP}, not {step!r}.")
    points = []
    for name, value in metrics.items():
        if not isinstance(name, str) or not 1 <= len(name) <= METRIC_NAME_MAX:
            raise ValueError(f"A metric name is a string of 1 to {METRIC_NAME_MAX} characters, not {name!r}.")
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"{name} is {number} at step {step}; MetaWeb stores finite numbers only.")
        points.append((name, step, number))
    return points


def track(
    client: Client,
    *,
    experiment: str | int,
    team: str | None = None,
    config: dict[str, Any] | None = None,
    taskset: str | int | None = None,
    algorithm: str = "maml",
    total_steps: int = 0,
    tags: list[str] | None = None,
    **options: Any,
) -> TrackedRun:
    """Open an external run in ``experiment`` (created if missing), with ``tags``,
    and return its handle. ``total_steps`` lets the page show progress and an ETA;
    ``options`` are :class:`TrackedRun`'s (``max_pending``, ``block_seconds``,
    ``flush_timeout``...)."""
    slug = team or client.team
    run = client.external_run_create(
        experiment=experiment,
        taskset=taskset,
        algorithm=algorithm,
        config=config,
        total_steps=total_steps,
        team=slug,
    )
    if tags:
        run = client.run_tag(run["id"], list(tags), team=slug)
    return TrackedRun(client, dict(run), team=slug, **options)
