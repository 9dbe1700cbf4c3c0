"""Launch and filter forms: parsing, team-scoped choices, and service errors on fields."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from apps.experiments.forms import RunFilterForm, RunLaunchForm
from tests.factories import ExperimentFactory, TaskSetFactory, TaskSetVersionFactory, launch_form_data
from workers.metalearn.config import TrainConfig, parse_config

pytestmark = pytest.mark.django_db


@pytest.fixture
def launchable(team_roles):
    team, users = team_roles
    experiment = ExperimentFactory(team=team)
    version = TaskSetVersionFactory(taskset__team=team)
    return team, experiment, version


def test_initial_values_are_the_engine_defaults(launchable):
    team, _, _ = launchable
    form = RunLaunchForm(team=team)
    defaults = TrainConfig()
    for name in ("inner_lr", "inner_steps", "meta_lr", "meta_batch", "shots", "ways", "query", "iterations"):
        assert form.base_fields[name].initial == getattr(defaults, name), name
    assert form.fields["hidden"].initial == "40, 40"
    assert form.fields["inner_lr"].help_text == TrainConfig.model_fields["inner_lr"].description


def test_valid_form_gives_a_config_the_engine_accepts(launchable):
    team, experiment, version = launchable
    form = RunLaunchForm(
        launch_form_data(experiment, version, seed="3", first_order="on", grad_clip="2.5"), team=team
    )
    assert form.is_valid(), form.errors
    config = form.config()
    assert set(config) & {"experiment", "taskset", "queue", "cloned_from"} == set()
    assert config["hidden"] == [40, 40] and config["first_order"] is True and config["grad_clip"] == 2.5
    parsed = parse_config(config)  # the family is added by the service; the default is fine here
    assert (parsed.seed, parsed.meta_batch, parsed.inner_lr) == (3, 4, 0.01)
    assert parsed.compile == "auto"  # the default: MLP runs get the fast path without asking


@pytest.mark.parametrize("value,expected", [("auto", "auto"), ("on", "on"), ("off", "off"), ("", "auto")])
def test_compile_takes_auto_on_off(launchable, value, expected):
    team, experiment, version = launchable
    form = RunLaunchForm(launch_form_data(experiment, version, compile=value), team=team)
    assert form.is_valid(), form.errors
    assert form.config()["compile"] == expected
    assert form.fields["compile"].initial == "auto"


@pytest.mark.parametrize("value,expected", [("cosine", "cosine"), ("constant", "constant"), ("", "constant")])
def test_meta_lr_schedule_reaches_the_config(launchable, value, expected):
    team, experiment, version = launchable
    form = RunLaunchForm(launch_form_data(experiment, version, meta_lr_schedule=value), team=team)
    assert form.is_valid(), form.errors
    assert parse_config(form.config()).meta_lr_schedule == expected
    described = TrainConfig.model_fields["meta_lr_schedule"].description
    assert form.fields["meta_lr_schedule"].help_text == described


def test_compile_names_the_field_on_a_bad_value(launchable):
    team, experiment, version = launchable
    form = RunLaunchForm(launch_form_data(experiment, version, compile="sometimes"), team=team)
    assert not form.is_valid() and "compile" in form.errors


def test_choices_are_limited_to_the_team(launchable):
    team, experiment, version = launchable
    foreign_experiment = ExperimentFactory()
    foreign_version = TaskSetVersionFactory()
    # With no task set of its own team, the form cannot tell the family: it asks every backbone's fields.
    data = launch_form_data(foreign_experiment, foreign_version, ways="5", conv_filters="64")
    form = RunLaunchForm(data, team=team)
    assert not form.is_valid()
    assert set(form.errors) == {"experiment", "taskset"}


def test_task_sets_without_versions_are_not_offered(launchable):
    team, experiment, version = launchable
    empty = TaskSetFactory(team=team, name="no versions yet")
    form = RunLaunchForm(team=team)
    assert list(form.fields["taskset"].queryset) == [version.taskset]
    assert empty not in form.fields["taskset"].queryset


@pytest.mark.parametrize(
    ("hidden", "ok"), [("32,16", True), ("", False), ("40, forty", False), ("1" * 101, False)]
)
def test_hidden_sizes_parse(launchable, hidden, ok):
    team, experiment, version = launchable
    form = RunLaunchForm(launch_form_data(experiment, version, hidden=hidden), team=team)
    assert form.is_valid() is ok
    if not ok:
        assert list(form.errors) == ["hidden"]


@pytest.mark.parametrize(("field", "value"), [("inner_lr", "abc"), ("shots", "1.5"), ("meta_lr", "inf")])
def test_non_numbers_are_refused_before_the_engine(launchable, field, value):
    team, experiment, version = launchable
    form = RunLaunchForm(launch_form_data(experiment, version, **{field: value}), team=team)
    assert not form.is_valid()
    assert list(form.errors) == [field]


def test_service_errors_land_on_their_fields(launchable):
    team, experiment, version = launchable
    form = RunLaunchForm(launch_form_data(experiment, version), team=team)
    assert form.is_valid()
    form.add_service_errors(ValidationError({"shots": "too many", "bogus": "extra inputs are not permitted"}))
    assert form.errors["shots"] == ["too many"]
    assert form.non_field_errors() == ["bogus: extra inputs are not permitted"]


def test_filter_form_drops_invalid_values(team_roles):
    team, users = team_roles
    mine = TaskSetFactory(team=team)
    other = TaskSetFactory()
    form = RunFilterForm(
        {"status": "failed", "algorithm": "nope", "taskset": other.pk, "date_from": "2026-01-02"}, team=team
    )
    filters = form.filters()
    assert filters["status"] == "failed" and str(filters["date_from"]) == "2026-01-02"
    assert "algorithm" not in filters and "taskset" not in filters
    assert RunFilterForm({"taskset": mine.pk, "launched_by": users["viewer"].pk}, team=team).filters() == {
        "taskset": mine,
        "launched_by": users["viewer"],
    }
    assert RunFilterForm({"launched_by": users["outsider"].pk}, team=team).filters() == {}
