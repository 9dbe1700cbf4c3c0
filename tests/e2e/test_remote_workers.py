"""Two worker "machines" on one box, sharing nothing but the object store.

daphne and two Celery workers, each with a ``METAWEB_DATA_DIR`` of its own, and an
S3-protocol server (moto_server) as the only shared place for run files. The worker
running a run is SIGKILLed; the watchdog requeues the run and the other worker
resumes it from the stored checkpoint and finishes it, with every metric point
exactly once. The web then serves that run's checkpoint and its registered
meta-model, neither of which its own disk ever held.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from benchmarks._s3 import S3Server, list_keys, start_s3_server
from benchmarks._stack import (
    Proc,
    claim_redis_db,
    database_url,
    stack_env,
    start_beat,
    start_daphne,
    start_worker,
    stop_all,
    wait_http_ready,
    wait_worker_ready,
)
from tests.e2e.conftest import E2E_REDIS_DBS, HEARTBEAT_TIMEOUT_SECONDS
from tests.e2e.ui import expect_status, launch_run, log_in
from tests.runfiles.conftest import use_store

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


@dataclass
class Machines:
    base_url: str
    env: dict[str, str]
    log_dir: Path
    root: Path
    s3: S3Server
    prefix: str
    procs: list[Proc] = field(default_factory=list)

    def data_dir(self, name: str) -> Path:
        return self.root / name

    def start_worker(self, name: str) -> Proc:
        """A worker on "machine" ``name``: its own data folder, the shared store."""
        env = {**self.env, "METAWEB_DATA_DIR": str(self.data_dir(name))}
        worker = start_worker(env=env, log_dir=self.log_dir, name=f"worker-{name}")
        self.procs.append(worker)
        wait_worker_ready(worker)
        return worker


@pytest.fixture
def machines(transactional_db, settings, monkeypatch, e2e_artifacts) -> Iterator[Machines]:
    from django.db import connection

    redis_db = claim_redis_db(E2E_REDIS_DBS)
    s3 = start_s3_server(log_dir=e2e_artifacts)
    root = Path(settings.DATA_DIR)
    prefix = "e2e"
    env = stack_env(
        database_url=database_url(connection.settings_dict),
        redis_url=redis_db.url,
        data_dir=root / "web",
        extra={
            "METAWEB_HEARTBEAT_SECONDS": "1",
            "METAWEB_HEARTBEAT_TIMEOUT_SECONDS": str(HEARTBEAT_TIMEOUT_SECONDS),
            "METAWEB_WATCHDOG_INTERVAL_SECONDS": "1",
            **s3.env(prefix),
        },
    )
    settings.HEARTBEAT_TIMEOUT_SECONDS = HEARTBEAT_TIMEOUT_SECONDS
    use_store(settings, monkeypatch, s3.url(prefix))  # the test reads the same store
    daphne, base_url = start_daphne(env=env, log_dir=e2e_artifacts, app="tests.e2e.asgi_static:application")
    stack = Machines(base_url, env, e2e_artifacts, root, s3, prefix, procs=[daphne])
    try:
        wait_http_ready(daphne, base_url)
        beat = start_beat(env=env, log_dir=e2e_artifacts, schedule_dir=root / "beat")
        stack.procs.append(beat)
        beat.wait_for_log(r"beat: Starting", timeout=60)
        yield stack
    finally:
        stop_all(stack.procs)
        s3.stop()
        redis_db.release()


def _wait_checkpoint(run_id: int, *, timeout: float = 90) -> int:
    from apps.experiments.models import Run

    deadline = time.monotonic() + timeout
    while True:
        run = Run.objects.get(pk=run_id)
        if run.status == "running" and (run.checkpoint_step or 0) > 0:
            return run.checkpoint_step
        assert run.status in {"queued", "running"}, (run.status, run.error)
        assert time.monotonic() < deadline, f"no checkpoint in {timeout} s: {run.status} step {run.step}"
        time.sleep(0.1)


def _files(folder: Path, pattern: str = "*.safetensors") -> list[Path]:
    return sorted(folder.rglob(pattern)) if folder.exists() else []


def test_a_run_killed_on_one_machine_finishes_on_another(machines, e2e_page, e2e_user):
    from apps.experiments.models import Run
    from apps.registry.models import MetaModel
    from apps.runfiles import checkpoints, store
    from tests.factories import ExperimentFactory, TaskSetVersionFactory, metric_rows

    page, shots = e2e_page, e2e_page.shots
    user, team = e2e_user
    version = TaskSetVersionFactory(
        taskset__team=team, taskset__created_by=user, taskset__name="Sines", number=1
    )
    ExperimentFactory(team=team, created_by=user, name="Two machines")
    machine_a = machines.start_worker("a")

    iterations = 2000
    log_in(page, machines.base_url, user.username)
    run_id = launch_run(
        page,
        machines.base_url,
        team.slug,
        experiment="Two machines",
        taskset=version.taskset.name,
        fields={"algorithm": "maml", "meta_batch": 4, "iterations": iterations, "eval_interval": 1000,
                "queue": "cpu", "device": "cpu"},
        advanced={"eval_tasks": 20, "checkpoint_interval": 200},
    )  # fmt: skip
    checkpoint_step = _wait_checkpoint(run_id)
    machine_a.kill()  # SIGKILL: no cleanup, no acknowledgement
    killed = Run.objects.get(pk=run_id)
    assert killed.status == "running" and killed.attempt == 1 and killed.step < iterations
    assert checkpoints.stored_latest(run_id) is not None  # the store holds what the run records
    shots.take(page, "machine-a-killed")

    machine_b = machines.data_dir("b")
    assert not machine_b.exists()  # nothing of the run on machine b's disk
    machines.start_worker("b")
    expect_status(page, "succeeded", timeout_s=150)
    shots.take(page, "finished-on-machine-b")

    run = Run.objects.get(pk=run_id)
    assert run.status == "succeeded" and run.attempt == 2 and run.step == iterations, (run.status, run.error)
    assert run.worker.startswith("worker-b@")
    claimed = run.events.filter(kind="claimed", attempt=2).get()
    resumed_from = int(re.search(r"checkpoint at step (\d+)", claimed.message).group(1))
    assert resumed_from >= checkpoint_step > 0, (claimed.message, checkpoint_step)
    rows = metric_rows(run_id)
    assert len(rows) == len(set(rows))  # every point once
    loss_steps = sorted(step for name, step in rows if name == "loss")
    assert loss_steps == list(range(1, iterations + 1))
    # Machine b started from the stored checkpoint, downloaded into its own folder.
    assert (checkpoints.local_root(run_id).relative_to(machines.root)) == Path(f"runs/{run_id}/checkpoints")
    assert _files(machine_b / "runs" / str(run_id))

    # The web serves the run's checkpoint and its meta-model, straight from the store.
    web = machines.data_dir("web")
    checkpoint = page.request.get(f"{machines.base_url}/runs/{run_id}/checkpoint.safetensors")
    assert checkpoint.status == 200
    assert checkpoint.body() == store.read_bytes(checkpoints.stored_weights_key(run_id))
    assert f"step-{iterations:06d}" in checkpoint.headers["content-disposition"]
    meta_model = MetaModel.objects.get(training_run_id=run_id)
    weights = page.request.get(f"{machines.base_url}/models/{meta_model.pk}/params.safetensors")
    assert weights.status == 200
    assert hashlib.sha256(weights.body()).hexdigest() == meta_model.weights_sha256
    stored = list_keys(machines.s3, f"{machines.prefix}/registry/meta/{meta_model.pk}/")
    assert [key.rsplit("/", 1)[1] for key in stored] == ["checkpoint.json", "params.safetensors"]
    assert _files(web) == [] and _files(web, "checkpoint.json") == []  # the web's disk never held them
    page.goto(f"{machines.base_url}/models/{meta_model.pk}/")
    shots.take(page, "meta-model-page")
