"""``POST /teams/{team}/tasksets/upload``: a task set from a CSV or an image zip, with
the task-set form's rules and words, nothing stored on error, the size cap while
the body streams."""

from __future__ import annotations

import json

import pytest
from django.conf import settings

from apps.tasksets.models import TaskSet, TaskSetVersion
from tests.api.conftest import bearer
from tests.tasksets.data import TABLE_PARAMS, csv_non_numeric, good_csv, image_zip, stored_files, upload

pytestmark = pytest.mark.django_db

URL = "/api/v1/teams/alpha/tasksets/upload"


def post(client, world, data, who="member"):
    return client.post(URL, data, **bearer(world["tokens"][who]))


def fields(**extra):
    return {"name": "Cells", "params": json.dumps(TABLE_PARAMS), **extra}


def test_a_csv_makes_a_task_set_with_its_file_checked(api_world, client):
    response = post(client, api_world, fields(data_file=upload(good_csv(), "cells.csv")))
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["name"] == "Cells" and body["family"] == "table" and body["latest_version"] == 1
    version = TaskSetVersion.objects.get(taskset_id=body["id"])
    assert version.params["target_column"] == "target"
    assert version.data_summary["upload"] == {"name": "cells.csv", "bytes": len(good_csv())}
    assert len(version.data_sha256) == 64


def test_an_image_zip_makes_a_task_set(api_world, client):
    response = post(client, api_world, fields(data_file=upload(image_zip(), "glyphs.zip")))
    assert response.status_code == 201, response.content
    version = TaskSetVersion.objects.get(taskset_id=response.json()["id"])
    assert version.data_summary["format"] == "images"
    assert version.data_summary["input_shape"] == [1, 8, 8]


@pytest.mark.parametrize(
    "data,loc,message",
    [
        pytest.param(
            fields(data_file=upload(csv_non_numeric(), "a.csv")),
            ["body", "data_file"],
            "row 3, column 'x1': 'abc' is not a number",
            id="engine-reader",
        ),
        pytest.param(
            fields(data_file=upload(good_csv(), "a.exe")),
            ["body", "data_file"],
            "Upload a .csv file, or a .zip of class folders of PNG images.",
            id="suffix",
        ),
        pytest.param(
            fields(params="{nope", data_file=upload(good_csv())),
            ["body", "params"],
            "This is not valid JSON (Expecting property name enclosed in double quotes, line 1).",
            id="json",
        ),
        pytest.param(
            fields(params="[1]", data_file=upload(good_csv())),
            ["body", "params"],
            "Parameters must be a JSON object.",
            id="params-not-object",
        ),
        pytest.param(
            fields(params=json.dumps({"kind": "bogus"}), data_file=upload(good_csv())),
            ["body", "params.kind"],
            None,
            id="params-field",
        ),
        pytest.param(
            fields(name="Sines", data_file=upload(good_csv())),
            ["body", "name"],
            "This team already has a task set called 'Sines'.",
            id="name-taken",
        ),
        pytest.param(
            fields(family="sinusoid", params="", data_file=upload(good_csv())),
            ["body", "data_file"],
            "The sinusoid family takes no data file.",
            id="family-takes-no-file",
        ),
        pytest.param(fields(), ["body", "data_file"], None, id="file-missing"),
        pytest.param({"data_file": upload(good_csv())}, ["body", "name"], None, id="name-missing"),
    ],
)
def test_errors_name_the_field_with_the_form_words(api_world, client, data, loc, message):
    before = TaskSet.objects.count()
    response = post(client, api_world, data)
    assert response.status_code == 422, response.content
    detail = response.json()["detail"]
    assert loc in [item["loc"] for item in detail], detail
    if message is not None:
        assert any(message in item["msg"] for item in detail if item["loc"] == loc), detail
    assert TaskSet.objects.count() == before
    assert stored_files(settings.MEDIA_ROOT) == []


def test_an_oversized_file_is_dropped_while_streaming(api_world, client, settings):
    settings.TASKSET_UPLOAD_MAX_BYTES = 200
    response = post(client, api_world, fields(data_file=upload(good_csv(), "big.csv")))
    assert response.status_code == 422, response.content
    assert response.json()["detail"] == [
        {"loc": ["body", "data_file"], "msg": "The file is larger than the limit of 200 bytes."}
    ]
    assert TaskSet.objects.filter(name="Cells").count() == 0
    assert stored_files(settings.MEDIA_ROOT) == []


def test_a_json_body_instead_of_multipart_is_a_422(api_world, client):
    response = client.post(
        URL, {"name": "x"}, content_type="application/json", **bearer(api_world["tokens"]["member"])
    )
    assert response.status_code == 422
    locs = [item["loc"] for item in response.json()["detail"]]
    assert ["body", "name"] in locs and ["body", "data_file"] in locs


def test_session_uploads_need_the_csrf_token(api_world):
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(api_world["users"]["member"])
    assert browser.post(URL, fields(data_file=upload(good_csv()))).status_code == 403
    browser.get("/accounts/login/")
    token = browser.cookies["csrftoken"].value
    response = browser.post(URL, fields(data_file=upload(good_csv())), HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 201, response.content


def test_a_malformed_multipart_body_is_a_422(api_world, client):
    response = client.generic(
        "POST",
        URL,
        b'--xyz\r\nContent-Disposition: form-data; name="name"\r\n\r\nCells\r\n--xyz',
        content_type="multipart/form-data",  # no boundary
        **bearer(api_world["tokens"]["member"]),
    )
    assert response.status_code == 422, response.content
    assert response.json()["detail"][0]["loc"] == ["body"]
    assert TaskSet.objects.filter(name="Cells").count() == 0


def test_too_many_files_is_a_422_not_a_server_error(api_world, client, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 2
    files = {f"extra{i}": upload(b"1,2\n", f"{i}.csv") for i in range(3)}
    response = post(client, api_world, fields(data_file=upload(good_csv()), **files))
    assert response.status_code == 422, response.content
    assert response.json()["detail"] == [
        {"loc": ["body"], "msg": "The number of files exceeded settings.DATA_UPLOAD_MAX_NUMBER_FILES."}
    ]


@pytest.mark.django_db(transaction=True)
def test_uploads_through_the_asgi_handler(api_world, settings):
    """The limit handler goes in front under ASGI requests too (the served stack)."""
    from asgiref.sync import async_to_sync
    from django.test import AsyncClient

    client = AsyncClient()
    auth = {"Authorization": f"Bearer {api_world['tokens']['member']}"}
    response = async_to_sync(client.post)(
        URL, fields(data_file=upload(good_csv(), "cells.csv")), headers=auth
    )
    assert response.status_code == 201, response.content
    settings.TASKSET_UPLOAD_MAX_BYTES = 200
    response = async_to_sync(client.post)(URL, fields(name="Big", data_file=upload(good_csv())), headers=auth)
    assert response.status_code == 422
    assert response.json()["detail"][0]["msg"] == "The file is larger than the limit of 200 bytes."
