"""The launch form shows only the settings that apply to the chosen algorithm and
task set, swaps them on a change (htmx GET), ignores the others on submit, and
defaults its experiment and task set to where the user came from or what they used
last, never to another team's."""

from __future__ import annotations

import datetime as dt
import html
import io
import re

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from apps.experiments.forms import RunLaunchForm
from apps.experiments.models import Run
from apps.tasksets.models import TaskSet
from tests.factories import ExperimentFactory, RunFactory, TaskSetVersionFactory, UserFactory
from tests.pages import field_error, form_values
from tests.tasksets.data import table_taskset
from workers.metalearn.config import TrainConfig
from workers.metalearn.specs import SPECS

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
INNER = {"inner_lr", "inner_steps"}
MNN = {"mnn_hidden", "mnn_embed_dim", "mnn_finetune_steps"}


@pytest.fixture
def world(team_roles, sent):
    team, users = team_roles
    member = users["member"]
    return {
        "team": team,
        "member": member,
        "sent": sent,
        "old": ExperimentFactory(team=team, created_by=member, name="Old study"),
        "new": ExperimentFactory(team=team, created_by=member, name="New study"),
        "sines": TaskSetVersionFactory(taskset__team=team, taskset__name="Sines"),
        "digits": TaskSetVersionFactory(taskset__team=team, taskset__family="digits", taskset__name="Digits"),
        "glyphs": TaskSetVersionFactory(taskset__team=team, taskset__family="glyphs", taskset__name="Glyphs"),
        "foreign": TaskSetVersionFactory(taskset__name="Theirs"),
        "foreign_experiment": ExperimentFactory(name="Their study"),
    }


def url() -> str:
    return reverse("experiments:run-launch", kwargs={"team_slug": "alpha"})


def fields_of(html: str) -> set[str]:
    """The settings rendered as visible inputs of the fields partial."""
    block = re.search(r'<div id="launch-fields".*', html, re.S).group(0)
    names = set(re.findall(r'data-field="([a-z_0-9]+)"', block))
    return names


def selected(html: str, name: str) -> str | None:
    select = re.search(rf'<select name="{name}".*?</select>', html, re.S).group(0)
    found = re.search(r'<option value="([^"]*)" selected>', select)
    return found.group(1) if found else None


# -- which fields -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("algorithm", "taskset", "present", "absent"),
    [
        ("maml", "sines", INNER | {"first_order", "meta_lr", "hidden"}, {"ways", "conv_filters"} | MNN),
        (
            "maml",
            "digits",
            INNER | {"ways", "hidden", "train_tasks", "meta_lr_schedule"},
            {"conv_filters", "mnn_condition", "train_ways"},
        ),
        ("anil", "glyphs", INNER | {"ways", "conv_filters"}, {"hidden"}),
        ("fomaml", "sines", INNER, {"first_order"}),
        (
            "protonet",
            "digits",
            {"ways", "meta_lr", "meta_lr_schedule", "train_ways"},
            INNER | {"first_order"} | MNN,
        ),
        (
            "mnn",
            "sines",  # described tasks: no set encoder, so no embedding size
            {"mnn_hidden", "mnn_finetune_steps", "inner_lr", "first_order", "mnn_condition"},
            {"mnn_embed_dim", "inner_steps", "ways", "seed_mnn_epochs"},
        ),
        ("mnn", "digits", MNN | {"ways", "mnn_condition"}, {"inner_steps"}),
        (
            "seed-mnn",
            "sines",
            {"train_tasks", "iterations"},
            INNER | MNN | {"meta_lr", "meta_lr_schedule", "hidden", "mnn_condition", "train_ways"},
        ),
    ],
)
def test_form_offers_only_the_settings_that_apply(world, algorithm, taskset, present, absent):
    form = RunLaunchForm(
        team=world["team"], initial={"algorithm": algorithm, "taskset": world[taskset].taskset_id}
    )
    assert present <= set(form.fields), present - set(form.fields)
    assert not absent & set(form.fields), absent & set(form.fields)
    assert {"experiment", "algorithm", "taskset", "shots", "query", "seed", "queue"} <= set(form.fields)


