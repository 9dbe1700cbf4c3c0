"""``/`` lands on the team the user used last (remembered across log-ins), and the
navigation offers a team chooser when the user belongs to several teams."""

from __future__ import annotations

import html

import pytest
from django.test import Client
from django.urls import reverse

from apps.teams.models import Membership, Role
from apps.teams.selectors import team_landing_for_user
from apps.teams.services import membership_mark_used
from tests.factories import MembershipFactory, TeamFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def user_in_three():
    user = UserFactory(username="juggler")
    teams = {name: TeamFactory(name=name, slug=name.lower()) for name in ("Alpha", "Gamma", "Beta")}
    for team in teams.values():
        MembershipFactory(team=team, user=user, role=Role.VIEWER)
    return user, teams


def _logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _runs_url(slug: str) -> str:
    return reverse("experiments:run-list", kwargs={"team_slug": slug})


def test_home_lands_on_first_team_by_name_before_any_visit(user_in_three):
    user, _teams = user_in_three
    response = _logged_in(user).get("/")
    assert response.status_code == 302
    assert response["Location"] == _runs_url("alpha")


def test_home_lands_on_the_team_used_last_even_after_logging_in_again(user_in_three):
    user, _teams = user_in_three
    client = _logged_in(user)
    assert (
        client.get(reverse("experiments:experiment-list", kwargs={"team_slug": "gamma"})).status_code == 200
    )
    assert client.get("/")["Location"] == _runs_url("gamma")
    assert client.get(reverse("tasksets:taskset-list", kwargs={"team_slug": "beta"})).status_code == 200

    client.logout()
    assert _logged_in(user).get("/")["Location"] == _runs_url("beta")


def test_htmx_fragments_and_other_teams_do_not_move_the_landing(user_in_three):
    user, _teams = user_in_three
    client = _logged_in(user)
    client.get(_runs_url("gamma"))
    client.get(_runs_url("beta"), HTTP_HX_REQUEST="true")  # a live refresh, not a visit
    stranger = TeamFactory(name="Aardvark", slug="aardvark")
    assert client.get(_runs_url(stranger.slug)).status_code == 404
    assert client.get("/")["Location"] == _runs_url("gamma")
    assert not Membership.objects.filter(team=stranger).exists()


def test_mark_used_writes_only_the_users_own_membership(user_in_three):
    user, teams = user_in_three
    other = UserFactory(username="other")
    MembershipFactory(team=teams["Alpha"], user=other)
    assert membership_mark_used(user=user, team_slug="alpha") is True
    assert membership_mark_used(user=user, team_slug="nope") is False
    assert Membership.objects.get(user=other).last_used_at is None
    assert team_landing_for_user(user=user) == teams["Alpha"]


def test_nav_offers_a_chooser_of_every_team_with_the_current_one_marked(user_in_three):
    user, _teams = user_in_three
    body = html.unescape(_logged_in(user).get(_runs_url("beta")).content.decode())
    assert 'id="team-chooser"' in body and "switch team" in body
    for slug in ("alpha", "beta", "gamma"):
        assert f'href="{_runs_url(slug)}" data-team="{slug}"' in body
    assert 'data-team="beta" class="current" aria-current="true"' in body
    assert 'data-team="alpha" class="current"' not in body
    assert f'href="{reverse("teams:team-list")}"' in body


def test_single_team_users_get_no_chooser(team_roles):
    _team, users = team_roles
    body = _logged_in(users["member"]).get(_runs_url("alpha")).content.decode()
    assert "switch team" not in body
    assert "data-team=" not in body
