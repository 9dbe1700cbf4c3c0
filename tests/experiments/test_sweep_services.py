"""Sweep services on both databases: validation (field errors, nothing queued), the
concurrency limit, stopping, and the ASHA stop through run_cancel."""

from __future__ import annotations

import math

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.http import Http404
from django.test.utils import CaptureQueriesContext

from apps.experiments import services
from apps.experiments.models import Run, RunEvent, RunStatus, Sweep, SweepStatus
from tests.factories import SMALL_CONFIG, ExperimentFactory, TaskSetVersionFactory, metric_points_add

pytestmark = pytest.mark.django_db


@pytest.fixture
def alpha(team_roles):
    team, users = team_roles
    experiment = ExperimentFactory(team=team, created_by=users["member"], name="Sine sweep")
    version = TaskSetVersionFactory(
        taskset__team=team, taskset__family="sinusoid", taskset__created_by=users["member"], params={}
    )
    return users, experiment, version


def base(**changes):
    config = {k: v for k, v in SMALL_CONFIG.items() if k != "family"}
    config.update(changes)
    return config


def create(alpha, **kwargs):
    users, experiment, version = alpha
    options = {
        "experiment": experiment,
        "actor": users["member"],
        "taskset_version": version,
        "base_config": base(),
        "dimensions": {"inner_lr": "0.01, 0.02", "inner_steps": "1..3 step 1"},
        "strategy": "grid",
        "metric": "val_loss",
        "max_concurrent": 2,
    }
    options.update(kwargs)
    return services.sweep_create(**options)


def test_grid_sweep_queues_max_concurrent_runs_and_keeps_the_rest(
    alpha, sent, settings, django_capture_on_commit_callbacks
):
    settings.RUN_DISPATCH_SLOTS = {"cpu": 10, "gpu": 10}  # room for all: fair dispatch is tested apart
    with django_capture_on_commit_callbacks(execute=True):
        sweep = create(alpha)
    assert len(sweep.configs) == 6 and sweep.next_index == 2
    runs = list(Run.objects.filter(sweep=sweep).order_by("pk"))
    assert [r.config["inner_lr"] for r in runs] == [0.01, 0.01]
    assert [r.config["inner_steps"] for r in runs] == [1, 2]
    assert [run_id for run_id, _ in sent.runs()] == [r.pk for r in runs]
    assert "in sweep" in RunEvent.objects.filter(run=runs[0], kind="queued").get().message


def test_random_sweep_is_seeded(alpha, sent):
    dims = {"meta_lr": "0.0001..0.01 log"}
    one = create(alpha, strategy="random", samples=5, seed=3, dimensions=dims)
    two = create(alpha, strategy="random", samples=5, seed=3, dimensions=dims)
    assert [c["meta_lr"] for c in one.configs] == [c["meta_lr"] for c in two.configs]
    assert len({c["meta_lr"] for c in one.configs}) == 5


@pytest.mark.parametrize(
    ("kwargs", "field", "message"),
    [
        ({"dimensions": {"inner_steps": "5..1 step 1"}}, "dim_inner_steps", "empty"),
        ({"dimensions": {"meta_lr": "0.001..0.1 log"}}, "dim_meta_lr", "grid needs a list"),
        ({"dimensions": {"seed": "1..300 step 1"}}, "sweep_strategy", "300 runs; the limit is 200"),
        (
            {"strategy": "random", "samples": 201, "dimensions": {"seed": "1,2"}},
            "sweep_samples",
            "between 1 and 200",
        ),
        ({"dimensions": {"ways": "2,3"}}, "dim_ways", "ignores ways"),
        ({"dimensions": {"mnn_hidden": "8,16"}}, "dim_mnn_hidden", "ignores mnn_hidden"),
        ({"dimensions": {"hidden": "8,16"}}, "dim_hidden", "cannot be swept"),
        ({"dimensions": {}}, "sweep_strategy", "at least one setting"),
        ({"dimensions": {"inner_lr": "0.01, -1"}}, "dim_inner_lr", "With inner_lr=-1"),
        ({"metric": "val_f1"}, "sweep_metric", "Choose one of"),
        ({"max_concurrent": 0}, "sweep_max_concurrent", "between 1"),
    ],
)
def test_bad_sweeps_are_refused_on_the_field_and_nothing_is_queued(alpha, sent, kwargs, field, message):
    with pytest.raises(ValidationError) as exc:
        create(alpha, **kwargs)
    assert message in " ".join(exc.value.message_dict[field])
    assert not Sweep.objects.exists() and not Run.objects.exists() and sent == []


