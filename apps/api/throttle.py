"""Rate limit per token (per user for browser sessions): a sliding window in the
cache, ``settings.API_RATE_LIMIT`` (``"600/min"``); over it, 429 with Retry-After."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest
from ninja.throttling import SimpleRateThrottle


class CallerRateThrottle(SimpleRateThrottle):
    scope = "api"
    THROTTLE_RATES = {"api": "600/min"}

    def __init__(self) -> None:
        super().__init__(rate="600/min")

    def allow_request(self, request: HttpRequest) -> bool:
        # Read the setting on each request, so that it can be changed (and tested).
        self.rate = settings.API_RATE_LIMIT
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request)

    def get_cache_key(self, request: HttpRequest) -> str | None:
        auth = getattr(request, "auth", None)
        if auth is None:
            return None  # unauthenticated requests are refused (401) before any work
        return f"api-rate-{auth}"

    def wait(self) -> float:
        """Seconds until the oldest request in the window leaves it."""
        if not self.history:
            return float(self.duration or 1)
        return max(1.0, self.duration - (self.now - self.history[-1]))  # type: ignore[operator]
