"""``POST /teams/{team}/models/{model_id}/adaptations/csv``: support and query CSV files
read by the adaptation form (the engine's one reader), its rules and words; nothing
written or queued on error; the CSV cap while the body streams."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.adaptations import uploads as adapt_uploads
from apps.adaptations.models import Adaptation
from tests.api.conftest import bearer

pytestmark = pytest.mark.django_db


def url(world) -> str:
    return f"/api/v1/teams/alpha/models/{world['meta_model'].pk}/adaptations/csv"


def csv(content: bytes, name: str = "support.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type="text/csv")


def post(client, world, data, who="member"):
    return client.post(url(world), data, **bearer(world["tokens"][who]))


def test_support_and_query_files_queue_a_custom_adaptation(
    api_world, client, sent, django_capture_on_commit_callbacks, settings
):
    settings.RUN_DISPATCH_SLOTS = {"cpu": 10, "gpu": 10}  # room for all: fair dispatch is tested apart
    data = {
        "support_file": csv(b"x,y\r\n-1,0.5\r\n2,1.5\r\n"),
        "query_file": csv(b"y,x\n0.25,0.5\n", "query.csv"),  # the target column found by its name
        "steps": "3",
        "lr": "0.05",
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, api_world, data)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["target"] == "custom" and body["status"] == "queued" and body["result"] is None
    assert body["steps"] == 3 and body["lr"] == 0.05
    adaptation = Adaptation.objects.get(run_id=body["run_id"])
    assert adaptation.support == {"x": [[-1.0], [2.0]], "y": [0.5, 1.5]}
    assert adaptation.query == {"x": [[0.5]], "y": [0.25]}
    assert "workers.tasks.adapt_run" in [name for name, _, _ in sent]
    got = client.get(
        f"/api/v1/teams/alpha/adaptations/{body['run_id']}", **bearer(api_world["tokens"]["viewer"])
    )
    assert got.json()["run_id"] == body["run_id"]


def test_the_learning_rate_defaults_to_the_models_inner_lr(api_world, client, sent):
    response = post(client, api_world, {"support_file": csv(b"1,2\n3,4\n")})
    assert response.status_code == 201, response.content
    assert response.json()["lr"] == 0.01 and response.json()["steps"] == 10


@pytest.mark.parametrize(
    "data,loc,message",
    [
        pytest.param(
            {"support_file": csv(b"x,y\n1,2\n2,inf\n")},
            ["body", "support_file"],
            "row 3, column 'y': infinite values are not allowed.",
            id="inf",
        ),
        pytest.param(
            {"support_file": csv(b"1,2\n3,4,5\n")},
            ["body", "support_file"],
            "row 2: has 3 values; expected 2 (1 input, then the target).",
            id="columns",
        ),
        pytest.param(
            {"support_file": csv(b"\xff\xfe\x00bad", "s.csv")},
            ["body", "support_file"],
            "s.csv: is not UTF-8 text",
            id="binary",
        ),
        pytest.param(
            {"support_file": csv(b"1,2\n"), "query_file": csv(b"1,2\n2\n", "q.csv")},
            ["body", "query_file"],
            "row 2: has 1 value; expected 2",
            id="query-row",
        ),
        pytest.param(
            {"support_file": csv(b"1,2\n"), "steps": "101"},
            ["body", "steps"],
            "less than or equal to 100",
            id="steps",
        ),
        pytest.param({"support_file": csv(b"1,2\n"), "lr": "0"}, ["body", "lr"], "above 0", id="lr"),
        pytest.param(
            {"support_file": csv(b"1,2\n"), "queue": "tpu"},
            ["body", "queue"],
            "Select a valid choice",
            id="queue",
        ),
        pytest.param({"support_file": csv(b"1,2\n"), "steps": "x"}, ["body", "steps"], None, id="steps-type"),
        pytest.param({}, ["body", "support_file"], None, id="support-missing"),
    ],
)
def test_errors_are_422_on_the_field_and_nothing_is_queued(
    api_world, client, sent, django_capture_on_commit_callbacks, data, loc, message
):
    before = Adaptation.objects.count()
    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, api_world, data)
    assert response.status_code == 422, response.content
    detail = response.json()["detail"]
    assert loc in [item["loc"] for item in detail], detail
    if message is not None:
        assert any(message in item["msg"] for item in detail if item["loc"] == loc), detail
    assert Adaptation.objects.count() == before and sent == []


def test_a_file_over_the_csv_cap_is_dropped_while_streaming(api_world, client, sent):
    assert adapt_uploads.MAX_CSV_BYTES == 2 * 1024 * 1024
    big = b"1,2\n" * (adapt_uploads.MAX_CSV_BYTES // 4 + 1)
    response = post(client, api_world, {"support_file": csv(b"1,2\n"), "query_file": csv(big, "q.csv")})
    assert response.status_code == 422, response.content
    assert response.json()["detail"] == [
        {"loc": ["body", "query_file"], "msg": "The file is larger than the limit of 2.0 MB."}
    ]
    response = post(client, api_world, {"support_file": csv(big)})
    assert response.json()["detail"] == [
        {"loc": ["body", "support_file"], "msg": "The file is larger than the limit of 2.0 MB."}
    ]
    assert sent == []


def test_a_model_without_its_checkpoint_cannot_be_adapted(api_world, client, sent, settings):
    from apps.registry import storage

    (storage.meta_model_dir(api_world["meta_model"].pk) / storage.CHECKPOINT_JSON).unlink()
    response = post(client, api_world, {"support_file": csv(b"1,2\n")})
    assert response.status_code == 422
    assert {"loc": ["body"], "msg": "This meta-model's checkpoint is missing; it cannot be adapted."} in (
        response.json()["detail"]
    )


def test_an_image_model_is_refused_on_the_support_file(api_world, client, sent):
    import json

    from apps.registry import storage

    path = storage.meta_model_dir(api_world["meta_model"].pk) / storage.CHECKPOINT_JSON
    record = json.loads(path.read_text())
    record["family_info"].update(name="digits", kind="classification", input_shape=[1, 8, 8], ways=5)
    path.write_text(json.dumps(record))
    response = post(client, api_world, {"support_file": csv(b"1,2\n")})
    assert response.status_code == 422
    assert response.json()["detail"] == [
        {"loc": ["body", "support_file"], "msg": "This model takes images, not CSV rows; use the web form."}
    ]
    assert sent == []


def test_the_api_and_the_page_read_a_csv_alike(api_world, client, sent):
    from django.test import Client
    from django.urls import reverse

    content = b"target,x\n0.5,-1\n1.5,2\n"
    response = post(client, api_world, {"support_file": csv(content), "steps": "2", "lr": "0.1"})
    assert response.status_code == 201, response.content
    browser = Client()
    browser.force_login(api_world["users"]["member"])
    page = reverse("adaptations:adapt-new", kwargs={"meta_model_id": api_world["meta_model"].pk})
    form = {"target": "custom", "steps": "2", "lr": "0.1", "queue": "cpu", "support_file": csv(content)}
    assert browser.post(page, form).status_code == 302
    api_made, page_made = Adaptation.objects.order_by("-pk")[:2][::-1]
    assert api_made.run_id == response.json()["run_id"]
    assert api_made.support == page_made.support == {"x": [[-1.0], [2.0]], "y": [0.5, 1.5]}
    assert (api_made.steps, api_made.lr) == (page_made.steps, page_made.lr)
