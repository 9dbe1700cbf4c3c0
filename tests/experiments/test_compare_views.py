"""The compare-runs page and its series endpoint: the permission matrix, full pages
and htmx partials, clear messages for bad selections, other teams' runs answered as
not found, and query counts that do not grow with the number of runs."""

from __future__ import annotations

import json
import re

import pytest
from django.urls import reverse

from apps.experiments.models import RunStatus
from tests.factories import ExperimentFactory, RunFactory, metric_points_add

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
ROLES = ["anonymous", "outsider", "viewer", "member", "admin"]


def _run(experiment, i, **extra):
    run = RunFactory(
        experiment=experiment,
        config={"inner_lr": 0.01 * (i + 1), "ways": 5, "note": "<b>bold</b>"},
        status=RunStatus.SUCCEEDED,
        step=20,
        summary={"val": {"accuracy": 0.5 + 0.1 * i}},
        **extra,
    )
    metric_points_add(run, [("loss", s, 1.0 / s) for s in range(1, 21)])
    return run


@pytest.fixture
def world(team_roles):
    team, users = team_roles
    experiment = ExperimentFactory(team=team, created_by=users["member"])
    runs = [_run(experiment, i) for i in range(3)]
    beta = users["outsider"].memberships.get().team
    foreign = _run(ExperimentFactory(team=beta, created_by=users["outsider"]), 0)
    return {"team": team, "users": users, "experiment": experiment, "runs": runs, "foreign": foreign}


def login(client, world, who):
    if who != "anonymous":
        client.force_login(world["users"][who])
        # A first page of the team records it as last used (once per switch): not counted later.
        client.get(reverse("experiments:run-list", kwargs={"team_slug": world["team"].slug}))


def page_url(team, **params) -> str:
    from urllib.parse import urlencode

    return reverse("experiments:run-compare", kwargs={"team_slug": team.slug}) + "?" + urlencode(params)


def series_url(team, **params) -> str:
    from urllib.parse import urlencode

    return (
        reverse("experiments:run-compare-series", kwargs={"team_slug": team.slug}) + "?" + urlencode(params)
    )


def ids(runs) -> str:
    return ",".join(str(run.pk) for run in runs)


def _expect(response, who) -> bool:
    if who == "anonymous":
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login") + "?next=")
        return False
    if who == "outsider":
        assert response.status_code == 404
        return False
    assert response.status_code == 200
    return True


@pytest.mark.parametrize("htmx", [False, True])
@pytest.mark.parametrize("who", ROLES)
def test_page_permission_matrix(client, world, who, htmx):
    login(client, world, who)
    response = client.get(page_url(world["team"], ids=ids(world["runs"])), **(HTMX if htmx else {}))
    if not _expect(response, who):
        return
    html = response.content.decode()
    assert html.count('data-testid="compare-chart"') == 1  # one chart: the one metric
    assert ("<h1>Compare runs</h1>" in html) is (not htmx)
    assert 'id="compare-body"' in html
    assert "&lt;b&gt;bold&lt;/b&gt;" in html and "<b>bold</b>" not in html
    data = json.loads(re.search(r'id="compare-runs-data"[^>]*>(.*?)</script>', html, re.S).group(1))
    assert data["ids"] == ids(world["runs"]) and data["metrics"] == ["loss"]
    assert [run["colour"] for run in data["runs"]] == [0, 1, 2]


@pytest.mark.parametrize("who", ROLES)
def test_series_permission_matrix(client, world, who):
    login(client, world, who)
    response = client.get(series_url(world["team"], ids=ids(world["runs"]), metric="loss"))
    if not _expect(response, who):
        return
    body = response.json()
    assert [item["id"] for item in body["runs"]] == [run.pk for run in world["runs"]]
    assert all(item["total"] == 20 for item in body["runs"])


def test_config_diff_highlights_the_differing_key_first(client, world):
    login(client, world, "viewer")
    html = client.get(page_url(world["team"], ids=ids(world["runs"]))).content.decode()
    rows = re.findall(r'<tr class="([^"]*)" data-key="([^"]+)" data-differs="(\d)"', html)
    assert rows[0] == ("config-differs", "inner_lr", "1")
    assert ("", "ways", "0") in rows
    flags = [flag for _, _, flag in rows]
    assert flags == sorted(flags, reverse=True)  # differing keys first


@pytest.mark.parametrize("htmx", [False, True])
@pytest.mark.parametrize(
    ("make_ids", "message"),
    [
        (lambda w: str(w["runs"][0].pk), "ids: pick at least 2 runs to compare (got 1)."),
        (lambda w: ",".join(str(i) for i in range(1, 22)), "ids: pick at most 20 runs to compare (got 21)."),
        (lambda w: f"{w['runs'][0].pk},999999", "ids: no run #999999 in this team."),
        (lambda w: f"{w['runs'][0].pk},{w['foreign'].pk}", "ids: no run #{foreign} in this team."),
        (lambda w: "1,abc", "ids: &#x27;abc&#x27; is not a run number."),
    ],
)
def test_bad_selections_show_a_message_naming_the_field(client, world, make_ids, message, htmx):
    login(client, world, "member")
    response = client.get(page_url(world["team"], ids=make_ids(world)), **(HTMX if htmx else {}))
    assert response.status_code == 200
    html = response.content.decode()
    assert message.format(foreign=world["foreign"].pk) in html
    assert 'data-field="ids"' in html
    assert "compare-runs-data" not in html
    assert world["foreign"].config["note"] not in html


