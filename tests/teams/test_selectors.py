from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser
from django.http import Http404

from apps.teams.models import Role
from apps.teams.selectors import membership_get, membership_list_for_user
from tests.factories import MembershipFactory, TeamFactory

pytestmark = pytest.mark.django_db


def test_membership_list_for_user_counts_members(team_roles):
    team, users = team_roles
    MembershipFactory(team=TeamFactory(name="Zeta", slug="zeta"), user=users["viewer"], role=Role.ADMIN)
    rows = list(membership_list_for_user(user=users["viewer"]))
    assert [(m.team.slug, m.role, m.member_count) for m in rows] == [
        ("alpha", "viewer", 3),
        ("zeta", "admin", 1),
    ]
    assert list(membership_list_for_user(user=AnonymousUser())) == []


def test_membership_get_only_within_the_team(team_roles):
    team, users = team_roles
    outsider_membership = users["outsider"].memberships.get()
    with pytest.raises(Http404):
        membership_get(team=team, membership_id=outsider_membership.pk)
    mine = users["viewer"].memberships.get()
    assert membership_get(team=team, membership_id=mine.pk) == mine
