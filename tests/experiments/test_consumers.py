"""Websocket consumers: refusals, the state sent on connect, and relayed group events."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.db import connections

from apps.experiments.models import RunStatus
from apps.experiments.services import run_claim, runs_archive, runs_restore
from metaweb.routing import websocket_urlpatterns
from tests.factories import RunFactory, metric_points_add
from workers.reporting import RunReporter

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(30)]

router = URLRouter(websocket_urlpatterns)


@pytest.fixture(autouse=True)
async def _close_thread_connections():
    """database_sync_to_async runs on one shared thread: close its connection after each test."""
    yield
    await database_sync_to_async(connections.close_all)()


@pytest.fixture
def run(team_roles):
    team, _users = team_roles
    run = RunFactory(experiment__team=team, status=RunStatus.RUNNING, step=2, attempt=1, attempt_token="t")
    metric_points_add(run, [("loss", 1, 0.5), ("loss", 2, 0.25)])
    return run


async def _connect(path: str, user=None):
    communicator = WebsocketCommunicator(router, path)
    if user is not None:
        communicator.scope["user"] = user
    connected, code = await communicator.connect()
    return communicator, connected, code


async def test_anonymous_is_refused(run):
    from django.contrib.auth.models import AnonymousUser

    communicator, connected, code = await _connect(f"/ws/runs/{run.pk}/", AnonymousUser())
    assert (connected, code) == (False, 4403)


async def test_anonymous_is_refused_through_the_full_stack(run):
    """No session cookie: the real ASGI app (origin check, auth middleware) refuses."""
    from metaweb.asgi import application

    communicator = WebsocketCommunicator(
        application, f"/ws/runs/{run.pk}/", headers=[(b"origin", b"http://127.0.0.1")]
    )
    connected, code = await communicator.connect()
    assert (connected, code) == (False, 4403)


async def test_outsider_is_refused_as_if_the_run_did_not_exist(run, team_roles):
    _team, users = team_roles
    communicator, connected, code = await _connect(f"/ws/runs/{run.pk}/", users["outsider"])
    assert (connected, code) == (False, 4404)
    communicator, connected, code = await _connect("/ws/runs/987654/", users["viewer"])
    assert (connected, code) == (False, 4404)


async def test_viewer_gets_the_state_then_group_events(run, team_roles):
    _team, users = team_roles
    communicator, connected, _ = await _connect(f"/ws/runs/{run.pk}/", users["viewer"])
    assert connected
    state = await communicator.receive_json_from(timeout=5)
    assert state["type"] == "run.state"
    assert state["run"]["id"] == run.pk and state["run"]["status"] == "running" and state["run"]["step"] == 2
    assert state["metrics"] == {"loss": [[1, 0.5], [2, 0.25]]}

    await get_channel_layer().group_send(
        f"run-{run.pk}", {"type": "run.status", "run_id": run.pk, "status": "succeeded", "step": 20}
    )
    event = await communicator.receive_json_from(timeout=5)
    assert event == {"type": "run.status", "run_id": run.pk, "status": "succeeded", "step": 20}
    await communicator.disconnect()


async def test_relayed_events_skip_the_per_message_database_hop(run, team_roles, monkeypatch):
    """run.progress and run.status go straight to the socket: no close_old_connections
    hop to the sync thread per event per socket (the cost of a 200-socket fan-out);
    the resync, which reads the database, still goes through channels' dispatch."""
    import channels.consumer

    hops: list[None] = []
    real = channels.consumer.aclose_old_connections

    async def counted() -> None:
        hops.append(None)
        await real()

    monkeypatch.setattr(channels.consumer, "aclose_old_connections", counted)
    _team, users = team_roles
    communicator, connected, _ = await _connect(f"/ws/runs/{run.pk}/", users["viewer"])
    assert connected
    assert (await communicator.receive_json_from(timeout=5))["type"] == "run.state"
    hops.clear()
    progress = {"type": "run.progress", "run_id": run.pk, "step": 3, "points": {"loss": [[3, 0.1]]}}
    await get_channel_layer().group_send(f"run-{run.pk}", progress)
    assert await communicator.receive_json_from(timeout=5) == progress
    assert hops == []
    await communicator.send_json_to({"type": "run.resync"})
    assert (await communicator.receive_json_from(timeout=5))["type"] == "run.state"
    assert len(hops) == 1
    await communicator.disconnect()


async def test_progress_is_encoded_once_for_every_socket(run, team_roles, monkeypatch):
    """Sockets on the same run relay the same JSON text; a different event is encoded anew."""
    from apps.experiments import consumers

    encoded: list[dict] = []
    real = consumers.json.dumps
    monkeypatch.setattr(consumers.json, "dumps", lambda obj, **kw: encoded.append(obj) or real(obj, **kw))
    _team, users = team_roles
    sockets = []
    for _ in range(3):
        communicator, connected, _ = await _connect(f"/ws/runs/{run.pk}/", users["viewer"])
        assert connected
        await communicator.receive_json_from(timeout=5)
        sockets.append(communicator)
    encoded.clear()
    for step in (3, 4):
        event = {
            "type": "run.progress",
            "run_id": run.pk,
            "step": step,
            "sent_at": 1.5 + step,
            "points": {"loss": [[step, 0.1]]},
        }
        await get_channel_layer().group_send(f"run-{run.pk}", event)
        for communicator in sockets:
            assert await communicator.receive_json_from(timeout=5) == event
    assert [e["step"] for e in encoded if e.get("type") == "run.progress"] == [3, 4]
    for communicator in sockets:
        await communicator.disconnect()


