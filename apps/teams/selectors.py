"""Reads about teams, and the one place where roles are checked for reads."""

from __future__ import annotations

from django.db.models import Count, F, QuerySet
from django.http import Http404

from apps.teams.models import Membership, Role, Team
from apps.teams.types import AnyUser


def team_list_for_user(*, user: AnyUser) -> QuerySet[Team]:
    if not user.is_authenticated:
        return Team.objects.none()
    return Team.objects.filter(memberships__user=user).order_by("name")


def team_landing_for_user(*, user: AnyUser) -> Team | None:
    """The team ``/`` lands on: the one the user used last, else their first by name."""
    if not user.is_authenticated:
        return None
    membership = (
        Membership.objects.filter(user=user)
        .select_related("team")
        .order_by(F("last_used_at").desc(nulls_last=True), "team__name", "team_id")
        .first()
    )
    return membership.team if membership is not None else None


def role_for(*, user: AnyUser, team: Team | int) -> Role | None:
    """The user's role in the team, or None if they are not a member."""
    if not user.is_authenticated:
        return None
    team_id = team if isinstance(team, int) else team.pk
    role = Membership.objects.filter(team_id=team_id, user=user).values_list("role", flat=True).first()
    return Role(role) if role else None


def team_ids_for_user(*, user: AnyUser, min_role: Role = Role.VIEWER) -> list[int]:
    if not user.is_authenticated:
        return []
    allowed = [r.value for r in Role if r.allows(min_role)]
    return list(Membership.objects.filter(user=user, role__in=allowed).values_list("team_id", flat=True))


def team_get_for_user(*, user: AnyUser, slug: str) -> tuple[Team, Role]:
    """The team and the user's role in it. Raises Http404 for non-members, so that
    other teams' existence is not revealed."""
    if not user.is_authenticated:
        raise Http404("No such team.")
    membership = Membership.objects.select_related("team").filter(team__slug=slug, user=user).first()
    if membership is None:
        raise Http404("No such team.")
    return membership.team, Role(membership.role)


def membership_list(*, team: Team) -> QuerySet[Membership]:
    return Membership.objects.filter(team=team).select_related("user").order_by("user__username")


def membership_list_for_user(*, user: AnyUser) -> QuerySet[Membership]:
    """The user's memberships with their teams and each team's member count (team list page)."""
    if not user.is_authenticated:
        return Membership.objects.none()
    return (
        Membership.objects.filter(user=user)
        .select_related("team")
        .annotate(member_count=Count("team__memberships"))
        .order_by("team__name")
    )


def membership_get(*, team: Team, membership_id: int) -> Membership:
    """A membership of this team; Http404 if the id belongs to no membership of it."""
    membership = Membership.objects.select_related("user").filter(team=team, pk=membership_id).first()
    if membership is None:
        raise Http404("No such member.")
    return membership
