"""Writes about teams and memberships, and the role check every service uses."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import Http404
from django.utils import timezone
from django.utils.text import slugify

from apps.experiments.events import MembershipRemovedEvent, publish_on_commit, user_group
from apps.teams.models import Membership, Role, Team
from apps.teams.selectors import role_for
from apps.teams.types import AnyUser


def ensure_role(*, user: AnyUser, team: Team | int, required: Role) -> Role:
    """Return the user's role in the team if it is at least ``required``.

    Non-members get Http404 (the team's objects are invisible to them); members
    whose role is too low get PermissionDenied.
    """
    role = role_for(user=user, team=team)
    if role is None:
        raise Http404("No such object.")
    if not role.allows(required):
        raise PermissionDenied(f"This needs the {Role(required).label.lower()} role in the team.")
    return role


@transaction.atomic
def team_create(*, name: str, owner: AbstractBaseUser, slug: str = "") -> Team:
    name = name.strip()
    if not name:
        raise ValidationError({"name": "Give the team a name."})
    slug = slugify(slug or name)[:60]
    if not slug:
        raise ValidationError({"slug": "The name must contain letters or digits."})
    if Team.objects.filter(slug=slug).exists():
        raise ValidationError({"slug": f"A team with the address '{slug}' exists already."})
    team = Team.objects.create(name=name, slug=slug)
    Membership.objects.create(team=team, user=owner, role=Role.ADMIN)
    return team


@transaction.atomic
def membership_set(*, team: Team, actor: AnyUser, username: str, role: Role | str) -> Membership:
    """Add a user to the team or change their role. Admins only."""
    ensure_role(user=actor, team=team, required=Role.ADMIN)
    if role not in Role.values:
        raise ValidationError({"role": f"Choose one of: {', '.join(Role.values)}."})
    user = get_user_model().objects.filter(username=username.strip()).first()
    if user is None:
        raise ValidationError({"username": f"No user is called '{username.strip()}'."})
    membership, created = Membership.objects.select_for_update().get_or_create(
        team=team, user=user, defaults={"role": role}
    )
    if not created and membership.role != role:
        if membership.role == Role.ADMIN and role != Role.ADMIN:
            _ensure_another_admin(team=team, leaving=membership)
        membership.role = role
        membership.save(update_fields=["role"])
    return membership


@transaction.atomic
def membership_remove(*, team: Team, actor: AnyUser, membership_id: int) -> None:
    ensure_role(user=actor, team=team, required=Role.ADMIN)
    membership = Membership.objects.select_for_update().filter(team=team, pk=membership_id).first()
    if membership is None:
        raise ValidationError({"membership": "That person is not in this team."})
    if membership.role == Role.ADMIN:
        _ensure_another_admin(team=team, leaving=membership)
    membership.delete()
    # Their open sockets on this team's runs and lists re-check and close.
    publish_on_commit([user_group(membership.user_id)], MembershipRemovedEvent(team_id=team.pk))


def _ensure_another_admin(*, team: Team, leaving: Membership) -> None:
    others = Membership.objects.filter(team=team, role=Role.ADMIN).exclude(pk=leaving.pk)
    if not others.exists():
        raise ValidationError({"role": "A team needs at least one admin."})


def membership_mark_used(*, user: AnyUser, team_slug: str) -> bool:
    """Record that the user opened one of the team's pages now, so that ``/`` lands
    there next time (across log-ins). One UPDATE; False when they are not a member."""
    if not user.is_authenticated:
        return False
    updated = Membership.objects.filter(user=user, team__slug=team_slug).update(last_used_at=timezone.now())
    return updated > 0
