"""The run list's kind filter (training runs by default), and what empty lists say to
do next, with the actions a viewer cannot take left out."""

from __future__ import annotations

import html

import pytest
from django.urls import reverse
from django.utils.html import strip_tags

from apps.experiments import selectors
from apps.experiments.filters import RunListFilterForm
from apps.experiments.listing.selectors import run_page_for_team
from apps.experiments.models import RunStatus
from tests.factories import (
    AdaptationFactory,
    ExperimentFactory,
    MetaModelFactory,
    RunFactory,
    TaskSetVersionFactory,
)

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def _page(client, user, url, data=None, **headers) -> tuple[str, str]:
    """(markup, text) of a page."""
    client.force_login(user)
    response = client.get(url, data or {}, **headers)
    assert response.status_code == 200
    raw = html.unescape(response.content.decode())
    return raw, " ".join(strip_tags(raw).split())


def _runs_url(team) -> str:
    return reverse("experiments:run-list", kwargs={"team_slug": team.slug})


# -- kinds -----------------------------------------------------------------------------------


@pytest.fixture
def mixed(team_roles):
    team, users = team_roles
    experiment = ExperimentFactory(team=team, created_by=users["member"])
    version = TaskSetVersionFactory(taskset__team=team)
    train_maml = RunFactory(experiment=experiment, taskset_version=version, status=RunStatus.SUCCEEDED)
    train_reptile = RunFactory(
        experiment=experiment, taskset_version=version, algorithm="reptile", status=RunStatus.SUCCEEDED
    )
    model = MetaModelFactory(experiment=experiment, taskset_version=version, training_run=train_maml)
    adapt = AdaptationFactory(meta_model=model).run
    return team, users, {"train_maml": train_maml, "train_reptile": train_reptile, "adapt": adapt}


def _ids(page) -> set[int]:
    return {run.pk for run in page.runs}


def test_selector_filters_by_kind(mixed):
    team, _users, runs = mixed
    every = {run.pk for run in runs.values()}
    assert _ids(run_page_for_team(team=team)) == every
    assert _ids(run_page_for_team(team=team, filters={"kind": selectors.KIND_ALL})) == every
    assert _ids(run_page_for_team(team=team, filters={"kind": "adapt"})) == {runs["adapt"].pk}
    trained = run_page_for_team(team=team, filters={"kind": "train", "algorithm": "maml"})
    assert _ids(trained) == {runs["train_maml"].pk} and trained.count == 1


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, {"kind": "train"}),
        ({"kind": "bogus"}, {"kind": "train"}),
        ({"kind": "adapt"}, {"kind": "adapt"}),
        ({"kind": "all", "algorithm": "maml"}, {"kind": "all", "algorithm": "maml"}),
    ],
)
def test_filter_form_defaults_to_training_runs(mixed, query, expected):
    team, _users, _runs = mixed
    form = RunListFilterForm(query, team=team)
    assert form.filters() == expected
    assert next(iter(form.fields)) == "kind"


@pytest.mark.parametrize("headers", [{}, HTMX])
def test_run_list_shows_training_runs_by_default_and_the_algorithm_filter_follows(client, mixed, headers):
    team, users, runs = mixed
    url = _runs_url(team)
    raw, text = _page(client, users["viewer"], url, **headers)
    assert f'id="run-row-{runs["train_maml"].pk}"' in raw and f'id="run-row-{runs["adapt"].pk}"' not in raw
    assert "2 training runs" in text

    # The adaptation is a maml model's: only the kind brings it back.
    raw, text = _page(client, users["viewer"], url, {"algorithm": "maml"}, **headers)
    assert f'id="run-row-{runs["adapt"].pk}"' not in raw and "1 training run matching" in text
    raw, text = _page(client, users["viewer"], url, {"algorithm": "maml", "kind": "all"}, **headers)
    assert f'id="run-row-{runs["adapt"].pk}"' in raw and f'id="run-row-{runs["train_maml"].pk}"' in raw
    assert "2 runs of any kind matching" in text
    raw, text = _page(client, users["viewer"], url, {"kind": "adapt"}, **headers)
    assert f'id="run-row-{runs["adapt"].pk}"' in raw and "1 adaptation" in text
    assert f">#{runs['adapt'].pk}</a>" in raw  # one number per object: the run's


def test_count_and_pages_follow_the_kind(mixed):
    team, _users, _runs = mixed
    trained = run_page_for_team(team=team, filters={"kind": "train"}, per_page=1)
    assert (trained.count, len(trained.runs), bool(trained.next_cursor)) == (2, 1, True)
    every = run_page_for_team(team=team, filters={"kind": selectors.KIND_ALL}, per_page=2)
    last = run_page_for_team(
        team=team, filters={"kind": selectors.KIND_ALL}, per_page=2, cursor=every.next_cursor
    )
    assert (every.count, len(last.runs), last.next_cursor) == (3, 1, "")


# -- empty lists guide -------------------------------------------------------------------------


@pytest.fixture
def fresh(team_roles):
    """A team like a new demo team: task sets and one seeded experiment, no run."""
    team, users = team_roles
    sine = TaskSetVersionFactory(taskset__team=team, taskset__name="Sinusoid regression").taskset
    glyphs = TaskSetVersionFactory(taskset__team=team, taskset__name="Glyphs").taskset
    seeded = ExperimentFactory(
        team=team, name="Getting started", description="A first experiment to launch runs into."
    )
    return team, users, {"sine": sine, "glyphs": glyphs, "seeded": seeded}


