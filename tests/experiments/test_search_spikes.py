"""``spikes`` in the run search: how many loss spikes the run's history tells. Must
pass on PostgreSQL and on SQLite (run with each)."""

from __future__ import annotations

import pytest

from apps.experiments.models import Run, RunEvent
from apps.experiments.search import QueryValueError, field_help, run_search
from tests.experiments.search_rows import ALL, make_runs, names

pytestmark = pytest.mark.django_db


@pytest.fixture
def runs() -> dict[str, Run]:
    """``succeeded`` spiked twice, ``failed`` once, ``queued`` never (it has other events)."""
    runs = make_runs()
    for name, steps in (("succeeded", (120, 480)), ("failed", (300,)), ("outsider", (7,))):
        for step in steps:
            RunEvent.objects.create(
                run=runs[name], kind="spike", step=step, message=f"Loss spike at step {step}."
            )
    RunEvent.objects.create(run=runs["queued"], kind="queued", message="Queued.")
    RunEvent.objects.create(run=runs["failed"], kind="failed", message="Failed at step 301.")
    return runs


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("spikes>0", {"succeeded", "failed"}),
        ("spikes>=2", {"succeeded"}),
        ("spikes>2", set()),
        ("spikes=1", {"failed"}),
        ("spikes:2", {"succeeded"}),
        ("spikes=0", {"queued"}),
        ("spikes!=0", {"succeeded", "failed"}),
        ("spikes!=1", {"succeeded", "queued"}),
        ("spikes<2", {"failed", "queued"}),
        ("spikes<=1", {"failed", "queued"}),
        ("spikes<1", {"queued"}),
        ("spikes>=0", ALL),
        ("NOT spikes>=0", set()),
        ("spikes<0", set()),
        ("NOT spikes>0", {"queued"}),
        ("spikes>0 status:failed", {"failed"}),
    ],
)
def test_spikes_count_the_loss_spikes_in_the_history(runs, query, expected):
    assert names(runs, query) == expected


def test_one_query_and_other_teams_events_stay_theirs(runs, django_assert_num_queries):
    team_runs = Run.objects.filter(team_id=runs["succeeded"].team_id)
    with django_assert_num_queries(1):
        found = list(run_search(queryset=team_runs, query="spikes>0 OR spikes=0"))
    assert len(found) == 3
    everyone = run_search(queryset=Run.objects.all(), query="spikes=1")
    assert set(everyone.values_list("pk", flat=True)) == {runs["failed"].pk, runs["outsider"].pk}


def test_a_value_that_is_no_count_is_refused_and_the_field_is_in_the_help(runs):
    with pytest.raises(QueryValueError) as caught:
        names(runs, "spikes>many")
    assert caught.value.field == "spikes" and caught.value.position == 8
    assert ("spikes", "how many loss spikes the run's history tells") in field_help()


def test_spikes_is_a_column_sorted_across_keyset_pages(runs):
    from apps.experiments.listing.columns import column_parse, sort_parse
    from apps.experiments.listing.selectors import run_page_for_team

    team = runs["succeeded"].team
    column = column_parse("spikes")
    seen, cursor = [], ""
    while True:  # one run a page, most spikes first, ties by id
        page = run_page_for_team(
            team=team, sort=sort_parse("-spikes"), cursor=cursor, per_page=1, columns=[column]
        )
        seen += [(run.pk, column.value(run)) for run in page.runs]
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    counts = {run.pk: n for run, n in ((runs[k], n) for k, n in (("succeeded", 2), ("failed", 1)))}
    expected = sorted(
        ((run.pk, counts.get(run.pk, 0)) for run in Run.objects.filter(team=team)),
        key=lambda r: (-r[1], -r[0]),
    )
    assert seen == expected and seen[0] == (runs["succeeded"].pk, 2)
