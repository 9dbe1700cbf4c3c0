"""Reads for experiments and runs on PostgreSQL: visibility, ordering, filters,
pagination, metrics, the run state, CSV streaming and the checkpoint file."""

from __future__ import annotations

import datetime as dt
import os

import numpy as np
import pytest
from asgiref.sync import async_to_sync
from django.http import Http404
from django.test import AsyncRequestFactory
from django.utils import timezone

from apps.experiments import selectors
from apps.experiments.listing.selectors import run_page_for_team
from apps.experiments.models import Run, RunStatus
from metaweb.streaming import streamed
from tests.factories import (
    ExperimentFactory,
    RunFactory,
    TaskSetVersionFactory,
    UserFactory,
    metric_points_add,
)

pytestmark = pytest.mark.django_db


def at(run: Run, when: dt.datetime) -> Run:
    Run.objects.filter(pk=run.pk).update(created_at=when)
    run.refresh_from_db()
    return run


# -- experiments ----------------------------------------------------------------------


def test_experiment_list_orders_by_latest_run_and_counts_runs(team_roles):
    team, users = team_roles
    now = timezone.now()
    old = ExperimentFactory(team=team, name="old")
    recent = ExperimentFactory(team=team, name="recent")
    empty = ExperimentFactory(team=team, name="empty")
    ExperimentFactory(name="another team's")
    at(RunFactory(experiment=old), now - dt.timedelta(days=3))
    at(RunFactory(experiment=old), now - dt.timedelta(days=2))
    at(RunFactory(experiment=recent), now - dt.timedelta(hours=1))

    rows = list(selectors.experiment_list_for_team(team=team))
    assert [e.name for e in rows] == ["recent", "old", "empty"]
    assert [e.run_count for e in rows] == [1, 2, 0]
    assert rows[1].latest_run_at == now - dt.timedelta(days=2)
    assert rows[2].latest_run_at is None and rows[2].pk == empty.pk


def test_experiment_get_visible(team_roles):
    team, users = team_roles
    experiment = ExperimentFactory(team=team)
    for role in ("viewer", "member", "admin"):
        assert selectors.experiment_get_visible(user=users[role], experiment_id=experiment.pk) == experiment
    with pytest.raises(Http404):
        selectors.experiment_get_visible(user=users["outsider"], experiment_id=experiment.pk)
    with pytest.raises(Http404):
        selectors.experiment_get_visible(user=users["member"], experiment_id=experiment.pk + 1000)


# -- run lists ----------------------------------------------------------------------


@pytest.fixture
def runs(team_roles):
    team, users = team_roles
    now = timezone.now()
    experiment = ExperimentFactory(team=team, created_by=users["member"])
    sine = TaskSetVersionFactory(taskset__team=team, taskset__name="sine")
    digits = TaskSetVersionFactory(taskset__team=team, taskset__name="digits", taskset__family="digits")
    made = {
        "a": RunFactory(
            experiment=experiment, taskset_version=sine, status=RunStatus.SUCCEEDED, algorithm="maml"
        ),
        "b": RunFactory(
            experiment=experiment, taskset_version=sine, status=RunStatus.FAILED, algorithm="reptile"
        ),
        "c": RunFactory(
            experiment=experiment,
            taskset_version=digits,
            status=RunStatus.RUNNING,
            algorithm="protonet",
            launched_by=users["admin"],
        ),
    }
    at(made["a"], now - dt.timedelta(days=10))
    at(made["b"], now - dt.timedelta(days=5))
    at(made["c"], now - dt.timedelta(hours=2))
    RunFactory(status=RunStatus.FAILED)  # another team's
    return team, users, made, sine, digits


def names(page, made):
    by_pk = {run.pk: key for key, run in made.items()}
    return [by_pk[run.pk] for run in page.runs]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, ["c", "b", "a"]),
        ({"status": "failed"}, ["b"]),
        ({"algorithm": "protonet"}, ["c"]),
        ({"status": "", "algorithm": None}, ["c", "b", "a"]),
    ],
)
def test_run_list_filters_by_values(runs, filters, expected):
    team, _, made, _, _ = runs
    assert names(run_page_for_team(team=team, filters=filters), made) == expected


def test_run_list_filters_by_taskset_user_and_dates(runs):
    team, users, made, sine, digits = runs
    today = timezone.localdate()
    assert names(run_page_for_team(team=team, filters={"taskset": sine.taskset}), made) == [
        "b",
        "a",
    ]
    assert names(run_page_for_team(team=team, filters={"taskset": digits.taskset_id}), made) == ["c"]
    assert names(run_page_for_team(team=team, filters={"launched_by": users["admin"]}), made) == ["c"]
    since = {"date_from": today - dt.timedelta(days=6)}
    assert names(run_page_for_team(team=team, filters=since), made) == ["c", "b"]
    window = {"date_from": today - dt.timedelta(days=11), "date_to": today - dt.timedelta(days=5)}
    assert names(run_page_for_team(team=team, filters=window), made) == ["b", "a"]
    assert names(run_page_for_team(team=team, filters={"date_to": today - dt.timedelta(days=30)}), made) == []