def test_every_setting_shown_somewhere_is_an_engine_setting():
    config_fields = set(TrainConfig.model_fields) - {"algorithm", "family"}
    for spec in SPECS.values():
        assert spec.fields <= config_fields, spec.name
    assert set(RunLaunchForm.base_fields) - set(RunLaunchForm.NOT_CONFIG) - {"algorithm"} <= config_fields


def test_settings_that_do_not_apply_are_ignored_on_submit(client, world, django_capture_on_commit_callbacks):
    """A value for a hidden setting is not trusted: the engine's default is used."""
    client.force_login(world["member"])
    data = {
        "experiment": world["new"].pk, "algorithm": "protonet", "taskset": world["digits"].taskset_id,
        "meta_lr": "0.001", "meta_batch": "2", "shots": "1", "ways": "3", "query": "2", "iterations": "10",
        "eval_interval": "5", "seed": "1", "device": "cpu", "queue": "cpu", "eval_tasks": "5",
        "checkpoint_interval": "5", "hidden": "8",
        "inner_steps": "not a number", "inner_lr": "-3", "mnn_hidden": "999999", "first_order": "on",
    }  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url(), data, **HTMX)
    assert response.status_code == 200 and response["HX-Redirect"], response.content.decode()[:2000]
    run = Run.objects.get(experiment=world["new"])
    defaults = TrainConfig()
    assert (run.config["inner_steps"], run.config["inner_lr"]) == (defaults.inner_steps, defaults.inner_lr)
    assert run.config["mnn_hidden"] == defaults.mnn_hidden and run.config["first_order"] is False
    assert run.config["ways"] == 3 and [name for name, _, _ in world["sent"]] == ["workers.tasks.train_run"]


def test_the_wrong_combination_is_still_refused_on_the_algorithm(client, world):
    client.force_login(world["member"])
    data = {
        "experiment": world["new"].pk, "algorithm": "protonet", "taskset": world["sines"].taskset_id,
        "meta_lr": "0.001", "meta_batch": "2", "shots": "1", "query": "2", "iterations": "10",
        "eval_interval": "5", "seed": "1", "device": "cpu", "queue": "cpu", "eval_tasks": "5",
        "checkpoint_interval": "5", "hidden": "8",
    }  # fmt: skip
    html = client.post(url(), data, **HTMX).content.decode()
    assert "protonet is for classification" in field_error(html, "algorithm")
    assert not Run.objects.exists() and world["sent"] == []


# -- the swap ------------------------------------------------------------------------------


def test_changing_the_algorithm_swaps_the_fields_and_keeps_typed_values(client, world):
    client.force_login(world["member"])
    typed = {"algorithm": "mnn", "taskset": world["sines"].taskset_id, "experiment": world["old"].pk}
    typed |= {"shots": "7", "inner_steps": "4", "mnn_hidden": "33", "first_order": "on"}
    partial = client.get(url(), typed, **HTMX).content.decode()
    assert "<html" not in partial and 'id="launch-fields" data-algorithm="mnn"' in partial
    assert {"mnn_hidden", "mnn_finetune_steps"} <= fields_of(partial) and "inner_steps" not in fields_of(
        partial
    )
    assert 'name="shots" value="7"' in partial and 'name="mnn_hidden" value="33"' in partial
    # inner_steps does not apply to MNN: carried along hidden, so that switching back shows it.
    assert re.search(r'<input type="hidden" name="inner_steps" value="4" data-carried>', partial)
    back = client.get(url(), typed | {"algorithm": "maml"}, **HTMX).content.decode()
    assert 'name="inner_steps" value="4"' in back and "mnn_hidden" not in fields_of(back)
    assert re.search(r'name="mnn_hidden" value="33" data-carried', back)
    assert selected(back, "experiment") == str(world["old"].pk)


def test_without_htmx_the_same_query_gives_the_whole_page(client, world):
    client.force_login(world["member"])
    page = client.get(url(), {"algorithm": "seed-mnn", "taskset": world["sines"].taskset_id}).content.decode()
    assert "<html" in page and 'id="launch-form"' in page
    assert "train_tasks" in fields_of(page) and "inner_lr" not in fields_of(page)
    assert "seed_mnn_epochs" not in page  # no longer a setting: the pool is train_tasks
    trigger = "change from:#id_algorithm, change from:#id_taskset, "
    trigger += "change from:#launch-form target:#id_mnn_condition"
    assert f'hx-trigger="{trigger}"' in page
    assert selected(page, "algorithm") == "seed-mnn"


