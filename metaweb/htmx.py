"""htmx helpers shared by every app's views."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django_htmx.http import HttpResponseClientRedirect
from django_htmx.middleware import HtmxDetails


class HtmxHttpRequest(HttpRequest):
    """A request that has passed through django-htmx's middleware."""

    htmx: HtmxDetails


def redirect_page(request: HtmxHttpRequest, url: str) -> HttpResponse:
    """Redirect to ``url``; htmx requests follow it as a full page load (HX-Redirect)."""
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
