"""The run list as a search page: the search box (results, syntax errors and unknown
fields shown on the page), columns from config keys and final metrics, sorting by
any column (numbers as numbers, runs without the value last), keyset pages that
neither repeat nor skip a run, and query counts that do not grow with the rows.
Run on PostgreSQL and on SQLite (``--ds metaweb.settings.test_sqlite``)."""

from __future__ import annotations

import datetime as dt
import html
import re

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.experiments.listing.columns import (
    ColumnError,
    column_display,
    column_parse,
    columns_parse,
    sort_parse,
)
from apps.experiments.listing.keyset import cursor_make
from apps.experiments.listing.selectors import run_column_choices, run_page_for_team
from apps.experiments.models import Run, RunStatus
from apps.experiments.search.fields import FIELDS, SearchField
from tests.factories import SMALL_CONFIG, ExperimentFactory, RunFactory, TaskSetVersionFactory

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}
#: val_loss per run, with ties and runs that have none (None).
LOSSES = [0.3, None, 0.1, 0.3, 0.2, None, 0.1, 0.3, 10.0, 9.0, None, 0.2, 0.1]


@pytest.fixture
def scored(team_roles):
    """Runs of one team with a val_loss each (or none), an inner_lr that is a number,
    a string or missing; and a run of another team."""
    team, users = team_roles
    experiment = ExperimentFactory(team=team, created_by=users["member"], name="Sweep")
    version = TaskSetVersionFactory(taskset__team=team, taskset__name="Sines")
    start = timezone.now() - dt.timedelta(days=1)
    runs = []
    for i, loss in enumerate(LOSSES):
        config = {**SMALL_CONFIG, "inner_lr": [0.5, 0.05, 5, "fast"][i % 4], "family": {"ways": i % 3}}
        if i % 5 == 4:
            config.pop("inner_lr")
        run = RunFactory(
            experiment=experiment,
            taskset_version=version,
            status=RunStatus.SUCCEEDED if loss is not None else RunStatus.FAILED,
            config=config,
            summary={"val": {"val_loss": loss}, "metrics": {"loss": 1.0}} if loss is not None else {},
        )
        Run.objects.filter(pk=run.pk).update(
            created_at=start + dt.timedelta(minutes=i % 4),  # ties
            finished_at=start + dt.timedelta(hours=i % 3) if loss is not None else None,  # ties, NULLs
        )
        runs.append(run)
    RunFactory(summary={"val": {"val_loss": 0.0}})  # another team's
    return team, users, runs


def _expected(runs, key, *, descending):
    """The runs' ids in the list's order: by ``key`` (None last), then by id."""
    with_value = [r for r in runs if key(r) is not None]
    without = [r for r in runs if key(r) is None]
    with_value.sort(key=lambda r: (key(r), r.pk), reverse=descending)
    without.sort(key=lambda r: r.pk, reverse=descending)
    return [r.pk for r in with_value + without]


def _walk(team, sort, per_page):
    """Every page forward from the first, then back from the last: the ids of each."""
    pages = [run_page_for_team(team=team, filters={"kind": "all"}, sort=sort, per_page=per_page)]
    while pages[-1].next_cursor:
        pages.append(
            run_page_for_team(
                team=team, filters={"kind": "all"}, sort=sort, per_page=per_page, cursor=pages[-1].next_cursor
            )
        )
    back = [pages[-1]]
    while back[-1].prev_cursor:
        back.append(
            run_page_for_team(
                team=team, filters={"kind": "all"}, sort=sort, per_page=per_page, cursor=back[-1].prev_cursor
            )
        )
    return [[r.pk for r in p.runs] for p in pages], [[r.pk for r in p.runs] for p in reversed(back)]


def _loss(run):
    return run.summary.get("val", {}).get("val_loss") if run.summary else None


def _inner_lr(run):
    value = run.config.get("inner_lr")
    if isinstance(value, int | float):
        return (0, value, "")
    return (1, 0, value) if isinstance(value, str) else None


#: Each sort's key in Python (None: the run has no value and sorts last).
KEYS = {
    "metric.val_loss": _loss,
    "created": lambda r: r.created_at,
    "finished": lambda r: r.finished_at,
    "config.inner_lr": _inner_lr,
    "id": lambda r: r.pk,
}


