"""Checkpoint retention with the real engine: a run that ends keeps its latest and its
best checkpoint only, and what is kept still loads and resumes."""

from __future__ import annotations

import pytest
import torch

from apps.experiments.models import RunStatus
from tests.factories import SMALL_CONFIG, RunFactory, metric_points
from workers.metalearn.checkpoint import load_checkpoint
from workers.metalearn.checkpoint_layout import latest_checkpoint, list_checkpoints
from workers.tasks import checkpoint_dir_for, train_run

torch.set_num_threads(1)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


@pytest.fixture(autouse=True)
def _fast_heartbeats(settings):
    settings.HEARTBEAT_SECONDS = 0.2


def test_a_finished_run_keeps_its_latest_and_best_checkpoints():
    run = RunFactory(config={**SMALL_CONFIG, "eval_interval": 2, "checkpoint_interval": 2})
    assert train_run.run(run.pk) == "succeeded"
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED
    val = metric_points(run, "val_loss")
    assert sorted(val) == list(range(2, 21, 2))  # one evaluation per checkpoint
    lowest = min(val.values())
    best_step = max(step for step, value in val.items() if value == lowest)  # the later on a tie
    root = checkpoint_dir_for(run.pk)
    kept = [step for step, _ in list_checkpoints(root)]
    assert kept == sorted({best_step, 20})
    assert not [p.name for p in root.iterdir() if p.name.startswith(".")]
    # The resume path and the downloads still find the last one.
    assert latest_checkpoint(root).name == "step-000020"
    assert load_checkpoint(root).step == 20
    assert load_checkpoint(root / f"step-{best_step:06d}").metrics["val_loss"] == pytest.approx(lowest)
