"""The run-file store against a real S3-protocol server (moto_server): upload,
download, listing the newest checkpoint, a missing object, a store that stops
answering mid-upload, and one that is not there at all."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from apps.runfiles import checkpoints, keys, store
from apps.runfiles.store import StoreUnavailable
from benchmarks._s3 import list_keys
from benchmarks._stack import free_port
from tests.runfiles.conftest import use_store
from workers.metalearn.checkpoint_layout import META_FILE, OPTIMIZER_FILE, PARAMS_FILE

pytestmark = pytest.mark.django_db


def write_checkpoint(root: Path, step: int, *, seed: int = 0) -> Path:
    """A checkpoint folder in the engine's layout, with distinct bytes per step."""
    folder = root / f"step-{step:06d}"
    folder.mkdir(parents=True)
    (folder / PARAMS_FILE).write_bytes(os.urandom(64) + f"params {step} {seed}".encode())
    (folder / OPTIMIZER_FILE).write_bytes(f"optimizer {step}".encode())
    (folder / META_FILE).write_text(f'{{"format": 1, "step": {step}}}')
    (root / "latest").write_text(folder.name + "\n")
    return folder


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_upload_download_stream_and_list(s3_store, tmp_path, settings):
    source = tmp_path / "weights.bin"
    source.write_bytes(os.urandom(3 * store.CHUNK + 17))  # more than one chunk
    store.put_file(source, "registry/meta/7/params.safetensors")
    store.put_bytes("registry/meta/7/checkpoint.json", b"{}")

    assert store.exists("registry/meta/7/params.safetensors")
    assert store.read_bytes("registry/meta/7/checkpoint.json") == b"{}"
    assert store.listdir("registry/meta/7") == ([], ["checkpoint.json", "params.safetensors"])
    target = tmp_path / "copy" / "w.bin"
    assert store.fetch("registry/meta/7/params.safetensors", target)
    assert target.read_bytes() == source.read_bytes()
    chunks, size = store.open_stream("registry/meta/7/params.safetensors")
    assert size == source.stat().st_size and b"".join(chunks) == source.read_bytes()
    # Stored under the URL's prefix, and nothing on this machine's data folder.
    assert f"{s3_store.prefix}/registry/meta/7/params.safetensors" in list_keys(s3_store, s3_store.prefix)
    assert not Path(settings.DATA_DIR).exists() or not any(Path(settings.DATA_DIR).rglob("*.safetensors"))


def test_missing_objects_are_none_not_errors(s3_store, tmp_path):
    assert store.read_bytes("runs/1/checkpoints/latest") is None
    assert store.open_stream("registry/meta/1/params.safetensors") is None
    assert not store.fetch("registry/meta/1/params.safetensors", tmp_path / "x")
    assert not (tmp_path / "x").exists()
    assert not store.exists("nothing/here")
    assert store.listdir("runs/1/checkpoints") == ([], [])
    assert checkpoints.stored_latest(1) is None
    assert checkpoints.fetch_newest(1) is None


def test_checkpoints_upload_then_point_and_prune(s3_store, tmp_path):
    scratch = tmp_path / "machine-a"
    for step in (100, 200, 300, 400):
        checkpoints.upload(5, write_checkpoint(scratch, step))
    stored = list_keys(s3_store, f"{s3_store.prefix}/runs/5/checkpoints/")
    folders = sorted({key.split("/")[-2] for key in stored if key.count("/") > 4})
    assert folders == ["step-000200", "step-000300", "step-000400"]  # the newest KEEP=3
    assert store.read_bytes(keys.join(keys.run_checkpoints(5), "latest")) == b"step-000400\n"
    assert checkpoints.stored_latest(5) == "step-000400"
    assert checkpoints.stored_weights_key(5) == "runs/5/checkpoints/step-000400/params.safetensors"