def test_choosing_a_classification_task_set_brings_ways(client, world):
    client.force_login(world["member"])
    sines = client.get(url(), {"taskset": world["sines"].taskset_id}, **HTMX).content.decode()
    digits = client.get(url(), {"taskset": world["digits"].taskset_id}, **HTMX).content.decode()
    assert "ways" not in fields_of(sines) and "ways" in fields_of(digits)


# -- defaults ---------------------------------------------------------------------------------


def test_query_parameters_preselect_the_teams_experiment_and_task_set(client, world):
    client.force_login(world["member"])
    query = {"experiment": world["old"].pk, "taskset": world["digits"].taskset_id}
    page = client.get(url(), query).content.decode()
    assert selected(page, "experiment") == str(world["old"].pk)
    assert selected(page, "taskset") == str(world["digits"].taskset_id)


def test_another_teams_ids_are_refused(client, world):
    client.force_login(world["member"])
    query = {"experiment": world["foreign_experiment"].pk, "taskset": world["foreign"].taskset_id}
    page = client.get(url(), query).content.decode()
    assert "Their study" not in page and "Theirs" not in page
    assert selected(page, "experiment") == str(world["new"].pk)  # the newest of the team's own
    assert selected(page, "taskset") == str(world["glyphs"].taskset_id)


def test_defaults_follow_the_users_last_run(client, world, django_assert_num_queries):
    client.force_login(world["member"])
    earlier = RunFactory(
        experiment=world["new"], taskset_version=world["glyphs"], launched_by=world["member"]
    )
    last = RunFactory(experiment=world["old"], taskset_version=world["digits"], launched_by=world["member"])
    Run.objects.filter(pk=earlier.pk).update(created_at=timezone.now() - dt.timedelta(days=1))
    RunFactory(
        experiment=world["new"], taskset_version=world["sines"], launched_by=UserFactory()
    )  # not theirs
    client.get(url())  # the first visit of the team records it as last used (one write per switch)
    with CaptureQueriesContext(connection) as first:
        client.get(url())
    for n in range(3):  # more choices and runs: the same number of queries
        version = TaskSetVersionFactory(taskset__team=world["team"], taskset__name=f"More {n}")
        RunFactory(experiment=ExperimentFactory(team=world["team"]), taskset_version=version)
    with django_assert_num_queries(len(first)):
        page = client.get(url()).content.decode()
    assert selected(page, "experiment") == str(last.experiment_id)
    assert selected(page, "taskset") == str(world["digits"].taskset_id)
    assert "ways" in fields_of(page)
    # The query string wins over the last run.
    page = client.get(url(), {"taskset": world["sines"].taskset_id}).content.decode()
    assert selected(page, "taskset") == str(world["sines"].taskset_id)
    assert selected(page, "experiment") == str(last.experiment_id)


def test_viewers_and_outsiders_cannot_open_the_swap(client, team_roles):
    _, users = team_roles
    client.force_login(users["viewer"])
    assert client.get(url(), {"algorithm": "mnn"}, **HTMX).status_code == 403
    client.force_login(users["outsider"])
    assert client.get(url(), {"algorithm": "mnn"}, **HTMX).status_code == 404
    client.logout()
    assert client.get(url(), {"algorithm": "mnn"}).status_code == 302


# -- what the MNN is conditioned on ----------------------------------------------------------


def test_mnn_condition_defaults_to_the_description_where_the_family_has_one(world):
    sines = RunLaunchForm(
        team=world["team"], initial={"algorithm": "mnn", "taskset": world["sines"].taskset_id}
    )
    digits = RunLaunchForm(
        team=world["team"], initial={"algorithm": "mnn", "taskset": world["digits"].taskset_id}
    )
    assert sines["mnn_condition"].value() == "description" and "mnn_embed_dim" not in sines.fields
    assert digits["mnn_condition"].value() == "support" and "mnn_embed_dim" in digits.fields