@pytest.mark.parametrize(
    "token",
    ["-metric.val_loss", "metric.val_loss", "-created", "created", "id", "-finished", "config.inner_lr"],
)
def test_keyset_pages_cover_every_run_once_in_order(scored, token):
    team, _users, runs = scored
    for run in runs:
        run.refresh_from_db()
    sort = sort_parse(token)
    expected = _expected(runs, KEYS[token.lstrip("-")], descending=sort.descending)
    forward, backward = _walk(team, sort, per_page=4)
    assert [pk for page in forward for pk in page] == expected  # no duplicates, no gaps
    assert forward == backward  # Previous gives back the same pages
    assert all(len(page) == 4 for page in forward[:-1])


def test_config_sort_puts_numbers_as_numbers_then_strings_then_missing(scored):
    team, _users, runs = scored
    sort = sort_parse("config.inner_lr")
    page = run_page_for_team(team=team, filters={"kind": "all"}, sort=sort, per_page=50)
    values = [r.config.get("inner_lr") for r in page.runs]
    numbers = [v for v in values if isinstance(v, int | float)]
    assert numbers == sorted(numbers) and numbers[-1] == 5  # 5 after 0.5: not compared as text
    first_string = values.index("fast")
    assert all(isinstance(v, int | float) for v in values[:first_string])
    assert set(values[first_string:]) == {"fast", None} and values[-1] is None


def test_a_cursor_for_another_sort_or_forged_starts_over(scored):
    team, _users, _runs = scored
    first = run_page_for_team(team=team, filters={"kind": "all"}, per_page=3)
    other = cursor_make(sort=sort_parse("id"), direction="next", values=[1, 1])
    for cursor in (other, first.next_cursor + "x", "not-a-cursor"):
        page = run_page_for_team(team=team, filters={"kind": "all"}, per_page=3, cursor=cursor)
        assert [r.pk for r in page.runs] == [r.pk for r in first.runs] and not page.prev_cursor


def test_column_choices_come_from_the_team_runs(scored):
    team, _users, _runs = scored
    names = [column.name for column in run_column_choices(team=team)]
    assert names[:2] == ["metric.loss", "metric.val_loss"]  # metrics first
    assert "config.inner_lr" in names and "config.family.ways" in names and "config.family" not in names


def _url(**query):
    url = reverse("experiments:run-list", kwargs={"team_slug": "alpha"})
    return url, {"kind": "all", **query}


@pytest.mark.parametrize("headers", [{}, HTMX])
def test_search_box_narrows_the_list(client, scored, headers):
    team, users, runs = scored
    client.force_login(users["viewer"])
    url, query = _url(q="metric.val_loss<0.15")
    body = client.get(url, query, **headers).content.decode()
    shown = {int(pk) for pk in re.findall(r'data-run-id="(\d+)"', body)}
    assert shown == {r.pk for r in runs if _loss(r) is not None and _loss(r) < 0.15}
    assert "3 runs of any kind matching this search" in body
    assert ("<html" in body) != bool(headers)


@pytest.mark.parametrize("headers", [{}, HTMX])
@pytest.mark.parametrize(
    ("q", "message"),
    [
        ("status:", "position 8: expected a value right after &#x27;status:&#x27;"),
        ("colour:red", "position 1: unknown field &#x27;colour&#x27;"),
        ("(algorithm:maml", "position"),
    ],
)
def test_search_errors_show_their_position_under_the_box(client, scored, headers, q, message):
    _team, users, _runs = scored
    client.force_login(users["viewer"])
    url, query = _url(q=q)
    response = client.get(url, query, **headers)
    body = response.content.decode()
    assert response.status_code == 200
    error = re.search(r'id="search-error"[^>]*>(.*?)</p>', body, re.S)
    assert error and message in error.group(1)
    assert "data-run-id=" not in body and 'id="run-table"' in body


def test_columns_show_values_and_sort_links(client, scored):
    _team, users, runs = scored
    client.force_login(users["member"])
    url, query = _url(cols="metric.val_loss,config.inner_lr", sort="-metric.val_loss")
    body = client.get(url, query).content.decode()
    assert 'data-column="metric.val_loss"' in body and 'data-column="config.inner_lr"' in body
    order = [int(pk) for pk in re.findall(r'data-run-id="(\d+)"', body)]
    assert order == _expected(runs, _loss, descending=True)[: len(order)]
    assert f'<td class="num" data-cell="{order[0]}" data-column="metric.val_loss">10</td>' in body
    link = re.search(r'href="\?([^"]*)" data-sort="metric.val_loss"', body).group(1)
    assert "sort=metric.val_loss" in html.unescape(link)  # a second click sorts ascending
    assert "cols=metric.val_loss%2Cconfig.inner_lr" in html.unescape(link)


