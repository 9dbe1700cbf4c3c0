"""Who is calling, and with which powers.

A bearer token acts for its user in its one team, with the user's *current*
role there, capped by the token's scope (``read`` gives viewer powers). A
browser session acts with the user's role in every team they belong to; unsafe
methods need the CSRF token, as pages do. Objects of a team the caller cannot
see answer 404.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest
from ninja.security import HttpBearer, SessionAuth

from apps.teams.models import ApiToken, Role, Team, TokenScope
from apps.teams.selectors import team_get_for_user
from apps.teams.token_selectors import api_token_authenticate
from apps.teams.token_services import api_token_touch


@dataclass(frozen=True)
class Caller:
    """``request.auth`` for every API endpoint."""

    user: AbstractBaseUser
    token: ApiToken | None = None

    @property
    def rate_key(self) -> str:
        return f"token-{self.token.pk}" if self.token is not None else f"user-{self.user.pk}"

    def __str__(self) -> str:  # ninja's throttles hash str(request.auth)
        return self.rate_key


class TokenAuth(HttpBearer):
    """``Authorization: Bearer mwp_...``."""

    def authenticate(self, request: HttpRequest, token: str) -> Caller | None:
        api_token = api_token_authenticate(token)
        if api_token is None:
            return None
        api_token_touch(token=api_token)
        return Caller(user=api_token.user, token=api_token)


class SessionCsrfAuth(SessionAuth):
    """The browser's session; unsafe methods need ``X-CSRFToken`` (ninja checks it)."""

    def authenticate(self, request: HttpRequest, key: str | None) -> Caller | None:
        if request.user.is_authenticated:
            return Caller(user=request.user)
        return None


def caller(request: HttpRequest) -> Caller:
    auth = getattr(request, "auth", None)
    if not isinstance(auth, Caller):  # every router sets auth; this is a programming error
        raise PermissionDenied("Not authenticated.")
    return auth


def team_for(request: HttpRequest, slug: str, *, need: Role = Role.VIEWER) -> Team:
    """The team named in the URL if the caller may act in it with ``need``.

    404 for a team the caller is not in, or that is not its token's team; 403 when
    the role (capped by a read-only token's scope) is too low.
    """
    who = caller(request)
    if "\x00" in slug or (who.token is not None and who.token.team.slug != slug):
        raise Http404("No such team.")
    team, role = team_get_for_user(user=who.user, slug=slug)
    if who.token is not None and who.token.scope == TokenScope.READ:
        role = Role.VIEWER
    if not role.allows(need):
        if who.token is not None and who.token.scope == TokenScope.READ:
            raise PermissionDenied("This token is read-only.")
        raise PermissionDenied(f"This needs the {Role(need).label.lower()} role in the team.")
    return team
