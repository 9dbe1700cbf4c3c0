"""``/teams/{team}/runs/{run_id}/files``: the files a run keeps (MLflow's artifacts).
Uploaded and downloaded byte for byte under ids-only keys, names that are names,
the size and count limits, nothing kept on any error, other teams' runs not found.
Run on PostgreSQL and on SQLite."""

from __future__ import annotations

import hashlib

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.experiments.models import RunFile
from apps.runfiles import keys
from apps.runfiles.store import StoreUnavailable, local_path
from tests.api.conftest import bearer
from tests.factories import RunFactory

pytestmark = pytest.mark.django_db


def url(world, run=None, tail=""):
    return f"/api/v1/teams/{world['team'].slug}/runs/{(run or world['run']).pk}/files{tail}"


def post(client, world, data: bytes, name: str | None = "report.html", filename="upload.bin", who="member"):
    fields = {"file": SimpleUploadedFile(filename, data)}
    if name is not None:
        fields["name"] = name
    return client.post(url(world), fields, **bearer(world["tokens"][who]))


def test_a_file_goes_up_and_comes_back_byte_for_byte(api_world, client):
    data = bytes(range(256)) * 4000  # 1 MB, every byte value
    response = post(client, api_world, data, name="curves é.npz")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["name"], body["size"], body["created_by"]) == ("curves é.npz", len(data), "member")
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    kept = RunFile.objects.get(pk=body["id"])
    assert local_path(keys.run_file(api_world["run"].pk, kept.pk)).read_bytes() == data  # an ids-only key
    listed = client.get(url(api_world), **bearer(api_world["tokens"]["viewer"])).json()
    assert [item["name"] for item in listed] == ["curves é.npz", "notes.txt"]  # by name
    download = client.get(url(api_world, tail=f"/{kept.pk}"), **bearer(api_world["tokens"]["viewer"]))
    assert download.status_code == 200 and b"".join(download.streaming_content) == data
    assert download["Content-Type"] == "application/octet-stream" and download["Content-Length"] == str(
        len(data)
    )
    assert download["Content-Disposition"] == "attachment; filename*=utf-8''curves%20%C3%A9.npz"


def test_the_name_defaults_to_the_uploaded_files_own(api_world, client):
    response = post(client, api_world, b"a,b\n1,2\n", name=None, filename="table.csv")
    assert response.status_code == 201 and response.json()["name"] == "table.csv"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../etc/passwd", "A file name is a name, not a path: no / or \\, and not . or .."),
        ("..", "A file name is a name, not a path: no / or \\, and not . or .."),
        ("a\\b", "A file name is a name, not a path: no / or \\, and not . or .."),
        ("bell\x07.txt", "A file name holds no control or invisible characters."),
        ("x" * 201, "A file name is at most 200 characters."),
        ("notes.txt", "Run #{run} already keeps a file called 'notes.txt'."),
    ],
)
def test_a_bad_name_is_refused_on_the_name_and_nothing_is_kept(api_world, client, name, message):
    before = RunFile.objects.count()
    response = post(client, api_world, b"data", name=name)
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "name"] and error["msg"] == message.format(run=api_world["run"].pk)
    assert RunFile.objects.count() == before


def test_too_large_a_file_and_too_many_files_are_refused_on_the_file(api_world, client, settings):
    settings.RUN_FILE_MAX_BYTES = 1024 * 1024
    response = post(client, api_world, b"x" * (1024 * 1024 + 1))
    (error,) = response.json()["detail"]
    assert response.status_code == 422 and error["loc"] == ["body", "file"]
    assert error["msg"] == "The file is larger than the limit of 1.0 MB."
    settings.RUN_FILES_MAX = 2
    assert post(client, api_world, b"second").status_code == 201
    third = post(client, api_world, b"third", name="third.txt")
    assert third.status_code == 422 and third.json()["detail"][0]["msg"] == "A run keeps at most 2 files."
    assert RunFile.objects.filter(run=api_world["run"]).count() == 2


