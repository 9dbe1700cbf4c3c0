"""The run search compiled to ``Q`` and run against real rows. Every test here
must pass on PostgreSQL and on SQLite (run this file with each)."""

from __future__ import annotations

import datetime as dt
import random
import re
from typing import Any

import pytest
from django.utils import timezone

from apps.experiments.models import Run, RunKind, RunStatus
from apps.experiments.search import (
    QueryError,
    QueryFieldError,
    QueryValueError,
    field_names,
    run_search,
)
from tests.factories import (
    SMALL_CONFIG,
    ExperimentFactory,
    RunFactory,
    TaskSetFactory,
    TaskSetVersionFactory,
    TeamFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db
UTC = dt.UTC


def make_run(*, created: dt.datetime, config: dict[str, Any] | None = None, **fields: Any) -> Run:
    run = RunFactory(config={**SMALL_CONFIG, **(config or {})}, **fields)
    Run.objects.filter(pk=run.pk).update(created_at=created)
    run.refresh_from_db()
    return run


@pytest.fixture
def runs() -> dict[str, Run]:
    """Three runs of one team, plus one of another team."""
    team = TeamFactory()
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    sine = TaskSetVersionFactory(taskset=TaskSetFactory(team=team, name="Sine waves"))
    glyphs = TaskSetVersionFactory(taskset=TaskSetFactory(team=team, name="Glyphs 5-way"))
    baseline = ExperimentFactory(team=team, name="Sine baseline 100%", created_by=alice)
    ablation = ExperimentFactory(team=team, name="Glyph_ablation", created_by=bob)
    succeeded = make_run(
        experiment=baseline,
        taskset_version=sine,
        launched_by=alice,
        status=RunStatus.SUCCEEDED,
        seed=7,
        step=20,
        config={"inner_lr": 0.01, "first_order": False, "family": {"name": "sinusoid"}, "note": "alpha"},
        summary={"metrics": {"loss": 0.2}, "val": {"val_loss": 0.25}, "step": 20},
        created=dt.datetime(2026, 11, 2, 9, 0, tzinfo=UTC),
        started_at=dt.datetime(2026, 11, 2, 9, 1, tzinfo=UTC),
        finished_at=dt.datetime(2026, 11, 2, 9, 30, tzinfo=UTC),
    )
    failed = make_run(
        experiment=ablation,
        taskset_version=glyphs,
        launched_by=bob,
        algorithm="protonet",
        status=RunStatus.FAILED,
        seed=8,
        step=5,
        config={"inner_lr": 0.1, "first_order": True, "family": {"name": "glyphs"}, "note": "beta"},
        error="CUDA out of memory at step 5",
        created=dt.datetime(2026, 11, 1, 0, 0, tzinfo=UTC),
        started_at=dt.datetime(2026, 11, 1, 0, 5, tzinfo=UTC),
        finished_at=dt.datetime(2026, 11, 1, 23, 59, 59, tzinfo=UTC),
    )
    queued = make_run(
        experiment=baseline,
        taskset_version=sine,
        launched_by=alice,
        kind=RunKind.ADAPT,
        queue="gpu",
        seed=9,
        config={"inner_lr": "fast", "contains": 3, "isnull": 1},
        summary={"final": {"query_loss": 0.1}},
        created=dt.datetime(2026, 10, 31, 23, 59, 59, tzinfo=UTC),
    )
    outsider = make_run(
        experiment=ExperimentFactory(name="Sine baseline elsewhere"),
        status=RunStatus.SUCCEEDED,
        created=dt.datetime(2026, 11, 2, tzinfo=UTC),
    )
    return {"succeeded": succeeded, "failed": failed, "queued": queued, "outsider": outsider}


def names(runs: dict[str, Run], query: str) -> set[str]:
    """Which of the team's runs match ``query``."""
    team_runs = Run.objects.filter(team_id=runs["succeeded"].team_id)
    found = set(run_search(queryset=team_runs, query=query).values_list("pk", flat=True))
    return {name for name, run in runs.items() if run.pk in found}


ALL = {"succeeded", "failed", "queued"}


# -- the whole language -------------------------------------------------------------------


def test_the_issue_example_finds_the_run(runs):
    query = (
        "algorithm:maml status:succeeded config.inner_lr>=0.01 metric.val_loss<0.3 "
        'by:alice created>2026-11-01 "baseline"'
    )
    assert names(runs, query) == {"succeeded"}


def test_a_blank_query_keeps_the_queryset(runs):
    assert names(runs, "  ") == ALL


def test_the_queryset_the_selector_passed_stays_narrowed(runs):
    assert "outsider" not in names(runs, "baseline")
    everyone = run_search(queryset=Run.objects.all(), query="baseline")
    assert runs["outsider"].pk in set(everyone.values_list("pk", flat=True))


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status:failed OR status:queued", {"failed", "queued"}),
        ("alice status:queued", set()),  # "alice" is text, not a field: matches no name
        ("status:succeeded OR seed:8 seed:9", {"succeeded"}),
        ("(status:succeeded OR seed:8) seed:8", {"failed"}),
        ("NOT status:failed", {"succeeded", "queued"}),
        ("-status:failed -kind:adapt", {"succeeded"}),
        ("NOT (status:failed OR kind:adapt)", {"succeeded"}),
        ("by:alice AND NOT kind:adapt", {"succeeded"}),
    ],
)
def test_and_or_not_on_rows(runs, query, expected):
    assert names(runs, query) == expected


