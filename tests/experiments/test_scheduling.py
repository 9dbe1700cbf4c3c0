"""The fair dispatcher, over the real services and the database's state: runs wait in
the database, each queue has RUN_DISPATCH_SLOTS in flight, teams take turns.

A "worker" here is the real claim and finish services called on what was sent:
no clock, no sleeping; every step waits on state (what was sent, run statuses)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.experiments.models import Run, RunKind, RunStatus
from apps.experiments.services import (
    run_cancel,
    run_claim,
    run_create,
    run_dispatch,
    run_dispatch_queued,
    run_requeue_stale,
    run_succeed,
)
from apps.teams.models import Role
from tests.factories import (
    SMALL_CONFIG,
    ExperimentFactory,
    MembershipFactory,
    RunFactory,
    TaskSetVersionFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def one_slot(settings):
    settings.RUN_DISPATCH_SLOTS = {"cpu": 1, "gpu": 1}


def _team_world(slug: str):
    experiment = ExperimentFactory(team__slug=slug, team__name=slug.title())
    member = MembershipFactory(team=experiment.team, role=Role.MEMBER).user
    version = TaskSetVersionFactory(taskset__team=experiment.team, taskset__family="sinusoid", params={})
    return experiment, member, version


def _launch(world, capture) -> Run:
    experiment, member, version = world
    config = {k: v for k, v in SMALL_CONFIG.items() if k != "family"}
    with capture(execute=True):
        return run_create(
            experiment=experiment, actor=member, taskset_version=version, config=config, queue="cpu"
        )


def _work_one(run_id: int, capture) -> None:
    """A worker takes the run it was sent and finishes it (the next one is dispatched on commit)."""
    claim = run_claim(run_id=run_id, worker="w", device="cpu")
    assert claim is not None
    with capture(execute=True):
        assert run_succeed(run_id=run_id, token=claim.token, summary={}, step=20)


def test_one_teams_backlog_does_not_starve_another_teams_run(
    one_slot, sent, django_capture_on_commit_callbacks
):
    busy, quiet = _team_world("busy"), _team_world("quiet")
    backlog = [RunFactory(experiment=busy[0], status=RunStatus.QUEUED) for _ in range(100)]
    with django_capture_on_commit_callbacks(execute=True):
        assert run_dispatch(queue="cpu") == [backlog[0].pk]
    assert sent.runs() == [(backlog[0].pk, "cpu")]
    single = _launch(quiet, django_capture_on_commit_callbacks)  # queued after all 100
    assert sent.runs() == [(backlog[0].pk, "cpu")]  # the only slot is taken: it waits in the database
    assert Run.objects.filter(status=RunStatus.QUEUED, dispatched_at__isnull=False).count() == 1

    _work_one(sent.runs()[-1][0], django_capture_on_commit_callbacks)
    assert sent.runs()[-1] == (single.pk, "cpu")  # next, not 101st
    _work_one(single.pk, django_capture_on_commit_callbacks)
    for expected in backlog[1:4]:
        assert sent.runs()[-1] == (expected.pk, "cpu")
        _work_one(expected.pk, django_capture_on_commit_callbacks)
    assert sent.runs()[-1] == (backlog[4].pk, "cpu")
    assert len(sent) == 6 and len({run_id for run_id, _ in sent.runs()}) == 6  # each sent once


def test_slots_count_running_and_sent_runs_per_queue(settings, sent, django_capture_on_commit_callbacks):
    settings.RUN_DISPATCH_SLOTS = {"cpu": 2, "gpu": 1}
    a, b = _team_world("a"), _team_world("b")
    RunFactory(
        experiment=a[0], status=RunStatus.RUNNING, attempt=1, attempt_token="t", dispatched_at=timezone.now()
    )
    RunFactory(experiment=b[0], status=RunStatus.RUNNING, kind=RunKind.EXTERNAL)  # no worker, no slot
    waiting = [RunFactory(experiment=a[0], status=RunStatus.QUEUED) for _ in range(2)]
    theirs = RunFactory(experiment=b[0], status=RunStatus.QUEUED)
    gpu = [RunFactory(experiment=a[0], status=RunStatus.QUEUED, queue="gpu") for _ in range(2)]
    with django_capture_on_commit_callbacks(execute=True):
        assert run_dispatch(queue="cpu") == [theirs.pk]  # one free slot: b has none in flight
        assert run_dispatch(queue="cpu") == []  # full; a second pass sends nothing twice
        assert run_dispatch(queue="gpu") == [gpu[0].pk]
    assert sent.runs() == [(theirs.pk, "cpu"), (gpu[0].pk, "gpu")]
    assert Run.objects.get(pk=waiting[0].pk).dispatched_at is None


def test_cancelling_a_sent_run_frees_its_slot(one_slot, sent, django_capture_on_commit_callbacks):
    world = _team_world("a")
    first, second = (_launch(world, django_capture_on_commit_callbacks) for _ in range(2))
    assert sent.runs() == [(first.pk, "cpu")]
    with django_capture_on_commit_callbacks(execute=True):
        run_cancel(run=first, actor=world[1])
    assert sent.runs() == [(first.pk, "cpu"), (second.pk, "cpu")]
    # The cancelled run's message is still in the broker: its delivery does nothing.
    assert run_claim(run_id=first.pk, worker="w", device="cpu") is None


def test_a_requeued_run_waits_for_a_slot_again(one_slot, sent, django_capture_on_commit_callbacks):
    a, b = _team_world("a"), _team_world("b")
    lost = _launch(a, django_capture_on_commit_callbacks)
    waiting = _launch(b, django_capture_on_commit_callbacks)
    assert run_claim(run_id=lost.pk, worker="w", device="cpu") is not None
    Run.objects.filter(pk=lost.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    with django_capture_on_commit_callbacks(execute=True):
        assert run_requeue_stale() == [lost.pk]
    # Sent again at once: neither team has a run in flight, and the requeued run is
    # the oldest waiting one. b's run waits for the slot, and gets it next.
    assert sent.runs() == [(lost.pk, "cpu"), (lost.pk, "cpu")]
    assert Run.objects.get(pk=waiting.pk).dispatched_at is None
    _work_one(lost.pk, django_capture_on_commit_callbacks)
    assert sent.runs()[-1] == (waiting.pk, "cpu")


def test_a_failed_send_leaves_the_run_waiting_for_the_next_pass(
    one_slot, monkeypatch, request, django_capture_on_commit_callbacks
):
    from metaweb.celery import app

    def broker_down(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr(app, "send_task", broker_down)
    run = _launch(_team_world("a"), django_capture_on_commit_callbacks)
    assert Run.objects.get(pk=run.pk).dispatched_at is None
    sent = request.getfixturevalue("sent")  # the broker is back
    with django_capture_on_commit_callbacks(execute=True):
        assert run_requeue_stale() == []  # the watchdog's pass fills free slots too
    assert sent.runs() == [(run.pk, "cpu")]


def test_embedded_start_up_sends_the_queued_runs_again_in_fair_order(
    one_slot, sent, django_capture_on_commit_callbacks
):
    a, b = _team_world("a"), _team_world("b")
    RunFactory(experiment=a[0], status=RunStatus.SUCCEEDED, dispatched_at=timezone.now() - timedelta(hours=1))
    older = RunFactory(experiment=a[0], status=RunStatus.QUEUED, dispatched_at=timezone.now())
    RunFactory(experiment=a[0], status=RunStatus.QUEUED)
    theirs = RunFactory(experiment=b[0], status=RunStatus.QUEUED)
    with django_capture_on_commit_callbacks(execute=True):
        assert len(run_dispatch_queued()) == 3
    # The memory broker forgot every message: all three wait again; a was served
    # before (its finished run), b never, so b goes first.
    assert sent.runs() == [(theirs.pk, "cpu")]
    assert Run.objects.get(pk=older.pk).dispatched_at is None


def test_a_sent_run_never_claimed_is_sent_again(one_slot, settings, sent, django_capture_on_commit_callbacks):
    """Its message was lost (a broker restarted without persistence): it must not hold
    the queue's slot forever."""
    settings.RUN_DISPATCH_CLAIM_SECONDS = 300
    world = _team_world("a")
    run = _launch(world, django_capture_on_commit_callbacks)
    behind = _launch(world, django_capture_on_commit_callbacks)
    assert sent.runs() == [(run.pk, "cpu")]
    with django_capture_on_commit_callbacks(execute=True):
        assert run_dispatch(queue="cpu") == []  # sent a moment ago: it holds the slot
    Run.objects.filter(pk=run.pk).update(dispatched_at=timezone.now() - timedelta(seconds=301))
    with django_capture_on_commit_callbacks(execute=True):
        assert run_dispatch(queue="cpu") == [run.pk]
    assert sent.runs() == [(run.pk, "cpu"), (run.pk, "cpu")]
    assert Run.objects.get(pk=behind.pk).dispatched_at is None