def test_newest_checkpoint_skips_incomplete_and_follows_the_pointer(s3_store, tmp_path):
    scratch = tmp_path / "a"
    checkpoints.upload(6, write_checkpoint(scratch, 100))
    checkpoints.upload(6, write_checkpoint(scratch, 200))
    # A step 300 cut off before its record: never used.
    store.put_bytes("runs/6/checkpoints/step-000300/params.safetensors", b"half")
    assert checkpoints.stored_latest(6) == "step-000200"
    store.put_bytes("runs/6/checkpoints/latest", b"step-000100\n")  # the pointer wins
    assert checkpoints.stored_latest(6) == "step-000100"
    store.put_bytes("runs/6/checkpoints/latest", b"step-000900\n")  # dangling: newest complete
    assert checkpoints.stored_latest(6) == "step-000200"


def test_fetch_newest_brings_the_checkpoint_to_another_machine(s3_store, tmp_path, settings):
    folder = write_checkpoint(tmp_path / "machine-a", 300)
    checkpoints.upload(8, folder)
    settings.DATA_DIR = tmp_path / "machine-b"
    assert checkpoints.fetch_newest(8) == 300
    fetched = checkpoints.local_root(8) / "step-000300"
    assert checkpoints.local_root(8) == tmp_path / "machine-b" / "runs" / "8" / "checkpoints"
    for name in (PARAMS_FILE, OPTIMIZER_FILE, META_FILE):
        assert digest(fetched / name) == digest(folder / name)  # byte for byte
    assert (checkpoints.local_root(8) / "latest").read_text() == "step-000300\n"
    assert not any(p.name.startswith(".tmp-") for p in checkpoints.local_root(8).iterdir())
    # A machine that already holds it (or a newer one) downloads nothing.
    (fetched / PARAMS_FILE).write_bytes(b"local")
    assert checkpoints.fetch_newest(8) == 300
    assert (fetched / PARAMS_FILE).read_bytes() == b"local"


def test_a_store_that_stops_mid_upload_keeps_the_previous_checkpoint(s3_store, tmp_path, monkeypatch):
    scratch = tmp_path / "a"
    checkpoints.upload(9, write_checkpoint(scratch, 100))
    real_put = checkpoints.put_file
    stored: list[str] = []

    def put_then_stop(source, key):
        real_put(source, key)
        stored.append(key)
        if len(stored) == 1:
            s3_store.freeze()  # the store stops answering after the first object

    monkeypatch.setattr(checkpoints, "put_file", put_then_stop)
    try:
        with pytest.raises(StoreUnavailable) as caught:
            checkpoints.upload(9, write_checkpoint(scratch, 200))
    finally:
        s3_store.thaw()
    message = str(caught.value)
    assert f"s3://{s3_store.bucket}/{s3_store.prefix} at {s3_store.endpoint}" in message
    assert "Traceback" not in message and "\n" not in message
    assert stored == ["runs/9/checkpoints/step-000200/optimizer.safetensors"]
    assert checkpoints.stored_latest(9) == "step-000100"  # write, then point


def test_an_unreachable_store_names_itself(settings, monkeypatch, tmp_path):
    port = free_port()  # nothing listens there
    use_store(settings, monkeypatch, f"s3://metaweb/x?endpoint=http://127.0.0.1:{port}&timeout=1")
    with pytest.raises(
        StoreUnavailable, match=rf"the object store s3://metaweb/x at http://127.0.0.1:{port}"
    ):
        checkpoints.stored_latest(3)
    folder = write_checkpoint(tmp_path, 10)
    with pytest.raises(StoreUnavailable, match="Cannot reach"):
        checkpoints.upload(3, folder)


def test_local_store_is_the_data_folder(settings, tmp_path):
    """Without METAWEB_STORAGE_URL the engine's folder is the stored one: nothing is copied."""
    folder = write_checkpoint(checkpoints.local_root(4), 50)
    checkpoints.upload(4, folder)
    assert checkpoints.stored_latest(4) == "step-000050"
    assert store.local_path("runs/4/checkpoints") == Path(settings.DATA_DIR) / "runs" / "4" / "checkpoints"
    assert checkpoints.fetch_newest(4) == 50
    assert sorted(p.name for p in checkpoints.local_root(4).iterdir()) == ["latest", "step-000050"]
