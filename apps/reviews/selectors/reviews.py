"""Reads of verdicts: one subject's history, the latest verdict, and reviews as a
model card lists them."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet, Subquery

from apps.adaptations.models import AdaptedModel
from apps.registry.models import MetaModel
from apps.reviews.models import Review

__all__ = ["latest_verdict", "latest_verdict_subquery", "review_list", "reviews_card"]


def latest_verdict_subquery(**lookup: Any) -> Subquery:
    """The latest verdict on the reviews matching ``lookup`` (with ``OuterRef``s),
    for ``annotate``: e.g. ``latest_verdict_subquery(meta_model=OuterRef("pk"))``."""
    reviews = Review.objects.filter(**lookup).order_by("-created_at", "-pk").values("verdict")[:1]
    return Subquery(reviews)


def latest_verdict(meta_model: MetaModel) -> str | None:
    """The latest verdict on ``meta_model``, or None when it has none."""
    return (
        Review.objects.filter(meta_model=meta_model)
        .order_by("-created_at", "-pk")
        .values_list("verdict", flat=True)
        .first()
    )


def review_list(
    *, meta_model: MetaModel | None = None, adapted_model: AdaptedModel | None = None
) -> QuerySet[Review]:
    """The verdict history of one subject, newest first, with authors."""
    if (meta_model is None) == (adapted_model is None):
        raise ValueError("give exactly one of meta_model and adapted_model")
    subject = {"meta_model": meta_model} if meta_model is not None else {"adapted_model": adapted_model}
    return Review.objects.filter(**subject).select_related("author").order_by("-created_at", "-pk")


def reviews_card(reviews: QuerySet[Review]) -> list[dict[str, Any]]:
    return [
        {
            "verdict": review.verdict,
            "comment": review.comment,
            "author": review.author.get_username(),
            "created_at": review.created_at.isoformat(),
        }
        for review in reviews
    ]
