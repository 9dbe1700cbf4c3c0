"""The task embedding map of a meta-model: asked for by a member (queued on commit,
once), computed once by the worker job and stored beside the weights, drawn on the
model page; models that do not embed tasks say why."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from apps.registry import storage
from tests.adaptations.test_services import register_trained
from tests.factories import ExperimentFactory, TaskSetVersionFactory
from workers.task_map import task_map_job

pytestmark = pytest.mark.django_db

TINY = {
    "algorithm": "mnn", "mnn_condition": "support", "family": {"name": "sinusoid"}, "iterations": 20,
    "meta_batch": 4, "meta_lr": 3e-3, "hidden": [8], "mnn_hidden": 8, "mnn_embed_dim": 4, "shots": 5,
    "query": 5, "eval_interval": 20, "eval_tasks": 5, "checkpoint_interval": 20,
}  # fmt: skip


@pytest.fixture
def models(team_roles):
    team, users = team_roles
    experiment = ExperimentFactory(team=team, created_by=users["member"])
    version = TaskSetVersionFactory(taskset__team=team, taskset__family="sinusoid")
    kwargs = {"experiment": experiment, "version": version}
    return {
        "users": users,
        "support": register_trained(config=TINY, **kwargs),
        "described": register_trained(config={**TINY, "mnn_condition": "description"}, **kwargs),
    }


def url(name, model):
    return reverse(f"registry:{name}", args=[model.pk])


def test_a_member_asks_once_the_worker_computes_once_and_the_page_draws_it(
    client, models, sent, django_capture_on_commit_callbacks
):
    model = models["support"]
    client.force_login(models["users"]["member"])
    page = client.get(url("metamodel-detail", model)).content.decode()
    assert 'id="task-map-compute"' in page and "task_map.js" not in page
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url("metamodel-task-map", model))
    assert response.status_code == 302 and sent == [("workers.tasks.task_map", [model.pk], "cpu")]

    assert task_map_job(model.pk) == "computed"
    assert task_map_job(model.pk) == "exists"  # a redelivery does nothing more
    stored = json.loads((storage.meta_model_dir(model.pk) / storage.TASK_MAP_FILE).read_text())
    assert len(stored["points"]) == 600 and set(stored["params"]) == {"amplitude", "phase"}

    page = client.get(url("metamodel-detail", model)).content.decode()
    assert 'id="task-map-data"' in page and "js/task_map.js" in page and 'id="task-map-compute"' not in page
    with django_capture_on_commit_callbacks(execute=True):
        client.post(url("metamodel-task-map", model))
    assert len(sent) == 1  # stored already: nothing queued


def test_viewers_cannot_ask_and_outsiders_do_not_see_it(client, models, sent):
    model = models["support"]
    client.force_login(models["users"]["viewer"])
    page = client.get(url("metamodel-detail", model)).content.decode()
    assert 'id="task-map-missing"' in page and 'id="task-map-compute"' not in page
    assert client.post(url("metamodel-task-map", model)).status_code == 403
    client.force_login(models["users"]["outsider"])
    assert client.post(url("metamodel-task-map", model)).status_code == 404
    client.logout()
    assert client.post(url("metamodel-task-map", model)).status_code == 302  # to the log-in page
    assert sent == []


def test_a_model_that_does_not_embed_tasks_says_why(client, models, sent):
    model = models["described"]
    client.force_login(models["users"]["member"])
    page = client.get(url("metamodel-detail", model)).content.decode()
    assert 'id="task-map-reason"' in page and "support set" in page
    response = client.post(url("metamodel-task-map", model), follow=True)
    assert "Only ProtoNets and MNNs on the support set" in response.content.decode() and sent == []
    assert task_map_job(model.pk).startswith("refused:")
    assert task_map_job(10**9) == "missing"
