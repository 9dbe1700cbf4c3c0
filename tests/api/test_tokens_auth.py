"""Token lifecycle (shown once, hashed, revoked, expired, last used) and the rate limit."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.http import Http404
from django.utils import timezone

from apps.teams.models import ApiToken, TokenScope
from apps.teams.token_selectors import api_token_authenticate
from apps.teams.token_services import api_token_create, api_token_revoke, api_token_touch
from tests.api.conftest import bearer

pytestmark = pytest.mark.django_db


def test_the_secret_is_returned_once_and_only_its_hash_is_stored(team_roles):
    team, users = team_roles
    issued = api_token_create(user=users["member"], team=team, name="ci", scope="write", expires_in_days=7)
    row = ApiToken.objects.get(pk=issued.token.pk)
    assert issued.secret.startswith(f"mwp_{row.prefix}_")
    assert row.secret_hash == hashlib.sha256(issued.secret.encode()).hexdigest()
    assert issued.secret not in str(row.__dict__)
    assert api_token_authenticate(issued.secret) == row
    assert api_token_authenticate(issued.secret[:-1] + ("A" if issued.secret[-1] != "A" else "B")) is None
    assert api_token_authenticate("mwp_nope_x") is None
    assert api_token_authenticate("garbage") is None


def test_create_validates_each_field(team_roles, settings):
    team, users = team_roles
    with pytest.raises(ValidationError) as caught:
        api_token_create(user=users["member"], team=team, name=" ", scope="root", expires_in_days=0)
    assert set(caught.value.message_dict) == {"name", "scope", "expires_in_days"}
    assert caught.value.message_dict["expires_in_days"] == [
        f"A token lives between 1 and {settings.API_TOKEN_MAX_DAYS} days."
    ]


def test_a_token_cannot_be_made_for_a_team_the_user_is_not_in(team_roles):
    team, users = team_roles
    with pytest.raises(Http404):
        api_token_create(user=users["outsider"], team=team, name="x", scope="read", expires_in_days=1)


def test_revoked_and_expired_tokens_are_refused(team_roles, client):
    team, users = team_roles
    issued = api_token_create(user=users["member"], team=team, name="a", scope="read", expires_in_days=1)
    assert client.get("/api/v1/teams", **bearer(issued.secret)).status_code == 200
    api_token_revoke(user=users["member"], token_id=issued.token.pk)
    assert client.get("/api/v1/teams", **bearer(issued.secret)).status_code == 401
    other = api_token_create(user=users["member"], team=team, name="b", scope="read", expires_in_days=1)
    ApiToken.objects.filter(pk=other.token.pk).update(expires_at=timezone.now())
    assert client.get("/api/v1/teams", **bearer(other.secret)).status_code == 401


def test_only_the_owner_revokes(team_roles):
    team, users = team_roles
    issued = api_token_create(user=users["member"], team=team, name="a", scope="read", expires_in_days=1)
    with pytest.raises(Http404):
        api_token_revoke(user=users["admin"], token_id=issued.token.pk)
    assert ApiToken.objects.get(pk=issued.token.pk).revoked_at is None


def test_last_used_is_written_at_most_once_a_minute(team_roles, client, django_assert_num_queries):
    team, users = team_roles
    issued = api_token_create(user=users["member"], team=team, name="a", scope="read", expires_in_days=1)
    client.get("/api/v1/teams", **bearer(issued.secret))
    first = ApiToken.objects.get(pk=issued.token.pk).last_used_at
    assert first is not None
    client.get("/api/v1/teams", **bearer(issued.secret))
    assert ApiToken.objects.get(pk=issued.token.pk).last_used_at == first
    token = ApiToken.objects.get(pk=issued.token.pk)
    token.last_used_at = timezone.now() - timedelta(minutes=2)
    with django_assert_num_queries(1):
        api_token_touch(token=token)
    with django_assert_num_queries(0):
        api_token_touch(token=token)


def test_a_token_follows_its_users_current_role(team_roles, client):
    team, users = team_roles
    issued = api_token_create(user=users["member"], team=team, name="a", scope="write", expires_in_days=1)
    body = {"name": "S", "family": "sinusoid"}
    url = f"/api/v1/teams/{team.slug}/tasksets"
    users["member"].memberships.filter(team=team).update(role="viewer")
    response = client.post(url, body, content_type="application/json", **bearer(issued.secret))
    assert response.status_code == 403
    users["member"].memberships.filter(team=team).delete()
    assert client.get(url, **bearer(issued.secret)).status_code == 404


def test_read_scope_is_reported_as_viewer(team_roles, client):
    team, users = team_roles
    issued = api_token_create(
        user=users["admin"], team=team, name="a", scope=TokenScope.READ, expires_in_days=1
    )
    assert client.get("/api/v1/teams", **bearer(issued.secret)).json() == [
        {"slug": "alpha", "name": "Alpha", "role": "viewer"}
    ]


def test_rate_limit_answers_429_with_retry_after_per_token(team_roles, client, settings):
    settings.API_RATE_LIMIT = "3/min"
    team, users = team_roles
    one = api_token_create(user=users["member"], team=team, name="a", scope="read", expires_in_days=1)
    two = api_token_create(user=users["member"], team=team, name="b", scope="read", expires_in_days=1)
    codes = [client.get("/api/v1/teams", **bearer(one.secret)).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    limited = client.get("/api/v1/teams", **bearer(one.secret))
    assert limited.status_code == 429
    assert 1 <= int(limited["Retry-After"]) <= 60
    assert "Retry-After" in limited.json()["detail"]
    assert client.get("/api/v1/teams", **bearer(two.secret)).status_code == 200
