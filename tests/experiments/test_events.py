"""One send path for every event: services (on commit) and the worker's reporter both
go through ``events.send_messages_nowait``, in order, on one persistent loop."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from apps.experiments import events
from apps.experiments.events import RunStatusEvent, publish, publish_run_status_on_commit
from apps.experiments.services import run_claim
from tests.factories import RunFactory
from workers.reporting import InlineExecutor, RunReporter


@pytest.mark.django_db
def test_services_and_the_reporter_share_one_send_path(monkeypatch, django_capture_on_commit_callbacks):
    sent: list[list[tuple[str, dict]]] = []
    monkeypatch.setattr(events, "send_messages_nowait", lambda messages: sent.append(messages))
    run = RunFactory(total_steps=10, error="")
    with django_capture_on_commit_callbacks(execute=True):
        publish_run_status_on_commit(run)  # what every service calls
    claim = run_claim(run_id=run.pk, worker="w", device="cpu")
    reporter = RunReporter(
        run_id=run.pk, token=claim.token, total_steps=10, executor=InlineExecutor(), flush_points=1
    )
    reporter.on_step(1, {"loss": 0.5})  # the reporter's default sender
    groups = [[group for group, _ in batch] for batch in sent]
    assert groups == [[f"run-{run.pk}", f"team-{run.team_id}", f"queue-{run.queue}"], [f"run-{run.pk}"]]
    assert sent[0][0][1]["type"] == "run.status" and sent[1][0][1]["type"] == "run.progress"


@pytest.mark.django_db
def test_status_events_carry_the_error_fields(monkeypatch, django_capture_on_commit_callbacks):
    """One copy for every service, the registry's included: the error travels too."""
    sent: list = []
    monkeypatch.setattr(events, "send_messages_nowait", sent.append)
    run = RunFactory(status="failed", error="training diverged: loss is nan", error_step=7)
    with django_capture_on_commit_callbacks(execute=True):
        publish_run_status_on_commit(run)
    message = sent[0][0][1]
    assert message["error"] == "training diverged: loss is nan" and message["error_step"] == 7


@pytest.mark.django_db
def test_events_sent_one_by_one_arrive_in_order():
    """Each send is scheduled without waiting, yet they never overtake each other."""

    async def listen() -> list[str]:
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add("run-order", channel)
        try:
            futures = [publish("run-order", RunStatusEvent(run_id=1, status=f"s{i}")) for i in range(30)]
            await asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
            return [(await asyncio.wait_for(layer.receive(channel), 5))["status"] for _ in range(30)]
        finally:
            await layer.group_discard("run-order", channel)

    assert async_to_sync(listen)() == [f"s{i}" for i in range(30)]
