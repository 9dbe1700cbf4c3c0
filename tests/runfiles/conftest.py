"""A real S3-protocol server (moto_server on a free port) for the run-file store tests.

``s3_server`` starts one server per test session; ``s3_store`` points the settings
at it under a prefix of the test's own (so tests never see each other's objects) and
gives the test a data folder of its own, like every Django test.
"""

from __future__ import annotations

import uuid

import pytest

from benchmarks._s3 import CREDENTIALS, S3Server, start_s3_server
from benchmarks._stack import BIN
from metaweb.settings.storage import storages_setting, store_label


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> S3Server:
    if not (BIN / "moto_server").exists():
        pytest.skip("moto_server is not installed (pip install 'moto[server]')")
    server = start_s3_server(log_dir=tmp_path_factory.mktemp("s3-log"))
    yield server
    server.stop()


def use_store(settings, monkeypatch, url: str) -> None:
    """Point Django's storages at ``url`` (``""``: the local data folder)."""
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    settings.STORAGES = storages_setting(
        url, staticfiles="django.contrib.staticfiles.storage.StaticFilesStorage"
    )
    settings.STORAGE_LABEL = store_label(url)


@pytest.fixture
def s3_store(settings, monkeypatch, s3_server) -> S3Server:
    """The run-file store and the uploads in the S3 server, under a fresh prefix."""
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    use_store(settings, monkeypatch, s3_server.url(prefix, timeout=2))
    s3_server.prefix = prefix  # type: ignore[attr-defined]
    return s3_server
