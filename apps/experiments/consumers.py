"""Websockets: one run's live page (``/ws/runs/<id>/``) and a team's run lists
(``/ws/teams/<slug>/``).

Consumers authenticate in ``connect()`` (a session, or a bearer token limited to its
team: ``apps/teams/token_sockets.py``) and check team membership through the
selectors, or close before accepting: 4403 for anonymous users, 4404 for runs or
teams the user cannot see (their existence is not revealed). They then join the
object's group and their user's (``user-<id>``), send the current state read from
the database, and relay typed events (``run.status``, ``run.progress``). The
database is the source of truth; a page that reconnects gets a fresh state.

Membership is checked again on every client request (``run.resync``) and when the
user is removed from the team (``membership.removed`` on ``user-<id>``): a socket
whose user may no longer see its object closes with 4403.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from typing import Any

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.http import Http404

from apps.experiments.events import queue_group, run_group, team_group, user_group
from apps.experiments.models import FINISHED_STATUSES, Queue, Run
from apps.experiments.selectors import run_get_visible, run_state
from apps.teams.selectors import team_get_for_user
from apps.teams.token_sockets import token_allows

CLOSE_UNAUTHENTICATED = 4403
CLOSE_NOT_FOUND = 4404
#: Runs listed in the team's state on connect: every unfinished run, plus the latest finished ones.
TEAM_STATE_RECENT = 20


def _run_visible(user: Any, run_id: int) -> tuple[int, int] | None:
    """The run's id and team id if the user may see it."""
    try:
        run = run_get_visible(user=user, run_id=run_id)
    except Http404:
        return None
    return run.pk, run.team_id


def _run_state(run_id: int) -> dict[str, Any] | None:
    run = Run.objects.filter(pk=run_id).first()
    return run_state(run) if run is not None else None


def _team_visible(user: Any, slug: str) -> int | None:
    try:
        team, _role = team_get_for_user(user=user, slug=slug)
    except Http404:
        return None
    return team.pk


def _run_row(run: Run) -> dict[str, Any]:
    return {
        "id": run.pk,
        "status": run.status,
        "step": run.step,
        "total_steps": run.total_steps,
        "error": run.error,
        "error_step": run.error_step,
    }


def _team_state(team_id: int) -> dict[str, Any]:
    runs = Run.objects.filter(team_id=team_id)
    active = list(runs.exclude(status__in=FINISHED_STATUSES).order_by("-created_at"))
    recent = list(runs.filter(status__in=FINISHED_STATUSES).order_by("-created_at")[:TEAM_STATE_RECENT])
    return {"type": "team.state", "team_id": team_id, "runs": [_run_row(run) for run in active + recent]}


#: The last progress event encoded in this process: (run_id, step, sent_at), its JSON.
_last_progress: tuple[tuple[Any, ...], str] | None = None


def _progress_text(event: dict[str, Any]) -> str:
    """The event's JSON, encoded once per process rather than once per socket: every
    socket on the run relays the same event in turn. An event is identified by its run,
    step and send time (the reporter's ``time.time()``); one without ``sent_at`` is
    always encoded."""
    global _last_progress
    key = (event.get("run_id"), event.get("step"), event.get("sent_at"))
    if key[2] is not None and _last_progress is not None and _last_progress[0] == key:
        return _last_progress[1]
    text = json.dumps(event)  # what send_json sends
    if key[2] is not None:
        _last_progress = (key, text)
    return text


#: Group events that are only relayed to the socket, without touching the database.
RELAYED = frozenset({"run.status", "run.progress", "run.warning", "runs.archived"})


class _GroupConsumer(AsyncJsonWebsocketConsumer):
    group: str | None = None
    team_id: int | None = None
    #: The groups this socket joined, left again on disconnect.
    joined: tuple[str, ...] = ()

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Relay group events straight to the socket. channels' ``dispatch`` first runs
        ``close_old_connections`` through ``sync_to_async`` before EVERY handler: a hop
        to the one shared sync thread per event per socket. With 200 sockets on a run
        those hops were most of the fan-out's time (py-spy: 23% of daphne's samples,
        queued behind each other; in ``make run`` each also waits for the GIL held by
        the training thread). Relayed events do no database work; everything else
        (connect, resync) goes through channels' ``dispatch``, and its reads through
        ``database_sync_to_async``, which closes old connections around them."""
        if message.get("type") in RELAYED:
            await getattr(self, get_handler_name(message))(message)
            return
        await super().dispatch(message)

    async def _refuse(self, code: int) -> None:
        await self.close(code=code)

    async def _join(self, group: str, *others: str) -> None:
        """Join the object's ``group``, the user's group, and ``others``."""
        self.group = group
        self.joined = (group, user_group(self.scope["user"].pk), *others)
        for name in self.joined:
            await self.channel_layer.group_add(name, self.channel_name)

    async def disconnect(self, code: int) -> None:
        for name in self.joined:
            await self.channel_layer.group_discard(name, self.channel_name)

    async def _still_visible(self) -> bool:
        raise NotImplementedError

    async def membership_removed(self, event: dict[str, Any]) -> None:
        """The user left a team: close if it was this socket's and they may no longer see it."""
        if event.get("team_id") == self.team_id and not await self._still_visible():
            await self._refuse(CLOSE_UNAUTHENTICATED)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """Clients only listen; anything they send is ignored."""
        return None

    async def run_status(self, event: dict[str, Any]) -> None:
        await self.send_json(event)

    async def run_progress(self, event: dict[str, Any]) -> None:
        await self.send(text_data=_progress_text(event))

    async def run_warning(self, event: dict[str, Any]) -> None:
        await self.send_json(event)


