"""Multipart endpoints: a size cap per file while the body streams in, form errors
as the API's 422 items, and JSON carried in a text field.

``upload_limit(max_bytes)`` decorates an operation's run (``ninja.decorators.
decorate_view``), so the task-set upload's :class:`UploadLimitHandler` is first in
the handler chain before authentication, the CSRF check or the parameters read the
body: a file past its cap is dropped as it arrives (never stored in full), and the
field is reported as too large (:func:`oversized_errors`), not as missing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponseBase
from ninja.decorators import decorate_view

from apps.tasksets.uploads import UploadLimitHandler, format_bytes
from apps.teams.forms import json_text_value

#: The request attribute holding the operation's limit handler.
_HANDLER_ATTR = "_metaweb_upload_limit"


def upload_limit(max_bytes: int | Callable[[], int]) -> Callable[[Any], Any]:
    """Cap every file of the operation's multipart body at ``max_bytes`` (a number, or
    a function read per request, for limits that live in settings)."""

    def decorator(run: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
        @functools.wraps(run)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            limit = max_bytes() if callable(max_bytes) else max_bytes
            handler = UploadLimitHandler(request, max_bytes=limit)
            request.upload_handlers.insert(0, handler)
            setattr(request, _HANDLER_ATTR, handler)
            return run(request, *args, **kwargs)

        return wrapper

    return decorate_view(decorator)


def oversized_message(request: HttpRequest) -> str:
    handler: UploadLimitHandler | None = getattr(request, _HANDLER_ATTR, None)
    limit = handler.max_bytes if handler is not None else 0
    return f"The file is larger than the limit of {format_bytes(limit)}."


def oversized_fields(request: HttpRequest) -> set[str]:
    """The file fields dropped for their size (empty before the body is parsed)."""
    handler: UploadLimitHandler | None = getattr(request, _HANDLER_ATTR, None)
    return set(handler.oversized) if handler is not None else set()


def refuse_oversized(request: HttpRequest) -> None:
    """ValidationError on every file field dropped for its size (optional files too)."""
    fields = oversized_fields(request)
    if fields:
        raise ValidationError({name: oversized_message(request) for name in sorted(fields)})


def json_text_field(text: str | None, *, field: str, default: Any = None) -> Any:
    """A multipart text field holding JSON (the forms' words on bad JSON); ``default``
    when it is absent or blank. The service judges the value's shape."""
    if text is None or not text.strip():
        return default
    try:
        return json_text_value(text)
    except ValidationError as error:
        raise ValidationError({field: error.messages}) from None


def form_invalid(form: forms.Form) -> ValidationError:
    """A bound, invalid Django form's errors as a service-style ValidationError
    (field keys; form-wide errors under ``__all__``), for the API's 422 items."""
    return ValidationError({name: list(errors) for name, errors in form.errors.items()})
