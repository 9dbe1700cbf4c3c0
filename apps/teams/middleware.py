"""Remember the team a user works in, so that ``/`` lands there next time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse

from apps.teams.services import membership_mark_used

#: The team this session last recorded as used.
SESSION_KEY = "metaweb_last_team"


class LastTeamMiddleware:
    """On a full-page GET of a team page (a view with a ``team_slug`` argument), record
    the team as the user's last used one through ``membership_mark_used``. htmx
    fragments (filters, live refreshes) are not visits and write nothing, and neither
    does a page of the team this session recorded last: one write per switch of team."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., Any],
        view_args: tuple[Any, ...],
        view_kwargs: dict[str, Any],
    ) -> None:
        slug = view_kwargs.get("team_slug")
        if not slug or request.method != "GET" or getattr(request, "htmx", False):
            return None
        if request.session.get(SESSION_KEY) == slug:
            return None
        if membership_mark_used(user=request.user, team_slug=slug):
            request.session[SESSION_KEY] = slug
        return None
