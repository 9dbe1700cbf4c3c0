"""Errors, mapped once: every validation error is a 422 ``{"detail": [{"loc", "msg"}]}``
with the words the forms use; other teams' objects are 404; too low a role is 403;
anything unexpected is logged and answers a plain 500 (a bug, never an input)."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied, SuspiciousOperation, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.http.multipartparser import MultiPartParserError
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, Throttled
from ninja.errors import ValidationError as NinjaValidationError

from apps.api.uploads import oversized_fields, oversized_message
from apps.experiments.listing.columns import ColumnError
from apps.experiments.search import QueryError
from apps.reviews.selectors import ComparisonError

logger = logging.getLogger(__name__)


def error_items(error: ValidationError, *, where: str = "body") -> list[dict[str, Any]]:
    """A service's ValidationError as API items: a keyed error names its field."""
    if not hasattr(error, "error_dict"):
        return [{"loc": [where], "msg": message} for message in error.messages]
    return [
        {"loc": [where, field] if field != "__all__" else [where], "msg": message}
        for field, messages in error.message_dict.items()
        for message in messages
    ]


#: ninja's sources of multipart parameters: reported as the body they are part of.
_MULTIPART_SOURCES = {"form", "file"}


def request_items(request: HttpRequest, errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """ninja's validation errors as API items: a multipart field's path starts with
    ``body`` like a JSON field's, and a required file dropped for its size says so."""
    dropped = oversized_fields(request)
    items = []
    for error in errors:
        loc = list(error.get("loc", []))
        if loc and loc[0] in _MULTIPART_SOURCES:
            loc[0] = "body"
        msg = str(error.get("msg", ""))
        if len(loc) == 2 and loc[1] in dropped:
            msg = oversized_message(request)
        items.append({"loc": loc, "msg": msg})
    return items


def _detail(api: NinjaAPI, request: HttpRequest, detail: Any, status: int) -> HttpResponse:
    return api.create_response(request, {"detail": detail}, status=status)


def _fields_of(request: HttpRequest) -> str:
    """Where a request's fields are: a read has no body, only its query string."""
    return "query" if request.method in ("GET", "HEAD") else "body"


def install_error_handlers(api: NinjaAPI) -> None:
    @api.exception_handler(ValidationError)
    def service_invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
        return _detail(api, request, error_items(exc, where=_fields_of(request)), 422)

    @api.exception_handler(NinjaValidationError)
    def request_invalid(request: HttpRequest, exc: NinjaValidationError) -> HttpResponse:
        return _detail(api, request, request_items(request, list(exc.errors)), 422)

    @api.exception_handler(QueryError)
    def query_invalid(request: HttpRequest, exc: QueryError) -> HttpResponse:
        return _detail(api, request, [{"loc": ["query", "q"], "msg": str(exc)}], 422)

    @api.exception_handler(ColumnError)
    def column_invalid(request: HttpRequest, exc: ColumnError) -> HttpResponse:
        return _detail(api, request, [{"loc": ["query", exc.param], "msg": str(exc)}], 422)

    @api.exception_handler(ComparisonError)
    def comparison_invalid(request: HttpRequest, exc: ComparisonError) -> HttpResponse:
        return _detail(api, request, [{"loc": ["query"], "msg": str(exc)}], 422)

    @api.exception_handler(MultiPartParserError)
    def multipart_invalid(request: HttpRequest, exc: MultiPartParserError) -> HttpResponse:
        message = f"The multipart body is malformed: {exc}"
        return _detail(api, request, [{"loc": ["body"], "msg": message}], 422)

    @api.exception_handler(SuspiciousOperation)
    def body_refused(request: HttpRequest, exc: SuspiciousOperation) -> HttpResponse:
        # Django's own caps while parsing a body: too many fields or files, too much data
        return _detail(api, request, [{"loc": ["body"], "msg": str(exc)}], 422)

    @api.exception_handler(Http404)
    def not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
        return _detail(api, request, str(exc) or "Not found.", 404)

    @api.exception_handler(PermissionDenied)
    def forbidden(request: HttpRequest, exc: PermissionDenied) -> HttpResponse:
        return _detail(api, request, str(exc) or "Not allowed.", 403)

    @api.exception_handler(AuthenticationError)
    def unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
        message = "Send a valid, unexpired token as 'Authorization: Bearer ...', or log in."
        return _detail(api, request, message, 401)

    @api.exception_handler(Throttled)
    def throttled(request: HttpRequest, exc: Throttled) -> HttpResponse:
        return _detail(api, request, "Too many requests; retry after the time in Retry-After.", 429)

    @api.exception_handler(HttpError)
    def http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
        if exc.status_code == 400:  # ninja: a body that is not JSON at all, a validation error too
            if isinstance(exc.__cause__, NinjaValidationError):  # our parser's own check
                return request_invalid(request, exc.__cause__)
            return _detail(api, request, [{"loc": ["body"], "msg": str(exc)}], 422)
        return _detail(api, request, str(exc), exc.status_code)

    @api.exception_handler(Exception)
    def unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
        logger.exception("API error on %s %s", request.method, request.path)
        return _detail(api, request, "Internal error; it has been logged.", 500)