def test_run_list_pages_by_cursor(runs):
    team, _, made, _, _ = runs
    first = run_page_for_team(team=team, per_page=2)
    assert names(first, made) == ["c", "b"]
    assert first.count == 3 and first.next_cursor and not first.prev_cursor
    second = run_page_for_team(team=team, per_page=2, cursor=first.next_cursor)
    assert names(second, made) == ["a"] and not second.next_cursor and second.prev_cursor
    back = run_page_for_team(team=team, per_page=2, cursor=second.prev_cursor)
    assert names(back, made) == ["c", "b"]
    assert names(run_page_for_team(team=team, per_page=2, cursor="forged"), made) == ["c", "b"]


def test_run_list_for_team_is_query_bounded(runs, django_assert_max_num_queries):
    team, *_ = runs
    with django_assert_max_num_queries(3):  # count + page, with related rows joined + the page's tags
        page = run_page_for_team(team=team)
        labels = [
            (r.experiment.name, r.taskset_version.taskset.name, r.launched_by.username, list(r.tags.all()))
            for r in page.runs
        ]
    assert len(labels) == 3


def test_run_get_visible_hides_other_teams(runs):
    team, users, made, _, _ = runs
    assert selectors.run_get_visible(user=users["viewer"], run_id=made["a"].pk) == made["a"]
    with pytest.raises(Http404):
        selectors.run_get_visible(user=users["outsider"], run_id=made["a"].pk)
    with pytest.raises(Http404):
        selectors.run_get_visible(user=UserFactory(), run_id=made["a"].pk)


# -- metrics and state ----------------------------------------------------------------------


def test_run_metrics_grouped_and_ordered_in_three_queries(django_assert_num_queries):
    run = RunFactory()
    metric_points_add(run, [("loss", 3, 0.5), ("loss", 1, 0.9), ("loss", 2, 0.7), ("val_loss", 2, 0.8)])
    metric_points_add(RunFactory(), [("loss", 1, 99.0)])  # another run's
    with django_assert_num_queries(3):  # the names, the chunks' sizes, their bytes
        metrics = selectors.run_metrics(run)
    assert metrics == {"loss": [[1, 0.9], [2, 0.7], [3, 0.5]], "val_loss": [[2, 0.8]]}
    assert selectors.run_metrics(RunFactory()) == {}


def test_a_run_page_of_100k_points_sends_at_most_2000_a_metric_with_its_spike():
    run = RunFactory()
    steps = np.arange(1, 100_001)
    values = 2.0 / np.sqrt(steps)
    values[61_234] *= 100.0
    metric_points_add(run, [("loss", int(s), float(v)) for s, v in zip(steps, values, strict=True)])
    metric_points_add(run, [("val_loss", 1000 * k, 0.5) for k in range(1, 101)])
    metrics = selectors.run_state(run)["metrics"]
    loss = metrics["loss"]
    assert 1000 <= len(loss) <= 2000 and len(metrics["val_loss"]) == 100
    assert [61_235, values[61_234]] in loss  # the 100x spike is drawn
    assert loss[0][0] == 1 and loss[-1][0] == 100_000


def test_run_state_has_the_consumer_shape():
    started = timezone.now() - dt.timedelta(seconds=10)
    run = RunFactory(
        status=RunStatus.RUNNING,
        step=50,
        total_steps=150,
        started_at=started,
        worker="w1",
        device="cpu",
        attempt=2,
    )
    metric_points_add(run, [("loss", 50, 0.25)])
    state = selectors.run_state(run)
    assert state["type"] == "run.state"
    assert state["metrics"] == {"loss": [[50, 0.25]]}
    info = state["run"]
    assert (info["id"], info["status"], info["step"], info["total_steps"]) == (run.pk, "running", 50, 150)
    assert (info["error"], info["error_step"], info["finished"], info["cancel_requested"]) == (
        "",
        None,
        False,
        False,
    )
    assert (info["worker"], info["device"], info["attempt"]) == ("w1", "cpu", 2)
    assert info["started_at"] == started.isoformat()
    assert 4.0 < info["steps_per_sec"] <= 5.0  # 50 steps in a little over 10 s
    assert 19.0 < info["eta_seconds"] <= 25.5


