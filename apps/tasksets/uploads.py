"""Upload limits for task-set data files.

``TASKSET_UPLOAD_MAX_BYTES`` is enforced three times: by
:class:`UploadLimitHandler` while the request body is parsed (an oversized file
is dropped as it streams in, never written to a temporary file in full), by the
form field from the upload's size, and by the service before it reads anything.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, SkipFile
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt, csrf_protect

#: Families whose task sets take an uploaded data file.
DATA_FAMILIES = frozenset({"table"})


def format_bytes(size: float) -> str:
    """``1536`` -> ``"1.5 KB"``; plain spaces, for messages and tests alike."""
    if size < 1024:
        return f"{int(size)} bytes"
    for unit in ("KB", "MB", "GB"):
        size /= 1024
        if size < 1024 or unit == "GB":
            return f"{size:.1f} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover


class UploadLimitHandler(FileUploadHandler):
    """First in the handler chain: counts each file's bytes and drops a file as
    soon as it passes the limit (``SkipFile``), remembering the field's name.
    The other form fields still arrive, so the form can say what went wrong."""

    def __init__(self, request: HttpRequest | None = None, *, max_bytes: int | None = None) -> None:
        super().__init__(request)
        self.max_bytes = settings.TASKSET_UPLOAD_MAX_BYTES if max_bytes is None else max_bytes
        self.oversized: set[str] = set()
        self._received = 0

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        super().new_file(*args, **kwargs)
        self._received = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self._received += len(raw_data)
        if self._received > self.max_bytes:
            self.oversized.add(self.field_name)
            raise SkipFile()
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None


def install_upload_limit(request: HttpRequest) -> UploadLimitHandler:
    """Put the limit handler first. Call before anything reads ``request.POST``
    (views doing so are ``csrf_exempt`` and re-apply ``csrf_protect`` inside)."""
    handler = UploadLimitHandler(request)
    request.upload_handlers.insert(0, handler)
    return handler


def upload_limited(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Wrap a view that takes an upload: the limit handler goes in front before the
    body is parsed (so the wrapper is ``csrf_exempt``), then the view runs under
    ``csrf_protect`` with the handler as its ``limit`` keyword."""
    protected = csrf_protect(view)

    @csrf_exempt
    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return protected(request, *args, limit=install_upload_limit(request), **kwargs)

    return wrapper