async def test_resync_resends_the_state_with_points_stored_since_connect(run, team_roles):
    """A page that joined mid-run asks again when the run ends and gets every point."""
    _team, users = team_roles
    communicator, connected, _ = await _connect(f"/ws/runs/{run.pk}/", users["viewer"])
    assert connected
    first = await communicator.receive_json_from(timeout=5)
    assert first["metrics"] == {"loss": [[1, 0.5], [2, 0.25]]}
    await database_sync_to_async(metric_points_add)(run, [("loss", 3, 0.125)])

    await communicator.send_json_to({"type": "something.else"})  # ignored
    await communicator.send_json_to({"type": "run.resync"})
    again = await communicator.receive_json_from(timeout=5)
    assert again["type"] == "run.state" and again["run"]["id"] == run.pk
    assert again["metrics"] == {"loss": [[1, 0.5], [2, 0.25], [3, 0.125]]}
    assert await communicator.receive_nothing(timeout=0.2)
    await communicator.disconnect()


async def test_reporter_progress_reaches_the_socket(team_roles):
    """From the worker's reporter (its own loop thread) through Redis to the socket."""
    team, users = team_roles
    run = await database_sync_to_async(RunFactory)(experiment__team=team, total_steps=10)
    claim = await database_sync_to_async(run_claim)(run_id=run.pk, worker="w", device="cpu")
    communicator, connected, _ = await _connect(f"/ws/runs/{run.pk}/", users["viewer"])
    assert connected
    assert (await communicator.receive_json_from(timeout=5))["type"] == "run.state"

    reporter = RunReporter(run_id=run.pk, token=claim.token, total_steps=10)  # the default sender
    await database_sync_to_async(reporter.on_step)(1, {"loss": 0.75})
    event = await communicator.receive_json_from(timeout=5)
    assert event["type"] == "run.progress" and event["run_id"] == run.pk
    assert event["step"] == 1 and event["loss"] == 0.75
    # The point travels once stored: at the latest with the event that close() sends.
    points = event["points"]
    if not points:
        await database_sync_to_async(reporter.close)()
        points = (await communicator.receive_json_from(timeout=5))["points"]
    assert points == {"loss": [[1, 0.75]]}
    await database_sync_to_async(reporter.close)()
    await communicator.disconnect()


async def test_team_consumer_sends_state_and_relays_status(run, team_roles):
    _team, users = team_roles
    communicator, connected, _ = await _connect("/ws/teams/alpha/", users["viewer"])
    assert connected
    state = await communicator.receive_json_from(timeout=5)
    assert state["type"] == "team.state"
    assert [(r["id"], r["status"]) for r in state["runs"]] == [(run.pk, "running")]

    queued = await database_sync_to_async(RunFactory)(experiment=run.experiment)
    # A service publishes run.status on commit, to run-<id> and team-<id>.
    claim = await database_sync_to_async(run_claim)(run_id=queued.pk, worker="w", device="cpu")
    assert claim is not None
    # queue.changed rides along (the same socket hears the shared queues); skip those only.
    event = await communicator.receive_json_from(timeout=5)
    while event["type"] == "queue.changed":
        event = await communicator.receive_json_from(timeout=5)
    assert event["type"] == "run.status" and event["run_id"] == queued.pk and event["status"] == "running"
    await communicator.disconnect()


async def test_team_consumer_refuses_outsiders_and_unknown_teams(run, team_roles):
    _team, users = team_roles
    _c, connected, code = await _connect("/ws/teams/alpha/", users["outsider"])
    assert (connected, code) == (False, 4404)
    _c, connected, code = await _connect("/ws/teams/nope/", users["admin"])
    assert (connected, code) == (False, 4404)


async def test_archiving_reaches_the_team_socket_once_per_change(run, team_roles):
    team, users = team_roles
    ended = await database_sync_to_async(RunFactory)(experiment=run.experiment, status=RunStatus.SUCCEEDED)
    communicator, connected, _ = await _connect("/ws/teams/alpha/", users["viewer"])
    assert connected and (await communicator.receive_json_from(timeout=5))["type"] == "team.state"
    for service in (runs_archive, runs_archive, runs_restore):
        await database_sync_to_async(service)(team=team, run_ids=[ended.pk], actor=users["member"])
    # Sends keep their order, so the repeated archive (no change) sent nothing when the
    # restore comes second.
    first = await communicator.receive_json_from(timeout=5)
    second = await communicator.receive_json_from(timeout=5)
    assert first == {"type": "runs.archived", "run_ids": [ended.pk], "archived": True}
    assert second == {"type": "runs.archived", "run_ids": [ended.pk], "archived": False}
    await communicator.disconnect()