def test_a_store_that_fails_keeps_neither_row_nor_file(api_world, client, monkeypatch):
    def refuse(source, key):
        local_path(key).parent.mkdir(parents=True, exist_ok=True)
        local_path(key).write_bytes(b"half")  # as if a write got halfway
        raise StoreUnavailable("The run-file store (s3://bucket) did not answer.")

    monkeypatch.setattr("apps.experiments.services.run_files.put_file", refuse)
    before = set(RunFile.objects.values_list("pk", flat=True))
    response = post(client, api_world, b"data")
    (error,) = response.json()["detail"]
    assert response.status_code == 422 and error["loc"] == ["body", "file"]
    assert error["msg"] == "The run-file store (s3://bucket) did not answer."
    assert set(RunFile.objects.values_list("pk", flat=True)) == before
    folder = local_path(keys.run(api_world["run"].pk)) / "files"
    assert sorted(p.name for p in folder.iterdir()) == [str(pk) for pk in sorted(before)]


def test_roles_and_other_teams(api_world, client):
    assert post(client, api_world, b"data", who="viewer").status_code == 403
    assert post(client, api_world, b"data", who="read_only").status_code == 403
    foreign = RunFactory()  # another team's run: not found, to everyone here
    response = client.get(url(api_world, run=foreign), **bearer(api_world["tokens"]["admin"]))
    assert response.status_code == 404
    other_run = RunFactory(experiment=api_world["experiment"], taskset_version=api_world["version"])
    kept = api_world["run_file"]
    wrong = client.get(
        url(api_world, run=other_run, tail=f"/{kept.pk}"), **bearer(api_world["tokens"]["admin"])
    )
    assert wrong.status_code == 404  # a file is read through its own run only
    theirs = client.get(url(api_world, tail=f"/{kept.pk}"), **bearer(api_world["tokens"]["other_team"]))
    assert theirs.status_code == 404


def test_the_run_page_lists_the_files_and_downloads_them(api_world, client):
    run, kept = api_world["run"], api_world["run_file"]
    client.force_login(api_world["users"]["viewer"])
    page = client.get(f"/runs/{run.pk}/").content.decode()
    assert (
        f'<tr data-file-id="{kept.pk}"><td><a href="/runs/{run.pk}/files/{kept.pk}" download>notes.txt</a>'
        in page
    )
    download = client.get(f"/runs/{run.pk}/files/{kept.pk}")
    assert b"".join(download.streaming_content) == b"first try\n"
    assert download["Content-Disposition"] == 'attachment; filename="notes.txt"'
    other = RunFactory(experiment=api_world["experiment"], taskset_version=api_world["version"])
    assert client.get(f"/runs/{other.pk}/files/{kept.pk}").status_code == 404
    client.force_login(api_world["users"]["outsider"])
    assert client.get(f"/runs/{run.pk}/files/{kept.pk}").status_code == 404


def test_a_name_taken_between_the_check_and_the_write_is_refused_on_the_name(api_world, client, monkeypatch):
    """Two uploads of one name at once: the database's unique constraint decides, and
    the loser gets the name's message, not a server error, and keeps nothing."""
    from apps.experiments.services import run_files

    real = run_files.put_file

    def racing(source, key):
        RunFile.objects.create(run=api_world["run"], name="race.txt", size=1, sha256="0" * 64,
                               created_by=api_world["users"]["admin"])  # fmt: skip
        real(source, key)

    monkeypatch.setattr(run_files, "put_file", racing)
    response = post(client, api_world, b"mine", name="race.txt")
    (error,) = response.json()["detail"]
    assert response.status_code == 422 and error["loc"] == ["body", "name"]
    assert error["msg"] == f"Run #{api_world['run'].pk} already keeps a file called 'race.txt'."
    assert RunFile.objects.filter(run=api_world["run"], name="race.txt").count() == 0  # rolled back
