"""Streamed responses that keep the web process's memory flat under both servers.

Django serves a ``StreamingHttpResponse`` under ASGI (daphne: ``make run`` and the
real stack) by reading a *synchronous* iterator whole into a list before it sends a
byte, and under WSGI it reads an *asynchronous* one whole. So every download hands
Django the kind its server streams: :func:`streamed` picks it from the request.

Measured with a 400 MB weights file (``benchmarks/download_memory.py``): the web
process grew by 1,203 MB before, for a client reading at 200 MB/s or at 8 MB/s, and
by 592 MB and 756 MB now. What is left is daphne's: it has no backpressure, so what
a client has not read yet waits in its send buffer, up to the file's size.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TypeVar

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, StreamingHttpResponse

Chunk = TypeVar("Chunk", str, bytes)


def streamed(request: HttpRequest, chunks: Iterator[Chunk]) -> Iterator[Chunk] | AsyncIterator[Chunk]:
    """``chunks`` as the request's server streams them: unchanged under WSGI, and
    under ASGI one chunk at a time, each produced (its queries or reads included)
    in Django's sync thread so that the event loop never blocks."""
    return _in_sync_thread(chunks) if isinstance(request, ASGIRequest) else chunks


async def _in_sync_thread(chunks: Iterator[Chunk]) -> AsyncIterator[Chunk]:
    step = sync_to_async(next, thread_sensitive=True)
    try:
        while (chunk := await step(chunks, None)) is not None:
            yield chunk
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:  # a generator's own finally (a file's close) runs now
            await sync_to_async(close, thread_sensitive=True)()


def csv_response(request: HttpRequest, chunks: Iterator[str], *, filename: str) -> StreamingHttpResponse:
    """CSV text ``chunks`` streamed as an attachment named ``filename``."""
    response = StreamingHttpResponse(streamed(request, chunks), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
