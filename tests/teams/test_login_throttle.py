"""Login throttling (django-axes): after AXES_FAILURE_LIMIT failures a username is
locked out whatever the address, and an address whatever the username, on the
site's login page and the admin's; the lockout page says so (429)."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "pw-for-tests-1"
LOCKED = "Too many failed log-ins"


# Locked out at the AXES_FAILURE_LIMIT-th failure.


def _post(client, url: str, username: str, password: str, ip: str = "10.0.0.1"):
    return client.post(url, {"username": username, "password": password}, REMOTE_ADDR=ip)


@pytest.fixture
def alice():
    return UserFactory(username="alice", is_staff=True, is_superuser=True)


@pytest.mark.parametrize("url", ["/accounts/login/", "/admin/login/"])
def test_a_username_is_locked_out_from_every_address(client, alice, url):
    for attempt in range(settings.AXES_FAILURE_LIMIT - 1):
        response = _post(client, url, "alice", "wrong", ip=f"10.0.1.{attempt}")
        assert response.status_code == 200 and LOCKED not in response.content.decode()
    # The failure that reaches the limit answers with the lockout page already.
    assert _post(client, url, "alice", "wrong", ip="10.0.1.99").status_code == 429
    # The right password, from a fresh address: still locked.
    response = _post(client, url, "alice", PASSWORD, ip="10.0.2.1")
    assert response.status_code == 429
    page = response.content.decode()
    assert LOCKED in page and f"after {settings.AXES_FAILURE_LIMIT} failed attempts" in page
    assert "_auth_user_id" not in client.session


def test_an_address_is_locked_out_for_every_username(client, alice):
    UserFactory(username="bob")
    for attempt in range(settings.AXES_FAILURE_LIMIT):
        _post(client, "/accounts/login/", f"nobody{attempt}", "wrong")
    response = _post(client, "/accounts/login/", "bob", PASSWORD)
    assert response.status_code == 429 and LOCKED in response.content.decode()
    # Another address is not affected.
    assert _post(client, "/accounts/login/", "bob", PASSWORD, ip="10.9.9.9").status_code == 302


def test_below_the_limit_the_right_password_logs_in_and_resets_the_count(client, alice):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        _post(client, "/accounts/login/", "alice", "wrong")
    response = _post(client, "/accounts/login/", "alice", PASSWORD)
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(get_user_model().objects.get(username="alice").pk)
    client.logout()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        _post(client, "/accounts/login/", "alice", "wrong")
    assert _post(client, "/accounts/login/", "alice", PASSWORD).status_code == 302


def test_behind_the_proxy_the_forwarded_address_is_throttled(client, alice, settings):
    settings.BEHIND_TLS = True
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post(
            "/accounts/login/",
            {"username": "x", "password": "wrong"},
            REMOTE_ADDR="172.16.0.2",
            HTTP_X_FORWARDED_FOR="1.2.3.4, 203.0.113.7",
            secure=True,
        )
    locked = client.post(
        "/accounts/login/", {"username": "alice", "password": PASSWORD},
        REMOTE_ADDR="172.16.0.2", HTTP_X_FORWARDED_FOR="203.0.113.7", secure=True,
    )  # fmt: skip
    assert locked.status_code == 429
    # Another client behind the same proxy logs in.
    other = client.post(
        "/accounts/login/", {"username": "alice", "password": PASSWORD},
        REMOTE_ADDR="172.16.0.2", HTTP_X_FORWARDED_FOR="198.51.100.5", secure=True,
    )  # fmt: skip
    assert other.status_code == 302
