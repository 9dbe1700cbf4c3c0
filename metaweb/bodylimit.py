"""An ASGI-level cap on HTTP request bodies, applied before Django sees the request.

Django's ASGI handler reads the whole body into a spooled temporary file before
any middleware runs, so authentication, CSRF and the form's own size checks all
come after the bytes are on disk. This wrapper sits outside Django: it refuses a
declared ``Content-Length`` over the limit with 413 without reading a byte, and
counts the bytes actually streamed (chunked bodies, or a ``Content-Length`` that
lies) and answers 413 as soon as they pass the limit, keeping nothing.

Limits (settings): multipart bodies (the task-set upload forms) may carry
``REQUEST_BODY_MAX_BYTES_UPLOAD``; every other body ``REQUEST_BODY_MAX_BYTES``.
daphne's HTTP layer buffers a body before it calls the application: the proxy in
front (``deploy/Caddyfile``) enforces the upload limit first, and ``manage.py serve``
runs daphne with the same limits in its HTTP layer (``metaweb/daphne_limits.py``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyTooLarge(Exception):
    """The streamed body passed the limit: the application must stop reading."""


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value
    return None


def format_limit(limit: int) -> str:
    return f"{limit / (1024 * 1024):.0f} MiB" if limit >= 1024 * 1024 else f"{limit} bytes"


class BodyLimitMiddleware:
    """Wrap an ASGI app; HTTP bodies over the limit get 413 before the app reads them."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, max_upload_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_upload_bytes = max_upload_bytes

    def limit_for(self, scope: Scope) -> int:
        return self.limit_for_type((_header(scope, b"content-type") or b"").lower())

    def limit_for_type(self, content_type: bytes) -> int:
        """The limit for a lower-cased ``Content-Type`` header value."""
        return self.max_upload_bytes if content_type.startswith(b"multipart/form-data") else self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope)
        declared = _header(scope, b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > limit
            except ValueError:
                await _refuse(send, 400, b"Bad Request: Content-Length is not a number.")
                return
            if too_big:
                await _refuse(send, 413, too_large_message(limit))
                return
        await self._stream_counted(scope, receive, send, limit)

    async def _stream_counted(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        seen = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge:
            if not started:
                await _refuse(send, 413, too_large_message(limit))


def too_large_message(limit: int) -> bytes:
    return f"Request body too large: the limit is {format_limit(limit)}.".encode()


async def _refuse(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
