"""Worker-side run services: claim, heartbeat, metrics, finishing, and the watchdog."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from apps.experiments.models import Run, RunEvent, RunStatus
from apps.experiments.services import (
    run_checkpointed,
    run_claim,
    run_dispatch_queued,
    run_fail,
    run_heartbeat,
    run_mark_cancelled,
    run_metrics_record,
    run_requeue_stale,
    run_stop_reason,
    run_succeed,
)
from tests.factories import RunFactory, metric_points

pytestmark = pytest.mark.django_db


def _claim(run: Run, worker: str = "w1"):
    return run_claim(run_id=run.pk, worker=worker, device="cpu")


def test_claim_starts_an_attempt(django_capture_on_commit_callbacks):
    run = RunFactory()
    with django_capture_on_commit_callbacks() as callbacks:
        claim = _claim(run)
    run.refresh_from_db()
    assert claim is not None and claim.attempt == 1 and not claim.resumed
    assert run.status == RunStatus.RUNNING
    assert run.attempt == 1 and run.attempt_token == claim.token and len(claim.token) == 32
    assert run.worker == "w1" and run.device == "cpu"
    assert run.started_at is not None and run.heartbeat_at is not None
    assert list(run.events.values_list("kind", "attempt")) == [("claimed", 1)]
    assert len(callbacks) == 1  # run.status published on commit


def test_second_delivery_of_a_live_run_does_nothing(django_capture_on_commit_callbacks):
    run = RunFactory()
    first = _claim(run)
    with django_capture_on_commit_callbacks() as callbacks:
        assert _claim(run, worker="w2") is None
    run.refresh_from_db()
    assert run.attempt == 1 and run.attempt_token == first.token and run.worker == "w1"
    assert run.events.count() == 1
    assert callbacks == []


@pytest.mark.parametrize("status", [RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED])
def test_finished_runs_are_left_alone(status):
    run = RunFactory(status=status, attempt=1, attempt_token="")
    assert _claim(run) is None
    run.refresh_from_db()
    assert run.status == status and run.attempt == 1 and run.events.count() == 0


def test_missing_run_is_ignored():
    assert run_claim(run_id=987654, worker="w", device="cpu") is None


def test_stale_running_run_is_taken_over(settings):
    run = RunFactory()
    first = _claim(run)
    Run.objects.filter(pk=run.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=settings.HEARTBEAT_TIMEOUT_SECONDS + 1),
        checkpoint_step=10,
    )
    second = _claim(run, worker="w2")
    assert second is not None and second.attempt == 2 and second.resumed and second.token != first.token
    assert "resuming from the checkpoint at step 10" in run.events.last().message
    # The first attempt has lost the run.
    assert run_heartbeat(run_id=run.pk, token=first.token, step=5) is False
    assert run_stop_reason(run_id=run.pk, token=first.token) == "lost"
    assert run_heartbeat(run_id=run.pk, token=second.token, step=5) is True


def test_claim_of_a_cancel_requested_run_marks_it_cancelled():
    run = RunFactory(
        status=RunStatus.RUNNING,
        attempt=1,
        attempt_token="old",
        heartbeat_at=None,
        cancel_requested_at=timezone.now(),
    )
    assert _claim(run) is None
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED and run.finished_at is not None and run.attempt == 1


def test_heartbeat_records_step_and_time():
    run = RunFactory()
    claim = _claim(run)
    Run.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=30))
    assert run_heartbeat(run_id=run.pk, token=claim.token, step=7) is True
    run.refresh_from_db()
    assert run.step == 7 and (timezone.now() - run.heartbeat_at).total_seconds() < 5
    assert run_heartbeat(run_id=run.pk, token="", step=8) is False


def test_metrics_a_few_statements_per_batch_and_replays_never_duplicate(
    django_assert_max_num_queries,
):
    run = RunFactory()
    claim = _claim(run)
    batch = [("loss", step, 1.0 / step) for step in range(1, 101)] + [("val_mse", 50, 0.5)]
    # SAVEPOINT, lock, create the series, lock again, their chunks, their figures (one
    # UPDATE on PostgreSQL, one per series on SQLite), RELEASE.
    with django_assert_max_num_queries(7 if connection.vendor == "postgresql" else 8):
        assert run_metrics_record(run_id=run.pk, token=claim.token, points=batch) == 101
    # A resumed attempt replays steps 41..120: only 101..120 are new.
    replay = [("loss", step, 99.0) for step in range(41, 121)]
    with django_assert_max_num_queries(6):  # SAVEPOINT, lock, tail, append, figures, RELEASE
        assert run_metrics_record(run_id=run.pk, token=claim.token, points=replay) == 20
    losses = metric_points(run, "loss")
    assert sorted(losses) == list(range(1, 121))
    assert losses[41] == pytest.approx(1 / 41)  # the first value stays
    assert losses[120] == 99.0
    with django_assert_max_num_queries(0):
        assert run_metrics_record(run_id=run.pk, token=claim.token, points=[]) == 0


def test_checkpointed_and_succeed(django_capture_on_commit_callbacks):
    run = RunFactory()
    claim = _claim(run)
    assert run_checkpointed(run_id=run.pk, token=claim.token, step=10) is True
    with django_capture_on_commit_callbacks() as callbacks:
        assert (
            run_succeed(run_id=run.pk, token=claim.token, summary={"metrics": {"loss": 0.1}}, step=20) is True
        )
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED and run.step == 20 and run.checkpoint_step == 10
    assert run.summary == {"metrics": {"loss": 0.1}} and run.finished_at is not None
    assert run.attempt_token == ""
    assert len(callbacks) == 4  # retention, the next dispatch, registering the meta-model, the status
    # Finished: nothing else can change it.
    assert run_fail(run_id=run.pk, token=claim.token, error="late", step=3) is False
    assert run_checkpointed(run_id=run.pk, token=claim.token, step=20) is False


def test_fail_records_error_and_step():
    run = RunFactory()
    claim = _claim(run)
    assert run_fail(run_id=run.pk, token=claim.token, error="training diverged: loss is nan", step=12)
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.error_step == 12 and run.step == 12
    assert run.error == "training diverged: loss is nan"
    event = run.events.last()
    assert event.kind == "failed" and event.message == "Failed at step 12: training diverged: loss is nan"


def test_mark_cancelled_needs_the_owner():
    run = RunFactory()
    claim = _claim(run)
    assert run_mark_cancelled(run_id=run.pk, token="someone-else") is False
    assert run_mark_cancelled(run_id=run.pk, token=claim.token, step=4) is True
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED and run.step == 4


def test_stop_reason_sees_cancel_requests():
    run = RunFactory()
    claim = _claim(run)
    assert run_stop_reason(run_id=run.pk, token=claim.token) is None
    Run.objects.filter(pk=run.pk).update(cancel_requested_at=timezone.now())
    assert run_stop_reason(run_id=run.pk, token=claim.token) == "cancel"


def test_watchdog_requeues_stale_runs_and_dispatches_on_commit(
    settings, sent, django_capture_on_commit_callbacks
):
    stale, fresh = RunFactory(), RunFactory()
    stale_claim, fresh_claim = _claim(stale), _claim(fresh)
    Run.objects.filter(pk=stale.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=settings.HEARTBEAT_TIMEOUT_SECONDS + 5),
        checkpoint_step=10,
        queue="gpu",
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert run_requeue_stale() == [stale.pk]
    stale.refresh_from_db()
    fresh.refresh_from_db()
    assert stale.status == RunStatus.QUEUED and stale.attempt_token == "" and stale.attempt == 1
    assert fresh.status == RunStatus.RUNNING and fresh.attempt_token == fresh_claim.token
    event = stale.events.last()
    assert event.kind == "heartbeat_lost" and "resume from step 10" in event.message
    assert sent == [("workers.tasks.train_run", [stale.pk], "gpu")]
    # The old attempt is told to stop; the redelivery claims attempt 2.
    assert run_heartbeat(run_id=stale.pk, token=stale_claim.token, step=11) is False
    claim = _claim(stale, worker="w2")
    assert claim.attempt == 2 and claim.resumed


def test_watchdog_does_not_dispatch_a_run_cancelled_meanwhile(
    settings, sent, django_capture_on_commit_callbacks
):
    run = RunFactory()
    _claim(run)
    Run.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert run_requeue_stale() == [run.pk]
    Run.objects.filter(pk=run.pk).update(status=RunStatus.CANCELLED)  # run_cancel of the queued run
    for callback in callbacks:
        callback()
    assert sent == []


def test_watchdog_cancels_a_dead_run_whose_cancel_was_requested(sent, django_capture_on_commit_callbacks):
    run = RunFactory()
    _claim(run)
    Run.objects.filter(pk=run.pk).update(
        heartbeat_at=timezone.now() - timedelta(hours=1), cancel_requested_at=timezone.now()
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert run_requeue_stale() == []
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED and sent == []


def test_dispatch_queued_resends_queued_runs_only(sent, django_capture_on_commit_callbacks):
    queued = RunFactory()
    RunFactory(status=RunStatus.SUCCEEDED)
    with django_capture_on_commit_callbacks(execute=True):
        assert run_dispatch_queued() == [queued.pk]
    assert sent == [("workers.tasks.train_run", [queued.pk], "cpu")]
    assert RunEvent.objects.count() == 0
