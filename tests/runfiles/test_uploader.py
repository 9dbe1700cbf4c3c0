"""The background uploader on its own (no store): newest-wins, pruned folders,
failures raised on the training thread."""

from __future__ import annotations

import threading

import pytest

from apps.runfiles.store import StoreUnavailable
from workers.uploads import CheckpointUploader


def folders(root, *steps):
    for step in steps:
        (root / f"step-{step:06d}").mkdir(parents=True)


def test_uploads_in_order_then_calls_back(tmp_path):
    stored, called = [], []
    folders(tmp_path, 10, 20)
    uploader = CheckpointUploader(
        run_id=1, root=tmp_path, store=lambda run, folder: stored.append(folder.name)
    )
    uploader.submit(10, then=called.append)
    uploader.submit(20, then=called.append)
    uploader.close()
    assert called == [10, 20] or called == [20]  # 10 may be superseded while queued
    assert stored[-1] == "step-000020" and called[-1] == 20


def test_a_newer_checkpoint_supersedes_one_still_waiting(tmp_path):
    gate, first = threading.Event(), threading.Event()
    stored, called = [], []
    folders(tmp_path, 10, 20, 30)

    def store(run, folder):
        if folder.name == "step-000010":
            first.set()
            assert gate.wait(10)
        stored.append(folder.name)

    uploader = CheckpointUploader(run_id=1, root=tmp_path, store=store)
    uploader.submit(10, then=called.append)
    assert first.wait(10)
    uploader.submit(20, then=called.append)
    uploader.submit(30, then=called.append)
    gate.set()
    uploader.wait()
    assert stored == ["step-000010", "step-000030"] and called == [10, 30]  # 20 skipped
    uploader.close()


def test_a_pruned_folder_is_skipped(tmp_path):
    called = []

    def store(run, folder):
        raise FileNotFoundError(folder)

    uploader = CheckpointUploader(run_id=1, root=tmp_path, store=store)
    uploader.submit(10, then=called.append)  # its folder is gone
    uploader.wait()
    assert called == []
    uploader.close()


def test_a_failed_upload_is_raised_at_the_next_checkpoint_and_by_wait(tmp_path):
    folders(tmp_path, 10)

    def store(run, folder):
        raise StoreUnavailable("Cannot reach the object store s3://b/p to store x (EndpointConnectionError).")

    called = []
    uploader = CheckpointUploader(run_id=1, root=tmp_path, store=store)
    uploader.submit(10, then=called.append)
    with pytest.raises(StoreUnavailable, match="s3://b/p"):
        uploader.wait()
    with pytest.raises(StoreUnavailable):
        uploader.submit(20, then=called.append)
    uploader.close()  # logs, does not raise
    assert called == []