#: Session, user, membership (team and role), the runs, the metric series' figures
#: (final value, lowest, highest: one row per run and metric), every chart's first
#: data (the chunks' sizes, then their bytes), and the navigation's team list; the
#: parallel-coordinates rows reuse the loaded runs.
PAGE_QUERIES = 8


def test_query_count_does_not_grow_with_the_runs(client, world, django_assert_num_queries):
    login(client, world, "viewer")
    more = [_run(world["experiment"], i) for i in range(3, 12)]
    for runs in (world["runs"][:2], world["runs"] + more):
        with django_assert_num_queries(PAGE_QUERIES):
            assert client.get(page_url(world["team"], ids=ids(runs))).status_code == 200


def test_series_query_count_does_not_grow_with_the_runs(client, world):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    login(client, world, "viewer")
    more = [_run(world["experiment"], i) for i in range(3, 12)]
    counts = []
    for runs in (world["runs"][:2], world["runs"] + more):
        with CaptureQueriesContext(connection) as captured:
            assert client.get(series_url(world["team"], ids=ids(runs), metric="loss")).status_code == 200
        counts.append(len(captured.captured_queries))
    assert counts[0] == counts[1]


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"metric": ""}, "metric", "metric: name the metric to draw."),
        ({"x": "epoch"}, "x", "x: choose step or time."),
        ({"points": "1"}, "points", "points: a whole number from 2 to 4000."),
        ({"points": "lots"}, "points", "points: a whole number from 2 to 4000."),
        ({"from": "nan"}, "from", "from: must be a finite number."),
        ({"from": "abc"}, "from", "from: 'abc' is not a number."),
        ({"from": "5", "to": "1"}, "from", "from: must not be after to."),
    ],
)
def test_series_errors_name_the_field(client, world, params, field, message):
    login(client, world, "viewer")
    query = {"ids": ids(world["runs"]), "metric": "loss", **params}
    response = client.get(series_url(world["team"], **query))
    assert response.status_code == 400
    assert response.json() == {"error": message, "field": field}


def test_series_refuses_other_teams_runs_as_missing(client, world):
    login(client, world, "viewer")
    response = client.get(
        series_url(world["team"], ids=ids([world["runs"][0], world["foreign"]]), metric="loss")
    )
    assert response.status_code == 400
    assert response.json()["error"] == f"ids: no run #{world['foreign'].pk} in this team."


def test_zoomed_series_reads_the_range(client, world):
    login(client, world, "viewer")
    body = client.get(
        series_url(world["team"], ids=ids(world["runs"]), metric="loss", **{"from": 5, "to": 9})
    ).json()
    # The range, and the nearest point outside it on each side: the line crosses the edges.
    assert body["runs"][0]["x"] == [4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]


def test_a_sparse_series_zoomed_between_its_points_still_draws_a_line(client, world):
    run = world["runs"][0]
    metric_points_add(run, [("val_loss", s, s / 10) for s in (5, 10, 15, 20)])
    login(client, world, "viewer")
    url = series_url(world["team"], ids=ids(world["runs"]), metric="val_loss", **{"from": 11, "to": 14})
    (first, *others) = client.get(url).json()["runs"]
    assert (first["x"], first["y"]) == ([10.0, 15.0], [1.0, 1.5])
    assert all(run["x"] == [] for run in others)  # the other runs have no val_loss
    whole = client.get(series_url(world["team"], ids=ids(world["runs"]), metric="val_loss")).json()
    assert whole["runs"][0]["x"] == [5.0, 10.0, 15.0, 20.0]


@pytest.mark.parametrize("htmx", [False, True])
def test_search_feeds_parallel_coordinates(client, world, htmx):
    login(client, world, "viewer")
    response = client.get(page_url(world["team"], q="status:succeeded"), **(HTMX if htmx else {}))
    html = response.content.decode()
    data = json.loads(re.search(r'id="compare-parallel-data"[^>]*>(.*?)</script>', html, re.S).group(1))
    assert sorted(row["id"] for row in data["rows"]) == sorted(run.pk for run in world["runs"])
    assert data["keys"] == ["inner_lr"] and data["metrics"] == ["val.accuracy"]
    assert "compare-runs-data" not in html and 'data-field="ids"' not in html
    table = html[html.index('data-importance-metric="val.accuracy"') :].split("</table>")[0]
    assert '<tr data-setting="inner_lr">' in table and "Spearman ρ" in table


