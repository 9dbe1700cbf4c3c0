"""Team pages: the user's teams, and one team's members and quotas (admins manage them).

Views are thin: parse, call a selector or service, render. Writes answer htmx
requests with the ``members`` partial of the team page, and plain form posts
with a redirect (or the full page when the form has errors).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from apps.teams.forms import MemberAddForm, MemberRoleForm, TeamCreateForm, TeamQuotaForm, add_service_errors
from apps.teams.models import Role, Team
from apps.teams.quotas import team_quota, team_quota_set
from apps.teams.selectors import (
    membership_get,
    membership_list,
    membership_list_for_user,
    role_for,
    team_get_for_user,
    team_landing_for_user,
)
from apps.teams.services import ensure_role, membership_remove, membership_set, team_create
from metaweb.htmx import HtmxHttpRequest, redirect_page, render_page


def home(request: HttpRequest) -> HttpResponse:
    """Send the user to the team they used last, or show that they have none yet."""
    team = team_landing_for_user(user=request.user)
    if team is None:
        return render(request, "teams/no_team.html")
    return redirect("experiments:run-list", team_slug=team.slug)


# -- the user's teams ---------------------------------------------------------------------------


def _team_list_context(request: HtmxHttpRequest, form: TeamCreateForm | None = None) -> dict[str, Any]:
    return {
        "memberships": membership_list_for_user(user=request.user),
        "create_form": form or TeamCreateForm(),
    }


@require_GET
def team_list(request: HtmxHttpRequest) -> HttpResponse:
    context = _team_list_context(request)
    return render_page(request, "teams/team_list.html", "team-table", context)


@require_POST
def team_create_view(request: HtmxHttpRequest) -> HttpResponse:
    form = TeamCreateForm(request.POST)
    if form.is_valid():
        try:
            team = team_create(name=form.cleaned_data["name"], owner=request.user)
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            return redirect_page(request, reverse("teams:team-detail", kwargs={"team_slug": team.slug}))
    context = _team_list_context(request, form)
    return render_page(request, "teams/team_list.html", "team-create-form", context)


# -- one team's members -------------------------------------------------------------------------


def _members_context(
    request: HtmxHttpRequest,
    team: Team,
    *,
    add_form: MemberAddForm | None = None,
    errors: list[str] | None = None,
) -> dict[str, Any]:
    role = role_for(user=request.user, team=team)
    return {
        "team": team,
        "role": role,
        "is_admin": role is not None and role.allows(Role.ADMIN),
        "members": membership_list(team=team),
        "roles": Role.choices,
        "add_form": add_form or MemberAddForm(),
        "member_errors": errors or [],
    }


def _members_response(
    request: HtmxHttpRequest,
    team: Team,
    *,
    add_form: MemberAddForm | None = None,
    errors: list[str] | None = None,
) -> HttpResponse:
    """After a write: the members partial for htmx, otherwise the page (PRG when it went well)."""
    if request.htmx:
        context = _members_context(request, team, add_form=add_form, errors=errors)
        return render(request, "teams/team_detail.html#members", context)
    if add_form is None and not errors:
        return redirect("teams:team-detail", team_slug=team.slug)
    context = _members_context(request, team, add_form=add_form, errors=errors)
    return render(request, "teams/team_detail.html", {**context, **_quota_context(request, team)})


def _quota_context(
    request: HtmxHttpRequest, team: Team, *, form: TeamQuotaForm | None = None
) -> dict[str, Any]:
    role = role_for(user=request.user, team=team)
    quota = team_quota(team=team)
    stored = team.max_stored_bytes
    initial = {
        "max_active_runs": team.max_active_runs,
        "max_stored_gib": None if stored is None else round(stored / 1024**3, 3),
    }
    return {
        "team": team,
        "quota": quota,
        "is_admin": role is not None and role.allows(Role.ADMIN),
        "quota_form": form or TeamQuotaForm(initial=initial),
    }


@require_GET
def team_detail(request: HtmxHttpRequest, team_slug: str) -> HttpResponse:
    team, _role = team_get_for_user(user=request.user, slug=team_slug)
    context = {**_members_context(request, team), **_quota_context(request, team)}
    return render_page(request, "teams/team_detail.html", "members", context)


@require_POST
def team_quotas(request: HtmxHttpRequest, team_slug: str) -> HttpResponse:
    """Admins set the team's own quotas, within the site's limits."""
    team, _role = team_get_for_user(user=request.user, slug=team_slug)
    ensure_role(user=request.user, team=team, required=Role.ADMIN)
    form = TeamQuotaForm(request.POST)
    if form.is_valid():
        try:
            team = team_quota_set(
                team=team,
                actor=request.user,
                max_active_runs=form.cleaned_data["max_active_runs"],
                max_stored_bytes=form.stored_bytes(),
            )
        except ValidationError as error:
            add_service_errors(form, error, aliases={"max_stored_bytes": "max_stored_gib"})
        else:
            if not request.htmx:
                return redirect("teams:team-detail", team_slug=team.slug)
            form = None
    if request.htmx:
        return render(request, "teams/team_detail.html#quotas", _quota_context(request, team, form=form))
    context = {**_members_context(request, team), **_quota_context(request, team, form=form)}
    return render(request, "teams/team_detail.html", context)


@require_POST
def member_add(request: HtmxHttpRequest, team_slug: str) -> HttpResponse:
    team, _role = team_get_for_user(user=request.user, slug=team_slug)
    ensure_role(user=request.user, team=team, required=Role.ADMIN)
    form = MemberAddForm(request.POST)
    if form.is_valid():
        try:
            membership_set(
                team=team,
                actor=request.user,
                username=form.cleaned_data["username"],
                role=form.cleaned_data["role"],
            )
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            return _members_response(request, team)
    return _members_response(request, team, add_form=form)


@require_POST
def member_role(request: HtmxHttpRequest, team_slug: str, membership_id: int) -> HttpResponse:
    team, _role = team_get_for_user(user=request.user, slug=team_slug)
    ensure_role(user=request.user, team=team, required=Role.ADMIN)
    membership = membership_get(team=team, membership_id=membership_id)
    form = MemberRoleForm(request.POST)
    if not form.is_valid():
        return _members_response(request, team, errors=[f"{membership.user.username}: choose a valid role."])
    try:
        membership_set(
            team=team, actor=request.user, username=membership.user.username, role=form.cleaned_data["role"]
        )
    except ValidationError as error:
        return _members_response(
            request, team, errors=[f"{membership.user.username}: {m}" for m in error.messages]
        )
    return _members_response(request, team)


@require_POST
def member_remove(request: HtmxHttpRequest, team_slug: str, membership_id: int) -> HttpResponse:
    team, _role = team_get_for_user(user=request.user, slug=team_slug)
    ensure_role(user=request.user, team=team, required=Role.ADMIN)
    membership = membership_get(team=team, membership_id=membership_id)
    try:
        membership_remove(team=team, actor=request.user, membership_id=membership.pk)
    except ValidationError as error:
        return _members_response(
            request, team, errors=[f"{membership.user.username}: {m}" for m in error.messages]
        )
    if role_for(user=request.user, team=team) is None:
        # The admin removed themselves: the team page is no longer theirs to see.
        return redirect_page(request, reverse("teams:team-list"))
    return _members_response(request, team)
