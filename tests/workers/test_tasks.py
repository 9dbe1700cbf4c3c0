"""train_run end to end with the real engine on the CPU (tiny sinusoid MAML): success,
duplicate delivery, resume after a worker death, cancel, lost ownership, divergence
and error mapping.

The task runs in the test process (``train_run.run``) with its heartbeat thread, so
data must be committed: these tests use the transactional database.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import numpy as np
import pytest
import torch
from django.utils import timezone

from apps.experiments.models import Run, RunStatus
from apps.experiments.services import run_cancel, run_claim, run_requeue_stale
from apps.teams.models import Role
from tests.factories import SMALL_CONFIG, MembershipFactory, RunFactory, metric_count, metric_points
from workers import tasks
from workers.tasks import INTERNAL_ERROR, execute_run, train_run, watchdog

torch.set_num_threads(1)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


@pytest.fixture(autouse=True)
def _fast_heartbeats(settings):
    settings.HEARTBEAT_SECONDS = 0.2


def _steps(run: Run, name: str = "loss") -> list[int]:
    return sorted(metric_points(run, name))


def _kinds(run: Run) -> list[str]:
    return list(run.events.order_by("pk").values_list("kind", flat=True))


def _wait_for(predicate, timeout: float = 30.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def test_train_run_succeeds_and_stores_every_step():
    run = RunFactory()
    assert train_run.run(run.pk) == "succeeded"
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED and run.step == 20 and run.checkpoint_step == 20
    assert run.device == "cpu" and run.attempt == 1 and run.attempt_token == ""
    assert run.finished_at is not None and run.started_at is not None
    assert _steps(run) == list(range(1, 21))
    assert _steps(run, "grad_norm") == [10, 20]  # diagnostics every 10th step
    assert _steps(run, "val_loss") == [10, 20]
    assert not metric_points(run, "step_seconds")
    rss = metric_points(run, "sys_rss_mb")  # the system figures: at once, every 10 s, at the end
    assert (min(rss), max(rss)) == (1, 20) and all(100 < mb < 24_000 for mb in rss.values())
    assert run.summary["step"] == 20 and run.summary["attempts"] == 1
    assert run.summary["metrics"]["loss"] == pytest.approx(metric_points(run, "loss")[20])
    assert run.summary["val"]["val_loss"] == pytest.approx(metric_points(run, "val_loss")[20])
    assert _kinds(run) == ["claimed", "succeeded"]
    # the history says how the engine ran it: 20 iterations are too few to compile
    finished = run.events.get(kind="succeeded").message
    assert finished.startswith("Finished at step 20 (compile: auto stays eager: 20 iterations left, graph")
    assert run.pk and (tasks.checkpoint_dir_for(run.pk) / "latest").exists()


def test_duplicate_delivery_of_a_live_run_returns_quietly():
    run = RunFactory()
    claim = run_claim(run_id=run.pk, worker="other-worker", device="cpu")
    assert train_run.run(run.pk) == "skipped"
    run.refresh_from_db()
    assert run.attempt == 1 and run.attempt_token == claim.token and run.worker == "other-worker"
    assert metric_count(run) == 0


@pytest.mark.parametrize("status", [RunStatus.SUCCEEDED, RunStatus.CANCELLED])
def test_finished_runs_are_not_run_again(status):
    run = RunFactory(status=status)
    assert train_run.run(run.pk) == "skipped"
    assert Run.objects.get(pk=run.pk).status == status and not metric_count(run)


class WorkerDied(BaseException):
    """Stands for the worker process being killed: nothing in the task catches it."""


def test_resume_after_worker_death_replays_without_duplicates(settings, sent):
    from workers.metalearn import meta_train

    run = RunFactory()

    def dies_at_step_15(config, family, reporter, checkpoint_dir):
        on_step = reporter.on_step

        def on_step_then_die(step, metrics):
            on_step(step, metrics)
            if step == 15:
                raise WorkerDied

        reporter.on_step = on_step_then_die
        return meta_train(config, family, reporter, checkpoint_dir)

    with pytest.raises(WorkerDied):
        execute_run(run_id=run.pk, worker="doomed", meta_train=dies_at_step_15)
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING and run.attempt == 1 and run.checkpoint_step == 10
    before = metric_points(run, "loss")
    assert set(before) >= set(range(1, 16))

    # The heartbeat goes stale; the watchdog requeues the run and sends it again.
    Run.objects.filter(pk=run.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=settings.HEARTBEAT_TIMEOUT_SECONDS + 1)
    )
    assert watchdog.run() == [run.pk]
    assert sent == [("workers.tasks.train_run", [run.pk], "cpu")]

    replayed: dict[int, float] = {}

    def recording(config, family, reporter, checkpoint_dir):
        on_step = reporter.on_step

        def record(step, metrics):
            replayed[step] = metrics["loss"]
            on_step(step, metrics)

        reporter.on_step = record
        return meta_train(config, family, reporter, checkpoint_dir)

    assert execute_run(run_id=run.pk, worker="rescuer", meta_train=recording) == "succeeded"
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED and run.attempt == 2 and run.worker.startswith("rescuer")
    assert sorted(replayed) == list(range(11, 21))  # resumed from the checkpoint at step 10
    assert _steps(run) == list(range(1, 21))  # every step once
    assert metric_count(run, "loss") == 20
    # Resuming is deterministic: the replayed steps recomputed the stored values.
    for step in range(11, 16):
        assert replayed[step] == pytest.approx(before[step], rel=1e-6)
    assert _kinds(run) == ["claimed", "heartbeat_lost", "claimed", "succeeded"]
    assert "resuming from the checkpoint at step 10" in run.events.filter(kind="claimed").last().message


def _long_run(**overrides) -> Run:
    config = {
        **SMALL_CONFIG,
        "iterations": 5000,
        "eval_interval": 5000,
        "checkpoint_interval": 50,
        **overrides,
    }
    return RunFactory(config=config, total_steps=config["iterations"])


@pytest.fixture
def in_thread():
    """Start train_run in a thread; at teardown, take the run away from it and join it
    (so that a failing test does not leave it writing into the next one)."""
    started: list[tuple[int, threading.Thread]] = []

    def start(run_id: int) -> tuple[threading.Thread, list[str]]:
        outcome: list[str] = []

        def target() -> None:
            from django.db import connection

            try:
                outcome.append(train_run.run(run_id))
            finally:
                connection.close()

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        started.append((run_id, thread))
        return thread, outcome

    yield start
    for run_id, thread in started:
        Run.objects.filter(pk=run_id).update(attempt_token="")
        thread.join(timeout=15)


def test_cancel_mid_run_stops_within_seconds(in_thread):
    run = _long_run()
    MembershipFactory(team=run.team, user=run.launched_by, role=Role.MEMBER)
    thread, outcome = in_thread(run.pk)
    assert _wait_for(lambda: max(metric_points(run, "loss"), default=-1) >= 20)
    run.refresh_from_db()
    run_cancel(run=run, actor=run.launched_by)
    asked = time.monotonic()
    thread.join(timeout=15)
    elapsed = time.monotonic() - asked
    assert not thread.is_alive() and outcome == ["cancelled"]
    assert elapsed < 5
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED and 20 <= run.step < 5000
    assert run.checkpoint_step == run.step  # the engine checkpointed where it stopped
    assert _steps(run) == list(range(1, run.step + 1))
    assert _kinds(run)[-1] == "cancelled"


def test_attempt_that_loses_ownership_stops_and_leaves_the_run_alone(sent, in_thread):
    run = _long_run()
    thread, outcome = in_thread(run.pk)
    assert _wait_for(lambda: max(metric_points(run, "loss"), default=-1) >= 20)
    # The watchdog wrongly believes the worker dead (e.g. a long pause): it requeues the run.
    # It skips a row locked at that instant (SKIP LOCKED: the worker's heartbeat or checkpoint
    # UPDATE is in flight, every 0.2 s here) and takes it at its next pass: pass until it does.
    requeued: list[list[int]] = []
    assert _wait_for(
        lambda: (
            requeued.append(run_requeue_stale(older_than=timezone.now() + timedelta(seconds=60)))
            or requeued[-1] == [run.pk]
        )
    ), requeued
    assert all(ids == [] for ids in requeued[:-1])  # a skipped pass requeues nothing
    thread.join(timeout=15)
    assert not thread.is_alive() and outcome == ["lost"]
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED and run.attempt_token == "" and run.finished_at is None
    assert sent == [("workers.tasks.train_run", [run.pk], "cpu")]


class NaNAfter:
    """Wraps a family: training batches get NaN targets from the n-th sample on."""

    def __init__(self, family, n: int):
        self._family, self._n, self._calls = family, n, 0

    def __getattr__(self, name):
        return getattr(self._family, name)

    def sample(self, split, batch_size, episode, seed):
        batch = self._family.sample(split, batch_size, episode, seed)
        self._calls += 1
        if self._calls >= self._n:
            y = np.full_like(batch.y_query, np.nan)
            batch = type(batch)(
                batch.x_support, batch.y_support, batch.x_query, y, batch.desc, batch.task_ids
            )
        return batch


def test_divergence_fails_the_run_with_its_step(monkeypatch):
    real = tasks.make_family
    monkeypatch.setattr(tasks, "make_family", lambda spec, data_path=None: NaNAfter(real(spec), n=7))
    run = RunFactory()
    assert train_run.run(run.pk) == "failed"
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.error_step == 7
    assert run.error.startswith("training diverged: loss is")
    assert "at step" not in run.error  # the page says it beside the message
    assert run.error.endswith(tasks.divergence_hint(run.algorithm))
    assert run.events.get(kind="failed").message.startswith("Failed at step 7: training diverged: loss is")
    assert _steps(run) == list(range(1, 7))
    assert run.checkpoint_step is None or run.checkpoint_step < 7


class SpikeThenNaN(NaNAfter):
    """Training batch ``n - 1`` gets targets 1,000 times larger (a finite spike), and
    batches from the n-th on NaN targets."""

    def sample(self, split, batch_size, episode, seed):
        batch = super().sample(split, batch_size, episode, seed)
        if self._calls == self._n - 1:
            batch = type(batch)(
                batch.x_support,
                batch.y_support,
                batch.x_query,
                batch.y_query * 1000,
                batch.desc,
                batch.task_ids,
            )
        return batch


def test_a_spike_just_before_a_divergence_is_in_the_history(monkeypatch):
    """The reporter stores the warning before the run is marked failed (it is closed
    first), so the history tells the spike at its step, then the failure."""
    real = tasks.make_family
    monkeypatch.setattr(tasks, "make_family", lambda spec, data_path=None: SpikeThenNaN(real(spec), n=57))
    run = RunFactory(
        config={**SMALL_CONFIG, "iterations": 80, "eval_interval": 80, "checkpoint_interval": 80}
    )
    assert train_run.run(run.pk) == "failed"
    run.refresh_from_db()
    assert run.error_step == 57
    spike = run.events.get(kind="spike")
    assert spike.step == 56 and spike.message.startswith("Loss spike at step 56: ")
    assert _kinds(run)[-2:] == ["spike", "failed"]


def test_invalid_config_fails_with_the_field():
    run = RunFactory(config={**SMALL_CONFIG, "shots": 0})
    assert train_run.run(run.pk) == "failed"
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.error.startswith("Invalid configuration: shots")


def test_unexpected_errors_get_a_short_message(monkeypatch, caplog):
    def broken(config, family, reporter, checkpoint_dir):
        reporter.on_step(1, {"loss": 1.0})
        raise RuntimeError("internal detail at /srv/secret/path")

    run = RunFactory()
    assert execute_run(run_id=run.pk, worker="w", meta_train=broken) == "failed"
    run.refresh_from_db()
    assert run.error == INTERNAL_ERROR.format(kind="RuntimeError") and "secret" not in run.error
    assert run.error_step == 1 and _steps(run) == [1]
    assert "internal detail" in caplog.text  # logged with its traceback


def test_cuda_run_without_a_gpu_fails_clearly(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    run = RunFactory(config={**SMALL_CONFIG, "device": "cuda"}, queue="gpu")
    assert train_run.run(run.pk) == "failed"
    run.refresh_from_db()
    assert "no GPU" in run.error and run.device == "cpu"


def test_embedded_start_up_resends_queued_runs_and_requeues_interrupted_ones(sent):
    """``manage.py serve`` without Redis: the previous process's memory broker is gone."""
    from workers.embedded import recover_runs

    queued = RunFactory()
    interrupted = RunFactory()
    run_claim(run_id=interrupted.pk, worker="old-process", device="cpu")  # fresh heartbeat, but dead
    done = RunFactory(status=RunStatus.SUCCEEDED)
    assert recover_runs() == ([queued.pk], [interrupted.pk])
    # One slot per queue: the oldest is sent, the interrupted run waits in the database
    # for the slot (the fair dispatcher sends it when the first one ends).
    assert [run_id for run_id, _ in sent.runs()] == [queued.pk]
    assert Run.objects.filter(pk=interrupted.pk, status=RunStatus.QUEUED, dispatched_at=None).exists()
    assert Run.objects.get(pk=done.pk).status == RunStatus.SUCCEEDED


@pytest.mark.parametrize(
    ("algorithm", "hint"),
    [
        # Measured (benchmarks/divergence_remedies.py): fewer steps or a smaller inner rate stop
        # MAML's divergence whatever caused it, a smaller meta rate only when that was the cause.
        (
            "maml",
            ". Clone it with fewer inner steps, a smaller inner learning rate, "
            "or a smaller meta learning rate.",
        ),
        ("mnn", ". Clone it with a smaller meta learning rate."),
        (  # not measured: the algorithm's own settings
            "anil",
            ". Clone it with a smaller meta learning rate, a smaller inner learning rate, "
            "fewer inner steps, or a gradient clip.",
        ),
        ("protonet", ". Clone it with a smaller meta learning rate, or a gradient clip."),  # no inner loop
        ("seed-mnn", ". Clone it with a gradient clip."),  # its optimiser is fixed
        # Measured: a clip, a smaller initial rate or first order do not stop it.
        ("metasgd", ". Clone it with fewer inner steps, or a smaller meta learning rate."),
    ],
)
def test_a_divergence_hint_names_only_the_algorithms_own_settings(algorithm, hint):
    assert tasks.divergence_hint(algorithm) == hint