def test_choosing_the_support_set_brings_the_embedding_size(client, world):
    """The swap on a change of ``mnn_condition``: the set encoder's width applies."""
    client.force_login(world["member"])
    query = {"algorithm": "mnn", "taskset": world["sines"].taskset_id, "mnn_condition": "support"}
    partial = client.get(url(), query, **HTMX).content.decode()
    assert "mnn_embed_dim" in fields_of(partial) and selected(partial, "mnn_condition") == "support"
    page = client.get(url(), query | {"mnn_condition": "description"}).content.decode()
    assert "<html" in page and "mnn_embed_dim" not in fields_of(page)


def _mnn_post(world, taskset, **extra):
    return {
        "experiment": world["new"].pk, "algorithm": "mnn", "taskset": world[taskset].taskset_id,
        "meta_lr": "0.001", "meta_batch": "2", "shots": "1", "ways": "3", "query": "2", "iterations": "10",
        "eval_interval": "5", "seed": "1", "device": "cpu", "queue": "cpu", "eval_tasks": "5",
        "checkpoint_interval": "5", "hidden": "8", "conv_filters": "4", "mnn_hidden": "8",
        "mnn_embed_dim": "4", "mnn_finetune_steps": "0", "inner_lr": "0.01", **extra,
    }  # fmt: skip


def test_mnn_launched_on_the_support_set_stores_it(client, world, django_capture_on_commit_callbacks):
    client.force_login(world["member"])
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            url(), _mnn_post(world, "sines", mnn_condition="support", train_tasks="100"), **HTMX
        )
    assert response["HX-Redirect"], response.content.decode()[:2000]
    run = Run.objects.get(experiment=world["new"])
    assert run.config["mnn_condition"] == "support" and run.config["train_tasks"] == 100
    assert run.config["mnn_embed_dim"] == 4


def test_mnn_left_to_the_default_stores_what_it_resolved_to(
    client, world, django_capture_on_commit_callbacks
):
    client.force_login(world["member"])
    with django_capture_on_commit_callbacks(execute=True):
        client.post(url(), _mnn_post(world, "sines"), **HTMX)
        client.post(url(), _mnn_post(world, "digits"), **HTMX)
    runs = Run.objects.filter(experiment=world["new"]).order_by("pk")
    assert [r.config["mnn_condition"] for r in runs] == ["description", "support"]


@pytest.mark.parametrize("hx", [True, False])
def test_a_description_asked_of_a_family_without_one_is_an_error_on_the_field(client, world, hx):
    client.force_login(world["member"])
    headers = HTMX if hx else {}
    html = client.post(
        url(), _mnn_post(world, "digits", mnn_condition="description"), **headers
    ).content.decode()
    assert "has no task description" in field_error(html, "mnn_condition")
    assert not Run.objects.exists() and world["sent"] == []


def test_switching_to_mnn_preselects_the_family_default(client, world):
    """Another algorithm's page carries no MNN condition along, so switching to MNN on a
    described task set preselects the description (a browser test caught "support")."""
    client.force_login(world["member"])
    page = client.get(url(), {"algorithm": "maml", "taskset": world["sines"].taskset_id}).content.decode()
    assert 'name="mnn_condition"' not in page
    swapped = client.get(
        url(), {"algorithm": "mnn", "taskset": world["sines"].taskset_id}, **HTMX
    ).content.decode()
    assert selected(swapped, "mnn_condition") == "description"


# -- defaults that fit the data ---------------------------------------------------------------