def test_bad_columns_and_sort_are_named_and_dropped(client, scored):
    _team, users, _runs = scored
    client.force_login(users["viewer"])
    url, query = _url(cols="metric.val_loss,colour,config.a__b", sort="-nope")
    response = client.get(url, query)
    body = html.unescape(response.content.decode())
    assert response.status_code == 200
    assert "cols: unknown column 'colour'" in body
    assert "cols: 'config.a__b': a key is letters" in body
    assert "sort: unknown column 'nope'" in body
    assert 'data-column="metric.val_loss"' in body and body.count("data-run-id=") == len(LOSSES)


def test_query_count_does_not_grow_with_rows(client, scored, django_assert_num_queries):
    team, users, runs = scored
    client.force_login(users["viewer"])
    url, query = _url(cols="metric.val_loss,config.inner_lr", sort="-metric.val_loss", q="algorithm:maml")

    def count() -> int:
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as queries:
            assert client.get(url, query).status_code == 200
        return len(queries)

    count()  # the first visit records the team as last used (once per switch)
    before = count()
    for run in runs:
        RunFactory(
            experiment=run.experiment,
            taskset_version=run.taskset_version,
            summary=run.summary,
            status=run.status,
        )
    assert count() == before
    next_link = re.search(r'href="\?([^"]*cursor=[^"]*)"', client.get(url, query).content.decode())
    with django_assert_num_queries(before):
        assert client.get(f"{url}?{html.unescape(next_link.group(1))}").status_code == 200


def test_no_offset_in_the_page_query(scored, django_assert_max_num_queries):
    team, _users, _runs = scored
    first = run_page_for_team(team=team, filters={"kind": "all"}, per_page=4)
    with django_assert_max_num_queries(3) as queries:
        run_page_for_team(team=team, filters={"kind": "all"}, per_page=4, cursor=first.next_cursor)
    assert not any("OFFSET" in q["sql"].upper() for q in queries.captured_queries)


@pytest.mark.parametrize("headers", [{}, HTMX])
def test_run_list_permissions(client, scored, headers):
    _team, users, _runs = scored
    url, query = _url(q="status:succeeded")
    for role in ("viewer", "member", "admin"):
        client.force_login(users[role])
        assert client.get(url, query, **headers).status_code == 200
    client.force_login(users["outsider"])
    assert client.get(url, query, **headers).status_code == 404
    client.logout()
    assert client.get(url, query, **headers).status_code in (302, 401, 403)


def test_compare_selection_bar_on_both_tables(client, scored):
    _team, users, runs = scored
    client.force_login(users["viewer"])
    url, query = _url()
    body = client.get(url, query).content.decode()
    assert 'data-compare-url="/t/alpha/runs/compare/"' in body and "js/run_select.js" in body
    assert f'data-select-run="{runs[0].pk}"' in body and 'data-max="20"' in body
    detail = reverse("experiments:experiment-detail", args=[runs[0].experiment_id])
    body = client.get(detail).content.decode()
    assert f'data-select-run="{runs[0].pk}"' in body and "data-compare-button" in body


@pytest.mark.parametrize(
    "name", sorted(name for name, field in FIELDS.items() if field.kind not in ("tag", "count"))
)
def test_every_search_field_is_a_sortable_column(scored, name):
    """Every one-value-per-run field (a run has many tags: test_tags_are_searched_not_a_column)."""
    team, _users, runs = scored
    column = column_parse(name)
    for token in (name, f"-{name}"):
        forward, backward = _walk(team, sort_parse(token), per_page=5)
        assert sorted(pk for page in forward for pk in page) == sorted(r.pk for r in runs)
        assert forward == backward
    assert column_display(column.value(runs[0])) != "" or name in ("started", "finished", "sweep")


def test_tags_are_searched_not_a_column():
    with pytest.raises(ColumnError, match="tag has many values per run"):
        column_parse("tag")


def test_a_field_with_many_values_per_run_is_not_a_column(monkeypatch):
    monkeypatch.setitem(FIELDS, "metricname", SearchField("metricname", "text", "metrics__name", "a metric"))
    with pytest.raises(ColumnError, match="metricname has many values per run"):
        column_parse("metricname")
    columns, errors = columns_parse("seed,metricname")
    assert [c.name for c in columns] == ["seed"] and errors == [
        "cols: metricname has many values per run: search it, not a column"
    ]
