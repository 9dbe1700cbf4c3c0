"""The API token settings page, with and without htmx."""

from __future__ import annotations

import pytest

from apps.teams.models import ApiToken
from apps.teams.token_services import token_hash

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def test_login_required(client):
    response = client.get("/settings/tokens/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


@pytest.mark.parametrize("headers", [{}, HTMX])
def test_create_shows_the_secret_once(team_roles, client, headers):
    team, users = team_roles
    client.force_login(users["member"])
    data = {"name": "laptop", "team": team.pk, "scope": "write", "expires_in_days": 30}
    response = client.post("/settings/tokens/new/", data, **headers)
    assert response.status_code == 200
    token = ApiToken.objects.get()
    body = response.content.decode()
    secret = body.split('id="token-secret">')[1].split("<")[0]
    assert token_hash(secret) == token.secret_hash
    assert ("<html" in body) is not bool(headers)
    assert response["Cache-Control"] == "no-store"
    again = client.get("/settings/tokens/").content.decode()
    assert secret not in again and token.prefix in again


@pytest.mark.parametrize("headers", [{}, HTMX])
def test_errors_name_the_field(team_roles, client, headers):
    team, users = team_roles
    client.force_login(users["member"])
    data = {"name": "x", "team": team.pk, "scope": "write", "expires_in_days": 9999}
    body = client.post("/settings/tokens/new/", data, **headers).content.decode()
    assert "A token lives between 1 and 365 days." in body
    assert not ApiToken.objects.exists()


def test_another_teams_id_is_not_a_choice(team_roles, client):
    team, users = team_roles
    client.force_login(users["outsider"])
    data = {"name": "x", "team": team.pk, "scope": "write", "expires_in_days": 3}
    body = client.post("/settings/tokens/new/", data).content.decode()
    assert "Select a valid choice" in body
    assert not ApiToken.objects.exists()


@pytest.mark.parametrize("headers", [{}, HTMX])
def test_revoke_own_token_only(team_roles, client, headers):
    team, users = team_roles
    client.force_login(users["member"])
    client.post(
        "/settings/tokens/new/", {"name": "a", "team": team.pk, "scope": "read", "expires_in_days": 3}
    )
    token = ApiToken.objects.get()
    client.force_login(users["admin"])
    assert client.post(f"/settings/tokens/{token.pk}/revoke/", **headers).status_code == 404
    client.force_login(users["member"])
    assert client.post(f"/settings/tokens/{token.pk}/revoke/", **headers).status_code in (200, 302)
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_list_query_count_does_not_grow(team_roles, client, django_assert_max_num_queries):
    team, users = team_roles
    client.force_login(users["member"])
    for i in range(5):
        client.post(
            "/settings/tokens/new/", {"name": f"t{i}", "team": team.pk, "scope": "read", "expires_in_days": 3}
        )
    with django_assert_max_num_queries(12) as captured:
        client.get("/settings/tokens/", **HTMX)
    few = len(captured)
    for i in range(5, 15):
        client.post(
            "/settings/tokens/new/", {"name": f"t{i}", "team": team.pk, "scope": "read", "expires_in_days": 3}
        )
    with django_assert_max_num_queries(few):
        client.get("/settings/tokens/", **HTMX)
