"""Downloads stream as their server needs: a sync iterator under WSGI, an async one
under ASGI that reads one chunk at a time in Django's sync thread and closes its
source when the client goes away (Django would read a sync iterator whole under
ASGI: a 400 MB model took daphne from 240 MB to 1.45 GB)."""

from __future__ import annotations

from asgiref.sync import async_to_sync
from django.test import AsyncRequestFactory, RequestFactory

from metaweb.streaming import csv_response, streamed


def _source(produced: list[str], closed: list[bool]):
    try:
        for chunk in ("a", "b", "c"):
            produced.append(chunk)
            yield chunk
    finally:
        closed.append(True)


def test_under_wsgi_the_chunks_pass_unchanged():
    chunks = iter(["a", "b"])
    assert streamed(RequestFactory().get("/"), chunks) is chunks


def test_under_asgi_chunks_are_read_one_at_a_time():
    produced: list[str] = []
    closed: list[bool] = []
    stream = streamed(AsyncRequestFactory().get("/"), _source(produced, closed))

    async def read_all() -> list[str]:
        seen = []
        async for chunk in stream:
            seen.append((chunk, list(produced)))
        return seen

    seen = async_to_sync(read_all)()
    assert seen == [("a", ["a"]), ("b", ["a", "b"]), ("c", ["a", "b", "c"])]  # nothing read ahead
    assert closed == [True]


def test_under_asgi_a_client_that_leaves_closes_the_source():
    produced: list[str] = []
    closed: list[bool] = []
    stream = streamed(AsyncRequestFactory().get("/"), _source(produced, closed))

    async def first_then_leave() -> str:
        chunk = await anext(stream)
        await stream.aclose()
        return chunk

    assert async_to_sync(first_then_leave)() == "a"
    assert produced == ["a"] and closed == [True]


def test_csv_response_is_a_streamed_attachment():
    response = csv_response(AsyncRequestFactory().get("/"), iter(["x,y\r\n", "1,2\r\n"]), filename="t.csv")
    assert response.is_async and response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="t.csv"'

    async def body() -> str:
        return "".join([chunk.decode() async for chunk in response])

    assert async_to_sync(body)() == "x,y\r\n1,2\r\n"
