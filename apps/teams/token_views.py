"""Settings, API tokens: create (the secret is shown once), list and revoke.

Thin views: the form parses, ``apps.teams.token_services`` decides. htmx
requests get the ``token-panel`` partial, plain posts the page (or a redirect).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_GET, require_POST

from apps.teams.forms import add_service_errors
from apps.teams.selectors import team_list_for_user
from apps.teams.token_forms import TokenCreateForm
from apps.teams.token_selectors import api_token_list_for_user
from apps.teams.token_services import IssuedToken, api_token_create, api_token_revoke
from metaweb.htmx import HtmxHttpRequest, render_page

TEMPLATE = "teams/token_list.html"


def _context(
    request: HtmxHttpRequest, *, form: TokenCreateForm | None = None, issued: IssuedToken | None = None
) -> dict[str, Any]:
    return {
        "tokens": api_token_list_for_user(user=request.user),
        "form": form or TokenCreateForm(teams=team_list_for_user(user=request.user)),
        "issued": issued,
    }


@require_GET
def token_list(request: HtmxHttpRequest) -> HttpResponse:
    return render_page(request, TEMPLATE, "token-panel", _context(request))


@require_POST
def token_create(request: HtmxHttpRequest) -> HttpResponse:
    form = TokenCreateForm(request.POST, teams=team_list_for_user(user=request.user))
    if form.is_valid():
        try:
            issued = api_token_create(
                user=request.user,
                team=form.cleaned_data["team"],
                name=form.cleaned_data["name"],
                scope=form.cleaned_data["scope"],
                expires_in_days=form.cleaned_data["expires_in_days"],
            )
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            # Shown in this response only: never stored, never redirected through.
            response = render_page(request, TEMPLATE, "token-panel", _context(request, issued=issued))
            response["Cache-Control"] = "no-store"
            return response
    return render_page(request, TEMPLATE, "token-panel", _context(request, form=form))


@require_POST
def token_revoke(request: HtmxHttpRequest, token_id: int) -> HttpResponse:
    api_token_revoke(user=request.user, token_id=token_id)
    if request.htmx:
        return render_page(request, TEMPLATE, "token-panel", _context(request))
    return redirect("teams:token-list")
