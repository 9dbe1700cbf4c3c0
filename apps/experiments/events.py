"""Typed websocket payloads, and the one path that sends them to the channel layer.

Every event (status, progress, state, queue changes, archiving) goes through
:func:`send_messages_nowait`: services publish on commit with :func:`publish_many`,
the worker's reporter sends progress with :func:`group_send_nowait`. Both schedule
onto ONE persistent loop per process (the ASGI server's loop in embedded mode).

The database is the source of truth; these events only notify. Groups are
``run-<id>`` (one run's page) and ``team-<id>`` (the team's run lists). Event
types are dotted (``run.progress``); consumers handle each with the method of the
same name, dot as underscore.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)


class RunLike(Protocol):
    """What a status event is made of (a :class:`~apps.experiments.models.Run`)."""

    pk: int
    status: str
    step: int
    total_steps: int
    error: str
    error_step: int | None
    team_id: int
    queue: str


def run_group(run_id: int) -> str:
    return f"run-{run_id}"


def team_group(team_id: int) -> str:
    return f"team-{team_id}"


def queue_group(queue: str) -> str:
    return f"queue-{queue}"


def user_group(user_id: int) -> str:
    """Every socket of one user: told when the user leaves a team."""
    return f"user-{user_id}"


@dataclass(frozen=True)
class RunStatusEvent:
    """The run's status changed (queued, running, succeeded, failed, cancelled)."""

    run_id: int
    status: str
    step: int = 0
    total_steps: int = 0
    error: str = ""
    error_step: int | None = None
    type: str = field(default="run.status", init=False)


@dataclass(frozen=True)
class RunProgressEvent:
    """Progress of a running run; ``points`` are the metric points stored since the last
    event (never one not yet stored), as ``{name: [[step, value], ...]}``."""

    run_id: int
    step: int
    total_steps: int
    loss: float | None = None
    val_metric: float | None = None
    steps_per_sec: float | None = None
    eta_seconds: float | None = None
    device_memory_mb: float | None = None
    points: dict[str, list[list[float]]] = field(default_factory=dict)
    sent_at: float | None = None
    type: str = field(default="run.progress", init=False)


@dataclass(frozen=True)
class QueueChangedEvent:
    """A run of this Celery queue was queued, started or ended, so the queued runs'
    places in it moved. It names no run or team: every team's run lists hear it,
    because teams share the queues."""

    queue: str
    type: str = field(default="queue.changed", init=False)


@dataclass(frozen=True)
class RunsArchivedEvent:
    """Members archived (``archived``) or restored these runs of the team: its open
    lists re-read which runs they show."""

    run_ids: list[int]
    archived: bool
    type: str = field(default="runs.archived", init=False)


@dataclass(frozen=True)
class RunWarningEvent:
    """The run's engine warned (a loss spike, kept in its history): its page re-reads
    its status panel, where the history is."""

    run_id: int
    step: int
    kind: str
    message: str
    type: str = field(default="run.warning", init=False)


@dataclass(frozen=True)
class MembershipRemovedEvent:
    """The user left the team (``user-<id>``): their sockets on it re-check and close."""

    team_id: int
    type: str = field(default="membership.removed", init=False)


Event = (
    RunStatusEvent
    | RunProgressEvent
    | QueueChangedEvent
    | RunsArchivedEvent
    | RunWarningEvent
    | MembershipRemovedEvent
)


def event_message(event: Event) -> dict[str, Any]:
    return asdict(event)


# The ASGI server's event loop, set by the embedded server (``manage.py serve``
# without Redis). InMemoryChannelLayer's queues belong to that loop: sends from
# other threads must be scheduled onto it (run_coroutine_threadsafe), or they
# arrive late. None with the Redis layer, whose sends work from any loop.
_server_loop: asyncio.AbstractEventLoop | None = None
_sender_lock = threading.Lock()
_sender: asyncio.AbstractEventLoop | None = None
# One lock per loop: sends scheduled from any thread go out in the order they were
# scheduled (asyncio locks are fair), so a status event never overtakes an earlier one.
_order: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}


def set_server_loop(loop: asyncio.AbstractEventLoop | None) -> None:
    global _server_loop
    _server_loop = loop


def server_loop() -> asyncio.AbstractEventLoop | None:
    loop = _server_loop
    return loop if loop is not None and not loop.is_closed() else None


def _sender_loop() -> asyncio.AbstractEventLoop:
    """The process's persistent sender loop, started on first use in a daemon thread
    (one Redis connection for the process, no per-message ``async_to_sync``)."""
    global _sender
    with _sender_lock:
        if _sender is None or _sender.is_closed():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="channel-sender", daemon=True)
            thread.start()
            _sender = loop
        return _sender


def event_loop() -> asyncio.AbstractEventLoop:
    """Where every send to the channel layer runs: the server's loop in embedded mode,
    the persistent sender loop otherwise."""
    return server_loop() or _sender_loop()


def _logged(future: Future) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.warning("channel-layer send failed", exc_info=future.exception())


def send_messages_nowait(messages: list[tuple[str, dict[str, Any]]]) -> Future | None:
    """THE send path: schedule ``group_send`` of each ``(group, message)``, in order, on
    :func:`event_loop`, without waiting. Services (on commit) and the worker's reporter
    both come here. The returned future is done when every message is sent."""
    layer = get_channel_layer()
    if layer is None:
        return None

    async def send_all() -> None:
        loop = asyncio.get_running_loop()
        lock = _order.setdefault(loop, asyncio.Lock())
        async with lock:
            for group, message in messages:
                await layer.group_send(group, message)

    future = asyncio.run_coroutine_threadsafe(send_all(), event_loop())
    future.add_done_callback(_logged)
    return future


def group_send_nowait(group: str, message: dict[str, Any]) -> Future | None:
    """Send one channel-layer message to one group (the reporter's ``send``)."""
    return send_messages_nowait([(group, message)])


def publish_many(messages: list[tuple[str, Event]]) -> Future | None:
    """Send each ``(group, event)`` now, in order, never blocking the caller."""
    return send_messages_nowait([(group, event_message(event)) for group, event in messages])


def publish(group: str, event: Event) -> Future | None:
    """Send one event to one group now."""
    return publish_many([(group, event)])


def publish_on_commit(groups: list[str], event: Event) -> None:
    """Send after the surrounding transaction commits, so that a socket that reacts
    by re-reading the database sees the new state."""
    messages: list[tuple[str, Event]] = [(group, event) for group in groups]
    transaction.on_commit(lambda: publish_many(messages))


def publish_status_on_commit(event: RunStatusEvent, *, team_id: int, queue: str) -> None:
    """After commit, in one callback: the status to the run's page (``run-<id>``) and
    its team's lists (``team-<id>``), then ``queue.changed`` to every team's lists
    (``queue-<name>``), since a status change moves the run's queue."""
    messages: list[tuple[str, Event]] = [
        (run_group(event.run_id), event),
        (team_group(team_id), event),
        (queue_group(queue), QueueChangedEvent(queue=queue)),
    ]
    transaction.on_commit(lambda: publish_many(messages))


def publish_run_status_on_commit(run: RunLike) -> None:
    """The run's current status, error included, as :func:`publish_status_on_commit`
    sends it: the one way services announce a status change."""
    event = RunStatusEvent(
        run_id=run.pk,
        status=run.status,
        step=run.step,
        total_steps=run.total_steps,
        error=run.error,
        error_step=run.error_step,
    )
    publish_status_on_commit(event, team_id=run.team_id, queue=run.queue)