def _launch(team, **query) -> str:
    base = reverse("experiments:run-launch", kwargs={"team_slug": team.slug})
    return base + "?" + "&".join(f"{k}={v}" for k, v in query.items())


@pytest.mark.parametrize("headers", [{}, HTMX])
def test_empty_run_list_guides_a_member_to_launch_or_open_the_seeded_experiment(client, fresh, headers):
    team, users, made = fresh
    raw, text = _page(client, users["member"], _runs_url(team), **headers)
    assert "No runs yet: pick a task set and launch a run." in text
    for key in ("sine", "glyphs"):
        assert f'href="{_launch(team, taskset=made[key].pk)}"' in raw
    assert "Launch on Sinusoid regression" in text
    detail = reverse("experiments:experiment-detail", args=[made["seeded"].pk])
    assert f'href="{detail}">Getting started</a>' in raw
    assert "Or open the experiment Getting started" in text


def test_empty_run_list_offers_a_viewer_only_what_they_can_do(client, fresh):
    team, users, made = fresh
    raw, text = _page(client, users["viewer"], _runs_url(team))
    assert "run-launch" not in raw and "/runs/new/" not in raw
    assert "You are a viewer in Alpha" in text
    assert reverse("experiments:experiment-detail", args=[made["seeded"].pk]) in raw


def test_empty_run_list_without_a_task_set_points_to_creating_one(client, team_roles):
    team, users = team_roles
    raw, text = _page(client, users["member"], _runs_url(team))
    assert "No task set has a version yet: create a task set first." in text
    assert reverse("tasksets:taskset-create", kwargs={"team_slug": team.slug}) in raw


def test_filtered_and_adaptation_lists_say_so(client, fresh):
    team, users, _made = fresh
    raw, text = _page(client, users["member"], _runs_url(team), {"status": "failed"})
    assert "No runs match these filters. Clear the filters." in text and 'id="launch-guide"' not in raw
    raw, text = _page(client, users["member"], _runs_url(team), {"kind": "adapt"})
    assert "No adaptations yet. Open a meta-model and adapt it to new tasks." in text
    raw, text = _page(client, users["viewer"], _runs_url(team), {"kind": "adapt"})
    assert "No adaptations yet." in text and "adapt it" not in text


def test_empty_experiment_guides_launching_into_it(client, fresh):
    team, users, made = fresh
    url = reverse("experiments:experiment-detail", args=[made["seeded"].pk])
    raw, text = _page(client, users["member"], url)
    assert "No runs yet: pick a task set and launch a run in this experiment." in text
    assert f'href="{_launch(team, taskset=made["sine"].pk, experiment=made["seeded"].pk)}"' in raw
    assert f'href="{_launch(team, experiment=made["seeded"].pk)}">Launch a run in this experiment</a>' in raw
    raw, _text = _page(client, users["viewer"], url)
    assert "/runs/new/" not in raw


def test_empty_experiment_task_set_and_model_lists_guide_members_not_viewers(client, team_roles):
    team, users = team_roles
    pages = {
        reverse("experiments:experiment-list", kwargs={"team_slug": team.slug}): (
            "No experiments yet: an experiment groups the runs that answer one question. Create one",
            reverse("experiments:experiment-create", kwargs={"team_slug": team.slug}),
        ),
        reverse("tasksets:taskset-list", kwargs={"team_slug": team.slug}): (
            "No task sets yet: a task set says which tasks runs meta-learn from",
            reverse("tasksets:taskset-create", kwargs={"team_slug": team.slug}),
        ),
        reverse("registry:metamodel-list", kwargs={"team_slug": team.slug}): (
            "No meta-models yet: a succeeded training run registers one. Launch a training run",
            reverse("registry:metamodel-upload", kwargs={"team_slug": team.slug}),
        ),
    }
    for url, (guide, action) in pages.items():
        raw, text = _page(client, users["member"], url)
        assert guide in text and f'href="{action}"' in raw, url
        raw, text = _page(client, users["viewer"], url)
        assert guide not in text and f'href="{action}"' not in raw and "/runs/new/" not in raw, url
        assert "You are a viewer" in text or "See the team's runs" in text, url
    models = reverse("registry:metamodel-list", kwargs={"team_slug": team.slug})
    raw, _text = _page(client, users["member"], models)
    launch = reverse("experiments:run-launch", kwargs={"team_slug": team.slug})
    assert f'href="{launch}">Launch a training run' in raw


# -- launching from context ----------------------------------------------------------------------


def test_task_set_page_offers_members_a_launch_on_this_set(client, fresh):
    team, users, made = fresh
    url = reverse("tasksets:taskset-detail", kwargs={"taskset_id": made["sine"].pk})
    raw, _text = _page(client, users["member"], url)
    assert (
        f'id="launch-on-taskset" href="{_launch(team, taskset=made["sine"].pk)}">Launch a run on this set</a>'
        in raw
    )
    raw, _text = _page(client, users["viewer"], url)
    assert "launch-on-taskset" not in raw