@pytest.mark.parametrize(
    "query",
    [
        "config.inner_lr>0.05",
        "config.inner_lr:fast",
        "config.first_order:true",
        "config.missing>1",
        "metric.val_loss<0.3",
        "metric.query_loss<=0.1",
        "started>2026-11-01",
        "finished!=2026-11-02",
        "started<2026-11-02T00:00",
        "experiment:sine",
        "glyph",
    ],
)
def test_not_is_the_exact_complement_even_where_values_are_missing(runs, query):
    """A missing JSON key or a NULL column must not vanish from both sides."""
    matched, unmatched = names(runs, query), names(runs, f"NOT ({query})")
    assert matched | unmatched == ALL
    assert not matched & unmatched


# -- fields by type -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("algorithm:maml", {"succeeded", "queued"}),
        ("algorithm:ProtoNet", {"failed"}),
        ("algorithm!=maml", {"failed"}),
        ("status=succeeded", {"succeeded"}),
        ("kind:adapt", {"queued"}),
        ("queue:GPU", {"queued"}),
        ("Status:Failed", {"failed"}),
    ],
)
def test_choice_fields(runs, query, expected):
    assert names(runs, query) == expected


def test_a_wrong_choice_names_the_choices(runs):
    with pytest.raises(QueryValueError) as caught:
        names(runs, "seed:7 status:done")
    assert caught.value.field == "status"
    assert caught.value.position == 15
    assert "queued, running, succeeded, failed, cancelled" in str(caught.value)
    assert "'done'" in str(caught.value)


def test_a_choice_cannot_be_ordered(runs):
    with pytest.raises(QueryValueError, match="status compares choices with ':', '=', '!=', not '>'"):
        names(runs, "status>queued")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("seed:7", {"succeeded"}),
        ("seed>=8", {"failed", "queued"}),
        ("seed<8", {"succeeded"}),
        ("seed<=8", {"succeeded", "failed"}),
        ("seed!=8", {"succeeded", "queued"}),
        ("seed>+8", {"queued"}),
        ("step>4", {"succeeded", "failed"}),
        ("seed>-1", ALL),
    ],
)
def test_integer_fields(runs, query, expected):
    assert names(runs, query) == expected


def test_integer_field_by_id(runs):
    assert names(runs, f"id:{runs['failed'].pk}") == {"failed"}


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("seed:abc", "seed: expects a whole number, found 'abc'"),
        ("seed:1.5", "seed: expects a whole number"),
        ('seed:"7"', "seed: expects a whole number"),
        ("seed:99999999999999999999", "a whole number below 2^63"),
        ("step>1e3", "step> expects a whole number"),
    ],
)
def test_integer_values_are_checked(runs, query, message):
    with pytest.raises(QueryValueError, match=re.escape(message)):
        names(runs, query)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("experiment:SINE", {"succeeded", "queued"}),  # part of the name, any case
        ('experiment:"baseline 100%"', {"succeeded", "queued"}),  # % is a character
        ("experiment:baseline_", set()),  # _ is a character, not a wildcard
        ("experiment:glyph_", {"failed"}),
        ('experiment="Sine baseline 100%"', {"succeeded", "queued"}),  # = is exact
        ("experiment=sine", set()),
        ('experiment!="Glyph_ablation"', {"succeeded", "queued"}),
        ("experiment>H", {"succeeded", "queued"}),
        ("taskset:glyphs", {"failed"}),
        ("by:ALICE", {"succeeded", "queued"}),  # the username, any case
        ("by:ali", set()),  # not a part
        ("by=bob", {"failed"}),
    ],
)
def test_text_fields(runs, query, expected):
    assert names(runs, query) == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("created:2026-11-01", {"failed"}),  # the whole day, midnight included
        ("created=2026-11-02", {"succeeded"}),
        ("created>2026-11-01", {"succeeded"}),  # after that day
        ("created>=2026-11-01", {"succeeded", "failed"}),
        ("created<2026-11-01", {"queued"}),  # before that day
        ("created<=2026-11-01", {"failed", "queued"}),  # up to its end
        ("created!=2026-11-01", {"succeeded", "queued"}),
        ("created>2026-11-02T08:59", {"succeeded"}),
        ("created:2026-11-01T00:00:00Z", {"failed"}),
        ("created<2026-11-01T01:00+01:00", {"queued"}),  # an offset is honoured
        ("finished:2026-11-01", {"failed"}),  # 23:59:59 is still that day
        ("finished!=2026-11-01", {"succeeded"}),  # a run never finished has no date
        ("started<2026-12-01", {"succeeded", "failed"}),
    ],
)
def test_date_fields(runs, query, expected):
    assert names(runs, query) == expected