def test_run_state_prefers_the_workers_figures_and_reports_failures():
    run = RunFactory(status=RunStatus.RUNNING, step=10, total_steps=100, summary={"steps_per_sec": 20.0})
    assert selectors.run_state(run)["run"]["steps_per_sec"] == 20.0
    assert selectors.run_state(run)["run"]["eta_seconds"] == pytest.approx(4.5)
    failed = RunFactory(status=RunStatus.FAILED, step=7, error="training diverged: loss is nan", error_step=7)
    info = selectors.run_state(failed)["run"]
    assert (info["status"], info["error_step"], info["finished"], info["eta_seconds"]) == (
        "failed",
        7,
        True,
        None,
    )
    assert "diverged" in info["error"]


# -- CSV ------------------------------------------------------------------------------------------


@pytest.fixture
def metric_run():
    run = RunFactory()
    metric_points_add(
        run, [("loss", s, 1.0 / s) for s in (1, 2, 3)] + [("val_accuracy", s, 0.5) for s in (2, 4)]
    )
    return run


EXPECTED_CSV = (
    "step,name,value\r\n"
    "1,loss,1.0\r\n2,loss,0.5\r\n3,loss,0.3333333333333333\r\n"
    "2,val_accuracy,0.5\r\n4,val_accuracy,0.5\r\n"
)


def test_run_metrics_csv(metric_run):
    assert "".join(selectors.run_metrics_csv(run=metric_run)) == EXPECTED_CSV


def test_the_csv_of_100k_points_streams_in_one_keyset_pass(django_assert_num_queries):
    run = RunFactory()
    metric_points_add(run, [("loss", s, 1.0 / s) for s in range(1, 100_001)])
    metric_points_add(run, [("val_loss", 1000 * k, 0.5) for k in range(1, 11)])
    # The series (1), then keyset pages of 16 chunks of 4,096 points: loss 2, val_loss 1.
    # (Each query reads the next chunks by the (series, first step) index: no re-read.)
    with django_assert_num_queries(4):
        text = "".join(selectors.run_metrics_csv(run=run))
    lines = text.splitlines()
    assert len(lines) == 1 + 100_000 + 10
    assert (
        lines[1] == "1,loss,1.0"
        and lines[100_000] == "100000,loss,1e-05"
        and lines[-1] == "10000,val_loss,0.5"
    )


def test_run_metrics_csv_streams_the_same_under_asgi(metric_run):
    stream = streamed(AsyncRequestFactory().get("/"), selectors.run_metrics_csv(run=metric_run))

    async def collect():
        return [chunk async for chunk in stream]

    assert "".join(async_to_sync(collect)()) == EXPECTED_CSV


def test_run_metrics_csv_quotes_awkward_names():
    run = RunFactory()
    metric_points_add(run, [('a,"b"', 1, 2.0)])
    assert "".join(selectors.run_metrics_csv(run=run)).splitlines()[1] == '1,"a,""b""",2.0'


# -- checkpoint file ----------------------------------------------------------------------


def write_checkpoint(root, step, *, complete=True, weights=b"weights"):
    folder = root / f"step-{step:06d}"
    folder.mkdir(parents=True)
    (folder / "params.safetensors").write_bytes(weights)
    if complete:
        (folder / "checkpoint.json").write_text("{}")
    return folder / "params.safetensors"


def key_of(run, step: int) -> str:
    return f"runs/{run.pk}/checkpoints/step-{step:06d}/params.safetensors"


def test_checkpoint_key_none_without_checkpoints(settings):
    run = RunFactory()
    assert selectors.run_checkpoint_key(run) is None
    (settings.RUNS_DIR / str(run.pk) / "checkpoints").mkdir(parents=True)
    assert selectors.run_checkpoint_key(run) is None
    assert not selectors.run_has_checkpoint(run)


def test_checkpoint_key_follows_latest(settings):
    run = RunFactory()
    root = settings.RUNS_DIR / str(run.pk) / "checkpoints"
    write_checkpoint(root, 400)
    write_checkpoint(root, 500)
    assert selectors.run_checkpoint_key(run) == key_of(run, 500)  # no pointer: highest step
    (root / "latest").write_text("step-000400\n")
    assert selectors.run_checkpoint_key(run) == key_of(run, 400)
    assert selectors.run_has_checkpoint(run)


def test_checkpoint_key_skips_incomplete_dangling_and_escaping(settings, tmp_path):
    run = RunFactory()
    root = settings.RUNS_DIR / str(run.pk) / "checkpoints"
    write_checkpoint(root, 100)
    good = key_of(run, 100)
    write_checkpoint(root, 300, complete=False)  # being written
    outside = tmp_path / "elsewhere"
    write_checkpoint(outside, 900)
    os.symlink(outside / "step-000900", root / "step-000900")  # escapes the run's folder
    (root / "latest").write_text("../../../elsewhere/step-000900")
    assert selectors.run_checkpoint_key(run) == good
    (root / "latest").write_text("step-000700")  # dangling
    assert selectors.run_checkpoint_key(run) == good
