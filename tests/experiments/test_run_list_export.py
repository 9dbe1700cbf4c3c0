"""The run list as CSV: every run it matches (not one page), in its order, under its
filters and search, with the run's facts, the headline metrics and the chosen
columns, streamed a keyset page at a time. Run on PostgreSQL and on SQLite."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from django.test import AsyncRequestFactory
from django.urls import reverse
from django.utils import timezone

from apps.experiments.listing.columns import column_text, sort_parse
from apps.experiments.listing.export import FACT_COLUMNS
from apps.experiments.listing.selectors import runs_in_order, runs_matching
from apps.experiments.models import Run, RunEvent, RunStatus
from apps.experiments.services import runs_archive
from tests.factories import ExperimentFactory, RunFactory, TaskSetVersionFactory
from workers.metalearn.spikes import SPIKE

pytestmark = pytest.mark.django_db


@pytest.fixture
def many(team_roles):
    """30 runs of the team (more than a page of the list), each with a val_loss and
    an inner_lr, the newest first by creation; and another team's run."""
    team, users = team_roles
    experiment = ExperimentFactory(team=team, created_by=users["member"], name="Grid, big")
    version = TaskSetVersionFactory(taskset__team=team, taskset__name="Sines")
    start = timezone.now() - dt.timedelta(days=1)
    runs = []
    for i in range(30):
        run = RunFactory(
            experiment=experiment,
            taskset_version=version,
            algorithm=("maml", "reptile")[i % 2],
            status=RunStatus.SUCCEEDED,
            seed=i,
            config={"inner_lr": 0.001 * (i + 1)},
            summary={"val": {"val_loss": 1.0 / (i + 1)}},
        )
        Run.objects.filter(pk=run.pk).update(created_at=start + dt.timedelta(minutes=i))
        runs.append(run)
    RunFactory(status=RunStatus.SUCCEEDED, summary={"val": {"val_loss": 0.0}})
    return team, users, runs


def _export(client, user, team, **query) -> tuple[int, list[dict[str, str]], object]:
    client.force_login(user)
    response = client.get(reverse("experiments:run-list-csv", kwargs={"team_slug": team.slug}), query)
    if response.status_code != 200:
        return response.status_code, [], response
    text = b"".join(response.streaming_content).decode()
    return 200, list(csv.DictReader(io.StringIO(text))), response


def test_every_matching_run_in_the_lists_order_with_its_columns(client, many):
    team, users, runs = many
    status, rows, response = _export(client, users["viewer"], team, cols="config.inner_lr")
    assert status == 200 and response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="alpha-runs.csv"'
    assert list(rows[0]) == [*FACT_COLUMNS, "metric.val_loss", "config.inner_lr"]
    assert [int(row["id"]) for row in rows] == [run.pk for run in reversed(runs)]  # newest first, all 30
    last = rows[0]
    assert last["experiment"] == "Grid, big" and last["taskset"] == "Sines" and last["by"] == "member"
    assert last["metric.val_loss"] == repr(1.0 / 30) and last["config.inner_lr"] == repr(0.001 * 30)
    assert last["seed"] == "29" and last["status"] == "succeeded" and last["created"].endswith("+00:00")


def test_the_search_filters_sort_and_archive_apply(client, many):
    team, users, runs = many
    runs_archive(team=team, run_ids=[runs[0].pk], actor=users["member"])
    _status, rows, _response = _export(
        client, users["viewer"], team, q="algorithm:maml", sort="metric.val_loss"
    )
    expected = [run.pk for run in reversed(runs) if run.algorithm == "maml" and run != runs[0]]
    assert [int(row["id"]) for row in rows] == expected  # lowest loss first: the newest
    _status, rows, _response = _export(client, users["viewer"], team, archived="only")
    assert [int(row["id"]) for row in rows] == [runs[0].pk]


def test_a_bad_search_is_refused_naming_q(client, many):
    team, users, _runs = many
    status, _rows, response = _export(client, users["viewer"], team, q="colour:red")
    assert status == 400 and response.content.decode().startswith("q: position 1: unknown field")


def test_outsiders_get_404_and_strangers_the_login(client, many):
    team, users, _runs = many
    assert _export(client, users["outsider"], team)[0] == 404
    client.logout()
    response = client.get(reverse("experiments:run-list-csv", kwargs={"team_slug": team.slug}))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_the_list_links_to_its_csv_with_its_query(client, many):
    team, users, _runs = many
    client.force_login(users["viewer"])
    url = reverse("experiments:run-list", kwargs={"team_slug": team.slug})
    body = client.get(url, {"q": "algorithm:maml", "sort": "seed"}).content.decode()
    assert f'href="{url}export.csv?q=algorithm%3Amaml&amp;sort=seed"' in body
    assert 'id="download-runs"' not in client.get(url, {"q": "colour:red"}).content.decode()


def test_runs_in_order_reads_a_keyset_page_a_query(many, django_assert_num_queries):
    team, _users, runs = many
    queryset = runs_matching(team=team, filters={}, query="")
    with django_assert_num_queries(5):  # 30 runs in pages of 7: 7, 7, 7, 7, 2
        ids = [run.pk for run in runs_in_order(queryset, sort=sort_parse("seed"), batch=7)]
    assert ids == [run.pk for run in runs]


def test_under_asgi_the_csv_is_an_async_stream(many):
    team, users, _runs = many
    from apps.experiments.views_run_list import run_list_csv

    request = AsyncRequestFactory().get("/")
    request.user = users["viewer"]
    response = run_list_csv(request, team.slug)
    assert response.is_async


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        (None, ""),
        (True, "true"),
        (0.1 + 0.2, "0.30000000000000004"),
        ({"b": 1, "a": [1, 2]}, '{"a":[1,2],"b":1}'),
        (dt.datetime(2026, 12, 1, 6, 30, tzinfo=dt.UTC), "2026-12-01T06:30:00+00:00"),
        ("fast", "fast"),
    ],
)
def test_cells_are_written_in_full(value, cell):
    assert column_text(value) == cell


def test_the_spikes_column_on_the_page_and_in_the_download(client, many):
    team, users, runs = many
    for run, count in ((runs[3], 2), (runs[7], 1)):
        for step in range(count):
            RunEvent.objects.create(run=run, kind=SPIKE, step=step + 1, message="Loss spike.")
    RunEvent.objects.create(run=runs[5], kind="queued", message="Queued.")  # not a spike
    status, rows, _ = _export(client, users["viewer"], team, cols="spikes", sort="-spikes")
    assert status == 200 and len(rows) == 30
    assert [(row["id"], row["spikes"]) for row in rows[:3]] == [
        (str(runs[3].pk), "2"),
        (str(runs[7].pk), "1"),
        (str(runs[29].pk), "0"),  # then the rest, newest id first
    ]
    page = client.get(
        reverse("experiments:run-list", kwargs={"team_slug": team.slug}),
        {"cols": "spikes", "sort": "-spikes"},
    )
    html = page.content.decode()
    assert f'data-cell="{runs[3].pk}" data-column="spikes">2<' in html
    assert f'data-cell="{runs[29].pk}" data-column="spikes">0<' in html