def test_a_bad_search_names_the_field(client, world):
    login(client, world, "viewer")
    html = client.get(page_url(world["team"], q="nosuch:1")).content.decode()
    assert 'data-field="q"' in html and "q: position 1: unknown field" in html


@pytest.mark.parametrize("htmx", [False, True])
def test_an_empty_selection_explains_what_to_do(client, world, htmx):
    login(client, world, "viewer")
    response = client.get(page_url(world["team"]), **(HTMX if htmx else {}))
    html = response.content.decode()
    assert response.status_code == 200
    assert 'data-testid="compare-hint"' in html and 'data-testid="compare-error"' not in html


def test_the_page_carries_every_charts_first_data(client, world):
    login(client, world, "viewer")
    runs = world["runs"]
    html = client.get(page_url(world["team"], ids=ids(runs))).content.decode()
    script = html.split('id="compare-runs-data" type="application/json">')[1]
    config = json.loads(script.split("</script>")[0])
    loss = config["initial"]["loss"]
    assert loss["x"] == "step" and [item["id"] for item in loss["runs"]] == [run.pk for run in runs]
    assert all(item["x"] == list(range(1, 21)) and item["total"] == 20 for item in loss["runs"])


def importance_url(team, **params) -> str:
    from urllib.parse import urlencode

    base = reverse("experiments:run-compare-importance", kwargs={"team_slug": team.slug})
    return base + "?" + urlencode(params)


@pytest.fixture
def forest_world(world):
    """Nine more succeeded runs: a U-shaped accuracy over inner_lr, and a loss."""
    for i, lr in enumerate([1e-4, 1e-3, 1e-2] * 3):
        RunFactory(
            experiment=world["experiment"],
            config={"inner_lr": lr, "ways": 5, "note": "<b>bold</b>"},
            status=RunStatus.SUCCEEDED,
            summary={"val": {"accuracy": (0.9 if lr == 1e-3 else 0.5) + 0.01 * i, "loss": 0.1 * i}},
        )
    return world


@pytest.mark.parametrize("who", ROLES)
def test_importance_permission_matrix(client, forest_world, who):
    login(client, forest_world, who)
    response = client.get(importance_url(forest_world["team"], q="status:succeeded", metric="val.loss"))
    if not _expect(response, who):
        return
    html = response.content.decode()
    assert 'id="importance-val.loss"' in html and 'data-testid="importance-forest-fit"' in html
    assert "<h1>" not in html  # the table alone


def test_the_page_fits_the_first_metrics_forest_and_links_the_others(client, forest_world):
    login(client, forest_world, "viewer")
    html = client.get(page_url(forest_world["team"], q="status:succeeded")).content.decode()
    first = html[html.index('data-importance-metric="val.accuracy"') :].split("</table>")[0]
    assert "data-importance-src" not in first.split(">")[0]
    # 12 runs with val.accuracy: a forest, and inner_lr's U shape read as such.
    share = re.search(r'data-testid="importance-forest">(\d+)%<', first).group(1)
    assert int(share) == 100 and "matters, but not monotonically" in first and "inner_lr = 0.001" in first
    tag = html[html.index('data-importance-metric="val.loss"') :].split(">")[0]
    src = re.search(r'data-importance-src="([^"]+)"', tag).group(1).replace("&amp;", "&")
    assert src == importance_url(forest_world["team"], q="status:succeeded") + "&metric=val.loss"
    table = client.get(src).content.decode()
    assert re.search(r'data-testid="importance-forest">\d+%<', table)  # 9 runs with val.loss: a forest


def test_importance_by_ids_has_no_forest_under_eight_runs(client, world):
    login(client, world, "viewer")
    html = client.get(
        importance_url(world["team"], ids=ids(world["runs"]), metric="val.accuracy")
    ).content.decode()
    assert '<tr data-setting="inner_lr">' in html and 'data-testid="importance-forest">—<' in html
    assert "fitted from 8 runs" in html


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"q": "status:succeeded", "metric": "nosuch"},
            "metric: 'nosuch' is not a final metric of these runs.",
        ),
        ({"q": "nosuch:1", "metric": "val.loss"}, "q: position 1: unknown field"),
        ({"ids": "1", "metric": "val.loss"}, "ids: pick at least 2 runs to compare (got 1)."),
    ],
)
def test_importance_errors_name_the_parameter(client, forest_world, params, message):
    login(client, forest_world, "viewer")
    response = client.get(importance_url(forest_world["team"], **params))
    assert response.status_code == 400 and response.content.decode().startswith(message)


def test_importance_reads_another_teams_runs_as_not_found(client, world):
    login(client, world, "viewer")
    response = client.get(
        importance_url(
            world["team"], ids=f"{world['runs'][0].pk},{world['foreign'].pk}", metric="val.accuracy"
        )
    )
    assert (
        response.status_code == 400
        and response.content.decode() == f"ids: no run #{world['foreign'].pk} in this team."
    )
