"""The permission matrix: every operation of the OpenAPI schema, for every kind of
caller. Operations come from the schema itself, so a new endpoint without a row
here fails ``test_every_operation_has_a_sample`` instead of going untested."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from apps.api.api import api
from tests.api.conftest import bearer
from tests.api.test_model_upload import CONFIG as UPLOAD_CONFIG
from tests.api.test_model_upload import weights as upload_weights
from tests.factories import RunFactory
from tests.reviews.test_comparison import evaluate, losses_for
from tests.tasksets.data import TABLE_PARAMS, good_csv, upload

pytestmark = pytest.mark.django_db

#: A valid request body per writing operation, so that the answer is about permission.
SAMPLE_BODIES: dict[tuple[str, str], Any] = {
    ("post", "/api/v1/teams/{team}/tasksets"): {"name": "New sines", "family": "sinusoid"},
    ("post", "/api/v1/teams/{team}/experiments"): {"name": "New idea"},
    ("patch", "/api/v1/teams/{team}/experiments/{experiment_id}"): {"description": "Renamed, not moved."},
    ("post", "/api/v1/teams/{team}/runs"): {"experiment_id": "{experiment}", "taskset_id": "{taskset}"},
    ("post", "/api/v1/teams/{team}/runs/{run_id}/cancel"): None,
    ("post", "/api/v1/teams/{team}/runs/{run_id}/clone"): {"config": {"seed": 3}},
    # an ended run of the team, made per call (the world's run is queued)
    ("post", "/api/v1/teams/{team}/runs/archive"): lambda world: {"ids": [_ended_run(world).pk]},
    ("post", "/api/v1/teams/{team}/runs/restore"): {"ids": ["{run}"]},
    ("post", "/api/v1/teams/{team}/runs/{run_id}/tags"): {"tags": ["baseline"]},
    ("delete", "/api/v1/teams/{team}/runs/{run_id}/tags/{tag}"): None,
    ("put", "/api/v1/teams/{team}/runs/{run_id}/note"): {"note": "Looks *good*."},
    ("post", "/api/v1/teams/{team}/experiments/{experiment_id}/tags"): {"tags": ["baseline"]},
    ("delete", "/api/v1/teams/{team}/experiments/{experiment_id}/tags/{tag}"): None,
    ("put", "/api/v1/teams/{team}/experiments/{experiment_id}/note"): {"note": "The *plan*."},
    ("post", "/api/v1/teams/{team}/sweeps"): {
        "experiment_id": "{experiment}",
        "taskset_id": "{taskset}",
        "config": {"iterations": 20, "meta_batch": 4},
        "strategy": "grid",
        "dimensions": {"seed": [0, 1]},
    },
    ("post", "/api/v1/teams/{team}/sweeps/{sweep_id}/stop"): None,
    ("post", "/api/v1/teams/{team}/saved-views"): {"name": "Succeeded", "query": "status:succeeded"},
    ("delete", "/api/v1/teams/{team}/saved-views/{view_id}"): None,
    ("post", "/api/v1/teams/{team}/external-runs"): {
        "experiment_id": "{experiment}",
        "taskset_id": "{taskset}",
        "algorithm": "maml",
    },
    ("post", "/api/v1/teams/{team}/runs/{run_id}/points"): {
        "points": [{"name": "loss", "step": 1, "value": 0.5}]
    },
    ("post", "/api/v1/teams/{team}/runs/{run_id}/finish"): {"status": "succeeded"},
    ("post", "/api/v1/teams/{team}/models/{model_id}/alias"): {"alias": "candidate"},
    ("post", "/api/v1/teams/{team}/models/{model_id}/adaptations"): {
        "target": "batch",
        "steps": 1,
        "lr": 0.01,
    },
}
#: Names for the run-file uploads (unique in a run).
_UPLOADS = itertools.count()
#: Multipart operations: their fields and files, made fresh per call (an upload is read once).
SAMPLE_MULTIPART: dict[tuple[str, str], Callable[[dict[str, Any]], dict[str, Any]]] = {
    ("post", "/api/v1/teams/{team}/tasksets/upload"): lambda world: {
        "name": "Uploaded cells",
        "params": json.dumps(TABLE_PARAMS),
        "data_file": upload(good_csv(), "cells.csv"),
    },
    ("post", "/api/v1/teams/{team}/models"): lambda world: {
        "name": "pushed",
        "experiment_id": world["experiment"].pk,
        "taskset_id": world["version"].taskset_id,
        "config": json.dumps(UPLOAD_CONFIG),
        "weights_file": upload(upload_weights(), "w.safetensors"),
    },
    ("post", "/api/v1/teams/{team}/runs/{run_id}/files"): lambda world: {
        "name": f"plot-{next(_UPLOADS)}.png",
        "file": upload(b"\x89PNG not really", "plot.png"),
    },
    ("post", "/api/v1/teams/{team}/models/{model_id}/adaptations/csv"): lambda world: {
        "support_file": upload(b"x,y\n1,2\n3,4\n", "support.csv"),
        "steps": "1",
    },
}
#: Operations on an external run (the others get the worker's run).
ON_EXTERNAL = {"/api/v1/teams/{team}/runs/{run_id}/points", "/api/v1/teams/{team}/runs/{run_id}/finish"}
#: Query strings that required parameters need.
SAMPLE_QUERIES: dict[tuple[str, str], Any] = {
    ("get", "/api/v1/teams/{team}/runs/{run_id}/metrics"): {"name": "loss"},
    ("get", "/api/v1/teams/{team}/model-refs"): {"ref": "sine-maml"},
    # two stored 600-task evaluations of the world's meta-model, made per call
    ("get", "/api/v1/teams/{team}/comparison"): lambda world: {
        "adaptation": [evaluate(world["meta_model"], losses_for(i)).adaptation.run_id for i in (1, 2)]
    },
}

#: The team-less operation: everyone authenticated may list their own teams.
TEAMLESS = {("get", "/api/v1/teams")}

WRITE_METHODS = {"post", "put", "patch", "delete"}
ALLOWED = {"viewer": "read", "member": "write", "admin": "write", "read_only": "read"}


def operations() -> list[tuple[str, str]]:
    schema = api.get_openapi_schema()
    return [(method, path) for path, item in schema["paths"].items() for method in item]


def _ended_run(world: dict[str, Any]):
    return RunFactory(experiment=world["experiment"], taskset_version=world["version"], status="succeeded")


def _fill(value: Any, world: dict[str, Any]) -> Any:
    names = {
        "{run}": world["run"].pk,
        "{experiment}": world["experiment"].pk,
        "{taskset}": world["version"].taskset_id,
    }
    if isinstance(value, dict):
        return {k: _fill(v, world) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, world) for v in value]
    return names.get(value, value) if isinstance(value, str) else value


def call(client: Client, method: str, path: str, world: dict[str, Any], **extra: Any):
    run = world["external"] if path in ON_EXTERNAL else world["run"]
    url = path.format(
        team=world["team"].slug,
        run_id=run.pk,
        taskset_id=world["version"].taskset_id,
        model_id=world["meta_model"].pk,
        experiment_id=world["experiment"].pk,
        sweep_id=world["sweep"].pk,
        view_id=world["saved_view"].pk,
        file_id=world["run_file"].pk,
        tag="baseline",
    )
    if "/adaptations/{run_id}" in path:
        url = path.format(team=world["team"].slug, run_id=world["adaptation"].run_id)
    if (method, path) in SAMPLE_MULTIPART:
        return client.post(url, SAMPLE_MULTIPART[(method, path)](world), **extra)
    if method in WRITE_METHODS:
        sample = SAMPLE_BODIES[(method, path)]
        body = sample(world) if callable(sample) else _fill(sample, world)
        data = json.dumps(body) if body is not None else ""
        return getattr(client, method)(url, data=data, content_type="application/json", **extra)
    query = SAMPLE_QUERIES.get((method, path), {})
    return client.get(url, query(world) if callable(query) else query, **extra)


def test_every_operation_has_a_sample():
    writes = {op for op in operations() if op[0] in WRITE_METHODS}
    assert writes == set(SAMPLE_BODIES) | set(SAMPLE_MULTIPART), "add a sample for each new writing endpoint"
    assert len(operations()) >= 10


@pytest.mark.parametrize("method,path", operations())
@pytest.mark.parametrize("who", ["anonymous", "expired", "revoked"])
def test_unauthenticated_callers_get_401(api_world, client, method, path, who):
    extra = {} if who == "anonymous" else bearer(api_world["tokens"][who])
    response = call(client, method, path, api_world, **extra)
    assert response.status_code == 401, response.content
    assert "Bearer" in response.json()["detail"]


@pytest.mark.parametrize("method,path", operations())
def test_another_teams_token_gets_404(api_world, client, method, path):
    response = call(client, method, path, api_world, **bearer(api_world["tokens"]["other_team"]))
    if (method, path) in TEAMLESS:
        assert response.status_code == 200
        assert [t["slug"] for t in response.json()] == ["beta"]
    else:
        assert response.status_code == 404, response.content


@pytest.mark.parametrize("method,path", operations())
@pytest.mark.parametrize("who", ["viewer", "member", "admin", "read_only"])
def test_roles(api_world, client, method, path, who):
    response = call(client, method, path, api_world, **bearer(api_world["tokens"][who]))
    if method in WRITE_METHODS and ALLOWED[who] == "read":
        assert response.status_code == 403, response.content
        expected = "read-only" if who == "read_only" else "member role"
        assert expected in response.json()["detail"]
    else:
        assert 200 <= response.status_code < 300, response.content


@pytest.mark.parametrize("method,path", operations())
def test_a_user_in_another_team_with_a_session_gets_404(api_world, client, method, path):
    client.force_login(api_world["users"]["outsider"])
    response = call(client, method, path, api_world)
    assert response.status_code == (200 if (method, path) in TEAMLESS else 404), response.content


def test_session_writes_need_the_csrf_token(api_world):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(api_world["users"]["member"])
    path = "/api/v1/teams/{team}/runs/{run_id}/cancel"
    assert call(browser, "post", path, api_world).status_code == 403
    browser.get("/api/v1/teams")  # reads need no token
    browser.get("/accounts/login/")
    token = browser.cookies["csrftoken"].value
    response = call(browser, "post", path, api_world, HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "cancelled"
