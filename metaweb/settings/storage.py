"""Where run files live: ``METAWEB_STORAGE_URL``, parsed once at start-up.

Unset (the default, ``make run``): the local data folder. Run files (checkpoints,
registry copies, adapted weights) are kept under ``METAWEB_DATA_DIR`` as they
always were, and task-set uploads under ``METAWEB_DATA_DIR/media``.

``s3://bucket/prefix?endpoint=http://host:9000``: an S3-compatible object store
through django-storages' S3 backend (boto3). Run files are stored under
``prefix/``, task-set uploads under ``prefix/media/``. Credentials come from
``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY`` (or boto3's other usual
sources: a profile, an instance role). Query parameters:

* ``endpoint``: the store's address, ``http(s)://host[:port]`` (MinIO, Ceph...);
  leave it out for AWS S3;
* ``region``: the bucket's region (default ``us-east-1``);
* ``addressing``: ``path`` (the default with an ``endpoint``) or ``virtual``;
* ``timeout``: seconds to wait for a connection or a read (default 10).

A mistake is an ``ImproperlyConfigured`` that names ``METAWEB_STORAGE_URL``.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from django.core.exceptions import ImproperlyConfigured

VARIABLE = "METAWEB_STORAGE_URL"
#: The name of the storage holding run files, in ``STORAGES``.
RUNFILES = "runfiles"
PARAMS = ("endpoint", "region", "addressing", "timeout")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PREFIX_PART = re.compile(r"^[A-Za-z0-9._-]+$")
_ENDPOINT = re.compile(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?/?$")


def _fail(message: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(f"{VARIABLE}: {message}")


def _params(query: str) -> dict[str, str]:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise _fail(f"cannot read the query {query!r}") from None
    params = dict(pairs)
    unknown = sorted(set(params) - set(PARAMS))
    if unknown:
        raise _fail(f"unknown parameter {unknown[0]!r}; expected one of {', '.join(PARAMS)}")
    return params


def _timeout(params: dict[str, str]) -> float:
    try:
        timeout = float(params.get("timeout", "10"))
    except ValueError:
        raise _fail(f"timeout must be a number of seconds, got {params['timeout']!r}") from None
    if not 0 < timeout <= 600:
        raise _fail("timeout must be between 0 and 600 seconds")
    return timeout


def parse_s3_url(url: str) -> dict[str, Any]:
    """The S3 backend's options from ``s3://bucket/prefix?...``; ImproperlyConfigured
    naming the variable (and the part at fault) otherwise."""
    parts = urlsplit(url)
    if parts.scheme != "s3":
        raise _fail(f"expected s3://bucket/prefix?endpoint=http://host:9000, got scheme {parts.scheme!r}")
    if parts.username or parts.password:
        raise _fail("put the credentials in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, not in the URL")
    bucket = parts.hostname or ""
    if not _BUCKET.match(bucket) or parts.port is not None:
        raise _fail(f"{bucket!r} is not a bucket name (3-63 lowercase letters, digits, dots or dashes)")
    prefix = parts.path.strip("/")
    if prefix and not all(_PREFIX_PART.match(p) and p not in {".", ".."} for p in prefix.split("/")):
        raise _fail(f"the prefix {prefix!r} may hold only letters, digits, '.', '_', '-' and '/'")
    params = _params(parts.query)
    endpoint = params.get("endpoint") or None
    if endpoint is not None and not _ENDPOINT.match(endpoint):
        raise _fail(f"endpoint must look like http://host:9000, got {endpoint!r}")
    addressing = params.get("addressing") or ("path" if endpoint else "virtual")
    if addressing not in {"path", "virtual"}:
        raise _fail(f"addressing must be path or virtual, got {addressing!r}")
    return {
        "bucket_name": bucket,
        "location": prefix,
        "endpoint_url": endpoint,
        "region_name": params.get("region") or "us-east-1",
        "addressing_style": addressing,
        "timeout": _timeout(params),
    }


def store_label(url: str) -> str:
    """How messages name the store: ``the object store s3://runs/team at http://minio:9000``."""
    if not url:
        return "the local data folder"
    options = parse_s3_url(url)
    where = f"s3://{options['bucket_name']}/{options['location']}".rstrip("/")
    endpoint = f" at {options['endpoint_url']}" if options["endpoint_url"] else ""
    return f"the object store {where}{endpoint}"


def _s3_backend(options: dict[str, Any], location: str) -> dict[str, Any]:
    from boto3.s3.transfer import TransferConfig  # only when a store is configured
    from botocore.config import Config

    timeout = options["timeout"]
    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": options["bucket_name"],
            "location": location,
            "endpoint_url": options["endpoint_url"],
            "region_name": options["region_name"],
            "addressing_style": options["addressing_style"],
            "file_overwrite": True,
            "default_acl": None,
            "querystring_expire": 300,
            # Objects larger than this spill to a temporary file rather than memory.
            "max_memory_size": 16 * 2**20,
            # No thread pool per upload: checkpoints are stored on a background thread
            # already, and a pool per small object cost more CPU than the transfer.
            "transfer_config": TransferConfig(use_threads=False),
            "client_config": Config(
                connect_timeout=timeout,
                read_timeout=timeout,
                retries={"max_attempts": 3, "mode": "standard"},
                s3={"addressing_style": options["addressing_style"]},
            ),
        },
    }


def storages_setting(url: str, *, staticfiles: str) -> dict[str, Any]:
    """``STORAGES``: ``default`` (task-set uploads), ``runfiles`` (checkpoints,
    registry copies, adapted weights) and ``staticfiles``."""
    static = {"BACKEND": staticfiles}
    if not url:
        # Both read their folder from the settings (MEDIA_ROOT, DATA_DIR) when used.
        return {
            "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
            RUNFILES: {"BACKEND": "apps.runfiles.local.DataFolderStorage"},
            "staticfiles": static,
        }
    options = parse_s3_url(url)
    prefix = options["location"]
    media = f"{prefix}/media" if prefix else "media"
    return {
        "default": _s3_backend(options, media),
        RUNFILES: _s3_backend(options, prefix),
        "staticfiles": static,
    }
