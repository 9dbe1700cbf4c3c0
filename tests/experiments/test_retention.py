"""Checkpoint retention through the services: a run that ends (succeeded, failed,
cancelled, or failed by the attempt cap) keeps its latest and best checkpoints only,
after the commit; deletion never leaves the run's folder."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from apps.experiments.models import Run, RunStatus
from apps.experiments.services import (
    run_cancel,
    run_claim,
    run_fail,
    run_mark_cancelled,
    run_requeue_stale,
    run_succeed,
)
from apps.experiments.services.retention import run_checkpoints_retain
from apps.experiments.storage import run_checkpoint_dir, run_dir
from apps.runfiles.retention import run_files_delete
from apps.teams.models import Role
from tests.factories import MembershipFactory, RunFactory
from workers.metalearn import checkpoint_layout as layout

pytestmark = pytest.mark.django_db


def _checkpoints(run: Run, losses: dict[int, float]) -> Path:
    """Checkpoint folders as the engine lays them out (record and weights), newest last."""
    root = run_checkpoint_dir(run.pk)
    for step, val_loss in losses.items():
        folder = root / layout.step_dir_name(step)
        folder.mkdir(parents=True)
        (folder / layout.PARAMS_FILE).write_bytes(b"\0" * 100)
        (folder / layout.OPTIMIZER_FILE).write_bytes(b"\0" * 200)
        record = {"format": layout.FORMAT, "step": step, "metrics": {"val_loss": val_loss}}
        (folder / layout.META_FILE).write_text(layout.record_text(record))
    (root / layout.LATEST).write_text(layout.step_dir_name(max(losses)) + "\n")
    return root


def _kept(root: Path) -> list[int]:
    return [step for step, _ in layout.list_checkpoints(root)]


LOSSES = {10: 0.8, 20: 0.2, 30: 0.5, 40: 0.6}


@pytest.mark.parametrize("end", ["succeed", "fail", "cancel"])
def test_an_ended_run_keeps_its_latest_and_best(end, django_capture_on_commit_callbacks):
    run = RunFactory()
    claim = run_claim(run_id=run.pk, worker="w", device="cpu")
    root = _checkpoints(run, LOSSES)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        if end == "succeed":
            assert run_succeed(run_id=run.pk, token=claim.token, summary={}, step=40)
        elif end == "fail":
            assert run_fail(run_id=run.pk, token=claim.token, error="boom", step=40)
        else:
            assert run_mark_cancelled(run_id=run.pk, token=claim.token, step=40)
    assert _kept(root) == [10, 20, 30, 40]  # nothing deleted before the commit
    for callback in callbacks:
        callback()
    assert _kept(root) == [20, 40]
    assert layout.latest_checkpoint(root).name == "step-000040"


def test_a_requeued_run_cancelled_while_queued_is_trimmed(sent, django_capture_on_commit_callbacks):
    run = RunFactory()
    run_claim(run_id=run.pk, worker="w", device="cpu")
    root = _checkpoints(run, LOSSES)
    Run.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    with django_capture_on_commit_callbacks(execute=True):
        assert run_requeue_stale() == [run.pk]
    assert _kept(root) == [10, 20, 30, 40]  # queued again: it will resume, nothing goes
    member = MembershipFactory(team=run.team, role=Role.MEMBER).user
    with django_capture_on_commit_callbacks(execute=True):
        run_cancel(run=run, actor=member)
    assert _kept(root) == [20, 40]


def test_the_attempt_cap_failure_is_trimmed_too(settings, sent, django_capture_on_commit_callbacks):
    settings.RUN_MAX_ATTEMPTS = 1
    run = RunFactory()
    run_claim(run_id=run.pk, worker="w", device="cpu")
    root = _checkpoints(run, LOSSES)
    Run.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    with django_capture_on_commit_callbacks(execute=True):
        assert run_requeue_stale() == []
    assert Run.objects.get(pk=run.pk).status == RunStatus.FAILED
    assert _kept(root) == [20, 40]


def test_a_running_run_is_left_alone():
    run = RunFactory()
    run_claim(run_id=run.pk, worker="w", device="cpu")
    root = _checkpoints(run, LOSSES)
    assert run_checkpoints_retain(run_id=run.pk) == 0
    assert _kept(root) == [10, 20, 30, 40]


def test_retention_reports_the_bytes_freed_and_is_idempotent():
    run = RunFactory(status=RunStatus.SUCCEEDED)
    _checkpoints(run, LOSSES)
    record_bytes = sum(
        (run_checkpoint_dir(run.pk) / layout.step_dir_name(s) / layout.META_FILE).stat().st_size
        for s in (10, 30)
    )
    assert run_checkpoints_retain(run_id=run.pk) == 2 * 300 + record_bytes
    assert run_checkpoints_retain(run_id=run.pk) == 0


def test_deletion_stays_inside_the_run_folder(tmp_path):
    run = RunFactory()
    outside = tmp_path / "precious"
    outside.write_text("keep me")
    run_dir(run.pk).mkdir(parents=True)
    link = run_dir(run.pk) / "link"
    link.symlink_to(outside)
    other = RunFactory()
    other_file = run_dir(other.pk) / "x"
    other_file.parent.mkdir(parents=True)
    other_file.write_text("other run")
    assert run_files_delete(run_id=run.pk, paths=[outside, other_file, run_dir(run.pk), link]) == 0
    assert outside.read_text() == "keep me" and other_file.exists() and run_dir(run.pk).is_dir()
