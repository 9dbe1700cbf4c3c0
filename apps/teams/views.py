from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from apps.teams.selectors import team_list_for_user


def home(request: HttpRequest) -> HttpResponse:
    """Send the user to their first team, or show that they have none yet."""
    team = team_list_for_user(user=request.user).first()
    if team is None:
        return render(request, "teams/no_team.html")
    return redirect("experiments:run-list", team_slug=team.slug)