def test_protonet_ignores_the_inner_loop(alpha, sent):
    with pytest.raises(ValidationError) as exc:
        create(alpha, base_config=base(algorithm="protonet"), dimensions={"inner_steps": "1,2"})
    assert "ignores inner_steps" in exc.value.message_dict["dim_inner_steps"][0]


def test_viewers_and_outsiders_cannot_sweep(alpha, sent):
    users, _, _ = alpha
    with pytest.raises(PermissionDenied):
        create(alpha, actor=users["viewer"])
    with pytest.raises(Http404):
        create(alpha, actor=users["outsider"])
    assert not Sweep.objects.exists()


def finish(run: Run, status: str = RunStatus.SUCCEEDED) -> None:
    """A worker's end of a run, through the execution services."""
    claim = services.run_claim(run_id=run.pk, worker="w", device="cpu")
    if status == RunStatus.SUCCEEDED:
        assert services.run_succeed(run_id=run.pk, token=claim.token, summary={})
    else:
        assert services.run_fail(run_id=run.pk, token=claim.token, error="boom")


def test_an_ending_run_queues_the_next_until_the_sweep_is_done(
    alpha, sent, django_capture_on_commit_callbacks, monkeypatch
):
    monkeypatch.setattr("apps.experiments.services.execution._register_meta_model", lambda run_id: None)
    with django_capture_on_commit_callbacks(execute=True):
        sweep = create(alpha, dimensions={"inner_steps": "1..3 step 1"}, max_concurrent=2)
    first, second = Run.objects.filter(sweep=sweep).order_by("pk")
    with django_capture_on_commit_callbacks(execute=True):
        finish(first)
    sweep.refresh_from_db()
    assert sweep.next_index == 3 and Run.objects.filter(sweep=sweep, status=RunStatus.QUEUED).count() == 2
    with django_capture_on_commit_callbacks(execute=True):
        finish(second, RunStatus.FAILED)
        services.run_cancel(run=Run.objects.filter(sweep=sweep).latest("pk"), actor=alpha[0]["member"])
    sweep.refresh_from_db()
    assert sweep.status == SweepStatus.DONE and Run.objects.filter(sweep=sweep).count() == 3


def test_stop_sweep_cancels_queued_and_running_runs_and_launches_no_more(
    alpha, sent, django_capture_on_commit_callbacks
):
    users, _, _ = alpha
    with django_capture_on_commit_callbacks(execute=True):
        sweep = create(alpha)
    running, queued = Run.objects.filter(sweep=sweep).order_by("pk")
    services.run_claim(run_id=running.pk, worker="w", device="cpu")
    with pytest.raises(PermissionDenied):
        services.sweep_stop(sweep=sweep, actor=users["viewer"])
    with django_capture_on_commit_callbacks(execute=True):
        services.sweep_stop(sweep=sweep, actor=users["member"])
    running.refresh_from_db()
    queued.refresh_from_db()
    assert queued.status == RunStatus.CANCELLED
    assert running.status == RunStatus.RUNNING and running.cancel_requested_at is not None
    assert Run.objects.filter(sweep=sweep).count() == 2
    sweep.refresh_from_db()
    assert sweep.status == SweepStatus.STOPPED and "member" in sweep.message
    with pytest.raises(ValidationError):
        services.sweep_stop(sweep=sweep, actor=users["member"])


def record(run, claim, name, step, value):
    """A worker stores an evaluation, then polls whether to stop (the reporter's order)."""
    services.run_metrics_record(run_id=run.pk, token=claim.token, points=[(name, step, value)])
    return services.run_stop_reason(run_id=run.pk, token=claim.token)


def test_asha_stops_a_run_outside_the_top_third_at_a_rung(alpha, sent):
    sweep = create(
        alpha, strategy="asha", samples=4, dimensions={"inner_lr": "0.01,0.02,0.03"}, max_concurrent=4
    )
    runs = list(Run.objects.filter(sweep=sweep).order_by("pk"))
    claims = [services.run_claim(run_id=r.pk, worker="w", device="cpu") for r in runs]
    # Rung 1 is the first eval (step 10 of 20); loss: lower is better. 0.5 (alone)
    # and 0.2 (best of two) go on; 0.9 is third of three.
    assert [
        record(run, claim, "val_loss", 10, v) for run, claim, v in zip(runs, claims, (0.5, 0.2, 0.9))
    ] == [
        None,
        None,
        "cancel",
    ]
    stopped = Run.objects.filter(sweep=sweep, cancel_requested_at__isnull=False)
    assert list(stopped.values_list("pk", flat=True)) == [runs[2].pk]
    event = RunEvent.objects.filter(run=runs[2], kind="cancel_requested").get()
    assert event.message.startswith("Stopped by ASHA at rung 1 (step 10)")
    # Not at a rung, or another metric: nothing happens.
    assert record(runs[3], claims[3], "val_loss", 11, 9.0) is None
    assert record(runs[3], claims[3], "loss", 10, 9.0) is None
    # The best of four goes on; a later poll of run 0 (rung 1 is still the highest it
    # reached, though it evaluated since; now second of four: 4 // 3 = 1 goes on) stops it.
    assert record(runs[3], claims[3], "val_loss", 10, 0.1) is None
    services.run_metrics_record(run_id=runs[0].pk, token=claims[0].token, points=[("val_loss", 15, 0.3)])
    assert services.run_stop_reason(run_id=runs[0].pk, token=claims[0].token) == "cancel"
    assert stopped.count() == 2


