"""Login throttling (django-axes) for log-ins that come over HTTP."""

from __future__ import annotations

from typing import Any

from axes.backends import AxesStandaloneBackend
from django.http import HttpRequest


class LoginThrottleBackend(AxesStandaloneBackend):
    """django-axes' lockout check for every log-in form and the admin. A call of
    ``authenticate()`` without a request (a script, a shell, Django's test client's
    ``login()``) has no address to throttle by: axes would raise, so it steps aside and
    the model backend alone decides."""

    def authenticate(self, request: HttpRequest | None, *args: Any, **kwargs: Any) -> None:
        if request is None:
            return None
        return super().authenticate(request, *args, **kwargs)
