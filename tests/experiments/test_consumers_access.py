"""Websockets keep checking access after connect: a member removed from the team has
their sockets closed (4403), a resync re-checks membership, and resyncs are limited
to one per ``RESYNC_INTERVAL`` per socket (extra ones coalesce into one)."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.db import connections

from apps.experiments import consumers
from apps.experiments.models import RunStatus
from apps.teams.models import Membership
from apps.teams.services import membership_remove
from metaweb.routing import websocket_urlpatterns
from tests.factories import RunFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(30)]

router = URLRouter(websocket_urlpatterns)


@pytest.fixture(autouse=True)
async def _close_thread_connections():
    yield
    await database_sync_to_async(connections.close_all)()


@pytest.fixture
def run(team_roles):
    team, _users = team_roles
    return RunFactory(experiment__team=team, status=RunStatus.RUNNING, step=2)


async def _open(path: str, user) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(router, path)
    communicator.scope["user"] = user
    connected, _ = await communicator.connect()
    assert connected
    state = await communicator.receive_json_from(timeout=5)
    assert state["type"] in {"run.state", "team.state"}
    return communicator


async def _close_code(socket: WebsocketCommunicator) -> int:
    """The socket's close code; group events sent before it (another test's, late) are skipped."""
    while True:
        output = await socket.receive_output(timeout=5)
        if output["type"] == "websocket.close":
            return output["code"]


async def _states(socket: WebsocketCommunicator, *, quiet_s: float) -> int:
    """How many ``run.state`` messages arrive until the socket stays quiet for ``quiet_s``."""
    count = 0
    while not await socket.receive_nothing(timeout=quiet_s):
        count += (await socket.receive_json_from())["type"] == "run.state"
    return count


def _remove(team, admin, user) -> None:
    membership = Membership.objects.get(team=team, user=user)
    membership_remove(team=team, actor=admin, membership_id=membership.pk)


async def test_removing_a_member_closes_their_sockets_and_no_one_elses(team_roles, run):
    team, users = team_roles
    run_socket = await _open(f"/ws/runs/{run.pk}/", users["member"])
    team_socket = await _open("/ws/teams/alpha/", users["member"])
    viewer_socket = await _open(f"/ws/runs/{run.pk}/", users["viewer"])

    await database_sync_to_async(_remove)(team, users["admin"], users["member"])

    for socket in (run_socket, team_socket):
        assert await _close_code(socket) == consumers.CLOSE_UNAUTHENTICATED
    await viewer_socket.send_json_to({"type": "run.resync"})
    assert await _states(viewer_socket, quiet_s=1.5) == 1  # still open, still served
    await viewer_socket.disconnect()


async def test_a_removal_from_another_team_closes_nothing(team_roles, run):
    _team, users = team_roles
    socket = await _open(f"/ws/runs/{run.pk}/", users["member"])
    other = await database_sync_to_async(lambda: users["outsider"].memberships.get().team)()
    await socket.send_json_to({"type": "noise"})
    from apps.experiments.events import MembershipRemovedEvent, publish, user_group

    await database_sync_to_async(publish)(
        user_group(users["member"].pk), MembershipRemovedEvent(team_id=other.pk)
    )
    await socket.send_json_to({"type": "run.resync"})
    assert await _states(socket, quiet_s=1.5) == 1  # still open, still served
    await socket.disconnect()


async def test_a_resync_rechecks_membership(team_roles, run, monkeypatch):
    monkeypatch.setattr(consumers.RunConsumer, "RESYNC_INTERVAL", 0.0)
    team, users = team_roles
    socket = await _open(f"/ws/runs/{run.pk}/", users["member"])
    await socket.send_json_to({"type": "run.resync"})
    assert (await socket.receive_json_from(timeout=5))["type"] == "run.state"

    # Gone without the event (say, deleted in the admin): the next resync notices.
    await database_sync_to_async(Membership.objects.filter(team=team, user=users["member"]).delete)()
    await socket.send_json_to({"type": "run.resync"})
    assert await _close_code(socket) == consumers.CLOSE_UNAUTHENTICATED


async def test_resyncs_are_limited_and_coalesced(team_roles, run, monkeypatch):
    monkeypatch.setattr(consumers.RunConsumer, "RESYNC_INTERVAL", 0.5)
    _team, users = team_roles
    socket = await _open(f"/ws/runs/{run.pk}/", users["member"])
    for _ in range(20):
        await socket.send_json_to({"type": "run.resync"})
    # Twenty requests inside one window: one state, sent at the window's end.
    assert await _states(socket, quiet_s=1.5) == 1
    await socket.disconnect()
