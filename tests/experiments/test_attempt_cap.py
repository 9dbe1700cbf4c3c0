"""The attempt cap: a run whose worker keeps dying is failed after RUN_MAX_ATTEMPTS
lost attempts, by the real watchdog over the run's state (no clock involved: the
heartbeat is moved into the past, or the watchdog's cutoff into the future)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.utils import timezone

from apps.experiments.events import run_group
from apps.experiments.models import Run, RunStatus
from apps.experiments.services import run_claim, run_heartbeat, run_requeue_stale
from tests.factories import RunFactory

pytestmark = pytest.mark.django_db


def _claim_and_die(run: Run, *, step: int, worker: str) -> str:
    """A worker claims the run, reports ``step``, then goes silent."""
    claim = run_claim(run_id=run.pk, worker=worker, device="cpu")
    assert claim is not None
    assert run_heartbeat(run_id=run.pk, token=claim.token, step=step)
    Run.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    return claim.token


def test_watchdog_fails_a_run_after_its_third_lost_worker(settings, sent, django_capture_on_commit_callbacks):
    settings.RUN_MAX_ATTEMPTS = 3
    run = RunFactory()
    for attempt, step in ((1, 40), (2, 75)):
        _claim_and_die(run, step=step, worker=f"w{attempt}")
        with django_capture_on_commit_callbacks(execute=True):
            assert run_requeue_stale() == [run.pk]
        run.refresh_from_db()
        assert run.status == RunStatus.QUEUED and run.attempt == attempt
    _claim_and_die(run, step=120, worker="w3")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert run_requeue_stale() == []
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.attempt == 3
    assert run.error == "Worker lost 3 times."
    assert run.error_step == 120 and run.finished_at is not None and run.attempt_token == ""
    event = run.events.order_by("pk").last()
    assert event.kind == "failed" and event.message.startswith("Failed at step 120: Worker lost 3 times.")
    assert len(callbacks) >= 1  # the status is published on commit
    assert [args for _, args, _ in sent] == [[run.pk], [run.pk]]  # two requeues, not a third
    # A late delivery of the last requeue finds the run finished and does nothing.
    assert run_claim(run_id=run.pk, worker="w4", device="cpu") is None


def test_the_cap_is_a_setting(settings, sent, django_capture_on_commit_callbacks):
    settings.RUN_MAX_ATTEMPTS = 1
    run = RunFactory()
    _claim_and_die(run, step=7, worker="w1")
    with django_capture_on_commit_callbacks(execute=True):
        assert run_requeue_stale() == []
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.error == "Worker lost once."
    assert sent == []


def test_a_redelivery_that_finds_the_last_attempt_dead_fails_the_run(settings, sent):
    """Celery may redeliver (visibility timeout) before the watchdog looks: the claim
    that would take over a dead attempt applies the same cap."""
    settings.RUN_MAX_ATTEMPTS = 2
    run = RunFactory()
    _claim_and_die(run, step=3, worker="w1")
    assert run_claim(run_id=run.pk, worker="w2", device="cpu") is not None  # attempt 2 takes over
    Run.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1), step=9)
    assert run_claim(run_id=run.pk, worker="w3", device="cpu") is None
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.attempt == 2
    assert run.error == "Worker lost 2 times."


def test_the_failure_reaches_the_run_page_through_the_channel_layer(
    settings, sent, django_capture_on_commit_callbacks
):
    settings.RUN_MAX_ATTEMPTS = 1
    run = RunFactory()
    _claim_and_die(run, step=5, worker="w1")

    def watchdog():
        with django_capture_on_commit_callbacks(execute=True):
            return run_requeue_stale()

    async def listen():
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(run_group(run.pk), channel)
        try:
            requeued = await sync_to_async(watchdog)()
            return requeued, await asyncio.wait_for(layer.receive(channel), 5)
        finally:
            await layer.group_discard(run_group(run.pk), channel)

    requeued, message = async_to_sync(listen)()
    assert requeued == []
    assert message["type"] == "run.status" and message["status"] == "failed"
    assert message["error"] == "Worker lost once."