def test_asha_costs_non_sweep_runs_nothing(alpha, sent, django_assert_num_queries):
    users, experiment, version = alpha
    run = Run.objects.create(
        experiment=experiment,
        team=experiment.team,
        algorithm="maml",
        taskset_version=version,
        config=base(),
        launched_by=users["member"],
        total_steps=20,
    )
    claim = services.run_claim(run_id=run.pk, worker="w", device="cpu")
    with CaptureQueriesContext(connection) as stored:
        services.run_metrics_record(run_id=run.pk, token=claim.token, points=[("val_loss", 10, 1.0)])
    # Only the metric store's own statements: nothing reads the run or its sweep.
    assert stored.captured_queries and not any(
        "experiments_sweep" in q["sql"] or "experiments_run" in q["sql"].replace("experiments_runevent", "")
        for q in stored.captured_queries
    )
    with django_assert_num_queries(1):
        assert services.run_stop_reason(run_id=run.pk, token=claim.token) is None


def test_asha_ignores_runs_outside_asha_sweeps(alpha, sent):
    sweep = create(alpha, strategy="random", samples=2, dimensions={"inner_lr": "0.01,0.02"})
    runs = list(Run.objects.filter(sweep=sweep))
    for run, value in zip(runs, (0.1, 0.9), strict=True):
        claim = services.run_claim(run_id=run.pk, worker="w", device="cpu")
        assert record(run, claim, "val_loss", 10, value) is None
    assert not Run.objects.filter(cancel_requested_at__isnull=False).exists()


def test_train_tasks_is_a_sweep_dimension(alpha, sent, django_capture_on_commit_callbacks):
    """How many tasks it takes: a grid over the size of the training pool."""
    with django_capture_on_commit_callbacks(execute=True):
        sweep = create(alpha, dimensions={"train_tasks": "10, 100, 1000"}, max_concurrent=3)
    assert [c["train_tasks"] for c in sweep.configs] == [10, 100, 1000]
    runs = Run.objects.filter(sweep=sweep).order_by("pk")
    assert [r.config["train_tasks"] for r in runs] == [10, 100, 1000]
    with pytest.raises(ValidationError) as info:
        create(alpha, dimensions={"train_tasks": "0, 10"})
    assert "dim_train_tasks" in info.value.message_dict


def test_mnn_condition_is_a_sweep_dimension_that_brings_the_set_encoder(alpha, sent):
    """Sweeping what an MNN reads: the set encoder's width applies to the support runs."""
    sweep = create(
        alpha,
        base_config=base(algorithm="mnn"),
        dimensions={"mnn_condition": "description, support", "mnn_embed_dim": "8, 16"},
    )
    assert sorted((c["mnn_condition"], c["mnn_embed_dim"]) for c in sweep.configs) == [
        ("description", 8), ("description", 16), ("support", 8), ("support", 16),
    ]  # fmt: skip
    with pytest.raises(ValidationError) as info:
        create(alpha, base_config=base(algorithm="mnn"), dimensions={"mnn_embed_dim": "8, 16"})
    assert "ignores mnn_embed_dim" in info.value.message_dict["dim_mnn_embed_dim"][0]


