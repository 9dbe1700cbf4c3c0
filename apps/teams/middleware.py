"""Remember the team a user works in, so that ``/`` lands there next time."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, resolve

from apps.teams.services import membership_mark_used

#: The team this session last recorded as used.
SESSION_KEY = "metaweb_last_team"


class LastTeamMiddleware:
    """After a full HTML page of a team (a view with a ``team_slug`` argument) answered
    200 to a GET, record the team as the user's last used one through
    ``membership_mark_used``. htmx fragments, JSON and downloads are not visits, and a
    page of the team this session recorded last writes nothing: one write per switch."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        slug = _page_team(request, response)
        if slug and request.session.get(SESSION_KEY) != slug:
            if membership_mark_used(user=request.user, team_slug=slug):
                request.session[SESSION_KEY] = slug
        return response


def _page_team(request: HttpRequest, response: HttpResponse) -> str | None:
    """The team slug of a full-page visit, or None."""
    if request.method != "GET" or getattr(request, "htmx", False) or response.status_code != 200:
        return None
    if not response.get("Content-Type", "").startswith("text/html"):
        return None
    match = getattr(request, "resolver_match", None)
    if match is None:
        try:
            match = resolve(request.path_info)
        except Resolver404:
            return None
    return match.kwargs.get("team_slug")
