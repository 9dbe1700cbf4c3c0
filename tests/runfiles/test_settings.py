"""METAWEB_STORAGE_URL: parsed once at start-up, every mistake named."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from metaweb.settings.storage import RUNFILES, parse_s3_url, storages_setting, store_label

STATIC = "django.contrib.staticfiles.storage.StaticFilesStorage"


def test_unset_is_the_local_data_folder():
    storages = storages_setting("", staticfiles=STATIC)
    assert storages[RUNFILES]["BACKEND"] == "apps.runfiles.local.DataFolderStorage"
    assert storages["default"]["BACKEND"] == "django.core.files.storage.FileSystemStorage"
    assert store_label("") == "the local data folder"


def test_an_s3_url_with_an_endpoint():
    url = "s3://metaweb-runs/team/a?endpoint=http://minio:9000&timeout=5"
    options = parse_s3_url(url)
    assert options == {
        "bucket_name": "metaweb-runs",
        "location": "team/a",
        "endpoint_url": "http://minio:9000",
        "region_name": "us-east-1",
        "addressing_style": "path",
        "timeout": 5.0,
    }
    storages = storages_setting(url, staticfiles=STATIC)
    assert storages[RUNFILES]["OPTIONS"]["location"] == "team/a"
    assert storages["default"]["OPTIONS"]["location"] == "team/a/media"
    assert storages[RUNFILES]["BACKEND"] == "storages.backends.s3.S3Storage"
    assert store_label(url) == "the object store s3://metaweb-runs/team/a at http://minio:9000"
    aws = parse_s3_url("s3://bucket?region=eu-west-3")
    assert aws["endpoint_url"] is None and aws["addressing_style"] == "virtual" and aws["location"] == ""


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://bucket/x", "expected s3://bucket/prefix"),
        ("s3://B/x", "is not a bucket name"),
        ("s3://key:secret@bucket/x", "AWS_ACCESS_KEY_ID"),
        ("s3://bucket/../x", "the prefix"),
        ("s3://bucket/x?endpoint=minio:9000", "endpoint must look like"),
        ("s3://bucket/x?endpont=http://h:9000", "unknown parameter 'endpont'"),
        ("s3://bucket/x?addressing=dns", "addressing must be path or virtual"),
        ("s3://bucket/x?timeout=soon", "timeout must be a number"),
        ("s3://bucket/x?timeout=0", "timeout must be between"),
    ],
)
def test_mistakes_name_the_variable(url, message):
    with pytest.raises(ImproperlyConfigured, match=message) as caught:
        storages_setting(url, staticfiles=STATIC)
    assert str(caught.value).startswith("METAWEB_STORAGE_URL: ")


def test_a_bad_url_stops_the_process_at_start_up():
    env = {
        **os.environ,
        "METAWEB_STORAGE_URL": "s3://Bad_Bucket",
        "DJANGO_SETTINGS_MODULE": "metaweb.settings.test",
    }
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "METAWEB_STORAGE_URL: 'bad_bucket' is not a bucket name" in result.stderr
