"""``queue.changed`` on the team socket: every team's run lists hear that a shared
queue moved (so queued runs re-read their places), and nothing about other teams' runs."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.db import connections

from apps.experiments.models import RunStatus
from apps.experiments.services import run_cancel, run_claim
from metaweb.routing import websocket_urlpatterns
from tests.factories import RunFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(30)]

router = URLRouter(websocket_urlpatterns)


@pytest.fixture(autouse=True)
async def _close_thread_connections():
    """database_sync_to_async runs on one shared thread: close its connection after each test."""
    yield
    await database_sync_to_async(connections.close_all)()
    connections.close_all()


async def _team_socket(slug: str, user) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(router, f"/ws/teams/{slug}/")
    communicator.scope["user"] = user
    connected, _code = await communicator.connect()
    assert connected
    assert (await communicator.receive_json_from(timeout=5))["type"] == "team.state"
    return communicator


async def test_other_teams_hear_queue_changes_but_not_the_run(team_roles):
    team, users = team_roles
    first = await database_sync_to_async(RunFactory)(experiment__team=team, queue="gpu")
    second = await database_sync_to_async(RunFactory)(experiment=first.experiment, queue="gpu")
    alpha = await _team_socket("alpha", users["viewer"])
    beta = await _team_socket("beta", users["outsider"])

    # Alpha's first run starts: the gpu queue moved.
    assert await database_sync_to_async(run_claim)(run_id=first.pk, worker="w", device="cpu") is not None
    status = await alpha.receive_json_from(timeout=5)
    assert (status["type"], status["run_id"], status["status"]) == ("run.status", first.pk, "running")
    assert await alpha.receive_json_from(timeout=5) == {"type": "queue.changed", "queue": "gpu"}
    assert await beta.receive_json_from(timeout=5) == {"type": "queue.changed", "queue": "gpu"}
    assert await beta.receive_nothing(timeout=0.2)

    # A queued run cancelled: the same, on its own queue.
    await database_sync_to_async(run_cancel)(run=second, actor=users["member"])
    assert (await alpha.receive_json_from(timeout=5))["status"] == RunStatus.CANCELLED
    assert await alpha.receive_json_from(timeout=5) == {"type": "queue.changed", "queue": "gpu"}
    assert await beta.receive_json_from(timeout=5) == {"type": "queue.changed", "queue": "gpu"}
    assert await beta.receive_nothing(timeout=0.2)
    await alpha.disconnect()
    await beta.disconnect()
