"""Reads about API tokens: the owner's list, and the bearer lookup."""

from __future__ import annotations

import hmac

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from django.utils import timezone

from apps.teams.models import ApiToken
from apps.teams.token_services import TOKEN_MARK, token_hash


def api_token_list_for_user(*, user: AbstractBaseUser) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user=user).select_related("team").order_by("-created_at", "-pk")


def api_token_authenticate(secret: str) -> ApiToken | None:
    """The live token for a bearer string, or None (unknown, wrong, revoked or expired).

    The prefix finds the row; the hash is compared in constant time.
    """
    parts = secret.split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_MARK or not parts[1]:
        return None
    token = ApiToken.objects.select_related("user", "team").filter(prefix=parts[1][:16]).first()
    if token is None or not hmac.compare_digest(token.secret_hash, token_hash(secret)):
        return None
    if token.revoked_at is not None or token.expires_at <= timezone.now() or not token.user.is_active:
        return None
    return token
