"""Retention and storage accounting in the object store (moto_server): while a run
trains the store keeps the newest checkpoints and the best one (by the records'
val_loss); when it ends, only the latest and the best stay, and a resume still finds
the latest; a team's stored bytes are the sizes of its stored objects."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone

from apps.experiments.models import RunStatus
from apps.experiments.services.retention import (
    RETRY_AFTER,
    run_checkpoints_retain,
    run_checkpoints_retain_pending,
)
from apps.runfiles import checkpoints, keys, store
from apps.teams.models import Team
from apps.teams.quotas import quota_check_storage, team_storage_refresh
from benchmarks._s3 import list_keys
from benchmarks._stack import free_port
from tests.factories import AdaptedModelFactory, MetaModelFactory, RunFactory, TaskSetVersionFactory
from tests.runfiles.conftest import use_store
from workers.metalearn.checkpoint_layout import FORMAT, META_FILE, OPTIMIZER_FILE, PARAMS_FILE, step_dir_name
from workers.uploads import CheckpointUploader

pytestmark = pytest.mark.django_db

#: val_loss per step: the best is step 200, the latest step 500.
LOSSES = {100: 0.9, 200: 0.1, 300: 0.5, 400: 0.6, 500: 0.7}


def write_checkpoint(root: Path, step: int, val_loss: float | None) -> Path:
    folder = root / step_dir_name(step)
    folder.mkdir(parents=True)
    (folder / PARAMS_FILE).write_bytes(os.urandom(100) + f"params {step}".encode())
    (folder / OPTIMIZER_FILE).write_bytes(b"\0" * 200)
    metrics = {} if val_loss is None else {"val_loss": val_loss}
    (folder / META_FILE).write_text(json.dumps({"format": FORMAT, "step": step, "metrics": metrics}))
    (root / "latest").write_text(folder.name + "\n")
    return folder


def stored_steps(server, run_id: int) -> list[int]:
    prefix = f"{server.prefix}/{keys.run_checkpoints(run_id)}/"
    names = {key[len(prefix) :].split("/")[0] for key in list_keys(server, prefix)}
    return sorted(int(name[5:]) for name in names if name.startswith("step-"))


def test_the_store_keeps_the_best_while_the_run_trains(s3_store, tmp_path):
    scratch = tmp_path / "machine-a"
    uploader = CheckpointUploader(run_id=3, root=scratch)
    for step, loss in LOSSES.items():
        write_checkpoint(scratch, step, loss)
        uploader.submit(step, then=lambda step: None)
        uploader.wait()
    uploader.close()
    # The newest KEEP=3 and the best (200), which the newest-only rule would have dropped.
    assert stored_steps(s3_store, 3) == [200, 300, 400, 500]

    # A later attempt (no memory of the store) reads the records once and keeps the best too.
    write_checkpoint(tmp_path / "machine-b", 600, 0.8)
    kept = checkpoints.upload(3, tmp_path / "machine-b" / "step-000600")
    assert kept == {"step-000200": 0.1, "step-000400": 0.6, "step-000500": 0.7, "step-000600": 0.8}
    assert stored_steps(s3_store, 3) == [200, 400, 500, 600]


def test_an_ended_run_keeps_its_latest_and_best_in_the_store(s3_store, tmp_path, settings, monkeypatch):
    monkeypatch.setattr(store, "DELETE_BATCH", 2)  # the deletes go in several requests
    run = RunFactory(status=RunStatus.SUCCEEDED)
    settings.DATA_DIR = tmp_path / "machine-a"
    scratch = checkpoints.local_root(run.pk)
    for step, loss in LOSSES.items():
        checkpoints.upload(run.pk, write_checkpoint(scratch, step, loss), keep=10)
    # A step cut off before its record, left by a crash: never used, and dropped.
    store.put_bytes(keys.join(keys.run_checkpoints(run.pk), "step-000600", PARAMS_FILE), b"half")
    assert stored_steps(s3_store, run.pk) == [100, 200, 300, 400, 500, 600]
    sizes = store.list_sizes(keys.run_checkpoints(run.pk))
    gone = {step_dir_name(step) for step in (100, 300, 400, 600)}
    dropped = sum(size for key, size in sizes.items() if key.split("/")[0] in gone)

    settings.DATA_DIR = tmp_path / "web"  # the run ends on another machine: nothing on its disk
    assert run_checkpoints_retain(run_id=run.pk) == dropped
    assert stored_steps(s3_store, run.pk) == [200, 500]  # the best and the latest
    assert run_checkpoints_retain(run_id=run.pk) == 0  # a retry deletes nothing more
    # The pointer stayed: a resume on a fresh machine finds the latest, byte for byte.
    assert checkpoints.stored_latest(run.pk) == "step-000500"
    settings.DATA_DIR = tmp_path / "machine-c"
    assert checkpoints.fetch_newest(run.pk) == 500
    fetched = checkpoints.local_root(run.pk) / "step-000500" / PARAMS_FILE
    assert fetched.read_bytes() == (scratch / "step-000500" / PARAMS_FILE).read_bytes()
    # The machine that wrote the checkpoints trims its own scratch copy the same way.
    settings.DATA_DIR = tmp_path / "machine-a"
    run_checkpoints_retain(run_id=run.pk)
    assert sorted(p.name for p in scratch.iterdir()) == ["latest", "step-000200", "step-000500"]


def test_a_run_still_training_is_left_alone(s3_store, tmp_path):
    run = RunFactory(status=RunStatus.RUNNING)
    for step, loss in LOSSES.items():
        checkpoints.upload(run.pk, write_checkpoint(tmp_path, step, loss), keep=10)
    assert run_checkpoints_retain(run_id=run.pk) == 0
    assert stored_steps(s3_store, run.pk) == [100, 200, 300, 400, 500]


def test_prefix_bytes_sums_the_objects_below_a_folder_only(s3_store, monkeypatch):
    monkeypatch.setattr(store, "LIST_PAGE", 1)  # one object per page: the pages are all read
    store.put_bytes("runs/1/checkpoints/step-000001/params.safetensors", b"\0" * 1000)
    store.put_bytes("runs/1/checkpoints/latest", b"step-000001\n")
    store.put_bytes("runs/10/checkpoints/latest", b"x" * 50)  # a neighbour sharing the digits
    assert store.prefix_bytes("runs/1") == 1012
    assert store.list_sizes("runs/1/checkpoints/latest") == {"": 12}  # one object
    assert store.prefix_bytes("runs/2") == 0


def test_team_stored_bytes_are_the_sizes_of_its_stored_objects(s3_store, tmp_path, settings):
    run = RunFactory(status=RunStatus.SUCCEEDED)
    team = run.team
    settings.DATA_DIR = tmp_path / "machine-a"
    checkpoints.upload(run.pk, write_checkpoint(checkpoints.local_root(run.pk), 10, 0.5))
    run_bytes = store.prefix_bytes(keys.run(run.pk))
    assert run_bytes > 300
    meta = MetaModelFactory(experiment=run.experiment)
    store.put_bytes(keys.join(keys.meta_model(meta.pk), PARAMS_FILE), b"\0" * 4000)
    adapted = AdaptedModelFactory(meta_model=meta)
    store.put_bytes(keys.join(keys.adapted_model(adapted.pk), PARAMS_FILE), b"\0" * 500)
    version = TaskSetVersionFactory(taskset__team=team)
    version.data_file.name = default_storage.save("tasksets/t/data.csv", ContentFile(b"a,b\n" * 25))
    version.save(update_fields=["data_file"])
    other = RunFactory(status=RunStatus.SUCCEEDED)  # another team's
    store.put_bytes(keys.join(keys.run_checkpoints(other.pk), "latest"), b"\0" * 7000)

    settings.DATA_DIR = tmp_path / "web"  # measured from the store, not from a disk
    assert team_storage_refresh(team_id=team.pk) == run_bytes + 4000 + 500 + 100
    team.refresh_from_db()
    assert team.stored_bytes == run_bytes + 4600


def test_an_unreachable_store_trims_nothing_and_the_last_measure_stands(settings, monkeypatch, caplog):
    run = RunFactory(status=RunStatus.SUCCEEDED)
    Team.objects.filter(pk=run.team.pk).update(stored_bytes=1234, stored_bytes_at=None)
    use_store(settings, monkeypatch, f"s3://metaweb/x?endpoint=http://127.0.0.1:{free_port()}&timeout=1")
    assert run_checkpoints_retain(run_id=run.pk) == 0
    assert "checkpoints not trimmed (the watchdog retries): Cannot reach the object store" in caplog.text
    run.refresh_from_db()
    assert run.checkpoints_retained_at is None
    settings.TEAM_MAX_STORED_BYTES = 2000
    quota_check_storage(team_id=run.team.pk, adding=700, field="data_file")  # 1234 + 700 fits
    with pytest.raises(ValidationError) as error:
        quota_check_storage(team_id=run.team.pk, adding=800, field="data_file")
    assert "Your team stores 1.2 KB" in error.value.message_dict["data_file"][0]


def test_the_watchdog_trims_what_the_store_refused_at_the_end(s3_store, tmp_path, settings, monkeypatch):
    """A run that ended while the store was down keeps every checkpoint until a
    watchdog tick finds the store back; runs trimmed already are not touched again."""
    ended = timezone.now() - RETRY_AFTER * 2
    run = RunFactory(status=RunStatus.SUCCEEDED, finished_at=ended)
    done = RunFactory(status=RunStatus.SUCCEEDED, finished_at=ended, checkpoints_retained_at=ended)
    recent = RunFactory(status=RunStatus.FAILED, finished_at=timezone.now())  # its own trim goes first
    settings.DATA_DIR = tmp_path / "machine-a"
    for step, loss in LOSSES.items():
        for each in (run, done):
            checkpoints.upload(each.pk, write_checkpoint(tmp_path / f"m{each.pk}", step, loss), keep=10)

    use_store(settings, monkeypatch, f"s3://metaweb/x?endpoint=http://127.0.0.1:{free_port()}&timeout=1")
    assert run_checkpoints_retain(run_id=run.pk) == 0  # the end's own trim: refused
    assert run_checkpoints_retain_pending() == []  # a tick while the store is still down
    run.refresh_from_db()
    assert run.checkpoints_retained_at is None

    use_store(settings, monkeypatch, s3_store.url(s3_store.prefix, timeout=2))
    assert run_checkpoints_retain_pending() == [run.pk]
    assert stored_steps(s3_store, run.pk) == [200, 500]
    assert stored_steps(s3_store, done.pk) == [100, 200, 300, 400, 500]  # trimmed before: not again
    run.refresh_from_db()
    assert run.checkpoints_retained_at is not None
    assert run_checkpoints_retain_pending() == []
    recent.refresh_from_db()
    assert recent.checkpoints_retained_at is None
