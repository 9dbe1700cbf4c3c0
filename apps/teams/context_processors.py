from __future__ import annotations

from django.http import HttpRequest

from apps.teams.selectors import team_list_for_user


def teams(request: HttpRequest) -> dict[str, object]:
    """The user's teams, for the navigation's team switcher (a lazy queryset)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"user_teams": []}
    return {"user_teams": team_list_for_user(user=user)}
