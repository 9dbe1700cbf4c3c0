"""The headline metric columns that run tables show unasked: a training run's
validation loss and accuracy, an adaptation's query loss and accuracy, each only
where some run has it, sortable on the run list, and on an experiment's page.
Run on PostgreSQL and on SQLite."""

from __future__ import annotations

import html
import re

import pytest
from django.urls import reverse

from apps.experiments.listing.columns import column_parse, headline_columns
from apps.experiments.models import RunStatus
from tests.factories import (
    AdaptationFactory,
    ExperimentFactory,
    MetaModelFactory,
    RunFactory,
    TaskSetVersionFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def results(team_roles):
    """Two regression runs (val_loss), one classifier (val_loss and val_accuracy), a
    run still going (no summary yet) and an adaptation of the classifier."""
    team, users = team_roles
    experiment = ExperimentFactory(team=team, created_by=users["member"], name="Headline")
    version = TaskSetVersionFactory(taskset__team=team)

    def run(summary, **fields):
        return RunFactory(experiment=experiment, taskset_version=version, summary=summary, **fields)

    done = RunStatus.SUCCEEDED
    runs = {
        "sine_a": run({"val": {"val_loss": 2.5}, "metrics": {"loss": 2.4}}, status=done),
        "sine_b": run({"val": {"val_loss": 0.125}, "metrics": {"loss": 0.1}}, status=done),
        "digits": run({"val": {"val_loss": 0.75, "val_accuracy": 0.875}}, algorithm="protonet", status=done),
        "going": run({}, status=RunStatus.RUNNING),
    }
    model = MetaModelFactory(experiment=experiment, taskset_version=version, training_run=runs["digits"])
    runs["adapt"] = AdaptationFactory(meta_model=model).run
    runs["adapt"].summary = {"final": {"query_loss": 0.5, "query_accuracy": 0.625, "support_loss": 0.25}}
    runs["adapt"].save(update_fields=["summary"])
    return team, users, runs


def _get(client, user, url, **query) -> str:
    client.force_login(user)
    response = client.get(url, query)
    assert response.status_code == 200
    return html.unescape(response.content.decode())


def _list(client, team, user, **query) -> str:
    return _get(client, user, reverse("experiments:run-list", kwargs={"team_slug": team.slug}), **query)


def _headers(body: str) -> list[str]:
    return re.findall(r'<th data-column="([^"]+)"', body)


def _cell(body: str, run_id: int) -> list[str]:
    return re.findall(rf'<td class="num" data-cell="{run_id}" data-column="[^"]+">([^<]*)</td>', body)


def test_training_runs_show_validation_metrics_unasked(client, results):
    team, users, runs = results
    body = _list(client, team, users["viewer"])
    assert _headers(body) == ["metric.val_loss", "metric.val_accuracy"]
    assert _cell(body, runs["sine_a"].pk) == ["2.5", ""]
    assert _cell(body, runs["digits"].pk) == ["0.75", "0.875"]
    assert f'data-cell="{runs["digits"].pk}" data-column="metric.val_accuracy">0.875<' in body
    assert _cell(body, runs["going"].pk) == ["", ""]
    assert "<code>val_loss</code>" in body and 'title="metric.val_loss"' in body


def test_a_headline_column_sorts_the_list_without_becoming_a_chosen_column(client, results):
    team, users, runs = results
    body = _list(client, team, users["viewer"])
    link = re.search(r'href="\?([^"]*)" data-sort="metric.val_loss"', body).group(1)
    assert "sort=-metric.val_loss" in link and "cols=" not in link
    query = dict(part.split("=", 1) for part in link.split("&"))
    body = _list(client, team, users["viewer"], sort=query["sort"].replace("%2E", "."))
    order = [int(pk) for pk in re.findall(r'data-run-id="(\d+)"', body)]
    assert order == [runs[k].pk for k in ("sine_a", "digits", "sine_b", "going")]  # without a value: last
    ascending = _list(client, team, users["viewer"], sort="metric.val_accuracy")
    assert re.findall(r'data-run-id="(\d+)"', ascending)[0] == str(runs["digits"].pk)


def test_a_chosen_headline_column_is_shown_once_and_not_offered_twice(client, results):
    team, users, _runs = results
    body = _list(client, team, users["viewer"], cols="config.inner_lr,metric.val_loss")
    assert _headers(body) == ["metric.val_accuracy", "config.inner_lr", "metric.val_loss"]
    picker = re.search(r'<details id="column-picker">(.*?)</details>', body, re.S).group(1)
    offered = re.findall(r'name="cols" value="([^"]+)"', picker)
    assert "metric.val_loss" in offered and "metric.val_accuracy" not in offered and "metric.loss" in offered


def test_adaptations_show_their_query_metrics(client, results):
    team, users, runs = results
    body = _list(client, team, users["viewer"], kind="adapt")
    assert _headers(body) == ["metric.query_loss", "metric.query_accuracy"]
    assert _cell(body, runs["adapt"].pk) == ["0.5", "0.625"]


def test_a_team_without_classifiers_gets_no_accuracy_column(client, team_roles):
    team, users = team_roles
    RunFactory(experiment__team=team, summary={"val": {"val_loss": 0.25}}, status=RunStatus.SUCCEEDED)
    assert _headers(_list(client, team, users["viewer"])) == ["metric.val_loss"]


def test_a_team_without_results_gets_no_metric_column(client, team_roles):
    team, users = team_roles
    RunFactory(experiment__team=team)
    assert _headers(_list(client, team, users["viewer"])) == []


def test_the_experiment_page_shows_them_without_sort_links(client, results):
    _team, users, runs = results
    experiment = runs["sine_a"].experiment
    body = _get(client, users["viewer"], reverse("experiments:experiment-detail", args=[experiment.pk]))
    assert _headers(body) == ["metric.val_loss", "metric.val_accuracy"]
    assert _cell(body, runs["digits"].pk) == ["0.75", "0.875"]
    assert _cell(body, runs["adapt"].pk) == ["", ""]
    assert 'data-sort="metric.val_loss"' not in body


@pytest.mark.parametrize(
    ("names", "kind", "expected"),
    [
        ({"val_loss", "loss"}, "train", ["metric.val_loss"]),
        ({"val_accuracy", "val_loss"}, "train", ["metric.val_loss", "metric.val_accuracy"]),
        ({"val_accuracy", "val_loss"}, "all", ["metric.val_loss", "metric.val_accuracy"]),
        ({"val_loss", "query_loss"}, "adapt", ["metric.query_loss"]),
        (set(), "train", []),
    ],
)
def test_headline_columns_are_those_the_runs_have(names, kind, expected):
    assert [column.name for column in headline_columns(names, kind=kind)] == expected


def test_headline_columns_leave_out_those_shown():
    shown = [column_parse("metric.val_loss")]
    columns = headline_columns({"val_loss", "val_accuracy"}, kind="train", shown=shown)
    assert [column.name for column in columns] == ["metric.val_accuracy"]