def test_a_day_is_a_day_in_the_current_time_zone(runs):
    with timezone.override("Europe/Paris"):  # UTC+1 in November
        assert names(runs, "created:2026-11-01") == {"queued", "failed"}
        assert names(runs, "created>2026-11-01") == {"succeeded"}


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("created:yesterday", "expects a date like 2026-11-01 or a date and time like 2026-11-01T14:30"),
        ("created:2026-02-30", "expects a date like 2026-11-01"),
        ('created:"2026-11-01"', "expects a date like"),
        ("created<0001-01-01", "a date from 1900 to 9998"),
        ("finished>9999-12-31", "a date from 1900 to 9998"),
    ],
)
def test_date_values_are_checked(runs, query, message):
    with pytest.raises(QueryValueError, match=message):
        names(runs, query)


# -- config and metrics (JSON) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("config.inner_lr>=0.01", {"succeeded", "failed"}),  # "fast" is not a number
        ("config.inner_lr>0.05", {"failed"}),
        ("config.inner_lr<1", {"succeeded", "failed"}),  # a string never sorts below a number
        ("config.inner_lr:0.1", {"failed"}),
        ("config.inner_lr=1e-2", {"succeeded"}),
        ("config.inner_lr!=0.1", {"succeeded"}),  # only numbers compare as numbers
        ("config.meta_batch:4", {"succeeded", "failed", "queued"}),  # an int
        ("config.meta_batch:4.0", {"succeeded", "failed", "queued"}),  # a float equals the int
        ("config.meta_batch>3.5", {"succeeded", "failed", "queued"}),
        ("config.inner_lr:fast", {"queued"}),
        ('config.inner_lr:"fast"', {"queued"}),
        ('config.inner_lr:"0.1"', set()),  # quoted: the string "0.1", not the number
        ("config.note>alpha", {"failed"}),  # strings order as strings
        ("config.note<=alpha", {"succeeded"}),
        ("config.first_order:true", {"failed"}),
        ("config.first_order:FALSE", {"succeeded"}),
        ("config.first_order!=true", {"succeeded"}),
        ("config.family.name:sinusoid", {"succeeded", "queued"}),  # nested keys
        ("config.family.name!=sinusoid", {"failed"}),
        ("config.contains:3", {"queued"}),  # a lookup's name is only a key
        ("config.isnull:1", {"queued"}),
        ("config.missing>0", set()),
        ("config.inner_lr.deeper:1", set()),
    ],
)
def test_config_values(runs, query, expected):
    assert names(runs, query) == expected


def test_a_boolean_cannot_be_ordered(runs):
    with pytest.raises(QueryValueError, match="config.first_order compares true or false"):
        names(runs, "config.first_order>true")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("metric.val_loss<0.3", {"succeeded"}),  # the last evaluation of a training run
        ("metric.loss:0.2", {"succeeded"}),  # its last step
        ("metric.query_loss<=0.1", {"queued"}),  # an adaptation's last inner step
        ("metric.val_loss>=0", {"succeeded"}),  # a run without a summary never matches
        ("metric.nothing<1", set()),
    ],
)
def test_final_metrics(runs, query, expected):
    assert names(runs, query) == expected


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("metric.val_loss<low", "expects a number, found 'low'"),
        ('metric.val_loss<"0.3"', "expects a number"),
        ("metric.val_loss<nan", "expects a number"),
        ("metric.val_loss<1e999", "expects a finite number"),
        ("config.x>1e999", "expects a finite number"),
    ],
)
def test_metric_values_are_numbers(runs, query, message):
    with pytest.raises(QueryValueError, match=message):
        names(runs, query)


# -- free text ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("sine", {"succeeded", "queued"}),  # the experiment's name
        ('"out of memory"', {"failed"}),  # the error
        ("waves", {"succeeded", "queued"}),  # the task set's name
        ("protonet", {"failed"}),  # the algorithm
        ("100%", {"succeeded", "queued"}),
        ("%", {"succeeded", "queued"}),
        ("_", {"failed"}),
        ("nothing-like-this", set()),
        ('"日本語"', set()),
    ],
)
def test_free_text(runs, query, expected):
    assert names(runs, query) == expected


