"""The web side with the object store (moto_server): downloads stream from the store
with today's permissions, registering a run copies its checkpoint store to store,
task-set files are cached by content hash; the web's data folder holds no weights."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse

from apps.adaptations.selectors import meta_model_facts
from apps.experiments.models import RunStatus
from apps.registry.services import metamodel_register_from_run
from apps.runfiles import checkpoints, store
from apps.tasksets.files import version_data_path
from benchmarks._s3 import list_keys
from benchmarks._stack import free_port
from tests.factories import ExperimentFactory, RunFactory, TaskSetVersionFactory
from tests.runfiles.conftest import use_store
from tests.runfiles.test_store import write_checkpoint

pytestmark = pytest.mark.django_db


def weights_on_disk(settings) -> list[Path]:
    root = Path(settings.DATA_DIR)
    return sorted(root.rglob("*.safetensors")) if root.exists() else []


@pytest.fixture
def finished(team_roles, tmp_path):
    team, users = team_roles
    experiment = ExperimentFactory(team=team, created_by=users["member"])
    run = RunFactory(experiment=experiment, status=RunStatus.SUCCEEDED, step=20, checkpoint_step=20)
    return run, users


def test_checkpoint_download_streams_from_the_store(client, s3_store, finished, tmp_path, settings):
    run, users = finished
    url = reverse("experiments:run-checkpoint", args=[run.pk])
    client.force_login(users["viewer"])
    assert client.get(url).status_code == 404  # nothing stored yet
    folder = write_checkpoint(tmp_path / "worker", 20)
    checkpoints.upload(run.pk, folder)

    response = client.get(url)
    assert response.status_code == 200 and response.streaming
    assert f'filename="run-{run.pk}-step-000020.safetensors"' in response["Content-Disposition"]
    assert b"".join(response.streaming_content) == (folder / "params.safetensors").read_bytes()
    assert int(response["Content-Length"]) == (folder / "params.safetensors").stat().st_size
    assert (
        'id="download-checkpoint"'
        in client.get(reverse("experiments:run-detail", args=[run.pk])).content.decode()
    )
    assert weights_on_disk(settings) == []  # the web's own disk never held it
    client.force_login(users["outsider"])
    assert client.get(url).status_code == 404  # same permissions as ever


def test_an_unreachable_store_answers_503_naming_it(client, finished, settings, monkeypatch):
    run, users = finished
    port = free_port()
    use_store(settings, monkeypatch, f"s3://metaweb/p?endpoint=http://127.0.0.1:{port}&timeout=1")
    client.force_login(users["viewer"])
    response = client.get(reverse("experiments:run-checkpoint", args=[run.pk]))
    assert response.status_code == 503
    assert f"the object store s3://metaweb/p at http://127.0.0.1:{port}" in response.content.decode()
    # The run page still renders, offering the download its recorded checkpoint step promises.
    page = client.get(reverse("experiments:run-detail", args=[run.pk]))
    assert page.status_code == 200 and 'id="download-checkpoint"' in page.content.decode()


def test_registering_a_run_copies_its_checkpoint_within_the_store(client, s3_store, finished, settings):
    from workers.metalearn import meta_train
    from workers.metalearn.config import parse_config
    from workers.metalearn.families import make_family

    run, users = finished
    config = parse_config(run.config)
    worker_disk = settings.DATA_DIR.parent / "worker"
    meta_train(config, make_family(config.family), None, worker_disk / "ckpt")
    checkpoints.upload(run.pk, worker_disk / "ckpt" / "step-000020")

    meta_model = metamodel_register_from_run(run_id=run.pk)
    stored = list_keys(s3_store, f"{s3_store.prefix}/registry/meta/{meta_model.pk}/")
    assert [k.rsplit("/", 1)[1] for k in stored] == ["checkpoint.json", "params.safetensors"]
    weights = store.read_bytes(f"registry/meta/{meta_model.pk}/params.safetensors")
    assert hashlib.sha256(weights).hexdigest() == meta_model.weights_sha256
    assert meta_model_facts(meta_model).algorithm == "maml"  # read from the store

    client.force_login(users["viewer"])
    response = client.get(reverse("registry:metamodel-weights", args=[meta_model.pk]))
    assert b"".join(response.streaming_content) == weights
    assert weights_on_disk(settings) == []  # staged, stored, and gone from the web's disk


def test_taskset_files_are_cached_by_content_hash(s3_store, settings):
    data = b"task,x,y\n0,0.1,0.2\n0,0.3,0.4\n"
    name = default_storage.save("tasksets/1/data.csv", ContentFile(data))
    assert f"{s3_store.prefix}/media/{name}" in list_keys(s3_store, s3_store.prefix)
    version = TaskSetVersionFactory(data_sha256=hashlib.sha256(data).hexdigest())
    version.data_file.name = name

    path = Path(version_data_path(version))
    assert path == Path(settings.DATA_DIR) / "cache" / "tasksets" / f"{version.data_sha256}.csv"
    assert path.read_bytes() == data
    s3_store.freeze()  # a second read does not touch the store
    try:
        assert Path(version_data_path(version)) == path
    finally:
        s3_store.thaw()

    version.data_sha256 = "0" * 64  # a stored file that does not match its hash is refused
    with pytest.raises(OSError, match="does not match its sha256"):
        version_data_path(version)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # nothing half-written


def test_a_run_file_goes_to_the_store_and_streams_back(client, s3_store, finished, settings):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from apps.experiments.services import run_file_upload
    from apps.runfiles import keys

    run, users = finished
    data = bytes(range(256)) * 40_000  # 10 MB: past the single-PUT size, a multipart upload
    kept = run_file_upload(
        run=run, actor=users["member"], upload=SimpleUploadedFile("big.bin", data), name="big.bin"
    )
    key = f"{s3_store.prefix}/{keys.run_file(run.pk, kept.pk)}"
    assert list_keys(s3_store, s3_store.prefix) == [key]  # the row's id, not the name
    client.force_login(users["viewer"])
    response = client.get(reverse("experiments:run-file", args=[run.pk, kept.pk]))
    assert response.streaming and b"".join(response.streaming_content) == data
    assert kept.sha256 == hashlib.sha256(data).hexdigest()
    assert not list(Path(settings.DATA_DIR).rglob("big.bin"))  # no copy left on the web's disk
    assert not [p for p in Path(settings.DATA_DIR).rglob("*") if p.name.startswith(".upload-")]
