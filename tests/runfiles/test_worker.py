"""train_run with the object store (moto_server) and the real engine on the CPU: a
run resumes on another machine from the stored checkpoint, bit for bit; the
checkpoint step moves only once the upload is done; an unreachable store interrupts
the attempt for the watchdog. "Machines" are data folders: each attempt gets its own.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import torch
from django.utils import timezone
from safetensors.torch import load as load_tensors

from apps.experiments.models import Run, RunStatus
from apps.runfiles import checkpoints, store
from benchmarks._stack import free_port
from tests.factories import RunFactory, metric_points
from tests.runfiles.conftest import use_store
from workers.reporting import InlineExecutor, RunReporter
from workers.tasks import execute_run, watchdog
from workers.uploads import CheckpointUploader

torch.set_num_threads(1)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]


@pytest.fixture(autouse=True)
def _fast_heartbeats(settings):
    settings.HEARTBEAT_SECONDS = 0.2


class WorkerDied(BaseException):
    """Stands for the worker process being killed: nothing in the task catches it."""


def _stored_params(run_id: int) -> dict[str, torch.Tensor]:
    return load_tensors(store.read_bytes(checkpoints.stored_weights_key(run_id)))


def _losses(run: Run) -> dict[int, float]:
    return metric_points(run, "loss")


def test_a_run_resumes_on_another_machine_bit_for_bit(s3_store, settings, tmp_path, sent):
    from workers.metalearn import meta_train

    straight = RunFactory()
    settings.DATA_DIR = tmp_path / "machine-c"
    assert execute_run(run_id=straight.pk, worker="c", meta_train=meta_train) == "succeeded"

    run = RunFactory()

    def dies_at_step_15(config, family, reporter, checkpoint_dir):
        on_step = reporter.on_step

        def on_step_then_die(step, metrics):
            on_step(step, metrics)
            if step == 15:
                raise WorkerDied

        reporter.on_step = on_step_then_die
        return meta_train(config, family, reporter, checkpoint_dir)

    settings.DATA_DIR = tmp_path / "machine-a"
    with pytest.raises(WorkerDied):
        execute_run(run_id=run.pk, worker="a", meta_train=dies_at_step_15)
    run.refresh_from_db()
    assert run.checkpoint_step == 10 and checkpoints.stored_latest(run.pk) == "step-000010"

    Run.objects.filter(pk=run.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=settings.HEARTBEAT_TIMEOUT_SECONDS + 1)
    )
    assert watchdog.run() == [run.pk]
    settings.DATA_DIR = tmp_path / "machine-b"  # nothing of the run on this disk
    assert not (tmp_path / "machine-b").exists()
    assert execute_run(run_id=run.pk, worker="b", meta_train=meta_train) == "succeeded"

    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED and run.checkpoint_step == 20 and run.attempt == 2
    assert sorted(_losses(run)) == list(range(1, 21))  # every point once
    assert "resuming from the checkpoint at step 10" in run.events.filter(kind="claimed").last().message
    # Resumed from the store, bit for bit: the same losses and weights as the straight run.
    assert _losses(run) == _losses(straight)
    mine, theirs = _stored_params(run.pk), _stored_params(straight.pk)
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert sorted(p.name for p in checkpoints.local_root(run.pk).iterdir())[0] == "latest"


def test_checkpoint_step_moves_only_after_the_upload(s3_store, tmp_path):
    run = RunFactory(status=RunStatus.RUNNING, attempt=1, attempt_token="tok", heartbeat_at=timezone.now())
    gate = threading.Event()
    started = threading.Event()

    def slow_upload(run_id, folder):
        started.set()
        assert gate.wait(30)
        checkpoints.upload(run_id, folder)

    root = checkpoints.local_root(run.pk)
    (root / "step-000010").mkdir(parents=True)
    for name in ("params.safetensors", "optimizer.safetensors", "checkpoint.json"):
        (root / "step-000010" / name).write_bytes(b"{}")
    uploader = CheckpointUploader(run_id=run.pk, root=root, store=slow_upload)
    reporter = RunReporter(run_id=run.pk, token="tok", total_steps=20, executor=InlineExecutor())
    reporter.uploader = uploader
    reporter.on_checkpoint(10)  # returns at once: the upload runs on the uploader's thread
    assert started.wait(30)
    assert Run.objects.get(pk=run.pk).checkpoint_step is None and reporter.checkpoint_step is None
    assert checkpoints.stored_latest(run.pk) is None
    gate.set()
    uploader.wait()
    assert Run.objects.get(pk=run.pk).checkpoint_step == 10
    assert checkpoints.stored_latest(run.pk) == "step-000010"
    reporter.close()


def test_an_unreachable_store_interrupts_the_attempt_for_the_watchdog(settings, monkeypatch, sent):
    port = free_port()
    use_store(settings, monkeypatch, f"s3://metaweb/runs?endpoint=http://127.0.0.1:{port}&timeout=1")
    run = RunFactory()
    assert execute_run(run_id=run.pk, worker="w") == "interrupted"
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING and run.heartbeat_at is None and run.error == ""
    event = run.events.get(kind="interrupted")
    assert f"the object store s3://metaweb/runs at http://127.0.0.1:{port}" in event.message
    assert "Traceback" not in event.message and "requeued" in event.message
    assert watchdog.run() == [run.pk]  # retried as for a lost worker
    assert sent == [("workers.tasks.train_run", [run.pk], "cpu")]
