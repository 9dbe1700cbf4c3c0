"""metaweb.middleware.HtmxErrorMiddleware: a failed htmx request answers a short
text/plain message (app.js shows it); plain page loads keep Django's pages."""

from __future__ import annotations

import pytest
from django.urls import reverse

from metaweb.middleware import MAX_MESSAGE_CHARS, error_message

pytestmark = pytest.mark.django_db

HX = {"HTTP_HX_REQUEST": "true"}


def text(response) -> str:
    return response.content.decode()


def assert_plain(response, status: int) -> str:
    assert response.status_code == status
    assert response["Content-Type"].startswith("text/plain")
    body = text(response)
    assert body and len(body) <= MAX_MESSAGE_CHARS and "<" not in body
    return body


def test_another_teams_page_says_the_views_404_message(client, team_roles):
    _team, users = team_roles
    client.force_login(users["outsider"])
    url = reverse("reviews:compare", kwargs={"team_slug": "alpha"})
    assert assert_plain(client.get(url, **HX), 404) == "No such team."
    page = client.get(url)
    assert page.status_code == 404 and not page["Content-Type"].startswith("text/plain")


def test_an_unknown_address_says_not_found(client, team_roles):
    _team, users = team_roles
    client.force_login(users["member"])
    assert assert_plain(client.get("/no/such/page/", **HX), 404) == error_message(404)


def test_a_role_too_low_says_which_role_it_needs(client, team_roles):
    _team, users = team_roles
    client.force_login(users["viewer"])
    url = reverse("experiments:run-launch", kwargs={"team_slug": "alpha"})
    assert "member role" in assert_plain(client.post(url, **HX), 403)


def test_a_short_message_of_the_view_is_kept(client, team_roles):
    _team, users = team_roles
    client.force_login(users["member"])
    url = reverse("tasksets:taskset-family-fields", kwargs={"team_slug": "alpha"})
    assert assert_plain(client.get(url, {"family": "nope"}, **HX), 400) == "Unknown family."


@pytest.mark.urls("tests.metaweb.failing_urls")
def test_a_server_error_is_a_sentence_not_a_debug_page(client, team_roles, settings, caplog):
    settings.DEBUG = True  # make run's dev settings: Django would send its debug page
    _team, users = team_roles
    client.raise_request_exception = False
    client.force_login(users["member"])
    body = assert_plain(client.get("/broken/", **HX), 500)
    assert body == error_message(500) and "secret" not in body
    assert any("secret internals" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)
    page = client.get("/broken/")
    assert page.status_code == 500 and "secret internals" in text(page)


def test_a_csrf_failure_is_a_sentence(team_roles):
    from django.test import Client

    _team, users = team_roles
    client = Client(enforce_csrf_checks=True)
    client.force_login(users["member"])
    url = reverse("experiments:run-launch", kwargs={"team_slug": "alpha"})
    assert assert_plain(client.post(url, **HX), 403) == error_message(403)
