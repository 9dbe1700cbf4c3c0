"""The ASGI body limit: 200 MiB sent anonymously is refused with 413 before Django reads it.

Bound stated: while 200 MiB is offered in 64 KiB chunks, Python's traced peak stays
under 16 MiB, at most limit + one chunk is read from the client, and no row or file
appears.
"""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model

from apps.tasksets.models import TaskSet
from metaweb.asgi import application
from metaweb.bodylimit import BodyLimitMiddleware

MIB = 1024 * 1024
CHUNK = 64 * 1024
HOSTILE = 200 * MIB
PEAK_BOUND = 16 * MIB

pytestmark = pytest.mark.django_db(transaction=True)


class Client:
    """Streams ``total`` bytes lazily, one chunk per receive, and records the response."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.read = 0
        self.messages: list[dict] = []
        self._chunks = self._generate()

    def _generate(self) -> Iterator[dict]:
        while self.read < self.total:
            size = min(CHUNK, self.total - self.read)
            self.read += size
            yield {"type": "http.request", "body": b"x" * size, "more_body": self.read < self.total}

    async def receive(self) -> dict:
        message = next(self._chunks, None)
        if message is None:  # the client waits for its answer, as a real one does
            await asyncio.Event().wait()
        return message

    async def send(self, message: dict) -> None:
        self.messages.append(message)

    @property
    def status(self) -> int:
        return next(m["status"] for m in self.messages if m["type"] == "http.response.start")

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages if m["type"] == "http.response.body")


def _scope(path: str, headers: list[tuple[bytes, bytes]]) -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


def _post(path: str, total: int, headers: list[tuple[bytes, bytes]]) -> tuple[Client, int]:
    client = Client(total)
    tracemalloc.start()
    try:
        asyncio.run(application(_scope(path, headers), client.receive, client.send))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return client, peak


def _state() -> tuple[int, int, list[str]]:
    files = sorted(str(p) for p in settings.DATA_DIR.rglob("*")) if settings.DATA_DIR.exists() else []
    return get_user_model().objects.count(), TaskSet.objects.count(), files


def test_declared_200_mib_is_refused_without_reading_a_byte() -> None:
    before = _state()
    client, peak = _post("/accounts/login/", HOSTILE, [(b"content-length", str(HOSTILE).encode())])
    assert client.status == 413
    assert b"limit is 5 MiB" in client.body
    assert client.read == 0
    assert peak < PEAK_BOUND
    assert _state() == before


@pytest.mark.parametrize(
    ("content_type", "limit_setting"),
    [
        (b"application/x-www-form-urlencoded", "REQUEST_BODY_MAX_BYTES"),
        (b"multipart/form-data; boundary=xyz", "REQUEST_BODY_MAX_BYTES_UPLOAD"),
    ],
)
def test_streamed_200_mib_without_length_stops_at_the_limit(content_type: bytes, limit_setting: str) -> None:
    limit = getattr(settings, limit_setting)
    before = _state()
    client, peak = _post("/t/anyteam/tasksets/new/", HOSTILE, [(b"content-type", content_type)])
    assert client.status == 413
    assert client.read <= limit + CHUNK
    assert peak < PEAK_BOUND, f"peak {peak / MIB:.1f} MiB"
    assert _state() == before


def test_a_lying_content_length_is_caught_on_the_streamed_bytes() -> None:
    client, peak = _post("/", HOSTILE, [(b"content-length", b"100")])
    assert client.status == 413
    assert client.read <= settings.REQUEST_BODY_MAX_BYTES + CHUNK
    assert peak < PEAK_BOUND


def test_a_small_anonymous_post_still_reaches_django() -> None:
    client, _ = _post("/accounts/login/", 10, [(b"content-length", b"10")])
    assert client.status == 403  # CSRF, from Django: the limit let it through


def test_a_non_numeric_content_length_is_a_bad_request() -> None:
    client = Client(0)
    app = BodyLimitMiddleware(application, max_bytes=10, max_upload_bytes=10)
    asyncio.run(app(_scope("/", [(b"content-length", b"lots")]), client.receive, client.send))
    assert client.status == 400
