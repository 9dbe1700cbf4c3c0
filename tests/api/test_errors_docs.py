"""422 shapes with the forms' words, runs list search and cursors, the docs page."""

from __future__ import annotations

import pytest

from apps.experiments.models import Run
from apps.tasksets.models import TaskSet
from tests.api.conftest import bearer
from tests.factories import RunFactory

pytestmark = pytest.mark.django_db


def test_service_errors_are_422_with_the_field_and_the_form_words(api_world, client):
    auth = bearer(api_world["tokens"]["member"])
    url = "/api/v1/teams/alpha/tasksets"
    response = client.post(
        url, {"name": "Sines", "family": "sinusoid"}, content_type="application/json", **auth
    )
    assert response.status_code == 422
    assert response.json() == {
        "detail": [{"loc": ["body", "name"], "msg": "This team already has a task set called 'Sines'."}]
    }
    assert TaskSet.objects.count() == 1


def test_config_errors_name_the_launch_field(api_world, client):
    auth = bearer(api_world["tokens"]["member"])
    body = {
        "experiment_id": api_world["experiment"].pk,
        "taskset_id": api_world["version"].taskset_id,
        "config": {"inner_lr": -1, "shots": 0},
    }
    before = Run.objects.count()
    response = client.post("/api/v1/teams/alpha/runs", body, content_type="application/json", **auth)
    assert response.status_code == 422
    locs = {tuple(item["loc"]) for item in response.json()["detail"]}
    assert {("body", "inner_lr"), ("body", "shots")} <= locs
    assert Run.objects.count() == before


def test_request_shape_errors_are_422_too(api_world, client):
    auth = bearer(api_world["tokens"]["member"])
    response = client.post("/api/v1/teams/alpha/runs", "not json", content_type="application/json", **auth)
    assert response.status_code == 422
    assert response.json()["detail"] == [{"loc": ["body"], "msg": "Cannot parse request body"}]
    response = client.post(
        "/api/v1/teams/alpha/runs", {"experiment_id": "x"}, content_type="application/json", **auth
    )
    assert response.status_code == 422
    assert all({"loc", "msg"} <= set(item) for item in response.json()["detail"])


def test_search_errors_are_422_on_q(api_world, client):
    response = client.get(
        "/api/v1/teams/alpha/runs", {"q": "status:("}, **bearer(api_world["tokens"]["viewer"])
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "q"]
    assert "position" in response.json()["detail"][0]["msg"]


def test_runs_list_pages_with_cursors_and_searches(api_world, client, django_assert_max_num_queries):
    team = api_world["team"]
    for _ in range(7):
        RunFactory(experiment=api_world["experiment"], taskset_version=api_world["version"], status="failed")
    auth = bearer(api_world["tokens"]["viewer"])
    first = client.get("/api/v1/teams/alpha/runs", {"limit": 5}, **auth).json()
    assert first["count"] == Run.objects.filter(team=team).count() and len(first["results"]) == 5
    second = client.get(
        "/api/v1/teams/alpha/runs", {"limit": 5, "cursor": first["next_cursor"]}, **auth
    ).json()
    ids = [r["id"] for r in first["results"] + second["results"]]
    assert sorted(ids) == sorted(Run.objects.filter(team=team).values_list("pk", flat=True))
    failed = client.get("/api/v1/teams/alpha/runs", {"q": "status:failed"}, **auth).json()
    assert failed["count"] == 7
    with django_assert_max_num_queries(10) as few:
        client.get("/api/v1/teams/alpha/runs", **auth)
    for _ in range(10):
        RunFactory(experiment=api_world["experiment"], taskset_version=api_world["version"])
    with django_assert_max_num_queries(len(few)):
        client.get("/api/v1/teams/alpha/runs", **auth)