# -- hostile input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("config__x:1", "config__x"),
        ("config__inner_lr__gt:0", "config__inner_lr__gt"),
        ("__class__:x", "__class__"),
        ("config.__class__:1", "config.__class__"),
        ("config.a__b:1", "config.a__b"),
        ("config._:1 config.__init__.__globals__:1", "config.__init__.__globals__"),
        ("config.:1", "config."),
        ("config.a..b:1", "config.a..b"),
        ("config.1abc:1", "config.1abc"),
        ("metric.x;DROP<1", "metric.x;DROP"),
        ("metric.a.b<1", "metric.a.b"),
        ("metric.__len__>0", "metric.__len__"),
        ("config.a.b.c.d.e.f.g.h.i:1", "config.a.b.c.d.e.f.g.h.i"),
        (f"config.{'k' * 65}:1", f"config.{'k' * 65}"),
        ("' OR 1=1 --", "1"),
        ("pk:1", "pk"),
        ("team_id:1", "team_id"),
        ("attempt_token:x", "attempt_token"),
        ("config:1", "config"),
        ("summary.val_loss<1", "summary.val_loss"),
        ("config.x'--:1", "config.x'--"),
        ("Ünïcode:1", "Ünïcode"),
    ],
)
def test_field_names_outside_the_whitelist_are_refused_by_name(runs, query, field):
    with pytest.raises(QueryFieldError) as caught:
        names(runs, query)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"position {caught.value.position}: ")


def test_an_unknown_field_lists_the_known_ones(runs):
    with pytest.raises(QueryFieldError) as caught:
        names(runs, "status:failed colour:red")
    assert caught.value.position == 15
    assert "unknown field 'colour'" in str(caught.value)
    assert ", ".join(field_names()) in str(caught.value)


def test_tag_is_named_as_not_there_yet(runs):
    with pytest.raises(QueryFieldError, match="unknown field 'tag': runs have no tags yet"):
        names(runs, "tag:baseline")


@pytest.mark.parametrize(
    "query",
    [
        '"\' OR 1=1 --"',
        '"\'; DROP TABLE experiments_run; --"',
        "experiment:\"x' OR '1'='1\"",
        'config.note:"alpha\' OR 1=1 --"',
        'by:"alice\\" OR 1=1"',
        "experiment:)--",
    ],
)
def test_sql_shaped_values_are_only_values(runs, query):
    try:
        assert names(runs, query) == set()
    except QueryError:
        pass  # refused with a message is also fine; a database error is not
    assert Run.objects.count() == 4


def test_a_search_is_one_query(runs, django_assert_num_queries):
    query = (
        "algorithm:maml status:succeeded config.inner_lr>=0.01 metric.val_loss<0.3 by:alice "
        'created>2026-11-01 taskset:sine (experiment:sine OR NOT "out of memory")'
    )
    team_runs = Run.objects.filter(team_id=runs["succeeded"].team_id)
    with django_assert_num_queries(1):
        found = list(run_search(queryset=team_runs, query=query))
    assert found == [runs["succeeded"]]


def test_random_queries_reach_the_database_or_a_query_error_never_a_database_error(runs):
    """Fuzz with pieces of real syntax: every query the parser and the compiler
    accept must run on the database; every other one must be a QueryError."""
    pieces = [
        *field_names()[:-2], "config.inner_lr", "config.family.name", "config.first_order",
        "metric.val_loss", "metric.query_loss", "config.contains", "tag", "config__x",
        ":", "=", "!=", ">", ">=", "<", "<=", " ", " ", " OR ", " AND ", " NOT ", "-", "(", ")", '"',
        "0", "-1", "0.01", "1e-3", "9223372036854775807", "99999999999999999999", "true", "fast",
        "2026-11-01", "2026-11-01T10:00Z", "9998-12-31", "maml", "succeeded", "adapt", "gpu",
        "sine", "%", "_", "'", ";", "\\", "é", "日本",
    ]  # fmt: skip
    rng = random.Random(99)
    team_runs = Run.objects.filter(team_id=runs["succeeded"].team_id)
    ran = refused = 0
    for _ in range(400):
        query = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 12)))
        try:
            found = run_search(queryset=team_runs, query=query)
        except QueryError:
            refused += 1
            continue
        assert set(found.values_list("pk", flat=True)) <= {run.pk for run in team_runs}
        ran += 1
    assert ran > 50 and refused > 50


@pytest.mark.parametrize("query", ["x" * 300 + ":1", "config." + "a" * 300 + ":1", "seed:" + "9" * 300])
def test_error_messages_repeat_at_most_a_short_part_of_the_input(runs, query):
    with pytest.raises(QueryError) as caught:
        names(runs, query)
    assert "…" in str(caught.value)
    assert "x" * 41 not in str(caught.value) and "a" * 41 not in str(caught.value)
    assert "9" * 41 not in str(caught.value)
