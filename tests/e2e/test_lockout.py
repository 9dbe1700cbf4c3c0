"""A person who mistypes the password too often sees the lockout page in the browser,
and cannot log in with the right password until the cool-off ends."""

from __future__ import annotations

import pytest
from django.conf import settings

from tests.e2e.ui import PASSWORD

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def _try(page, base: str, username: str, password: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("form button[type=submit]")
    page.wait_for_load_state("networkidle")


def test_too_many_failures_lock_the_account(live_stack, e2e_page, e2e_user):
    page, base = e2e_page, live_stack.base_url
    user, _team = e2e_user
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        _try(page, base, user.username, "not-the-password")
        assert page.locator("form .errorlist").count() == 1  # the usual "enter a correct ..." message
    _try(page, base, user.username, "not-the-password")
    message = page.locator("#lockout-message")
    assert message.is_visible()
    assert f"after {settings.AXES_FAILURE_LIMIT} failed attempts" in message.inner_text()
    page.shots.take(page, "lockout")

    _try(page, base, user.username, PASSWORD)
    assert page.locator("#lockout-message").is_visible()
    assert "/accounts/login/" in page.url
