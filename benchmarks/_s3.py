"""An S3-protocol server for the tests and benchmarks: moto's standalone server.

``moto_server`` (``moto[server]``) speaks the S3 HTTP API on 127.0.0.1 and keeps its
objects in memory. :func:`start_s3_server` starts it on a free port, waits until it
answers and creates the bucket; :func:`s3_env` is the environment that points a
MetaWeb process at it (``METAWEB_STORAGE_URL`` plus credentials, which moto accepts
whatever they are). ``Proc.pause``-like stops are plain signals: SIGSTOP freezes the
server (a store that stops answering mid-upload), SIGCONT wakes it with its objects.
"""

from __future__ import annotations

import os
import signal
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from benchmarks._stack import BIN, Proc, free_port, spawn

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "metaweb-test", "AWS_SECRET_ACCESS_KEY": "metaweb-test-secret"}


@dataclass
class S3Server:
    proc: Proc
    endpoint: str
    bucket: str

    def url(self, prefix: str = "runs", *, timeout: float = 10) -> str:
        """``METAWEB_STORAGE_URL`` for this server."""
        return f"s3://{self.bucket}/{prefix}?endpoint={self.endpoint}&timeout={timeout:g}"

    def env(self, prefix: str = "runs", *, timeout: float = 10) -> dict[str, str]:
        return {"METAWEB_STORAGE_URL": self.url(prefix, timeout=timeout), **CREDENTIALS}

    def freeze(self) -> None:
        """Stop answering (SIGSTOP): connections hang, as with a store gone away."""
        os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc.alive():
            self.thaw()
        self.proc.stop(grace=3)


def _wait_ready(proc: Proc, endpoint: str, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"moto_server exited; log:\n{proc.tail()}")
        try:
            with urllib.request.urlopen(endpoint + "/moto-api/", timeout=2):  # noqa: S310 - loopback
                return
        except urllib.error.HTTPError:
            return  # it answers
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)
    raise TimeoutError(f"moto_server not answering on {endpoint} after {timeout:.0f} s:\n{proc.tail()}")


def start_s3_server(*, log_dir: Path, bucket: str = "metaweb", timeout: float = 60.0) -> S3Server:
    """Start moto's S3 server on a free 127.0.0.1 port with ``bucket`` created."""
    import boto3

    port = free_port()
    env = dict(os.environ)
    env.update(CREDENTIALS)
    argv = [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    proc = spawn(f"s3-{port}", argv, env=env, log_dir=log_dir)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(proc, endpoint, timeout=timeout)
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )
        client.create_bucket(Bucket=bucket)
    except BaseException:
        proc.stop(grace=3)
        raise
    return S3Server(proc=proc, endpoint=endpoint, bucket=bucket)


def list_keys(server: S3Server, prefix: str = "") -> list[str]:
    """Every key in the server's bucket below ``prefix`` (for assertions)."""
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=server.bucket, Prefix=prefix):
        keys.extend(item["Key"] for item in page.get("Contents", []))
    return sorted(keys)
