"""run_attempt: the one claim / heartbeat / outcome / error path of both Celery tasks.

Each test runs a real attempt on a real run (claimed with its token), with a job whose
engine call returns an outcome or raises, and checks how the run was marked.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.utils import timezone

from apps.experiments.models import Run, RunKind, RunStatus
from tests.factories import RunFactory
from workers.attempt import (
    INTERNAL_ERROR,
    Attempt,
    Failed,
    Finished,
    Job,
    Stopped,
    Wording,
    run_attempt,
)
from workers.metalearn.types import CheckpointError, ConfigError, DataError, DivergenceError
from workers.reporting import InlineExecutor, RunReporter

FOLDER = Path("/srv/metaweb/runs/7/checkpoints")
TRAINING = Wording(
    noun="run",
    checkpoint=FOLDER,
    checkpoint_label="the run's checkpoint folder",
    unasked_stop="The engine stopped at step {step} before the end, without being asked to.",
)
ADAPTING = Wording(
    noun="adaptation",
    checkpoint=FOLDER,
    checkpoint_label="the meta-model's checkpoint folder",
    unasked_stop="The adaptation stopped before the end, without being asked to.",
    divergence_hint=". Try fewer steps.",
    name_steps=False,
)


@pytest.fixture(autouse=True)
def _no_heartbeat_during_tests(settings):
    settings.HEARTBEAT_SECONDS = 3600  # the heartbeat thread starts and stops without beating


class Sent(list):
    def __call__(self, group, message):
        self.append((group, message))


def attempt_with(run: Run, work, *, wording: Wording = TRAINING, step: int = 0, prepared: list | None = None):
    """Run one attempt of ``run`` whose engine call is ``work(attempt, reporter)``."""

    def prepare(attempt: Attempt) -> Job:
        reporter = RunReporter(
            run_id=attempt.run_id,
            token=attempt.token,
            total_steps=run.total_steps,
            executor=InlineExecutor(),
            send=Sent(),
        )
        reporter.step = step
        if prepared is not None:
            prepared.append(attempt)
        return Job(reporter=reporter, work=lambda: work(attempt, reporter), wording=wording)

    return run_attempt(
        run_id=run.pk, worker="w", kind=RunKind.TRAIN, device_for=lambda _run: "cpu", prepare=prepare
    )


def raising(exc: BaseException):
    def work(attempt, reporter):
        raise exc

    return work


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("exc", "wording", "message", "error_step"),
    [
        (DivergenceError(7, "loss", float("nan")), TRAINING, "training diverged: loss is nan", 7),
        (
            DivergenceError(3, "query_loss", float("inf"), phase="adaptation"),
            ADAPTING,
            "adaptation diverged at inner step 3: query_loss is inf. Try fewer steps.",
            None,
        ),
        (
            ConfigError({"meta_lr": "must be positive"}),
            TRAINING,
            "Invalid configuration: meta_lr: must be positive",
            None,
        ),
        (DataError("shots", "too many"), TRAINING, "Problem with the task data: shots: too many", None),
        (
            CheckpointError(f"checkpoint: cannot read {FOLDER}/step-000010"),
            TRAINING,
            "checkpoint: cannot read the run's checkpoint folder/step-000010",
            12,
        ),
        (
            CheckpointError(f"checkpoint: cannot read {FOLDER}"),
            ADAPTING,
            "checkpoint: cannot read the meta-model's checkpoint folder",
            None,
        ),
        (SoftTimeLimitExceeded(), ADAPTING, "The adaptation exceeded the time limit of", None),
        (RuntimeError("boom at /srv"), TRAINING, INTERNAL_ERROR.format(kind="RuntimeError"), 12),
    ],
)
def test_engine_errors_fail_the_run_with_a_message_for_the_page(exc, wording, message, error_step):
    run = RunFactory(total_steps=100)
    assert attempt_with(run, raising(exc), wording=wording, step=12) == "failed"
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert run.error.startswith(message) and "/srv" not in run.error
    assert run.error_step == error_step


@pytest.mark.django_db
def test_finished_stores_the_product_once_with_the_token():
    run = RunFactory(total_steps=10)
    stored: list[str] = []

    def work(attempt, reporter):
        def store() -> bool:
            from apps.experiments.services import run_succeed

            stored.append(attempt.token)
            return run_succeed(run_id=attempt.run_id, token=attempt.token, summary={"ok": 1}, step=10)

        return Finished(10, store=store)

    assert attempt_with(run, work) == "succeeded"
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED and run.summary == {"ok": 1}
    assert len(stored) == 1 and stored[0]  # with the attempt's token (cleared once finished)
    # A late second delivery of the finished run is skipped: nothing runs again.
    assert attempt_with(run, work) == "skipped" and len(stored) == 1


@pytest.mark.django_db
def test_a_finished_attempt_that_lost_the_run_writes_nothing():
    run = RunFactory(total_steps=10)
    assert attempt_with(run, lambda attempt, reporter: Finished(10, store=lambda: False)) == "lost"
    assert Run.objects.get(pk=run.pk).status == RunStatus.RUNNING


@pytest.mark.django_db
def test_stopped_by_a_cancel_marks_the_run_cancelled_at_its_step():
    run = RunFactory(total_steps=100)

    def work(attempt, reporter):
        Run.objects.filter(pk=attempt.run_id).update(cancel_requested_at=timezone.now())
        return Stopped(40)

    assert attempt_with(run, work) == "cancelled"
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED and run.step == 40


@pytest.mark.django_db
def test_stopped_after_losing_ownership_leaves_the_run_to_the_newer_attempt():
    run = RunFactory(total_steps=100)

    def work(attempt, reporter):
        Run.objects.filter(pk=attempt.run_id).update(attempt_token="newer", attempt=2)
        return Stopped(40)

    assert attempt_with(run, work) == "lost"
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING and run.attempt_token == "newer" and run.error == ""


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("wording", "message", "error_step"),
    [
        (TRAINING, "The engine stopped at step 40 before the end, without being asked to.", 40),
        (ADAPTING, "The adaptation stopped before the end, without being asked to.", None),
    ],
)
def test_a_stop_nobody_asked_for_fails_the_run(wording, message, error_step):
    run = RunFactory(total_steps=100)
    assert attempt_with(run, lambda attempt, reporter: Stopped(40), wording=wording) == "failed"
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.error == message and run.error_step == error_step


@pytest.mark.django_db
def test_a_job_that_cannot_start_fails_without_running():
    run = RunFactory(total_steps=100)
    result = run_attempt(
        run_id=run.pk,
        worker="w",
        kind=RunKind.TRAIN,
        device_for=lambda _run: "cpu",
        prepare=lambda attempt: Failed("This run asks for CUDA."),
    )
    assert result == "failed"
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.error == "This run asks for CUDA." and run.attempt == 1


@pytest.mark.django_db
def test_deliveries_of_missing_or_other_kind_runs_are_skipped():
    run = RunFactory(total_steps=100)
    prepared: list = []
    never = raising(AssertionError("must not run"))
    assert attempt_with(Run(pk=run.pk + 1000, total_steps=1), never, prepared=prepared) == "skipped"
    result = run_attempt(
        run_id=run.pk, worker="w", kind=RunKind.ADAPT, device_for=lambda _run: "cpu", prepare=prepared.append
    )
    assert result == "skipped" and prepared == []
    assert Run.objects.get(pk=run.pk).status == RunStatus.QUEUED
