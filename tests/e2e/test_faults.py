"""Faults on the real stack: Redis, then PostgreSQL, restarted in the middle of a run.

The stack (daphne, one solo Celery worker, beat for the watchdog) runs against a
PostgreSQL and a Redis of the test's own (``private_servers.py``): the shared ones
serve everyone and are never restarted. A MAML run of a few thousand tiny
iterations is launched (``fault_probe.py launch``); once the worker reports a step
past ``FAULT_AT`` the server is restarted, and the run must still succeed in its
first attempt with every point stored exactly once (``fault_probe.py report``, which
reads the series through ``run_metrics``).

* Redis, without persistence: the broker's queues, the unacknowledged task and the
  channel layer's state are gone; the worker keeps training and reconnects.
* PostgreSQL, ``pg_ctl stop -m fast`` (every connection ended with "terminating
  connection due to administrator command"), held down ``PG_DOWN_SECONDS``, then
  started: every worker write reconnects and retries (``workers/dbretry.py``), so
  the outage costs no attempt, where before the task's last write raised on the
  dead connection, the run stayed ``running`` and the watchdog requeued it.

The test waits on state (the run's step and status in the database), never on time.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from benchmarks._stack import (
    ROOT,
    Proc,
    stack_env,
    start_beat,
    start_daphne,
    start_worker,
    stop_all,
    wait_http_ready,
    wait_worker_ready,
)
from tests.e2e.private_servers import PrivatePostgres, PrivateRedis, missing_binaries

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

#: A run long enough to be mid-run when the fault hits, on a busy 2-core machine too.
ITERATIONS = 2000
#: The step the worker must have reported before the restart.
FAULT_AT = 300
#: How long PostgreSQL stays down (under DB_RETRY_SECONDS, 30 s by default).
PG_DOWN_SECONDS = 3.0
#: The migrated database each test's database is copied from.
TEMPLATE = "metaweb_faults_template"


@dataclass
class FaultStack:
    """The stack on a private PostgreSQL and Redis, and the means to watch a run."""

    pg: PrivatePostgres
    redis: PrivateRedis
    database: str
    env: dict[str, str]
    log_dir: Path
    procs: list[Proc] = field(default_factory=list)

    @property
    def worker(self) -> Proc:
        return next(proc for proc in self.procs if proc.name == "worker")

    def probe(self, *args: str) -> dict:
        """``fault_probe.py`` with the stack's environment; its JSON answer."""
        done = subprocess.run(
            [sys.executable, "-m", "tests.e2e.fault_probe", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    def run_state(self, run_id: int) -> tuple[str, int] | None:
        """(status, step) of the run, or None while the database is unreachable."""
        import psycopg

        try:
            with psycopg.connect(self.pg.url(self.database), connect_timeout=2) as conn:
                row = conn.execute(
                    "SELECT status, step FROM experiments_run WHERE id = %s", [run_id]
                ).fetchone()
        except psycopg.OperationalError:
            return None
        return (row[0], row[1]) if row else None

    def wait_for(
        self, run_id: int, done: Callable[[str, int], bool], *, what: str, timeout: float
    ) -> tuple[str, int]:
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            state = self.run_state(run_id)
            if state is not None and done(*state):
                return state
            assert self.worker.alive(), f"the worker exited:\n{self.worker.tail()}"
            time.sleep(0.1)
        raise AssertionError(
            f"run {run_id}: not {what} in {timeout:.0f} s (last {state}):\n{self.worker.tail()}"
        )


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PrivatePostgres]:
    """One private cluster for the module, with a migrated template database that each
    test copies (``CREATE DATABASE ... TEMPLATE``: far quicker than migrating again)."""
    reason = missing_binaries(postgres=True, redis=True)
    if reason:
        pytest.skip(reason)
    pg = PrivatePostgres()
    try:
        pg.start()
        env = stack_env(
            database_url=pg.create_database(TEMPLATE), redis_url="redis://127.0.0.1:1/0", data_dir=pg.folder
        )
        migrate = subprocess.run(
            [sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, capture_output=True, text=True
        )
        assert migrate.returncode == 0, migrate.stderr[-3000:]
        yield pg
    finally:
        pg.stop()


@pytest.fixture
def fault_stack(private_postgres, e2e_artifacts, request) -> Iterator[FaultStack]:
    """daphne, a solo worker and beat on a fresh copy of the template database and on a
    private Redis (see the module docstring)."""
    pg, redis = private_postgres, PrivateRedis()
    database = f"metaweb_faults_{request.node.name[5:30]}"
    stack: FaultStack | None = None
    try:
        redis.start()
        env = stack_env(
            database_url=pg.create_database(database, template=TEMPLATE),
            redis_url=redis.url(0),
            data_dir=e2e_artifacts / "data",
            extra={
                "METAWEB_HEARTBEAT_SECONDS": "1",
                "METAWEB_HEARTBEAT_TIMEOUT_SECONDS": "5",
                "METAWEB_WATCHDOG_INTERVAL_SECONDS": "1",
            },
        )
        stack = FaultStack(pg=pg, redis=redis, database=database, env=env, log_dir=e2e_artifacts)
        daphne, base_url = start_daphne(env=env, log_dir=e2e_artifacts)
        stack.procs.append(daphne)
        stack.procs.append(start_worker(env=env, log_dir=e2e_artifacts))
        beat = start_beat(env=env, log_dir=e2e_artifacts, schedule_dir=e2e_artifacts / "beat")
        stack.procs.append(beat)
        wait_http_ready(daphne, base_url)
        wait_worker_ready(stack.worker)
        beat.wait_for_log(r"beat: Starting", timeout=60)
        yield stack
    finally:
        if stack is not None:
            stop_all(stack.procs)
        redis.stop()


def _launch_and_wait_mid_run(stack: FaultStack, slug: str) -> int:
    run_id = stack.probe("launch", slug, str(ITERATIONS))["run_id"]
    status, step = stack.wait_for(
        run_id,
        lambda status, step: status != "queued" and (status != "running" or step >= FAULT_AT),
        what=f"past step {FAULT_AT}",
        timeout=120,
    )
    assert status == "running" and step < ITERATIONS, f"the run was {status} at step {step}: make it longer"
    return run_id


def _assert_succeeded_once_with_every_point(stack: FaultStack, run_id: int) -> dict:
    stack.wait_for(
        run_id, lambda status, _step: status not in {"queued", "running"}, what="finished", timeout=150
    )
    report = stack.probe("report", str(run_id))
    assert report["status"] == "succeeded", report
    assert report["attempt"] == 1, report
    assert report["step"] == ITERATIONS
    assert report["events"].count("claimed") == 1 and "heartbeat_lost" not in report["events"], report[
        "events"
    ]
    loss = report["series"]["loss"]
    assert loss == {"points": ITERATIONS, "distinct_steps": ITERATIONS, "first": 1, "last": ITERATIONS}, loss
    for name, series in report["series"].items():  # grad_norm, val_*: no duplicates either
        assert series["points"] == series["distinct_steps"], (name, series)
    assert "raised unexpected" not in stack.worker.log(), stack.worker.tail()
    return report


def test_redis_restarted_mid_run_loses_nothing(fault_stack):
    run_id = _launch_and_wait_mid_run(fault_stack, "redis-fault")
    fault_stack.redis.restart()  # no persistence: queues, unacked task, channel groups gone
    state = fault_stack.run_state(run_id)
    assert state is not None and state[0] == "running" and state[1] < ITERATIONS, state

    _assert_succeeded_once_with_every_point(fault_stack, run_id)
    assert "Connection to broker lost" in fault_stack.worker.log(), "the worker never saw the restart"


def test_postgres_restarted_mid_run_costs_no_attempt(fault_stack):
    run_id = _launch_and_wait_mid_run(fault_stack, "pg-fault")
    fault_stack.pg.restart(down_for=PG_DOWN_SECONDS)
    state = fault_stack.run_state(run_id)
    assert state is not None and state[0] == "running" and state[1] < ITERATIONS, state

    _assert_succeeded_once_with_every_point(fault_stack, run_id)
    log = fault_stack.worker.log()
    assert "database connection lost" in log, "the worker never saw the restart"
    assert "terminating connection due to administrator command" in log or "server closed" in log, log[-3000:]
