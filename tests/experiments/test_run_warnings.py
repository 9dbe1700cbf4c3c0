"""Loss-spike warnings on the web side: kept once in the run's history by the owning
attempt, bounded, relayed to the run's page, shown on it, and read by the API."""

from __future__ import annotations

import re

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.db import connections
from django.urls import reverse

from apps.experiments.models import RunEvent, RunStatus
from apps.experiments.services import run_claim, run_warning_record
from apps.experiments.services.execution import RUN_WARNINGS_MAX
from metaweb.routing import websocket_urlpatterns
from tests.factories import RunFactory
from workers.reporting import InlineExecutor, RunReporter

SPIKE = "Loss spike at step 2,066: 1.1e+05, 1.21e+05x the median (0.909) of the 50 steps before."


@pytest.fixture
def claimed(team_roles):
    team, _users = team_roles
    run = RunFactory(experiment__team=team, total_steps=4000)
    return run, run_claim(run_id=run.pk, worker="w1", device="cpu")


def _record(run, token, step=2066, kind="spike", message=SPIKE) -> bool:
    return run_warning_record(run_id=run.pk, token=token, step=step, kind=kind, message=message)


@pytest.mark.django_db
def test_a_warning_is_kept_once_per_step_and_told_on_commit(claimed, django_capture_on_commit_callbacks):
    run, claim = claimed
    with django_capture_on_commit_callbacks() as callbacks:
        assert _record(run, claim.token)
    event = RunEvent.objects.get(run=run, kind="spike")
    assert (event.step, event.message, event.attempt) == (2066, SPIKE, 1)
    assert len(callbacks) == 1
    # The attempt resumed from a checkpoint replays the step: nothing new.
    with django_capture_on_commit_callbacks() as callbacks:
        assert not _record(run, claim.token)
    assert callbacks == [] and RunEvent.objects.filter(run=run, kind="spike").count() == 1
    assert _record(run, claim.token, step=2115, kind="spike_level", message="stayed high")


@pytest.mark.django_db
def test_only_the_owning_attempt_and_known_kinds_are_kept(claimed):
    run, claim = claimed
    assert not _record(run, "not-the-token")
    assert not _record(run, claim.token, kind="failed")
    assert not RunEvent.objects.filter(run=run, step__isnull=False).exists()


@pytest.mark.django_db
def test_a_run_keeps_at_most_its_share_of_warnings(claimed):
    run, claim = claimed
    kept = [_record(run, claim.token, step=100 + i) for i in range(RUN_WARNINGS_MAX + 5)]
    assert kept == [True] * RUN_WARNINGS_MAX + [False] * 5
    assert RunEvent.objects.filter(run=run, kind="spike").count() == RUN_WARNINGS_MAX


@pytest.mark.django_db
def test_the_reporter_keeps_the_engines_warning(claimed):
    run, claim = claimed
    sent = []
    reporter = RunReporter(
        run_id=run.pk,
        token=claim.token,
        total_steps=run.total_steps,
        executor=InlineExecutor(),
        send=lambda group, message: sent.append(message),
    )
    reporter.on_warning(2066, "spike", SPIKE)
    reporter.close()
    assert list(RunEvent.objects.filter(run=run, kind="spike").values_list("step", "message")) == [
        (2066, SPIKE)
    ]


@pytest.mark.django_db
def test_the_run_page_and_the_api_show_the_spikes(client, claimed, team_roles):
    run, claim = claimed
    _team, users = team_roles
    url = reverse("experiments:run-detail", args=[run.pk])
    client.force_login(users["viewer"])
    assert 'id="run-spikes"' not in client.get(url).content.decode()
    _record(run, claim.token)
    _record(run, claim.token, step=3728, message="Loss spike at step 3,728: <b>439</b>")
    for headers in ({}, {"HX-Request": "true"}):
        html = client.get(url, headers=headers).content.decode()
        assert 'id="run-spikes"' in html and "Loss spikes</strong> at steps" in html
        zoom = r'data-zoom-chart="chart-loss" data-zoom-lo="(\d+)" data-zoom-hi="(\d+)"[^>]*>(\d+)<'
        steps = re.findall(r'class="link spike-step" ' + zoom, html)
        assert steps == [("1966", "2166", "2066"), ("3628", "3828", "3728")]
        assert "(step 2066)" in html and "&lt;b&gt;439&lt;/b&gt;" in html  # escaped
    api = reverse("api:run_event_list", kwargs={"team": run.team.slug, "run_id": run.pk})
    events = client.get(api).json()
    assert [(e["kind"], e["step"]) for e in events if e["step"] is not None] == [
        ("spike", 2066),
        ("spike", 3728),
    ]


router = URLRouter(websocket_urlpatterns)


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(30)
async def test_the_warning_reaches_the_run_socket(team_roles):
    team, users = team_roles
    run = await database_sync_to_async(RunFactory)(experiment__team=team, status=RunStatus.RUNNING)
    communicator = WebsocketCommunicator(router, f"/ws/runs/{run.pk}/")
    communicator.scope["user"] = users["viewer"]
    assert (await communicator.connect())[0]
    assert (await communicator.receive_json_from(timeout=5))["type"] == "run.state"
    message = {"type": "run.warning", "run_id": run.pk, "step": 7, "kind": "spike", "message": SPIKE}
    await get_channel_layer().group_send(f"run-{run.pk}", message)
    assert await communicator.receive_json_from(timeout=5) == message
    await communicator.disconnect()
    await database_sync_to_async(connections.close_all)()
