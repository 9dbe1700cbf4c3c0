"""Log-ins without a request (scripts, the test client's login()) still work, and are not
throttled; log-ins over HTTP are (tests/teams/test_login_throttle.py)."""

import pytest
from django.contrib.auth import authenticate
from django.test import Client

from tests.factories import UserFactory

PASSWORD = "pw-for-tests-1"  # UserFactory's


@pytest.mark.django_db
def test_authenticate_without_a_request_uses_the_model_backend():
    user = UserFactory(username="scripted")
    assert authenticate(username="scripted", password=PASSWORD) == user
    assert authenticate(username="scripted", password="wrong") is None


@pytest.mark.django_db
def test_the_test_clients_login_works():
    UserFactory(username="client-user")
    client = Client()
    assert client.login(username="client-user", password=PASSWORD)
    assert client.get("/").status_code in (200, 302)