def test_a_bayes_sweep_proposes_each_config_past_its_random_start_from_the_results(
    alpha, sent, settings, django_capture_on_commit_callbacks, monkeypatch
):
    """5 random configs are stored at once; each later one is proposed (TPE) from the
    succeeded runs' val_loss when its run is due, stored and validated, until
    ``samples`` runs have been made."""
    settings.RUN_DISPATCH_SLOTS = {"cpu": 10, "gpu": 10}
    monkeypatch.setattr("apps.experiments.services.execution._register_meta_model", lambda run_id: None)
    with django_capture_on_commit_callbacks(execute=True):
        sweep = create(
            alpha,
            strategy="bayes",
            samples=7,
            seed=4,
            dimensions={"inner_lr": "1e-4..1e-1 log"},
            max_concurrent=2,
        )
    assert (len(sweep.configs), sweep.planned, sweep.next_index) == (5, 7, 2)
    while True:
        queued = list(Run.objects.filter(sweep=sweep, status=RunStatus.QUEUED).order_by("pk"))
        if not queued:
            break
        run = queued[0]
        metric_points_add(run, [("val_loss", 10, abs(math.log10(run.config["inner_lr"]) + 2))])
        with django_capture_on_commit_callbacks(execute=True):
            finish(run)
    sweep.refresh_from_db()
    runs = list(Run.objects.filter(sweep=sweep).order_by("pk"))
    assert sweep.status == SweepStatus.DONE and len(runs) == 7 and len(sweep.configs) == 7
    assert [r.config["inner_lr"] for r in runs] == [c["inner_lr"] for c in sweep.configs]
    assert all(1e-4 <= r.config["inner_lr"] <= 1e-1 for r in runs)
    assert len({r.config["inner_lr"] for r in runs}) == 7


def test_a_bayes_proposal_the_engine_refuses_stops_the_sweep_with_the_reason(
    alpha, sent, django_capture_on_commit_callbacks, monkeypatch
):
    monkeypatch.setattr("apps.experiments.services.execution._register_meta_model", lambda run_id: None)
    with django_capture_on_commit_callbacks(execute=True):
        sweep = create(
            alpha, strategy="bayes", samples=2, dimensions={"inner_lr": "1e-4..1e-1 log"}, max_concurrent=1
        )
    # Beyond its start: as if more runs had been asked, and the proposals broke a rule.
    Sweep.objects.filter(pk=sweep.pk).update(planned=3, configs=sweep.configs[:1])
    monkeypatch.setattr("apps.experiments.services.sweeps.bayes_point", lambda *a, **k: {"inner_lr": -1.0})
    with django_capture_on_commit_callbacks(execute=True):
        finish(Run.objects.get(sweep=sweep))
    sweep.refresh_from_db()
    assert sweep.status == SweepStatus.STOPPED
    assert sweep.message.startswith("Stopped: its next run could not be launched (With inner_lr=-1.0: ")


def test_a_bayes_proposal_knows_the_runs_stopped_early(
    alpha, sent, django_capture_on_commit_callbacks, monkeypatch
):
    """A run cancelled (by ASHA's rungs, or a person) with a value of the metric reaches
    TPE as a pruned trial: its point, the step it reached and its value there."""
    monkeypatch.setattr("apps.experiments.services.execution._register_meta_model", lambda run_id: None)
    with django_capture_on_commit_callbacks(execute=True):
        sweep = create(
            alpha,
            strategy="bayes",
            samples=2,
            dimensions={"inner_lr": "1e-4..1e-1 log"},
            max_concurrent=1,
            early_stop=True,
            base_config=base(iterations=100, eval_interval=10),
        )
    assert sweep.early_stop
    Sweep.objects.filter(pk=sweep.pk).update(planned=3, configs=sweep.configs[:1])
    first = Run.objects.get(sweep=sweep)
    metric_points_add(first, [("val_loss", 10, 4.0), ("val_loss", 30, 3.5)])
    seen = {}

    def propose(dimensions, **kwargs):
        seen.update(kwargs)
        return {"inner_lr": 0.01}

    monkeypatch.setattr("apps.experiments.services.sweeps.bayes_point", propose)
    with django_capture_on_commit_callbacks(execute=True):
        services.run_cancel(run=first, actor=alpha[0]["member"], reason="Stopped by ASHA at rung 2.")
    assert seen["stopped"] == [({"inner_lr": first.config["inner_lr"]}, 30, 3.5)] and seen["done"] == []
    assert Run.objects.filter(sweep=sweep, status=RunStatus.QUEUED).get().config["inner_lr"] == 0.01


def test_stopping_early_needs_an_evaluation_before_the_end(alpha):
    with pytest.raises(ValidationError) as info:
        create(alpha, early_stop=True, base_config=base(iterations=100, eval_interval=100))
    assert info.value.message_dict["sweep_early_stop"] == [
        "Stopping early judges runs at evaluations, and a run of 100 iterations that evaluates every 100 "
        "steps has none before its end: lower eval_interval."
    ]
    assert not Sweep.objects.exists() and not Run.objects.exists()
    assert create(alpha, base_config=base(iterations=100, eval_interval=100)).early_stop is False
