"""``tag:<name>`` in the run search: a run matches when it carries the tag or its
experiment does. Must pass on PostgreSQL and on SQLite (run with each)."""

from __future__ import annotations

import pytest

from apps.experiments.models import Run, Tag
from apps.experiments.search import QueryFieldError, QueryValueError, field_help, run_search
from tests.experiments.search_rows import ALL, make_runs, names

pytestmark = pytest.mark.django_db


@pytest.fixture
def runs() -> dict[str, Run]:
    runs = make_runs()
    team_id, outsider = runs["succeeded"].team_id, runs["outsider"]
    best, sine, ablation = (Tag.objects.create(team_id=team_id, name=n) for n in ("best", "sine", "ablation"))
    runs["succeeded"].tags.add(best, sine)
    runs["succeeded"].experiment.tags.add(sine)  # the experiment of "succeeded" and "queued"
    runs["failed"].experiment.tags.add(ablation)
    outsider.tags.add(Tag.objects.create(team_id=outsider.team_id, name="best"))
    return runs


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("tag:best", {"succeeded"}),
        ("tag=best", {"succeeded"}),
        ("tag:BEST", {"succeeded"}),
        ('tag:"best"', {"succeeded"}),
        ("tag:sine", {"succeeded", "queued"}),  # the run's own tag, or its experiment's
        ("tag:ablation", {"failed"}),
        ("tag:nothing", set()),
        ("NOT tag:sine", {"failed"}),
        ("-tag:best", {"queued", "failed"}),
        ("tag:sine status:queued", {"queued"}),
        ("tag:best OR tag:ablation", {"succeeded", "failed"}),
        ("tag:sine tag:best", {"succeeded"}),
        ("NOT tag:nothing", ALL),
    ],
)
def test_tag_matches_the_run_or_its_experiment(runs, query, expected):
    assert names(runs, query) == expected


def test_a_run_tagged_twice_comes_back_once_in_one_query(runs, django_assert_num_queries):
    team_runs = Run.objects.filter(team_id=runs["succeeded"].team_id)
    with django_assert_num_queries(1):
        found = list(run_search(queryset=team_runs, query="tag:sine OR tag:best"))
    assert sorted(run.pk for run in found) == sorted([runs["succeeded"].pk, runs["queued"].pk])


def test_another_teams_tag_of_the_same_name_matches_nothing_here(runs):
    everyone = run_search(queryset=Run.objects.all(), query="tag:best")
    assert set(everyone.values_list("pk", flat=True)) == {runs["succeeded"].pk, runs["outsider"].pk}
    assert "outsider" not in names(runs, "tag:best")


@pytest.mark.parametrize("op", ["!=", ">", ">=", "<", "<="])
def test_tag_compares_only_for_equality(runs, op):
    with pytest.raises(QueryValueError) as caught:
        names(runs, f"status:failed tag{op}best")
    assert caught.value.field == "tag"
    assert caught.value.position == 18
    assert f"tag compares tag names with ':', '=', not '{op}'" in str(caught.value)


@pytest.mark.parametrize("value", ['"two words"', "a/b", '""', "x" * 41])
def test_a_value_that_is_no_tag_name_is_refused_at_its_position(runs, value):
    with pytest.raises(QueryValueError) as caught:
        names(runs, f"tag:{value}")
    assert caught.value.position == 5
    assert "expects a tag name" in str(caught.value)


def test_tag_is_in_the_help_and_no_longer_unknown(runs):
    assert ("tag", "a tag on the run or on its experiment") in field_help()
    with pytest.raises(QueryFieldError, match="unknown field 'tags'"):
        names(runs, "tags:best")
