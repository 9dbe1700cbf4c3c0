"""Writes about API tokens: create (the secret is returned once), revoke, touch."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import Http404
from django.utils import timezone

from apps.teams.models import ApiToken, Team, TokenScope
from apps.teams.selectors import role_for

#: Every token starts with this, so a leaked one is easy to recognise (and to scan for).
TOKEN_MARK = "mwp"  # noqa: S105 - a public marker, not a secret
#: ``last_used_at`` is written at most this often per token.
LAST_USED_EVERY = timedelta(minutes=1)


def token_hash(secret: str) -> str:
    """The stored form of a token: SHA-256 of the whole high-entropy string."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    #: The full secret; shown once, never stored.
    secret: str


@transaction.atomic
def api_token_create(
    *, user: AbstractBaseUser, team: Team, name: str, scope: str, expires_in_days: int
) -> IssuedToken:
    """Issue a token for one of the user's teams. Errors are keyed by form field."""
    if role_for(user=user, team=team) is None:
        raise Http404("No such team.")
    name = name.strip()
    errors: dict[str, str] = {}
    if not name:
        errors["name"] = "Give the token a name."
    elif len(name) > 80:
        errors["name"] = "A token name is at most 80 characters."
    if scope not in TokenScope.values:
        errors["scope"] = f"Choose one of: {', '.join(TokenScope.values)}."
    max_days = settings.API_TOKEN_MAX_DAYS
    if not 1 <= expires_in_days <= max_days:
        errors["expires_in_days"] = f"A token lives between 1 and {max_days} days."
    if errors:
        raise ValidationError(errors)
    prefix = secrets.token_hex(6)
    secret = f"{TOKEN_MARK}_{prefix}_{secrets.token_urlsafe(32)}"
    token = ApiToken.objects.create(
        user=user,
        team=team,
        name=name,
        scope=scope,
        prefix=prefix,
        secret_hash=token_hash(secret),
        expires_at=timezone.now() + timedelta(days=expires_in_days),
    )
    return IssuedToken(token=token, secret=secret)


def api_token_revoke(*, user: AbstractBaseUser, token_id: int) -> ApiToken:
    """Revoke one of the user's own tokens (at once: the next request is refused)."""
    token = ApiToken.objects.filter(user=user, pk=token_id).first()
    if token is None:
        raise Http404("No such token.")
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    return token


def api_token_touch(*, token: ApiToken) -> None:
    """Record use, at most once a minute per token (one UPDATE, no read)."""
    now = timezone.now()
    if token.last_used_at is not None and now - token.last_used_at < LAST_USED_EVERY:
        return
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    token.last_used_at = now
