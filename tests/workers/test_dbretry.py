"""Worker writes survive a lost database connection (workers/dbretry.py), and each
write retried is idempotent under the attempt's token.

The helper's rules are tested with a fake clock; the real fault (PostgreSQL ends
the worker's connection, as a restart does) with ``pg_terminate_backend`` on the
test's own connection; "the commit reached the database, but the answer did not"
with a write that commits and then raises.
"""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest
from django.db import IntegrityError, InterfaceError, OperationalError, connection, transaction

from apps.experiments.models import Run, RunEvent, RunKind, RunStatus
from apps.experiments.selectors import run_metrics
from apps.experiments.services import (
    run_checkpointed,
    run_claim,
    run_heartbeat,
    run_metrics_record,
    run_succeed,
)
from benchmarks._stack import database_url
from tests.factories import RunFactory
from workers import attempt as attempt_module
from workers.attempt import Attempt, Finished, Job, Wording, run_attempt
from workers.dbretry import FIRST_PAUSE, MAX_PAUSE, retry_db, with_db_retry
from workers.reporting import InlineExecutor, RunReporter

WORDING = Wording(noun="run", checkpoint=Path("/x"), checkpoint_label="x", unasked_stop="stopped at {step}")


class Clock:
    """A fake clock that ``sleep`` moves forward."""

    def __init__(self) -> None:
        self.now = 0.0
        self.pauses: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


def failing(times: int, exc: Exception, result: object = "done"):
    """A function that raises ``exc`` ``times`` times, then returns ``result``."""
    calls: list[int] = []

    def fn() -> object:
        calls.append(1)
        if len(calls) <= times:
            raise exc
        return result

    fn.calls = calls  # type: ignore[attr-defined]
    return fn


# -- the helper's rules -------------------------------------------------------------


def test_a_lost_connection_is_retried_with_doubling_pauses():
    clock = Clock()
    fn = failing(4, OperationalError("terminating connection due to administrator command"))
    assert retry_db(fn, bound=30, sleep=clock.sleep, clock=clock) == "done"
    assert len(fn.calls) == 5
    assert clock.pauses == [FIRST_PAUSE, FIRST_PAUSE * 2, FIRST_PAUSE * 4, FIRST_PAUSE * 8]


def test_an_interface_error_is_retried_too():
    clock = Clock()
    fn = failing(1, InterfaceError("connection already closed"))
    assert retry_db(fn, bound=30, sleep=clock.sleep, clock=clock) == "done"
    assert len(fn.calls) == 2


def test_it_gives_up_past_the_bound_with_the_last_error():
    clock = Clock()
    fn = failing(10_000, OperationalError("connection refused"))
    with pytest.raises(OperationalError, match="connection refused"):
        retry_db(fn, bound=30, sleep=clock.sleep, clock=clock)
    assert sum(clock.pauses) <= 30
    assert sum(clock.pauses) > 30 - MAX_PAUSE  # it did wait for (nearly) the whole bound
    assert max(clock.pauses) == MAX_PAUSE
    assert len(fn.calls) == len(clock.pauses) + 1


def test_other_errors_are_not_retried():
    clock = Clock()
    fn = failing(1, IntegrityError("duplicate key"))
    with pytest.raises(IntegrityError):
        retry_db(fn, bound=30, sleep=clock.sleep, clock=clock)
    assert len(fn.calls) == 1 and clock.pauses == []


@pytest.mark.django_db
def test_nothing_is_retried_inside_a_transaction():
    """The transaction died with its connection; only its owner can start it again."""
    clock = Clock()
    fn = failing(1, OperationalError("gone"))
    with transaction.atomic(), pytest.raises(OperationalError):
        retry_db(fn, bound=30, sleep=clock.sleep, clock=clock)
    assert len(fn.calls) == 1


def test_the_bound_is_the_setting(settings, monkeypatch):
    settings.DB_RETRY_SECONDS = 1
    monkeypatch.setattr("workers.dbretry.time.sleep", lambda seconds: None)
    ticks = iter(range(1000))
    monkeypatch.setattr("workers.dbretry.time.monotonic", lambda: next(ticks) * 0.25)
    fn = failing(10_000, OperationalError("down"))
    with pytest.raises(OperationalError):
        with_db_retry(fn)
    assert 2 <= len(fn.calls) <= 5  # 1 s of fake time, a quarter second a tick


# -- idempotent under the token (a write retried after its commit landed) ------------


