"""Team pages: the team list, a team's members, and admins managing them."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from apps.teams.models import Membership, Role, Team
from tests.factories import MembershipFactory, TeamFactory, UserFactory
from tests.pages import text

pytestmark = pytest.mark.django_db

HX = {"HTTP_HX_REQUEST": "true"}
ROLES = ["viewer", "member", "admin"]


def client_for(user=None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def _member(team, username):
    return Membership.objects.get(team=team, user__username=username)


# -- permission matrix ------------------------------------------------------------------------------


def test_team_list_anonymous_is_sent_to_login():
    response = client_for().get(reverse("teams:team-list"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("who", [*ROLES, "outsider"])
def test_team_list_shows_only_own_teams(team_roles, who):
    _team, users = team_roles
    response = client_for(users[who]).get(reverse("teams:team-list"))
    assert response.status_code == 200
    body = response.content.decode()
    if who == "outsider":
        assert "Beta" in body and "Alpha" not in body
    else:
        assert "Alpha" in body and "Beta" not in body


@pytest.mark.parametrize(
    ("who", "status"),
    [(None, 302), ("outsider", 404), ("viewer", 200), ("member", 200), ("admin", 200)],
)
def test_team_detail_matrix(team_roles, who, status):
    _team, users = team_roles
    response = client_for(users.get(who)).get(reverse("teams:team-detail", kwargs={"team_slug": "alpha"}))
    assert response.status_code == status
    if status == 200:
        body = response.content.decode()
        for username in ROLES:
            assert username in body
        assert "outsider" not in body
        # Only admins get the controls.
        assert ('id="member-add-form"' in body) is (who == "admin")


@pytest.mark.parametrize(
    ("who", "status"),
    [(None, 302), ("outsider", 404), ("viewer", 403), ("member", 403), ("admin", 200)],
)
def test_member_add_matrix(team_roles, who, status):
    team, users = team_roles
    UserFactory(username="newbie")
    response = client_for(users.get(who)).post(
        reverse("teams:member-add", kwargs={"team_slug": "alpha"}),
        {"username": "newbie", "role": "viewer"},
        **HX,
    )
    assert response.status_code == status
    exists = Membership.objects.filter(team=team, user__username="newbie").exists()
    assert exists is (status == 200)


@pytest.mark.parametrize(
    ("who", "status"),
    [(None, 302), ("outsider", 404), ("viewer", 403), ("member", 403), ("admin", 200)],
)
def test_member_role_matrix(team_roles, who, status):
    team, users = team_roles
    target = _member(team, "viewer")
    response = client_for(users.get(who)).post(
        reverse("teams:member-role", kwargs={"team_slug": "alpha", "membership_id": target.pk}),
        {"role": "member"},
        **HX,
    )
    assert response.status_code == status
    target.refresh_from_db()
    assert target.role == (Role.MEMBER if status == 200 else Role.VIEWER)


@pytest.mark.parametrize(
    ("who", "status"),
    [(None, 302), ("outsider", 404), ("viewer", 403), ("member", 403), ("admin", 200)],
)
def test_member_remove_matrix(team_roles, who, status):
    team, users = team_roles
    target = _member(team, "viewer")
    response = client_for(users.get(who)).post(
        reverse("teams:member-remove", kwargs={"team_slug": "alpha", "membership_id": target.pk}), **HX
    )
    assert response.status_code == status
    assert Membership.objects.filter(pk=target.pk).exists() is (status != 200)


@pytest.mark.parametrize(("who", "status"), [(None, 302), ("outsider", 302), ("viewer", 302)])
def test_team_create_matrix(team_roles, who, status):
    _team, users = team_roles
    response = client_for(users.get(who)).post(reverse("teams:team-create"), {"name": "Gamma"})
    assert response.status_code == status
    created = Team.objects.filter(slug="gamma").first()
    if who is None:
        assert created is None
    else:
        assert response["Location"] == reverse("teams:team-detail", kwargs={"team_slug": "gamma"})
        assert Membership.objects.get(team=created).user == users[who]
        assert Membership.objects.get(team=created).role == Role.ADMIN


# -- with and without htmx --------------------------------------------------------------------------


def test_team_detail_full_page_and_partial(team_roles):
    _team, users = team_roles
    client = client_for(users["admin"])
    url = reverse("teams:team-detail", kwargs={"team_slug": "alpha"})
    page = client.get(url).content.decode()
    partial = client.get(url, **HX).content.decode()
    assert "<html" in page and 'id="members"' in page
    assert "<html" not in partial and partial.lstrip().startswith('<div id="members">')
    assert "member-add-form" in partial


def test_team_list_partial(team_roles):
    _team, users = team_roles
    partial = client_for(users["viewer"]).get(reverse("teams:team-list"), **HX).content.decode()
    assert "<html" not in partial
    assert 'id="team-table"' in partial and "Alpha" in partial


def test_member_add_plain_post_redirects(team_roles):
    team, users = team_roles
    UserFactory(username="newbie")
    response = client_for(users["admin"]).post(
        reverse("teams:member-add", kwargs={"team_slug": "alpha"}), {"username": "newbie", "role": "member"}
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("teams:team-detail", kwargs={"team_slug": "alpha"})
    assert _member(team, "newbie").role == Role.MEMBER


def test_member_add_unknown_user_shows_field_error(team_roles):
    team, users = team_roles
    before = Membership.objects.count()
    for headers in (HX, {}):
        response = client_for(users["admin"]).post(
            reverse("teams:member-add", kwargs={"team_slug": "alpha"}),
            {"username": "ghost", "role": "member"},
            **headers,
        )
        assert response.status_code == 200
        assert "<li>No user is called 'ghost'.</li>" in text(response)
        assert ("<html" in text(response)) is not headers
    assert Membership.objects.count() == before


def test_member_add_bad_role_is_a_field_error(team_roles):
    _team, users = team_roles
    UserFactory(username="newbie")
    response = client_for(users["admin"]).post(
        reverse("teams:member-add", kwargs={"team_slug": "alpha"}),
        {"username": "newbie", "role": "owner"},
        **HX,
    )
    assert response.status_code == 200
    assert "Select a valid choice. owner is not one of the available choices." in text(response)
    assert not Membership.objects.filter(user__username="newbie").exists()


def test_member_add_existing_member_changes_role(team_roles):
    team, users = team_roles
    client_for(users["admin"]).post(
        reverse("teams:member-add", kwargs={"team_slug": "alpha"}),
        {"username": "viewer", "role": "admin"},
        **HX,
    )
    assert _member(team, "viewer").role == Role.ADMIN
    assert Membership.objects.filter(team=team).count() == 3


def test_demoting_the_last_admin_is_refused(team_roles):
    team, users = team_roles
    admin = _member(team, "admin")
    response = client_for(users["admin"]).post(
        reverse("teams:member-role", kwargs={"team_slug": "alpha", "membership_id": admin.pk}),
        {"role": "viewer"},
        **HX,
    )
    assert response.status_code == 200
    assert "<li>admin: A team needs at least one admin.</li>" in text(response)
    admin.refresh_from_db()
    assert admin.role == Role.ADMIN


def test_removing_the_last_admin_is_refused(team_roles):
    team, users = team_roles
    admin = _member(team, "admin")
    response = client_for(users["admin"]).post(
        reverse("teams:member-remove", kwargs={"team_slug": "alpha", "membership_id": admin.pk}), **HX
    )
    assert response.status_code == 200
    assert "A team needs at least one admin." in response.content.decode()
    assert Membership.objects.filter(pk=admin.pk).exists()


def test_admin_leaving_is_sent_to_the_team_list(team_roles):
    team, users = team_roles
    Membership.objects.filter(team=team, user__username="member").update(role=Role.ADMIN)
    me = _member(team, "admin")
    response = client_for(users["admin"]).post(
        reverse("teams:member-remove", kwargs={"team_slug": "alpha", "membership_id": me.pk}), **HX
    )
    assert response.status_code == 200
    assert response["HX-Redirect"] == reverse("teams:team-list")
    assert not Membership.objects.filter(pk=me.pk).exists()


def test_membership_of_another_team_is_404(team_roles):
    _team, users = team_roles
    other = MembershipFactory(team=TeamFactory(slug="gamma"), role=Role.MEMBER)
    response = client_for(users["admin"]).post(
        reverse("teams:member-remove", kwargs={"team_slug": "alpha", "membership_id": other.pk}), **HX
    )
    assert response.status_code == 404
    assert Membership.objects.filter(pk=other.pk).exists()


def test_role_change_to_invalid_value(team_roles):
    team, users = team_roles
    target = _member(team, "viewer")
    response = client_for(users["admin"]).post(
        reverse("teams:member-role", kwargs={"team_slug": "alpha", "membership_id": target.pk}),
        {"role": "owner"},
        **HX,
    )
    assert response.status_code == 200
    assert "<li>viewer: choose a valid role.</li>" in text(response)
    target.refresh_from_db()
    assert target.role == Role.VIEWER


def test_team_create_duplicate_shows_error(team_roles):
    _team, users = team_roles
    response = client_for(users["viewer"]).post(reverse("teams:team-create"), {"name": "Alpha"}, **HX)
    assert response.status_code == 200
    assert "<html" not in response.content.decode()
    assert "<li>A team with the address 'alpha' exists already.</li>" in text(response)
    assert Team.objects.filter(slug="alpha").count() == 1


def test_team_create_htmx_redirects(team_roles):
    _team, users = team_roles
    response = client_for(users["viewer"]).post(reverse("teams:team-create"), {"name": "New Team"}, **HX)
    assert response.status_code == 200
    assert response["HX-Redirect"] == reverse("teams:team-detail", kwargs={"team_slug": "new-team"})


def test_csrf_is_enforced(team_roles):
    _team, users = team_roles
    client = Client(enforce_csrf_checks=True)
    client.force_login(users["admin"])
    UserFactory(username="newbie")
    response = client.post(
        reverse("teams:member-add", kwargs={"team_slug": "alpha"}), {"username": "newbie", "role": "member"}
    )
    assert response.status_code == 403
    assert not Membership.objects.filter(user__username="newbie").exists()


def test_usernames_are_escaped(team_roles):
    team, users = team_roles
    MembershipFactory(team=team, user=UserFactory(username="<b>x</b>"), role=Role.VIEWER)
    body = (
        client_for(users["viewer"]).get(reverse("teams:team-detail", kwargs={"team_slug": "alpha"})).content
    )
    assert b"<b>x</b>" not in body
    assert b"&lt;b&gt;x&lt;/b&gt;" in body
