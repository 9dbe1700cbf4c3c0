"""Sweeps from scripts: launch one (lists or the form's texts as dimensions), read its
leaderboard and its runs pooled across seeds, list the team's sweeps in keyset
pages, stop one. Errors name the body's field; on any error nothing is stored."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from apps.experiments.models import Run, RunStatus, Sweep
from tests.api.conftest import bearer
from tests.factories import metric_points_add

pytestmark = pytest.mark.django_db

CONFIG = {"iterations": 20, "meta_batch": 4, "eval_interval": 10, "eval_tasks": 10, "checkpoint_interval": 10}


def _url(world, tail=""):
    return f"/api/v1/teams/{world['team'].slug}/sweeps{tail}"


def _launch(client, world, **changes):
    body = {
        "experiment_id": world["experiment"].pk,
        "taskset_id": world["version"].taskset_id,
        "config": CONFIG,
        "strategy": "grid",
        "dimensions": {"seed": [0, 1, 2], "inner_lr": "0.01, 0.1"},
        "max_concurrent": 6,
        **changes,
    }
    return client.post(
        _url(world), data=body, content_type="application/json", **bearer(world["tokens"]["member"])
    )


def test_a_grid_launched_from_a_script_queues_its_runs_as_the_form_would(client, api_world):
    response = _launch(client, api_world, name="lr by seed")
    assert response.status_code == 201, response.content
    body = response.json()
    sweep = Sweep.objects.get(pk=body["id"])
    assert (body["name"], body["status"], body["planned"], body["waiting"]) == ("lr by seed", "running", 6, 0)
    assert body["dimensions"] == sweep.dimensions and set(body["dimensions"]) == {"seed", "inner_lr"}
    runs = Run.objects.filter(sweep=sweep).order_by("pk")
    points = sorted((run.config["inner_lr"], run.config["seed"]) for run in runs)
    assert points == [(lr, seed) for lr in (0.01, 0.1) for seed in (0, 1, 2)]
    assert all(run.config["iterations"] == 20 and run.algorithm == "maml" for run in runs)
    assert [row["run_id"] for row in body["leaderboard"]] == [run.pk for run in runs.order_by("-pk")]
    assert body["across_seeds"] == []  # nothing has finished
    assert [(i["setting"], i["n"], i["effect"]) for i in body["importance"]] == [
        ("seed", 0, None),
        ("inner_lr", 0, None),
    ]


def test_a_bayes_sweep_from_a_script_starts_random_and_counts_its_proposals_as_waiting(client, api_world):
    response = _launch(
        client,
        api_world,
        strategy="bayes",
        samples=12,
        seed=2,
        dimensions={"inner_lr": "1e-4..1e-1 log"},
        max_concurrent=3,
    )
    assert response.status_code == 201, response.content
    body = response.json()
    sweep = Sweep.objects.get(pk=body["id"])
    assert (body["strategy"], body["planned"], body["waiting"]) == ("bayes", 12, 9)
    assert len(sweep.configs) == 5 and Run.objects.filter(sweep=sweep).count() == 3
    assert [row["order"] for row in body["leaderboard"]] == [3, 2, 1]  # none ranked yet: newest first
    assert body["early_stop"] is False


def test_a_sweep_may_stop_poor_runs_early_and_says_so(client, api_world):
    response = _launch(client, api_world, strategy="bayes", samples=6, early_stop=True)
    assert response.status_code == 201, response.content
    assert response.json()["early_stop"] is True and Sweep.objects.get(pk=response.json()["id"]).early_stop
    asha = _launch(client, api_world, strategy="asha", samples=3)
    assert asha.json()["early_stop"] is True  # ASHA always stops early
    late = _launch(
        client, api_world, early_stop=True, config={**CONFIG, "iterations": 20, "eval_interval": 20}
    )
    assert late.status_code == 422
    (error,) = late.json()["detail"]
    assert error["loc"] == ["body", "early_stop"] and error["msg"].startswith("Stopping early judges runs")


def test_the_leaderboard_and_the_seeds_pooled_read_as_on_the_page(client, api_world):
    sweep_id = _launch(client, api_world).json()["id"]
    finals = {(0.01, 0): 3.0, (0.01, 1): 2.0, (0.01, 2): 4.0, (0.1, 0): 1.0, (0.1, 1): 2.0}
    for run in Run.objects.filter(sweep_id=sweep_id):
        key = (run.config["inner_lr"], run.config["seed"])
        if key in finals:
            metric_points_add(run, [("val_loss", 20, finals[key])])
            Run.objects.filter(pk=run.pk).update(status=RunStatus.SUCCEEDED, step=20)
    response = client.get(_url(api_world, f"/{sweep_id}"), **bearer(api_world["tokens"]["viewer"]))
    body = response.json()
    board = body["leaderboard"]
    assert [row["rank"] for row in board] == [1, 2, 3, 4, 5, None]  # no value yet: last
    assert [row["value"] for row in board] == [1.0, 2.0, 2.0, 3.0, 4.0, None]
    assert board[0]["point"] == {"seed": 0, "inner_lr": 0.1}
    assert board[-1]["point"] == {"seed": 2, "inner_lr": 0.1}
    groups = body["across_seeds"]
    assert [(g["label"], g["n"]) for g in groups] == [({"inner_lr": "0.1"}, 2), ({"inner_lr": "0.01"}, 3)]
    assert groups[0]["mean"] == pytest.approx(1.5)
    assert groups[0]["half_width"] == pytest.approx(stats.t.ppf(0.975, 1) * math.sqrt(0.5) / math.sqrt(2))
    assert groups[1]["mean"] == pytest.approx(3.0)
    assert groups[1]["half_width"] == pytest.approx(2.4841, abs=1e-4)
    # As the page's "Which settings go with val_loss" (tests/experiments/test_sweep_importance.py).
    importance = body["importance"]
    assert [(i["setting"], i["test"], i["n"]) for i in importance] == [
        ("inner_lr", "spearman", 5),
        ("seed", "kruskal", 5),
    ]
    assert importance[0]["effect"] == pytest.approx(0.740436, abs=1e-6)
    assert importance[0]["p"] == pytest.approx(0.152413, abs=1e-6)
    assert (
        importance[0]["reading"]
        == "no clear link at this n (leans: higher inner_lr, lower val_loss (better))"
    )
    assert all(i["forest"] is None and i["forest_r2"] is None and not i["not_monotone"] for i in importance)


def test_a_rate_best_in_the_middle_is_read_by_the_forest(client, api_world):
    rates = [0.0001, 0.001, 0.01, 0.1, 1.0]
    dimensions = {"seed": [0, 1, 2], "inner_lr": rates}
    sweep_id = _launch(client, api_world, dimensions=dimensions, max_concurrent=15).json()["id"]
    for run in Run.objects.filter(sweep_id=sweep_id):  # best at 0.01, worse either side
        loss = 1.0 + abs(rates.index(run.config["inner_lr"]) - 2) + 0.1 * run.config["seed"]
        metric_points_add(run, [("val_loss", 20, loss)])
        Run.objects.filter(pk=run.pk).update(status=RunStatus.SUCCEEDED, step=20)
    response = client.get(_url(api_world, f"/{sweep_id}"), **bearer(api_world["tokens"]["viewer"]))
    rate, seed = response.json()["importance"]
    assert rate["setting"] == "inner_lr" and rate["not_monotone"] and rate["p"] > 0.5
    assert rate["forest"] == pytest.approx(0.82, abs=0.01) and rate["forest"] + seed[
        "forest"
    ] == pytest.approx(1)
    assert rate["forest_r2"] == seed["forest_r2"] == pytest.approx(0.718, abs=0.005)
    assert rate["reading"] == (
        "matters, but not monotonically: 83% of the forest's importance (best val_loss at inner_lr = 0.01)"
    )


@pytest.mark.parametrize(
    ("changes", "loc", "message"),
    [
        ({"dimensions": {"colour": [1, 2]}}, ["body", "dimensions.colour"], "colour cannot be swept."),
        (
            {"dimensions": {"inner_lr": "1e-3..1e-1 log"}},
            ["body", "dimensions.inner_lr"],
            "A grid needs a list or a range with a step",
        ),
        (
            {"dimensions": {"meta_lr_schedule": ["constant, cosine"]}},
            ["body", "dimensions.meta_lr_schedule"],
            "must not be empty or hold a comma",
        ),  # fmt: skip
        ({"dimensions": {"seed": []}}, ["body", "dimensions.seed"], "Give at least one value."),
        ({"dimensions": {}}, ["body", "strategy"], "Give at least one setting a sweep dimension."),
        ({"strategy": "random", "samples": 0}, ["body", "samples"], "Choose between 1 and 200 samples."),
        ({"metric": "colour"}, ["body", "metric"], "Choose one of: val_loss"),
        ({"config": {"inner_steps": 0}}, ["body", "inner_steps"], "at least 1"),
        ({"experiment_id": 10**9}, ["body", "experiment"], "Choose one of this team's experiments."),
    ],
)
def test_a_refused_sweep_names_the_field_and_stores_nothing(client, api_world, changes, loc, message):
    before = (Sweep.objects.count(), Run.objects.count())
    response = _launch(client, api_world, **changes)
    assert response.status_code == 422, response.content
    items = response.json()["detail"]
    assert any(item["loc"] == loc and message in item["msg"] for item in items), items
    assert (Sweep.objects.count(), Run.objects.count()) == before


def test_the_list_is_newest_first_in_keyset_pages(client, api_world):
    ids = [_launch(client, api_world, name=f"s{i}", max_concurrent=1).json()["id"] for i in range(3)]
    auth = bearer(api_world["tokens"]["viewer"])
    first = client.get(_url(api_world), {"limit": 2}, **auth).json()
    assert [s["id"] for s in first["results"]] == [ids[2], ids[1]]
    assert first["results"][0]["waiting"] == 5 and first["results"][0]["created_by"] == "member"
    rest = client.get(_url(api_world), {"limit": 2, "before": first["next_before"]}, **auth).json()
    assert [s["id"] for s in rest["results"]] == [ids[0], api_world["sweep"].pk]
    assert rest["next_before"] is None


def test_stop_cancels_the_queued_runs_and_a_second_stop_is_refused(client, api_world):
    sweep_id = _launch(client, api_world, max_concurrent=2).json()["id"]
    auth = bearer(api_world["tokens"]["member"])
    body = client.post(_url(api_world, f"/{sweep_id}/stop"), **auth).json()
    assert (body["status"], body["message"]) == ("stopped", "Stopped by member.")
    assert {row["status"] for row in body["leaderboard"]} == {"cancelled"} and len(body["leaderboard"]) == 2
    again = client.post(_url(api_world, f"/{sweep_id}/stop"), **auth)
    assert again.status_code == 422
    assert again.json()["detail"] == [{"loc": ["body", "status"], "msg": "This sweep is stopped already."}]