def test_the_untouched_form_launches_on_every_seeded_task_set(
    client, sent, django_capture_on_commit_callbacks
):
    """A newcomer's first click: the form's defaults, as the browser submits them, launch
    on each of the demo's task sets (the 3-class demo table took 5-way episodes once)."""
    call_command("seed_demo", stdout=io.StringIO())
    client.force_login(get_user_model().objects.get(username="demo"))
    demo = reverse("experiments:run-launch", kwargs={"team_slug": "demo"})
    tasksets = TaskSet.objects.filter(team__slug="demo").order_by("pk")
    for taskset in tasksets:
        values = form_values(client.get(demo, {"taskset": taskset.pk}).content.decode(), "launch-form")
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(demo, values)
        errors = re.findall(r'class="errorlist[^"]*"[^>]*>(.*?)</ul>', response.content.decode(), re.S)
        assert response.status_code == 302, (taskset.name, errors)
    launched = dict(Run.objects.values_list("taskset_version__taskset__name", "config"))
    table = launched["Demo table (CSV)"]
    assert (table["ways"], table["shots"], table["query"]) == (3, 5, 7)  # 3 classes, 12 rows a class
    assert len(launched) == len(tasksets) == 5 and sent  # queued; the first sent to the worker


def _episode(page: str) -> list[str]:
    """Ways, shots and query as a page (or the swapped fields alone) would submit them."""
    if 'id="launch-form"' not in page:
        page = f'<form id="launch-form">{page}</form>'
    values = form_values(page, "launch-form")
    return [values.get(name, "") for name in ("ways", "shots", "query")]


def test_an_upload_bounds_ways_shots_and_query_in_the_form(client, world):
    version = table_taskset(world["team"], world["member"]).versions.get()  # 2 classes, 6 rows each
    client.force_login(world["member"])
    page = client.get(url(), {"taskset": version.taskset_id}).content.decode()
    assert "At most 2 with this task set." in page and "Shots + query: at most 6 with this task set." in page
    assert _episode(page) == ["2", "5", "1"]  # from 5, 5, 10
    # A swap lowers what does not fit, query before shots, and keeps what does.
    swapped = client.get(url(), {"taskset": version.taskset_id, "shots": "2", "query": "9"}, **HTMX)
    assert _episode(swapped.content.decode()) == ["2", "2", "4"]
    # The bounds do not follow the user to another task set: what they lowered comes back,
    # and what the user typed since stays.
    values = form_values(page, "launch-form")
    assert values["fitted"] == "ways:5>2,query:10>1"
    for typed, expected in (({}, ["5", "10"]), ({"query": "3"}, ["5", "3"])):
        query = {**values, **typed, "taskset": world["sines"].taskset_id}
        swapped = client.get(url(), query, **HTMX).content.decode()
        assert _episode(swapped)[1:] == expected and 'name="fitted" value=' not in swapped
        assert re.search(r'name="ways" value="5" data-carried', swapped)  # kept for classification
    # What is submitted is never changed: it is refused on the field, naming the task.
    posted = client.post(url(), {**form_values(page, "launch-form"), "ways": "3"}, **HTMX)
    error = html.unescape(field_error(posted.content.decode(), "ways"))
    assert re.search(r"3-way episodes need 3 classes; task 't\d' has 2 \(split 'train'\)", error), error
    assert not Run.objects.exists() and world["sent"] == []


@pytest.mark.parametrize(
    ("values", "most_ways", "most_examples", "lowered"),
    [
        ({"ways": 5, "shots": 5, "query": 10}, 3, 12, {"ways": 3, "query": 7}),
        ({"ways": 5, "shots": 5, "query": 10}, 20, 15, {}),
        ({"ways": 5, "shots": 9, "query": 10}, None, 6, {"query": 1, "shots": 5}),
        ({"ways": 5, "shots": 5, "query": 10}, 1, 1, {}),  # no episode fits: the launch says why
        ({"ways": None, "shots": None, "query": 10}, 3, 4, {}),  # text that is not a number
    ],
)
def test_fit_episode_lowers_ways_then_query_then_shots(values, most_ways, most_examples, lowered):
    from apps.experiments.forms import fit_episode

    assert fit_episode(values, most_ways=most_ways, most_examples=most_examples) == lowered


def test_parse_fitted_keeps_only_well_formed_marks():
    from apps.experiments.forms import parse_fitted

    assert parse_fitted("ways:5>3,query:10>7") == {"ways": (5, 3), "query": (10, 7)}
    assert parse_fitted("iterations:9>1,ways:-1>2,query:x>1,shots:4") == {}
    assert parse_fitted(None) == {} and parse_fitted("ways:5>3" + "," * 500 + "query:1>1") == {"ways": (5, 3)}
