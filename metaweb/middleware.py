"""Failed htmx requests answer a short text message, never an HTML error page.

htmx does not swap a 4xx or 5xx answer; ``static/js/app.js`` shows its text in the
page's alert region instead (``templates/base.html``, ``#request-error``). A
``text/plain`` body is the message; anything else (Django's 404, 403 and 500 pages,
the debug page under ``make run``) is replaced by a sentence for its status. Plain
page loads keep Django's own error pages.
"""

from __future__ import annotations

from collections.abc import Callable

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse

#: A longer body is a page, not a message.
MAX_MESSAGE_CHARS = 300

STATUS_MESSAGES = {
    400: "The server could not read this request (400 Bad Request).",
    403: "You may not do this (403 Forbidden). If you were signed out, reload the page and sign in.",
    404: "Not found (404): it may have been deleted, or it is not shared with your team.",
    405: "This action is not allowed here (405 Method Not Allowed).",
    413: "What you sent is too large (413).",
}
SERVER_ERROR_MESSAGE = (
    "The server failed on this request ({status}). It has been logged; try again, or reload the page."
)


def error_message(status: int) -> str:
    """The sentence shown for a failed htmx request that carried no message of its own."""
    if status >= 500:
        return SERVER_ERROR_MESSAGE.format(status=status)
    return STATUS_MESSAGES.get(status, f"The server refused this request ({status}).")


def plain_error(status: int, message: str) -> HttpResponse:
    return HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")


def _own_message(response: HttpResponse) -> str:
    """A short tag-free body, such as ``HttpResponseBadRequest("Unknown family.")``."""
    if getattr(response, "streaming", False):
        return ""
    text = response.content.decode(response.charset or "utf-8", errors="replace").strip()
    if not text or len(text) > MAX_MESSAGE_CHARS or "<" in text:
        return ""
    return text


class HtmxErrorMiddleware:
    """After ``django_htmx.middleware.HtmxMiddleware``: htmx requests that fail answer
    ``text/plain``, with the view's ``Http404`` / ``PermissionDenied`` message when it
    gave one. Server errors are still logged by Django before their page is replaced."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if not getattr(request, "htmx", False) or response.status_code < 400:
            return response
        if response.get("Content-Type", "").startswith("text/plain") and _own_message(response):
            return response
        return plain_error(
            response.status_code, _own_message(response) or error_message(response.status_code)
        )

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not getattr(request, "htmx", False):
            return None
        if isinstance(exception, Http404):
            return plain_error(404, str(exception) or error_message(404))
        if isinstance(exception, PermissionDenied):
            return plain_error(403, str(exception) or error_message(403))
        return None  # Django logs it and renders its 500 page, which __call__ replaces