class RunConsumer(_GroupConsumer):
    """Live updates of one run: ``run.state`` on connect, then ``run.status``,
    ``run.progress`` and ``run.warning`` events. A client may send ``{"type":
    "run.resync"}`` to get a fresh ``run.state``; pages do so when the run finishes,
    to end on the database's curve. The group is joined before the state is read, and the reporter sends only
    stored points, so a page that merges the state with the events by step has every
    point (``MetaLive.followRun`` in ``static/js/app.js``)."""

    run_id: int | None = None
    #: At most one resync per this many seconds per socket; extra requests inside the
    #: window are coalesced into one resync at its end.
    RESYNC_INTERVAL = 1.0
    _last_resync = -math.inf
    _pending_resync: asyncio.Task | None = None

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if self.run_id is None or not isinstance(content, dict) or content.get("type") != "run.resync":
            return
        if self._pending_resync is not None and not self._pending_resync.done():
            return
        wait = self._last_resync + self.RESYNC_INTERVAL - time.monotonic()
        if wait <= 0:
            await self._resync()
        else:
            self._pending_resync = asyncio.create_task(self._resync(after=wait))

    async def _resync(self, after: float = 0.0) -> None:
        """A fresh ``run.state``, if the user may still see the run (else close 4403)."""
        if after > 0:
            await asyncio.sleep(after)
        self._last_resync = time.monotonic()
        if not await self._still_visible():
            await self._refuse(CLOSE_UNAUTHENTICATED)
            return
        await self._send_state()

    async def _still_visible(self) -> bool:
        return await database_sync_to_async(_run_visible)(self.scope["user"], self.run_id) is not None

    async def disconnect(self, code: int) -> None:
        if self._pending_resync is not None:
            self._pending_resync.cancel()
        await super().disconnect(code)

    async def _send_state(self) -> None:
        state = await database_sync_to_async(_run_state)(self.run_id)
        if state is None:  # deleted meanwhile
            await self.close(code=CLOSE_NOT_FOUND)
            return
        await self.send_json(state)

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self._refuse(CLOSE_UNAUTHENTICATED)
            return
        visible = await database_sync_to_async(_run_visible)(
            user, int(self.scope["url_route"]["kwargs"]["run_id"])
        )
        if visible is None or not token_allows(self.scope, visible[1]):
            await self._refuse(CLOSE_NOT_FOUND)
            return
        run_id, self.team_id = visible
        # Join before reading the state: events from now on are relayed after it.
        await self._join(run_group(run_id))
        await self.accept()
        self.run_id = run_id
        self._last_resync = time.monotonic()
        await self._send_state()


class TeamRunsConsumer(_GroupConsumer):
    """Status changes of a team's runs: ``team.state`` on connect, then ``run.status``
    and ``runs.archived``; and ``queue.changed`` (no run, no team) when any team's run
    moves a shared queue, so that the queued runs shown can re-read their places."""

    queue_groups = tuple(queue_group(queue) for queue in Queue.values)

    async def _still_visible(self) -> bool:
        slug = self.scope["url_route"]["kwargs"]["team_slug"]
        return await database_sync_to_async(_team_visible)(self.scope["user"], slug) is not None

    async def queue_changed(self, event: dict[str, Any]) -> None:
        await self.send_json(event)

    async def runs_archived(self, event: dict[str, Any]) -> None:
        await self.send_json(event)

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self._refuse(CLOSE_UNAUTHENTICATED)
            return
        team_id = await database_sync_to_async(_team_visible)(
            user, self.scope["url_route"]["kwargs"]["team_slug"]
        )
        if team_id is None or not token_allows(self.scope, team_id):
            await self._refuse(CLOSE_NOT_FOUND)
            return
        self.team_id = team_id
        await self._join(team_group(team_id), *self.queue_groups)
        await self.accept()
        await self.send_json(await database_sync_to_async(_team_state)(team_id))
