"""``POST /teams/{team}/models``: external meta-parameters registered through the
registry's upload service: safetensors only, tensors checked against the config's
expected shapes, the upload form's words, nothing stored on error."""

from __future__ import annotations

import hashlib
import io
import json
import pickle

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from safetensors.numpy import save as save_numpy

from apps.registry import storage
from apps.registry.models import MetaModel, MetaModelSource
from apps.registry.services import uploads as registry_uploads
from apps.tasksets.services import taskset_version_create
from tests.api.conftest import bearer
from workers.metalearn.config import parse_config
from workers.metalearn.specs import expected_shapes

pytestmark = pytest.mark.django_db

URL = "/api/v1/teams/alpha/models"
SINE_INFO = {"name": "sinusoid", "kind": "regression", "input_shape": [1], "desc_dim": 2, "ways": 1}
CONFIG = {"algorithm": "maml", "hidden": [8, 8], "shots": 5, "query": 10, "inner_lr": 0.01}


def weights(shapes: dict[str, list[int]] | None = None, dtype=np.float32) -> bytes:
    shapes = shapes or expected_shapes(parse_config(CONFIG), SINE_INFO)
    rng = np.random.default_rng(0)
    return save_numpy({k: rng.standard_normal(v).astype(dtype) for k, v in shapes.items()})


def fields(world, data: bytes | None = None, **extra):
    return {
        "name": "Pushed MAML",
        "experiment_id": world["experiment"].pk,
        "taskset_id": world["version"].taskset_id,
        "config": json.dumps(CONFIG),
        "weights_file": SimpleUploadedFile("w.safetensors", weights() if data is None else data),
        **extra,
    }


def registry_entries(settings) -> list[str]:
    return sorted(p.name for p in (settings.DATA_DIR / "registry" / "meta").iterdir())


def post(client, world, data, who="member"):
    return client.post(URL, data, **bearer(world["tokens"][who]))


def test_an_upload_registers_the_next_version_with_its_weights(api_world, client):
    data = weights()
    response = post(client, api_world, fields(api_world, data))
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["name"] == "pushed-maml" and body["version"] == 1 and body["source"] == "upload"
    assert body["weights_sha256"] == hashlib.sha256(data).hexdigest()
    model = MetaModel.objects.get(pk=body["id"])
    assert model.source == MetaModelSource.UPLOAD and model.taskset_version == api_world["version"]
    assert (storage.meta_model_dir(model.pk) / storage.WEIGHTS_FILE).read_bytes() == data
    # the downloaded weights are the pushed bytes
    download = client.get(f"{URL}/{model.pk}/weights", **bearer(api_world["tokens"]["viewer"]))
    assert b"".join(download.streaming_content) == data
    again = post(client, api_world, fields(api_world))
    assert again.status_code == 201 and again.json()["version"] == 2


def test_an_older_task_set_version_can_be_named(api_world, client):
    version = api_world["version"]
    taskset_version_create(taskset=version.taskset, actor=api_world["users"]["member"], params={})
    response = post(client, api_world, fields(api_world, taskset_version=version.number))
    assert response.status_code == 201, response.content
    assert MetaModel.objects.get(pk=response.json()["id"]).taskset_version == version
    response = post(client, api_world, fields(api_world, taskset_version=9))
    assert response.status_code == 422
    assert response.json()["detail"] == [
        {"loc": ["body", "taskset_version"], "msg": "This task set has no version 9."}
    ]


def _zip_bytes() -> bytes:
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", b"x")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "change,loc,message",
    [
        pytest.param(
            {"data": weights({"w": [3, 3]})},
            ["body", "weights_file"],
            "The tensors do not fit this configuration's backbone",
            id="shapes",
        ),
        pytest.param(
            {"data": weights(dtype=np.float64)}, ["body", "weights_file"], "needs float32", id="dtype"
        ),
        pytest.param(
            {"data": pickle.dumps({"w": [1.0]})}, ["body", "weights_file"], "a Python pickle", id="pickle"
        ),
        pytest.param({"data": _zip_bytes()}, ["body", "weights_file"], "a zip archive", id="zip"),
        pytest.param({"data": weights()[:-4]}, ["body", "weights_file"], "truncated", id="truncated"),
        pytest.param({"config": "{oops"}, ["body", "config"], "This is not valid JSON (", id="config-json"),
        pytest.param(
            {"config": "[]"}, ["body", "config"], "The configuration must be a JSON object.", id="config-list"
        ),
        pytest.param(
            {"config": json.dumps({**CONFIG, "inner_lr": -1})},
            ["body", "config"],
            "inner_lr",
            id="config-value",
        ),
        pytest.param({"name": "!!!"}, ["body", "name"], "Give the model a name", id="name"),
        pytest.param(
            {"experiment_id": 10**9}, ["body", "experiment"], "this team's experiments", id="experiment"
        ),
        pytest.param({"taskset_id": 10**9}, ["body", "taskset"], "this team's task sets", id="taskset"),
        pytest.param({"experiment_id": "x"}, ["body", "experiment_id"], None, id="not-a-number"),
    ],
)
def test_bad_uploads_are_422_on_the_field_and_store_nothing(
    api_world, client, settings, change, loc, message
):
    data = change.pop("data", None)
    response = post(client, api_world, fields(api_world, data, **change))
    assert response.status_code == 422, response.content
    detail = response.json()["detail"]
    assert loc in [item["loc"] for item in detail], detail
    if message is not None:
        assert any(message in item["msg"] for item in detail if item["loc"] == loc), detail
    assert MetaModel.objects.filter(name="pushed-maml").count() == 0
    assert registry_entries(settings) == [str(api_world["meta_model"].pk)]  # no staging folder left


def test_the_weights_file_is_required(api_world, client):
    data = fields(api_world)
    del data["weights_file"]
    response = post(client, api_world, data)
    assert response.status_code == 422
    assert ["body", "weights_file"] in [item["loc"] for item in response.json()["detail"]]


def test_an_oversized_file_is_dropped_while_streaming(api_world, client, monkeypatch, settings):
    monkeypatch.setattr(registry_uploads, "MAX_UPLOAD_BYTES", 100)
    response = post(client, api_world, fields(api_world))
    assert response.status_code == 422, response.content
    assert response.json()["detail"] == [
        {"loc": ["body", "weights_file"], "msg": "The file is larger than the limit of 100 bytes."}
    ]
    assert registry_entries(settings) == [str(api_world["meta_model"].pk)]
