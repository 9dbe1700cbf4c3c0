"""The team's verdicts on meta-models and adapted models.

The table was the registry's until it moved here
(``apps/registry/migrations/0002_move_adaptations_and_reviews.py``).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from apps.adaptations.models import AdaptedModel
from apps.registry.models import MetaModel
from apps.teams.models import Team


class Verdict(models.TextChoices):
    APPROVE = "approve", "Approve"
    REJECT = "reject", "Reject"
    NEEDS_WORK = "needs_work", "Needs work"


class Review(models.Model):
    """A verdict with a comment, on a meta-model or on an adapted model. Append-only:
    the history of verdicts is the list of reviews."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="reviews")
    meta_model = models.ForeignKey(
        MetaModel, null=True, blank=True, on_delete=models.CASCADE, related_name="reviews"
    )
    adapted_model = models.ForeignKey(
        AdaptedModel, null=True, blank=True, on_delete=models.CASCADE, related_name="reviews"
    )
    verdict = models.CharField(max_length=12, choices=Verdict.choices)
    comment = models.TextField(blank=True)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(meta_model__isnull=False, adapted_model__isnull=True)
                    | models.Q(meta_model__isnull=True, adapted_model__isnull=False)
                ),
                name="review_has_exactly_one_subject",
            )
        ]

    def __str__(self) -> str:
        return f"{self.verdict} by {self.author}"
