"""Bearer tokens on websockets, for the command line's ``--follow``.

An ASGI middleware inside Channels' ``AuthMiddlewareStack``: when the session gave
no user and the handshake carries ``Authorization: Bearer mwp_...``, the token's
user becomes ``scope["user"]`` and its team ``scope["token_team_id"]``. Consumers
then serve only objects of that team (a token acts in its one team, as in the API).
A wrong, revoked or expired token leaves the user anonymous: the consumer refuses.
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async

from apps.teams.token_selectors import api_token_authenticate
from apps.teams.token_services import api_token_touch

TOKEN_TEAM_KEY = "token_team_id"  # noqa: S105 (a scope key, not a secret)


def _bearer(scope: dict[str, Any]) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, secret = value.decode("latin1").partition(" ")
            if scheme.lower() == "bearer" and secret.strip():
                return secret.strip()
    return None


def _authenticate(secret: str) -> tuple[Any, int] | None:
    token = api_token_authenticate(secret)
    if token is None:
        return None
    api_token_touch(token=token)
    return token.user, token.team_id


class TokenSocketAuthMiddleware:
    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        scope = dict(scope)
        scope.pop(TOKEN_TEAM_KEY, None)  # only this middleware sets it
        user = scope.get("user")
        secret = _bearer(scope)
        if secret is not None and (user is None or not user.is_authenticated):
            found = await database_sync_to_async(_authenticate)(secret)
            if found is not None:
                scope["user"], scope[TOKEN_TEAM_KEY] = found
        return await self.inner(scope, receive, send)


def token_allows(scope: dict[str, Any], team_id: int) -> bool:
    """False when the socket was opened with a token of another team."""
    allowed = scope.get(TOKEN_TEAM_KEY)
    return allowed is None or allowed == team_id
