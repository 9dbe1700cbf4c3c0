"""``manage.py serve`` refuses a 200 MiB body in daphne's HTTP layer with 413: a
declared one before a byte of it is stored, a chunked one once the stored bytes pass
the limit (5 MiB here). Bounds stated: the server process writes under 1 MiB to disk
for the declared body and under limit + 1 MiB for the chunked one, and its RSS grows
under 32 MiB meanwhile."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from benchmarks._stack import database_url, free_port

ROOT = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024
HOSTILE = 200 * MIB

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(120)]


@pytest.fixture
def server(tmp_path) -> Iterator[tuple[int, int]]:
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.e2e.settings",
        "DATABASE_URL": database_url(connection.settings_dict),
        "METAWEB_DATA_DIR": str(tmp_path),
        "PYTHONPATH": str(ROOT),
    }
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(port), "--no-worker", "--no-static"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "serve did not listen"
                time.sleep(0.1)
        yield port, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def _usage(pid: int) -> tuple[int, int]:
    """(bytes written to storage, resident set size) of a process."""
    io = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kib = int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])
    return int(io["write_bytes"]), rss_kib * 1024


def _send(port: int, head: bytes, chunks: Iterator[bytes]) -> tuple[bytes, int]:
    """Send the head and as much of the body as the server takes; its answer and bytes sent."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        try:
            for chunk in chunks:
                sock.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = b""
        try:
            while data := sock.recv(65536):
                answer += data
        except ConnectionResetError:
            pass
    return answer, sent


def _plain(total: int) -> Iterator[bytes]:
    block = b"x" * MIB
    for _ in range(total // MIB):
        yield block


def _chunked(total: int) -> Iterator[bytes]:
    block = b"x" * MIB
    for _ in range(total // MIB):
        yield b"%x\r\n" % len(block) + block + b"\r\n"
    yield b"0\r\n\r\n"


@pytest.mark.parametrize("mode", ["declared", "chunked"])
def test_serve_refuses_200_mib_before_storing_it(server, mode):
    port, pid = server
    framing = f"Content-Length: {HOSTILE}" if mode == "declared" else "Transfer-Encoding: chunked"
    head = (
        f"POST /accounts/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\n{framing}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n\r\n"
    ).encode()
    written_before, rss_before = _usage(pid)
    answer, sent = _send(port, head, _plain(HOSTILE) if mode == "declared" else _chunked(HOSTILE))
    written_after, rss_after = _usage(pid)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"the limit is 5 MiB" in answer
    assert sent < HOSTILE
    stored_bound = MIB if mode == "declared" else settings.REQUEST_BODY_MAX_BYTES + MIB
    assert written_after - written_before < stored_bound
    assert rss_after - rss_before < 32 * MIB, f"RSS grew {(rss_after - rss_before) / MIB:.1f} MiB"