@pytest.mark.django_db
def test_a_claim_retried_with_its_token_is_the_same_claim():
    run = RunFactory(total_steps=10)
    first = run_claim(run_id=run.pk, worker="w", device="cpu", token="t" * 32)
    again = run_claim(run_id=run.pk, worker="w", device="cpu", token="t" * 32)
    assert first == again and first.token == "t" * 32 and first.attempt == 1
    run.refresh_from_db()
    assert run.attempt == 1 and run.status == RunStatus.RUNNING
    assert RunEvent.objects.filter(run=run, kind="claimed").count() == 1
    # Another delivery with another token is still refused while the attempt is live.
    assert run_claim(run_id=run.pk, worker="w2", device="cpu", token="u" * 32) is None


@pytest.mark.django_db
def test_heartbeat_checkpoint_and_metrics_repeat_harmlessly():
    run = RunFactory(total_steps=10)
    claim = run_claim(run_id=run.pk, worker="w", device="cpu")
    for _ in range(2):
        assert run_heartbeat(run_id=run.pk, token=claim.token, step=4)
        assert run_checkpointed(run_id=run.pk, token=claim.token, step=4)
        run_metrics_record(
            run_id=run.pk, token=claim.token, points=[("loss", s, 1.0 / s) for s in (1, 2, 3, 4)]
        )
    run.refresh_from_db()
    assert (run.step, run.checkpoint_step, run.attempt) == (4, 4, 1)
    assert [step for step, _ in run_metrics(run)["loss"]] == [1, 2, 3, 4]


def landed_then_lost(write):
    """``write`` that commits, then raises as if the connection died before its answer
    came back (once); later calls run ``write`` as it is."""
    calls: list[object] = []

    def fn():
        result = write()
        calls.append(result)
        if len(calls) == 1:
            raise OperationalError("server closed the connection unexpectedly")
        return result

    fn.calls = calls  # type: ignore[attr-defined]
    return fn


def attempt_of(run: Run, *, prepare_work) -> str:
    def prepare(attempt: Attempt) -> Job:
        reporter = RunReporter(
            run_id=attempt.run_id,
            token=attempt.token,
            total_steps=run.total_steps,
            executor=InlineExecutor(),
            send=lambda group, message: None,
        )
        return Job(reporter=reporter, work=lambda: prepare_work(attempt, reporter), wording=WORDING)

    return run_attempt(
        run_id=run.pk, worker="w", kind=RunKind.TRAIN, device_for=lambda _run: "cpu", prepare=prepare
    )


@pytest.fixture
def fast_retry(settings, monkeypatch):
    settings.HEARTBEAT_SECONDS = 3600  # the heartbeat thread starts and stops without beating
    settings.DB_RETRY_SECONDS = 5
    monkeypatch.setattr("workers.dbretry.FIRST_PAUSE", 0.01)


@pytest.mark.django_db(transaction=True)
def test_a_success_whose_commit_landed_is_not_lost_nor_written_twice(fast_retry):
    run = RunFactory(total_steps=3)
    stores: list = []

    def work(attempt, reporter):
        store = landed_then_lost(
            lambda: run_succeed(run_id=attempt.run_id, token=attempt.token, summary={"step": 3}, step=3)
        )
        stores.append(store)
        return Finished(3, store=store)

    assert attempt_of(run, prepare_work=work) == "succeeded"
    assert stores[0].calls == [True, False]  # the retry was refused by the token: nothing written twice
    run.refresh_from_db()
    assert (run.status, run.attempt, run.step) == (RunStatus.SUCCEEDED, 1, 3)
    assert RunEvent.objects.filter(run=run, kind="succeeded").count() == 1


def commit_lands_then_raises(monkeypatch):
    """Arm this thread's connection: its next commit reaches the database, then raises
    as if the connection died before the answer came back. Django's ``atomic`` then
    rolls back (a no-op) and drops the transaction's on-commit callbacks, as it does
    when a real reply is lost. Returns the function that arms it."""
    real = connection._commit
    armed: list[bool] = []

    def commit():
        real()
        if armed:
            armed.clear()
            raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(connection, "_commit", commit)
    return lambda: armed.append(True)


@pytest.mark.django_db(transaction=True)
def test_a_success_whose_reply_was_lost_still_registers_and_announces(fast_retry, monkeypatch):
    """The finish's on-commit work (meta-model, status event) is lost with the reply;
    the worker's retry finds the run finished by its attempt and sets it off again."""
    run = RunFactory(total_steps=3)
    registered: list[int] = []
    published: list[dict] = []
    monkeypatch.setattr("apps.experiments.services.execution._register_meta_model", registered.append)
    record = lambda messages: published.extend(vars(event) for _, event in messages)  # noqa: E731
    monkeypatch.setattr("apps.experiments.events.publish_many", record)
    arm = commit_lands_then_raises(monkeypatch)

    tries: list[bool] = []

    def work(attempt, reporter):
        def store():
            tries.append(False)
            if len(tries) == 1:
                arm()  # the first try's commit lands and its reply is lost
            tries[-1] = run_succeed(run_id=attempt.run_id, token=attempt.token, summary={"step": 3}, step=3)
            return tries[-1]

        return Finished(3, store=store)

    assert attempt_of(run, prepare_work=work) == "succeeded"
    assert tries == [False, False]  # the first raised after its commit; the retry was refused by the token
    run.refresh_from_db()
    assert (run.status, run.step) == (RunStatus.SUCCEEDED, 3)
    assert RunEvent.objects.filter(run=run, kind="succeeded").count() == 1
    assert registered == [run.pk]
    statuses = [m.get("status") for m in published if m.get("run_id") == run.pk]
    assert statuses.count("succeeded") == 2  # to run-<id> and team-<id>, once each


