"""The body limit in daphne's own HTTP layer, for ``manage.py serve``.

daphne (Twisted) reads a whole request body into a temporary file before it calls
the ASGI application, so :class:`metaweb.bodylimit.BodyLimitMiddleware` alone
refuses a 200 MiB body only after daphne has spooled it. Behind the compose proxy,
Caddy refuses it first; ``make run`` has no proxy, so its server refuses it here:
a declared ``Content-Length`` over the limit gets 413 before a body byte is stored,
and streamed (chunked) bytes are counted as they arrive and cut at the limit. The
limits are the middleware's (:meth:`BodyLimitMiddleware.limit_for`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from daphne.http_protocol import WebRequest
from daphne.server import Server

from metaweb.bodylimit import too_large_message

LimitFor = Callable[[bytes], int]


class _BodyGuard:
    """Wraps one request's body callbacks (Twisted calls them on the instance)."""

    def __init__(self, request: WebRequest, limit_for: LimitFor) -> None:
        self.request = request
        self.limit_for = limit_for
        self.limit = 0
        self.seen = 0
        self.refused = False
        self._got_length = request.gotLength
        self._chunk = request.handleContentChunk
        request.gotLength = self.got_length
        request.handleContentChunk = self.handle_chunk

    def got_length(self, length: int | None) -> None:
        content_type = self.request.requestHeaders.getRawHeaders(b"content-type", [b""])[0]
        self.limit = self.limit_for(content_type.lower())
        if length is not None and length > self.limit:
            self._got_length(0)  # an empty in-memory body, never filled
            self.refuse()
            return
        self._got_length(length)

    def handle_chunk(self, data: bytes) -> None:
        if self.refused:
            return
        self.seen += len(data)
        if self.seen > self.limit:
            self.refuse()
            return
        self._chunk(data)

    def refuse(self) -> None:
        """Answer 413 on the raw connection and close it: it stops reading at once."""
        self.refused = True
        body = too_large_message(self.limit)
        head = (
            b"HTTP/1.1 413 Content Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n"
        )
        transport = self.request.channel.transport
        transport.write(head + body)
        transport.loseConnection()


class BodyLimitedServer(Server):
    """daphne's server with every HTTP request's body bounded by ``limit_for(content_type)``."""

    def __init__(self, *args: Any, limit_for: LimitFor, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limit_for = limit_for

    def protocol_connected(self, protocol: Any) -> None:
        super().protocol_connected(protocol)
        if isinstance(protocol, WebRequest):
            _BodyGuard(protocol, self.limit_for)
