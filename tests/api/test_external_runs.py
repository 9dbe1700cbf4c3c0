"""External runs through the API: replayed steps duplicate nothing, events are
published like a worker's, the watchdog leaves them alone, finishing ends them."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.utils import timezone

from apps.experiments.events import run_group
from apps.experiments.models import Run, RunStatus
from apps.experiments.services.execution import run_requeue_stale
from tests.api.conftest import bearer
from tests.factories import metric_points

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def opened(api_world, client):
    auth = bearer(api_world["tokens"]["member"])
    body = {
        "experiment_id": api_world["experiment"].pk,
        "taskset_id": api_world["version"].taskset_id,
        "algorithm": "maml",
        "total_steps": 100,
        "config": {"lr": 0.1},
    }
    response = client.post("/api/v1/teams/alpha/external-runs", body, content_type="application/json", **auth)
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["kind"] == "external" and data["status"] == "running"
    return data["id"], auth


def _post_points(client, run_id, auth, points):
    return client.post(
        f"/api/v1/teams/alpha/runs/{run_id}/points",
        {"points": points},
        content_type="application/json",
        **auth,
    )


def test_replayed_steps_overwrite_and_duplicate_nothing(opened, client):
    run_id, auth = opened
    batch = [{"name": "loss", "step": s, "value": 1.0 / (s + 1)} for s in range(10)]
    assert _post_points(client, run_id, auth, batch).json() == {"stored": 10, "stop": False}
    replay = [{"name": "loss", "step": s, "value": 99.0} for s in range(5, 15)]
    assert _post_points(client, run_id, auth, replay).json() == {"stored": 5, "stop": False}
    rows = metric_points(run_id, "loss")
    assert len(rows) == 15
    assert rows[5] == pytest.approx(1 / 6) and rows[12] == 99.0
    assert Run.objects.get(pk=run_id).step == 14


def test_a_batch_publishes_run_progress_with_the_stored_points(opened, client):
    run_id, auth = opened

    async def listen():
        # One loop holds the channel, as a consumer does (the pub/sub layer needs it).
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(run_group(run_id), channel)
        try:
            post = sync_to_async(_post_points)
            await post(client, run_id, auth, [{"name": "loss", "step": 3, "value": 0.25}])
            return await asyncio.wait_for(layer.receive(channel), 5)
        finally:
            await layer.group_discard(run_group(run_id), channel)

    message = async_to_sync(listen)()
    assert message["type"] == "run.progress"
    assert message["points"] == {"loss": [[3, 0.25]]} and message["step"] == 3


def test_the_watchdog_leaves_external_runs_alone(opened):
    run_id, _ = opened
    Run.objects.filter(pk=run_id).update(heartbeat_at=timezone.now() - timedelta(days=1))
    assert run_id not in run_requeue_stale()
    assert Run.objects.get(pk=run_id).status == RunStatus.RUNNING


def test_finish_failed_needs_a_message_then_ends_the_run(opened, client):
    run_id, auth = opened
    url = f"/api/v1/teams/alpha/runs/{run_id}/finish"
    response = client.post(url, {"status": "failed"}, content_type="application/json", **auth)
    assert response.status_code == 422
    assert response.json()["detail"] == [{"loc": ["body", "error"], "msg": "Say why the run failed."}]
    body = {"status": "failed", "error": "NaN loss"}
    data = client.post(url, body, content_type="application/json", **auth).json()
    assert data["status"] == "failed" and data["error"] == "NaN loss"
    late = _post_points(client, run_id, auth, [{"name": "loss", "step": 1, "value": 1.0}])
    assert late.status_code == 422 and late.json()["detail"][0]["loc"] == ["body", "status"]


def test_cancel_is_reported_to_the_loop(opened, client):
    run_id, auth = opened
    assert client.post(f"/api/v1/teams/alpha/runs/{run_id}/cancel", **auth).status_code == 200
    assert _post_points(client, run_id, auth, []).json() == {"stored": 0, "stop": True}


def test_points_are_refused_on_a_worker_run(api_world, client):
    auth = bearer(api_world["tokens"]["member"])
    response = _post_points(client, api_world["run"].pk, auth, [{"name": "a", "step": 1, "value": 1}])
    assert response.status_code == 422
    assert response.json()["detail"][0]["msg"] == "Only external runs take points from the API."


def test_non_finite_values_are_422(opened, client):
    run_id, auth = opened
    response = client.post(
        f"/api/v1/teams/alpha/runs/{run_id}/points",
        '{"points": [{"name": "loss", "step": 1, "value": NaN}]}',
        content_type="application/json",
        **auth,
    )
    assert response.status_code in (400, 422)
    assert metric_points(run_id, "loss") == {}


def _post_body(client, run_id, auth, body):
    url = f"/api/v1/teams/alpha/runs/{run_id}/points"
    return client.post(url, body, content_type="application/json", **auth)


def test_points_as_columns_per_metric(opened, client):
    """``series``: the client library's form; the same rules as ``points``."""
    run_id, auth = opened
    body = {
        "series": {
            "loss": {"steps": [0, 1, 2], "values": [3.0, 2.0, 1.0]},
            "acc": {"steps": [2], "values": [0.5]},
        },
        "points": [{"name": "lr", "step": 0, "value": 0.1}],
    }
    assert _post_body(client, run_id, auth, body).json() == {"stored": 5, "stop": False}
    replay = {"series": {"loss": {"steps": [2, 3], "values": [9.0, 0.5]}}}
    assert _post_body(client, run_id, auth, replay).json() == {"stored": 1, "stop": False}
    rows = metric_points(run_id, "loss")
    assert rows == {0: 3.0, 1: 2.0, 2: 1.0, 3: 0.5}


@pytest.mark.parametrize(
    "series,loc,words",
    [
        ({"loss": {"steps": [1, 2], "values": [1.0]}}, ["body", "series"], "as many values as steps"),
        (
            {"loss": {"steps": [-1], "values": [1.0]}},
            ["body", "payload", "series", "loss", "steps", 0],
            "greater",
        ),
        ({"x" * 51: {"steps": [1], "values": [1.0]}}, ["body", "payload", "series"], "at most 50"),
        (
            {"loss": {"steps": list(range(5001)), "values": [1.0] * 5001}},
            ["body", "payload", "series"],
            "5000",
        ),
        (
            {
                "a": {"steps": list(range(3000)), "values": [1.0] * 3000},
                "b": {"steps": list(range(3000)), "values": [1.0] * 3000},
            },
            ["body", "points"],
            "at most 5000",
        ),
    ],
)
def test_bad_columns_are_422_naming_the_field(opened, client, series, loc, words):
    run_id, auth = opened
    response = _post_body(client, run_id, auth, {"series": series})
    assert response.status_code == 422, response.content
    item = response.json()["detail"][0]
    assert item["loc"][: len(loc)] == loc and words in item["msg"], item
    assert metric_points(run_id, "loss") == {}