def test_metrics_are_downsampled_over_a_range(api_world, client):
    run = api_world["run"]
    url = f"/api/v1/teams/alpha/runs/{run.pk}/metrics"
    data = client.get(
        url, {"name": "loss", "lo": 10, "hi": 29, "points": 4}, **bearer(api_world["tokens"]["viewer"])
    ).json()
    assert data["total"] == 20
    assert len(data["x"]) <= 4 and min(data["x"]) >= 10 and max(data["x"]) <= 29
    edged = client.get(
        url,
        {"name": "loss", "lo": 10, "hi": 29, "points": 4, "edges": "true"},
        **bearer(api_world["tokens"]["viewer"]),
    ).json()
    assert edged["total"] == 20 and (edged["x"][0], edged["x"][-1]) == (9, 30)  # one past each end


def test_checkpoint_streams_the_weights(api_world, client):
    run = api_world["run"]
    response = client.get(
        f"/api/v1/teams/alpha/runs/{run.pk}/checkpoint", **bearer(api_world["tokens"]["viewer"])
    )
    assert response.status_code == 200
    assert b"".join(response.streaming_content).startswith(b"\x08\x00")


def test_docs_page_is_vendored_and_needs_login(api_world, client):
    assert client.get("/api/v1/docs").status_code == 302
    client.force_login(api_world["users"]["viewer"])
    body = client.get("/api/v1/docs").content.decode()
    assert "vendor/swagger-ui/swagger-ui-bundle.js" in body and "api/docs.js" in body
    assert "cdn" not in body.lower() and "<script>" not in body
    schema = client.get("/api/v1/openapi.json").json()
    config = schema["components"]["schemas"]["RunLaunchIn"]["properties"]["config"]
    assert config["title"] == "TrainConfig" and "inner_lr" in config["properties"]


def test_production_alias_keeps_the_approve_rule(api_world, client):
    model = api_world["meta_model"]
    url = f"/api/v1/teams/alpha/models/{model.pk}/alias"
    auth = bearer(api_world["tokens"]["member"])
    response = client.post(url, {"alias": "production"}, content_type="application/json", **auth)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "alias"]
    assert "Production needs an approve verdict" in response.json()["detail"][0]["msg"]


def test_model_get_has_the_card_with_lineage(api_world, client):
    model = api_world["meta_model"]
    data = client.get(
        f"/api/v1/teams/alpha/models/{model.pk}", **bearer(api_world["tokens"]["viewer"])
    ).json()
    assert data["card"]["lineage"]["experiment"]["id"] == api_world["experiment"].pk
    assert [a["run_id"] for a in data["adaptations"]] == [api_world["adaptation"].run_id]
    listed = client.get(
        "/api/v1/teams/alpha/models", {"limit": 1}, **bearer(api_world["tokens"]["viewer"])
    ).json()
    assert [m["id"] for m in listed["results"]] == [model.pk] and listed["next_before"] is None


@pytest.mark.parametrize(
    "method,url,body",
    [
        ("post", "/api/v1/teams/alpha/tasksets", {"name": "a\x00b", "family": "sinusoid"}),
        ("post", "/api/v1/teams/alpha/tasksets", {"name": "ab", "family": "sinusoid", "params": {"\x00": 1}}),
        ("get", "/api/v1/teams/alpha/runs?q=a%00b", None),
        ("get", "/api/v1/teams/al%00pha/runs", None),
    ],
)
def test_nul_characters_are_refused_not_500(api_world, client, method, url, body):
    auth = bearer(api_world["tokens"]["member"])
    if body is None:
        response = client.get(url, **auth)
    else:
        response = client.post(url, body, content_type="application/json", **auth)
    assert response.status_code in (404, 422), response.content
    if response.status_code == 422:
        assert response.json()["detail"][0]["msg"] == "Null characters are not allowed."


def test_the_api_never_imports_torch():
    """The API runs in the web process: it validates with the engine's torch-free parts."""
    import subprocess
    import sys

    code = (
        "import django, sys; django.setup(); "
        "import metaweb.urls, apps.api.api, apps.experiments.services.external, apps.teams.token_views; "
        "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_names_are_unique():
    """ninja names components after the classes: two schemas of one name would
    share one component, and one of them would be documented wrong."""
    from ninja import Schema

    from apps.api import api as api_module  # noqa: F401 - imports every router

    names = [cls.__name__ for cls in _subclasses(Schema) if cls.__module__.startswith("apps.api")]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)
