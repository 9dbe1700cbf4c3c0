"""Writes for reviews: recording a verdict on a meta-model or an adapted model."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction

from apps.adaptations.models import AdaptedModel
from apps.registry.models import MetaModel
from apps.reviews.models import Review, Verdict
from apps.teams.models import Role
from apps.teams.services import ensure_role
from apps.teams.types import AnyUser

__all__ = ["MAX_COMMENT_CHARS", "review_create"]


MAX_COMMENT_CHARS = 5000


@transaction.atomic
def review_create(
    *,
    actor: AnyUser,
    verdict: str,
    comment: str = "",
    meta_model: MetaModel | None = None,
    adapted_model: AdaptedModel | None = None,
) -> Review:
    """Record a verdict (approve, reject, needs work) with a comment on exactly one
    of a meta-model or an adapted model. Members only. Reviews are append-only: the
    history of verdicts is the list of reviews, the latest one counts."""
    if (meta_model is None) == (adapted_model is None):
        raise ValidationError({"subject": "Review either a meta-model or an adapted model."})
    subject = meta_model if meta_model is not None else adapted_model
    assert subject is not None
    ensure_role(user=actor, team=subject.team_id, required=Role.MEMBER)
    if verdict not in Verdict.values:
        raise ValidationError({"verdict": f"Choose one of: {', '.join(Verdict.labels).lower()}."})
    comment = (comment or "").strip()
    if len(comment) > MAX_COMMENT_CHARS:
        raise ValidationError({"comment": f"Use at most {MAX_COMMENT_CHARS} characters."})
    return Review.objects.create(
        team_id=subject.team_id,
        meta_model=meta_model,
        adapted_model=adapted_model,
        verdict=verdict,
        comment=comment,
        author=actor,
    )
