"""Bearer tokens on websockets (``apps/teams/token_sockets.py``), through the real
ASGI application: the token's user, in the token's team only."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connections

from apps.experiments.models import RunStatus
from apps.teams.models import Role
from apps.teams.token_services import api_token_create, api_token_revoke
from tests.factories import MembershipFactory, RunFactory, TeamFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(30)]


@pytest.fixture(autouse=True)
async def _close_thread_connections():
    yield
    await database_sync_to_async(connections.close_all)()


@pytest.fixture
def world(team_roles):
    team, users = team_roles
    run = RunFactory(experiment__team=team, status=RunStatus.RUNNING, step=2)
    other = TeamFactory(name="Gamma", slug="gamma")
    MembershipFactory(team=other, user=users["member"], role=Role.MEMBER)  # the member is in both
    other_run = RunFactory(experiment__team=other, status=RunStatus.RUNNING)
    token = api_token_create(user=users["member"], team=team, name="cli", scope="read", expires_in_days=1)
    return {"run": run, "other_run": other_run, "token": token, "users": users}


async def _connect(path: str, secret: str | None):
    from metaweb.asgi import application

    headers = [(b"origin", b"http://127.0.0.1")]
    if secret is not None:
        headers.append((b"authorization", f"Bearer {secret}".encode()))
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, code = await communicator.connect()
    return communicator, connected, code


async def test_a_token_follows_a_run_of_its_team(world):
    communicator, connected, _ = await _connect(f"/ws/runs/{world['run'].pk}/", world["token"].secret)
    assert connected
    state = await communicator.receive_json_from()
    assert state["type"] == "run.state" and state["run"]["id"] == world["run"].pk
    await communicator.disconnect()


async def test_a_token_cannot_follow_another_team_even_if_its_user_can(world):
    secret = world["token"].secret
    _, connected, code = await _connect(f"/ws/runs/{world['other_run'].pk}/", secret)
    assert (connected, code) == (False, 4404)
    _, connected, code = await _connect("/ws/teams/gamma/", secret)
    assert (connected, code) == (False, 4404)
    communicator, connected, _ = await _connect("/ws/teams/alpha/", secret)
    assert connected
    await communicator.disconnect()


async def test_wrong_and_revoked_tokens_are_anonymous(world):
    _, connected, code = await _connect(f"/ws/runs/{world['run'].pk}/", "mwp_nope_nope")
    assert (connected, code) == (False, 4403)
    await database_sync_to_async(api_token_revoke)(
        user=world["users"]["member"], token_id=world["token"].token.pk
    )
    _, connected, code = await _connect(f"/ws/runs/{world['run'].pk}/", world["token"].secret)
    assert (connected, code) == (False, 4403)