@pytest.mark.django_db(transaction=True)
def test_a_failure_whose_commit_landed_reads_failed(fast_retry, monkeypatch):
    run = RunFactory(total_steps=3)
    real = attempt_module.run_fail
    wrapped = {}

    def run_fail_landed_then_lost(**kwargs):
        fn = wrapped.setdefault("fn", landed_then_lost(lambda: real(**kwargs)))
        return fn()

    monkeypatch.setattr(attempt_module, "run_fail", run_fail_landed_then_lost)

    def work(attempt, reporter):
        raise RuntimeError("boom")

    assert attempt_of(run, prepare_work=work) == "failed"
    run.refresh_from_db()
    assert (run.status, run.attempt) == (RunStatus.FAILED, 1)
    assert RunEvent.objects.filter(run=run, kind="failed").count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_claim_whose_commit_landed_runs_once(fast_retry, monkeypatch):
    run = RunFactory(total_steps=3)
    wrapped = {}

    def claim_landed_then_lost(**kwargs):
        fn = wrapped.setdefault("fn", landed_then_lost(lambda: run_claim(**kwargs)))
        return fn()

    monkeypatch.setattr(attempt_module, "run_claim", claim_landed_then_lost)

    def work(attempt, reporter):
        return Finished(
            3, store=lambda: run_succeed(run_id=attempt.run_id, token=attempt.token, summary={}, step=3)
        )

    assert attempt_of(run, prepare_work=work) == "succeeded"
    first, second = wrapped["fn"].calls
    assert first == second and first.attempt == 1  # the retry found its own claim
    run.refresh_from_db()
    assert (run.status, run.attempt) == (RunStatus.SUCCEEDED, 1)
    assert RunEvent.objects.filter(run=run, kind="claimed").count() == 1


# -- the real fault: PostgreSQL ends the worker's connection -------------------------


def _terminate_own_connection() -> None:
    """End this thread's connection from the server side, as a PostgreSQL restart does
    (``terminating connection due to administrator command``), and wait until it is gone."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    with psycopg.connect(database_url(connection.settings_dict), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
        deadline = time.monotonic() + 10
        while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone():
            assert time.monotonic() < deadline, "the backend did not end"
            time.sleep(0.01)


@pytest.fixture
def postgresql():
    if connection.vendor != "postgresql":
        pytest.skip("a server-side end of the connection needs PostgreSQL")


@pytest.mark.django_db(transaction=True)
def test_a_write_on_a_terminated_connection_reconnects(postgresql, fast_retry):
    run = RunFactory(total_steps=10)
    claim = run_claim(run_id=run.pk, worker="w", device="cpu")
    _terminate_own_connection()
    with pytest.raises(OperationalError):  # the fault is real: without the retry, the write fails
        run_heartbeat(run_id=run.pk, token=claim.token, step=1)
    connection.close()
    run_heartbeat(run_id=run.pk, token=claim.token, step=1)
    _terminate_own_connection()
    assert with_db_retry(run_heartbeat, run_id=run.pk, token=claim.token, step=2)
    assert Run.objects.get(pk=run.pk).step == 2


@pytest.mark.django_db(transaction=True)
def test_an_attempt_whose_connection_dies_before_the_end_finishes_in_one_attempt(postgresql, fast_retry):
    """The issue's case: the last metrics and ``run_succeed`` meet a dead connection."""
    run = RunFactory(total_steps=20)

    def work(attempt, reporter):
        for step in range(1, 21):
            reporter.on_step(step, {"loss": 1.0 / step})
            if step == 10:
                _terminate_own_connection()  # the next metric INSERT meets it
        _terminate_own_connection()  # and so does run_succeed
        return Finished(
            20, store=lambda: run_succeed(run_id=attempt.run_id, token=attempt.token, summary={}, step=20)
        )

    assert attempt_of(run, prepare_work=work) == "succeeded"
    run.refresh_from_db()
    assert (run.status, run.attempt, run.step) == (RunStatus.SUCCEEDED, 1, 20)
    steps = [step for step, _ in run_metrics(run)["loss"]]
    assert steps == list(range(1, 21))
