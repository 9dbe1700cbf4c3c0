"""``/teams``: the teams the caller belongs to (a token sees only its own team)."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Router

from apps.api.auth import caller
from apps.api.schemas import TeamOut
from apps.teams.models import Role, TokenScope
from apps.teams.selectors import membership_list_for_user

router = Router(tags=["teams"])


@router.get("/teams", response=list[TeamOut])
def team_list(request: HttpRequest) -> list[TeamOut]:
    who = caller(request)
    memberships = membership_list_for_user(user=who.user)
    if who.token is not None:
        memberships = memberships.filter(team_id=who.token.team_id)
    read_only = who.token is not None and who.token.scope == TokenScope.READ
    return [
        TeamOut(slug=m.team.slug, name=m.team.name, role=Role.VIEWER.value if read_only else m.role)
        for m in memberships
    ]
