"""Typed websocket payloads, and publishing them after the transaction commits.

The database is the source of truth; these events only notify. Groups are
``run-<id>`` (one run's page) and ``team-<id>`` (the team's run lists). Event
types are dotted (``run.progress``); consumers handle each with the method of the
same name, dot as underscore.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, field
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction


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
class MembershipRemovedEvent:
    """The user left the team (``user-<id>``): their sockets on it re-check and close."""

    team_id: int
    type: str = field(default="membership.removed", init=False)


Event = RunStatusEvent | RunProgressEvent | QueueChangedEvent | MembershipRemovedEvent


def event_message(event: Event) -> dict[str, Any]:
    return asdict(event)


# The ASGI server's event loop, set by the embedded server (``manage.py serve``
# without Redis). InMemoryChannelLayer's queues belong to that loop: sends from
# other threads must be scheduled onto it (run_coroutine_threadsafe), or they
# arrive late. None with the Redis layer, whose sends work from any loop.
_server_loop: asyncio.AbstractEventLoop | None = None


def set_server_loop(loop: asyncio.AbstractEventLoop | None) -> None:
    global _server_loop
    _server_loop = loop


def server_loop() -> asyncio.AbstractEventLoop | None:
    loop = _server_loop
    return loop if loop is not None and not loop.is_closed() else None


def publish_many(messages: list[tuple[str, Event]]) -> None:
    """Send each ``(group, event)`` now, in order, from synchronous code (views,
    services), with one hop onto an event loop. Workers use the reporter's
    persistent loop instead (``workers.reporting``)."""
    layer = get_channel_layer()
    if layer is None:
        return

    async def send_all() -> None:
        for group, event in messages:
            await layer.group_send(group, event_message(event))

    loop = server_loop()
    if loop is not None:
        # Fire and forget onto the server's loop; never block the caller on it.
        asyncio.run_coroutine_threadsafe(send_all(), loop)
        return
    async_to_sync(send_all)()


def publish(group: str, event: Event) -> None:
    """Send one event to one group now."""
    publish_many([(group, event)])


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
