"""htmx helpers shared by every app's views."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.cache import patch_vary_headers
from django_htmx.http import HttpResponseClientRedirect
from django_htmx.middleware import HtmxDetails


class HtmxHttpRequest(HttpRequest):
    """A request that has passed through django-htmx's middleware."""

    htmx: HtmxDetails


def redirect_page(request: HtmxHttpRequest, url: str) -> HttpResponse:
    """Redirect to ``url``; htmx requests follow it as a full page load (HX-Redirect)."""
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


def wants_partial(request: HtmxHttpRequest) -> bool:
    """htmx asked for a fragment (a history restore needs the whole page)."""
    return bool(request.htmx) and not request.htmx.history_restore_request


def render_page(
    request: HtmxHttpRequest, template: str, partial: str, context: dict[str, Any], status: int = 200
) -> HttpResponse:
    """The page, or its ``partial`` (``{% partialdef %}``) when htmx asked for a fragment.
    Responses vary on ``HX-Request``, so caches keep the two apart."""
    name = f"{template}#{partial}" if wants_partial(request) else template
    response = render(request, name, context, status=status)
    patch_vary_headers(response, ["HX-Request"])
    return response
