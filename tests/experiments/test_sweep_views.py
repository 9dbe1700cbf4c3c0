"""Sweep pages: the permission matrix with and without HX-Request, the leaderboard's
order, stopping, launching from the launch form (field errors, nothing queued), and
query counts that do not grow with the number of runs."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from apps.experiments.models import Run, RunStatus, Sweep, SweepStatus
from tests.factories import (
    SMALL_CONFIG,
    ExperimentFactory,
    RunFactory,
    TaskSetVersionFactory,
    metric_points_add,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("sent")]  # no test reaches the broker

HTMX = {"HTTP_HX_REQUEST": "true"}
ROLES = ["anonymous", "outsider", "viewer", "member", "admin"]


def make_sweep(team, users, experiment, version, runs: int = 3, status=SweepStatus.RUNNING) -> Sweep:
    sweep = Sweep.objects.create(
        team=team,
        experiment=experiment,
        taskset_version=version,
        name="lr sweep <b>",
        strategy="random",
        base_config={},
        dimensions={"inner_lr": {"kind": "list", "values": [0.1, 0.2]}},
        configs=[{}] * runs,
        planned=runs,
        next_index=runs,
        metric="val_loss",
        max_concurrent=2,
        status=status,
        created_by=users["member"],
    )
    for i in range(runs):
        run = RunFactory(
            experiment=experiment,
            taskset_version=version,
            sweep=sweep,
            config={**SMALL_CONFIG, "inner_lr": 0.1 * (i + 1)},
            status=RunStatus.RUNNING if i == 0 else RunStatus.SUCCEEDED,
        )
        if i:  # the first has no eval yet
            metric_points_add(run, [("val_loss", s, 1.0 / (i * s)) for s in (10, 20)])
    return sweep


@pytest.fixture
def world(team_roles):
    team, users = team_roles
    experiment = ExperimentFactory(team=team, created_by=users["member"], name="Sines")
    version = TaskSetVersionFactory(
        taskset__team=team, taskset__family="sinusoid", taskset__created_by=users["member"], params={}
    )
    sweep = make_sweep(team, users, experiment, version)
    return {"team": team, "users": users, "experiment": experiment, "version": version, "sweep": sweep}


def login(client, world, who):
    if who != "anonymous":
        client.force_login(world["users"][who])
        client.get(reverse("experiments:run-list", kwargs={"team_slug": world["team"].slug}))


def detail_url(world, sweep=None):
    sweep = sweep or world["sweep"]
    return reverse("experiments:sweep-detail", kwargs={"team_slug": world["team"].slug, "sweep_id": sweep.pk})


def refused(response, who) -> bool:
    if who == "anonymous":
        assert response.status_code == 302 and response["Location"].startswith(reverse("login") + "?next=")
        return True
    if who == "outsider":
        assert response.status_code == 404
        return True
    return False


@pytest.mark.parametrize("who", ROLES)
@pytest.mark.parametrize("htmx", [False, True])
def test_sweep_pages_permissions(client, world, who, htmx):
    login(client, world, who)
    headers = HTMX if htmx else {}
    list_url = reverse("experiments:sweep-list", kwargs={"team_slug": world["team"].slug})
    for url in (list_url, detail_url(world)):
        response = client.get(url, **headers)
        if refused(response, who):
            continue
        assert response.status_code == 200
        body = response.content.decode()
        assert ("<html" in body) is not htmx
        assert "lr sweep &lt;b&gt;" in body or url == detail_url(world)
    if who in ("anonymous", "outsider"):
        return
    body = client.get(detail_url(world), **headers).content.decode()
    assert ('id="stop-sweep"' in body) is (who != "viewer")
    assert ('id="clone-best"' in body) is (who != "viewer")


def test_leaderboard_ranks_by_latest_metric_best_first(client, world):
    login(client, world, "viewer")
    rows = [(r.rank, r.run.config["inner_lr"], r.value) for r in _rows(world)]
    # val_loss at step 20: run 2 -> 1/40, run 1 -> 1/20; run 0 has no eval and comes last.
    assert [(rank, round(lr, 1)) for rank, lr, _ in rows] == [(1, 0.3), (2, 0.2), (None, 0.1)]
    body = client.get(detail_url(world)).content.decode()
    best = Run.objects.get(sweep=world["sweep"], config__inner_lr=0.30000000000000004)
    assert f'href="/runs/{best.pk}/clone/"' not in body  # viewers cannot clone
    assert "sweep-parallel-data" in body


def test_the_sweeps_runs_open_in_the_run_list_with_its_columns(client, world):
    login(client, world, "viewer")
    sweep = world["sweep"]
    other = RunFactory(experiment=world["experiment"], taskset_version=world["version"])  # no sweep
    body = client.get(detail_url(world)).content.decode()
    href = re.search(r'id="sweep-run-list" href="([^"]+)"', body).group(1).replace("&amp;", "&")
    assert href == (
        f"/t/alpha/runs/?q=sweep%3A{sweep.pk}&cols=config.inner_lr%2Cmetric.val_loss&sort=metric.val_loss"
    )
    listed = client.get(href).content.decode()
    shown = {int(pk) for pk in re.findall(r'data-select-run="(\d+)"', listed)}
    assert shown == set(Run.objects.filter(sweep=sweep).values_list("pk", flat=True)) and len(shown) == 3
    assert "config.inner_lr" in listed and "metric.val_loss" in listed  # the columns
    others = client.get(f"/t/alpha/runs/?q=NOT+sweep%3A{sweep.pk}").content.decode()
    assert {int(pk) for pk in re.findall(r'data-select-run="(\d+)"', others)} == {other.pk}  # no sweep: NULL


def test_a_bayes_sweep_says_which_configs_were_random_and_which_tpe_proposed(client, world, monkeypatch):
    monkeypatch.setattr("apps.experiments.sweep_views.BAYES_STARTUP", 2)  # 3 runs: 2 random, 1 proposed
    sweep = world["sweep"]
    login(client, world, "viewer")
    assert 'data-testid="config-from"' not in client.get(detail_url(world)).content.decode()  # random
    Sweep.objects.filter(pk=sweep.pk).update(strategy="bayes")
    body = client.get(detail_url(world)).content.decode()
    cells = dict(re.findall(r'data-run-id="(\d+)".*?data-testid="config-from">(\w+)<', body, re.S))
    first, second, third = Run.objects.filter(sweep=sweep).order_by("pk")
    assert cells == {str(first.pk): "random", str(second.pk): "random", str(third.pk): "TPE"}


def _rows(world):
    from apps.experiments.sweep_selectors import sweep_leaderboard

    return sweep_leaderboard(sweep=world["sweep"])


def test_sweep_page_query_count_does_not_grow(client, world, django_assert_max_num_queries):
    login(client, world, "member")
    big = make_sweep(world["team"], world["users"], world["experiment"], world["version"], runs=30)
    with django_assert_max_num_queries(12) as small_ctx:
        client.get(detail_url(world))
    with django_assert_max_num_queries(len(small_ctx.captured_queries)):
        assert client.get(detail_url(world, big)).status_code == 200
    list_url = reverse("experiments:sweep-list", kwargs={"team_slug": world["team"].slug})
    with django_assert_max_num_queries(10) as one_ctx:
        assert client.get(list_url).status_code == 200
    for _ in range(5):
        make_sweep(world["team"], world["users"], world["experiment"], world["version"], runs=2)
    with django_assert_max_num_queries(len(one_ctx.captured_queries)):
        assert client.get(list_url).content.count(b'id="sweep-row-') == 7


def test_swapping_the_launch_fields_keeps_the_sweep_section(client, world):
    login(client, world, "member")
    url = reverse("experiments:run-launch", kwargs={"team_slug": world["team"].slug})
    query = {"algorithm": "reptile", "sweep_strategy": "grid", "dim_inner_lr": "0.1, 0.2", "dim_ways": "2"}
    body = client.get(url, query, **HTMX).content.decode()
    assert 'value="0.1, 0.2"' in body and 'id="sweep-settings" data-testid="sweep-settings" open' in body
    assert "dim_ways" not in body  # ways does not apply to a regression task set


@pytest.mark.parametrize("htmx", [False, True])
def test_stop_sweep_from_the_page(client, world, htmx):
    url = reverse(
        "experiments:sweep-stop", kwargs={"team_slug": world["team"].slug, "sweep_id": world["sweep"].pk}
    )
    login(client, world, "viewer")
    assert client.post(url).status_code == 403
    login(client, world, "member")
    response = client.post(url, **(HTMX if htmx else {}))
    world["sweep"].refresh_from_db()
    assert world["sweep"].status == SweepStatus.STOPPED
    running = Run.objects.get(sweep=world["sweep"], status=RunStatus.RUNNING)
    assert running.cancel_requested_at is not None
    if htmx:
        assert response.status_code == 200 and 'id="stop-sweep"' not in response.content.decode()
    else:
        assert response.status_code == 302
    again = client.post(url, **HTMX)
    assert "stopped already" in again.content.decode()


def test_outsider_cannot_stop(client, world):
    login(client, world, "outsider")
    url = reverse(
        "experiments:sweep-stop", kwargs={"team_slug": world["team"].slug, "sweep_id": world["sweep"].pk}
    )
    assert client.post(url).status_code == 404
    assert Sweep.objects.get(pk=world["sweep"].pk).status == SweepStatus.RUNNING


def launch_data(world, **changes):
    data = {k: v for k, v in SMALL_CONFIG.items() if k not in ("family", "hidden")}
    data.update(
        experiment=world["experiment"].pk,
        taskset=world["version"].taskset_id,
        queue="cpu",
        hidden="8",
        device="cpu",
    )
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None and v is not False}


@pytest.mark.parametrize("htmx", [False, True])
def test_launch_a_sweep_from_the_launch_form(
    client, world, sent, settings, htmx, django_capture_on_commit_callbacks
):
    settings.RUN_DISPATCH_SLOTS = {"cpu": 10, "gpu": 10}  # room for all: fair dispatch is tested apart
    login(client, world, "member")
    url = reverse("experiments:run-launch", kwargs={"team_slug": world["team"].slug})
    page = client.get(url).content.decode()
    assert 'id="sweep-settings"' in page and "dim_inner_lr" in page
    data = launch_data(
        world,
        sweep_strategy="asha",
        sweep_samples=6,
        sweep_seed=1,
        sweep_metric="val_loss",
        sweep_max_concurrent=2,
        dim_meta_lr="1e-4..1e-2 log",
        dim_inner_steps="1,2",
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, data, **(HTMX if htmx else {}))
    sweep = Sweep.objects.exclude(pk=world["sweep"].pk).get()
    target = detail_url(world, sweep)
    assert (response["HX-Redirect"] if htmx else response["Location"]) == target
    assert (sweep.strategy, len(sweep.configs), Run.objects.filter(sweep=sweep).count()) == ("asha", 6, 2)
    assert len(sent) == 2


def test_a_bayes_sweep_from_the_form_may_stop_poor_runs_early(client, world, sent):
    login(client, world, "member")
    url = reverse("experiments:run-launch", kwargs={"team_slug": world["team"].slug})
    assert 'name="sweep_early_stop"' in client.get(url).content.decode()
    data = launch_data(
        world, sweep_strategy="bayes", sweep_samples=6, sweep_early_stop="on", dim_inner_lr="1e-3..1e-1 log"
    )
    client.post(url, data)
    sweep = Sweep.objects.exclude(pk=world["sweep"].pk).get()
    assert (sweep.strategy, sweep.early_stop) == ("bayes", True)
    page = client.get(detail_url(world, sweep)).content.decode()
    assert '<span id="sweep-early-stop">poor runs stop at ASHA\'s rungs</span>' in page


@pytest.mark.parametrize(
    ("changes", "field_id", "message"),
    [
        ({"dim_inner_steps": "4..1 step 1"}, "id_dim_inner_steps_error", "empty"),
        (
            {"sweep_strategy": "random", "sweep_samples": 500, "dim_inner_lr": "0.1,0.2"},
            "id_sweep_samples_error",
            "between 1 and 200",
        ),
        ({"dim_seed": "1..300 step 1"}, "id_sweep_strategy_error", "300 runs; the limit is 200"),
        ({"dim_ways": "2,3"}, "launch-errors", "ignores ways"),
        (
            {"sweep_early_stop": "on", "eval_interval": 20, "dim_inner_lr": "0.1,0.2"},
            "id_sweep_early_stop_error",
            "a run of 20 iterations that evaluates every 20 steps has none before its end",
        ),
    ],
)
def test_bad_sweeps_show_field_errors_and_queue_nothing(client, world, sent, changes, field_id, message):
    login(client, world, "member")
    url = reverse("experiments:run-launch", kwargs={"team_slug": world["team"].slug})
    data = launch_data(world, sweep_strategy="grid", sweep_metric="val_loss", sweep_max_concurrent=2)
    data.update(changes)
    response = client.post(url, data, **HTMX)
    body = response.content.decode()
    assert response.status_code == 200 and message in body and f'id="{field_id}"' in body
    assert Sweep.objects.count() == 1 and Run.objects.filter(sweep=None).count() == 0 and sent == []


@pytest.mark.parametrize("htmx", [False, True])
def test_dimensions_without_a_strategy_are_refused_not_ignored(client, world, sent, htmx):
    """A dimension typed with "No sweep" once launched one run and dropped the dimension."""
    login(client, world, "member")
    url = reverse("experiments:run-launch", kwargs={"team_slug": world["team"].slug})
    data = launch_data(world, sweep_strategy="", dim_inner_lr="0.001, 0.01", dim_seed=" 1, 2 ")
    response = client.post(url, data, **(HTMX if htmx else {}))
    body = response.content.decode()
    assert response.status_code == 200 and 'id="id_sweep_strategy_error"' in body
    assert "Values to sweep over are given for Inner learning rate, Seed: choose a strategy" in body
    assert 'id="sweep-settings" data-testid="sweep-settings" open' in body  # the section shows why
    assert Sweep.objects.count() == 1 and Run.objects.filter(sweep=None).count() == 0 and sent == []
    # Blank dimensions are no sweep: one run, as before.
    response = client.post(url, launch_data(world, sweep_strategy="", dim_inner_lr="  "))
    assert response.status_code == 302 and Run.objects.filter(sweep=None).count() == 1


def test_a_sweep_over_seeds_is_pooled_across_them_best_mean_first(client, world):
    sweep = world["sweep"]
    sweep.dimensions = {
        "seed": {"kind": "list", "values": [0, 1, 2]},
        "inner_lr": {"kind": "list", "values": [0.01, 0.1]},
    }
    sweep.save(update_fields=["dimensions"])
    Run.objects.filter(sweep=sweep).delete()
    finals = {(0.01, 0): 3.0, (0.01, 1): 2.0, (0.01, 2): 4.0, (0.1, 0): 1.0, (0.1, 1): 2.0}
    ids = {}
    for (lr, seed), loss in finals.items():
        run = RunFactory(
            experiment=world["experiment"],
            taskset_version=world["version"],
            sweep=sweep,
            config={**SMALL_CONFIG, "inner_lr": lr, "seed": seed},
            seed=seed,
            status=RunStatus.SUCCEEDED,
        )
        metric_points_add(run, [("val_loss", 10, 9.0), ("val_loss", 20, loss)])
        ids[lr, seed] = run.pk
    failed = RunFactory(  # ended early: its last value is not a final one
        experiment=world["experiment"],
        taskset_version=world["version"],
        sweep=sweep,
        config={**SMALL_CONFIG, "inner_lr": 0.1, "seed": 2},
        status=RunStatus.FAILED,
    )
    metric_points_add(failed, [("val_loss", 10, 50.0)])
    login(client, world, "viewer")
    body = client.get(detail_url(world)).content.decode()
    section = body[body.index('id="sweep-seeds"') :].split("</section>")[0]
    groups = re.findall(r'data-seed-group="([\d,]+)"', section)
    assert groups == [f"{ids[0.1, 0]},{ids[0.1, 1]}", ",".join(str(ids[0.01, s]) for s in range(3))]
    cells = re.findall(r'data-metric="val_loss">([^<]*)<', section)
    # lr 0.1: mean 1.5, t(0.975, 1) * sd 0.7071 / sqrt(2) = 6.3531; lr 0.01: 3.0, t(0.975, 2) * 1 / sqrt(3).
    assert cells == ["1.5000 ± 6.3531", "3.0000 ± 2.4841"]
    assert "<th><code>inner_lr</code></th>" in section and "<th><code>seed</code></th>" not in section
    # Which settings go with val_loss: over the five succeeded runs, the failed one left out.
    section = body[body.index('id="sweep-importance"') :].split("</section>")[0]
    assert re.findall(r'data-setting="(\w+)"', section) == ["inner_lr", "seed"]
    assert re.findall(r'data-testid="importance-effect">([^<]*)<', section) == ["0.740", "0.526"]
    assert "(leans: higher inner_lr, lower val_loss (better))" in section
    assert '<td class="num">0.152</td>' in section and "best median val_loss at seed = 0" in section
    sweep.dimensions = {"inner_lr": sweep.dimensions["inner_lr"]}  # one seed: repeats, not seeds
    sweep.save(update_fields=["dimensions"])
    assert 'id="sweep-seeds"' not in client.get(detail_url(world)).content.decode()
