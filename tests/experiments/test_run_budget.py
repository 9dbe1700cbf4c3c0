"""The launch form and ``run_create`` refuse a config past its queue's cost budget
(``RUN_BUDGETS``) with an error on the setting to lower, and write nothing."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from apps.experiments import services
from apps.experiments.models import Run, RunEvent
from tests.factories import ExperimentFactory, TaskSetVersionFactory, launch_form_data
from tests.pages import field_error

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def world(team_roles, sent):
    team, users = team_roles
    member = users["member"]
    return {
        "member": member,
        "sent": sent,
        "experiment": ExperimentFactory(team=team, created_by=member),
        "sines": TaskSetVersionFactory(taskset__team=team, taskset__name="Sines"),
        "glyphs": TaskSetVersionFactory(taskset__team=team, taskset__family="glyphs", taskset__name="Glyphs"),
    }


def _form(world, taskset: str, **changes: str) -> dict:
    return launch_form_data(world["experiment"], world[taskset], **changes)


@pytest.mark.parametrize("queue", ["cpu", "gpu"])
def test_the_issues_mlp_is_refused_on_hidden_by_the_form(client, world, queue):
    client.force_login(world["member"])
    data = _form(world, "sines", hidden=",".join(["4096"] * 8), meta_batch="1024", query="10000", queue=queue)
    html = client.post(reverse("experiments:run-launch", kwargs={"team_slug": "alpha"}), data, **HTMX)
    message = field_error(html.content.decode(), "hidden")
    assert "Estimated 117.5 M parameters" in message and f"the {queue} queue allows" in message
    assert not Run.objects.exists() and not RunEvent.objects.exists() and world["sent"] == []


def test_the_issues_glyphs_config_is_refused_on_query_by_the_form(client, world):
    client.force_login(world["member"])
    data = _form(world, "glyphs", conv_filters="512", query="10000", meta_batch="25", ways="5")
    html = client.post(
        reverse("experiments:run-launch", kwargs={"team_slug": "alpha"}), data
    ).content.decode()
    message = field_error(html, "query")
    assert "activation memory per meta-batch of" in message and "TiB" in message
    assert not Run.objects.exists() and world["sent"] == []


def test_the_service_refuses_past_a_lowered_budget_and_accepts_within(world, settings):
    settings.RUN_BUDGETS = {**settings.RUN_BUDGETS, "cpu": {"parameters": 1000}}
    config = {"algorithm": "maml", "hidden": [40, 40], "iterations": 5}
    with pytest.raises(ValidationError) as error:
        services.run_create(
            experiment=world["experiment"],
            actor=world["member"],
            taskset_version=world["sines"],
            config=config,
        )
    assert list(error.value.error_dict) == ["hidden"]
    assert "1.8 k parameters; the cpu queue allows 1.0 k" in error.value.messages[0]
    assert not Run.objects.exists()
    run = services.run_create(
        experiment=world["experiment"], actor=world["member"], taskset_version=world["sines"],
        config={**config, "hidden": [10]},
    )  # fmt: skip
    assert run.pk and run.queue == "cpu"
