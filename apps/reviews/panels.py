"""The verdict panel, reusable on any page that shows a reviewable subject.

The page puts ``review_panel(request, meta_model=...)`` or ``review_panel(request,
adapted_model=...)`` into its context as ``review_panel`` and includes
``reviews/_reviews.html``; the panel's form posts to ``reviews:review-create``
(``/models/<id>/reviews/`` or ``/adapted/<id>/reviews/``), which answers htmx with
the panel (``reviews/_reviews.html#reviews``) and other browsers with a redirect
back to the subject's page.
"""

from __future__ import annotations

from typing import Any

from django.urls import reverse

from apps.adaptations.models import AdaptedModel
from apps.registry.models import MetaModel
from apps.reviews.forms import ReviewForm
from apps.reviews.selectors.reviews import review_list
from apps.teams.models import Role
from apps.teams.selectors import role_for
from metaweb.htmx import HtmxHttpRequest


def review_panel(
    request: HtmxHttpRequest,
    *,
    meta_model: MetaModel | None = None,
    adapted_model: AdaptedModel | None = None,
    form: ReviewForm | None = None,
) -> dict[str, Any]:
    """The context ``reviews/_reviews.html`` needs (as ``review_panel``) for one
    subject: its verdict history, the form, where it posts, and whether the user
    may record a verdict (members and admins)."""
    if meta_model is not None:
        subject: MetaModel | AdaptedModel = meta_model
        url = reverse("reviews:review-create", kwargs={"meta_model_id": meta_model.pk})
        dom_id = f"reviews-meta-{meta_model.pk}"
    elif adapted_model is not None:
        subject = adapted_model
        url = reverse("reviews:review-create", kwargs={"run_id": adapted_model.adaptation.run_id})
        dom_id = f"reviews-adapted-{adapted_model.pk}"
    else:
        raise ValueError("give a meta_model or an adapted_model")
    role = role_for(user=request.user, team=subject.team_id)
    reviews = list(review_list(meta_model=meta_model, adapted_model=adapted_model))
    return {
        "url": url,
        "dom_id": dom_id,
        "reviews": reviews,
        "latest": reviews[0] if reviews else None,
        "form": form or ReviewForm(),
        "can_review": bool(role and role.allows(Role.MEMBER)),
    }
