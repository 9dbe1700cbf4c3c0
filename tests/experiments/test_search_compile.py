"""The run search compiled to ``Q`` and run against real rows: the whole
language and every field type. Every test here must pass on PostgreSQL and on
SQLite (run this file with each)."""

from __future__ import annotations

import re

import pytest
from django.utils import timezone

from apps.experiments.models import Run
from apps.experiments.search import QueryValueError, run_search
from tests.experiments.search_rows import ALL, make_runs, names

pytestmark = pytest.mark.django_db


@pytest.fixture
def runs() -> dict[str, Run]:
    return make_runs()


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
