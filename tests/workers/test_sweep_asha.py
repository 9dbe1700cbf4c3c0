"""ASHA on the real engine: a sweep run trained by ``train_run`` (tiny sinusoid MAML,
CPU) is stopped by its worker's stop poll once it reaches a rung where two other
runs of the sweep did better, and a run that leads there trains to the end; the
same for grid and bayes sweeps that ask to stop early (``early_stop``), and not for
one that does not. The other runs' values are stored beforehand, so the outcome
does not depend on the engine's numbers."""

from __future__ import annotations

import pytest
import torch

from apps.experiments.models import Run, RunEvent, RunStatus
from apps.experiments.services import sweep_create
from tests.factories import SMALL_CONFIG, ExperimentFactory, TaskSetVersionFactory, metric_points_add
from workers.tasks import train_run

torch.set_num_threads(1)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


@pytest.fixture(autouse=True)
def _fast(settings, monkeypatch, sent):
    settings.HEARTBEAT_SECONDS = 0.2
    monkeypatch.setattr("apps.experiments.services.execution._register_meta_model", lambda run_id: None)


@pytest.mark.parametrize(
    ("strategy", "early_stop", "others", "stopped"),
    [
        ("asha", False, 0.0, True),  # ASHA always stops early
        ("asha", False, 1e9, False),
        ("bayes", True, 0.0, True),
        ("grid", True, 0.0, True),
        ("bayes", False, 0.0, False),
    ],
)
def test_a_sweep_run_is_stopped_by_asha_at_a_rung(team_roles, strategy, early_stop, others, stopped):
    team, users = team_roles
    experiment = ExperimentFactory(team=team, created_by=users["member"])
    version = TaskSetVersionFactory(taskset__team=team, taskset__family="sinusoid", params={})
    config = {k: v for k, v in SMALL_CONFIG.items() if k != "family"}
    config.update(iterations=3000, eval_interval=10, checkpoint_interval=3000, meta_batch=2)
    sweep = sweep_create(
        experiment=experiment,
        actor=users["member"],
        taskset_version=version,
        base_config=config,
        dimensions={"seed": "1..3 step 1"},
        strategy=strategy,
        samples=3,
        metric="val_loss",
        max_concurrent=3,
        early_stop=early_stop,
    )
    assert sweep.early_stop is (early_stop or strategy == "asha")
    first, second, third = Run.objects.filter(sweep=sweep).order_by("pk")
    rungs = (10, 30, 90, 270, 810, 2430)
    for run in (first, second):  # they reached every rung before it
        Run.objects.filter(pk=run.pk).update(status=RunStatus.SUCCEEDED)
        metric_points_add(run, [("val_loss", s, others) for s in rungs])

    train_run.run(third.pk)

    third.refresh_from_db()
    reasons = list(
        RunEvent.objects.filter(run=third, kind="cancel_requested").values_list("message", flat=True)
    )
    if stopped:
        assert third.status == RunStatus.CANCELLED and third.step < 3000
        assert len(reasons) == 1 and reasons[0].startswith("Stopped by ASHA at rung"), reasons
    else:
        assert third.status == RunStatus.SUCCEEDED and third.step == 3000 and not reasons
