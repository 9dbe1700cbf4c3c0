"""apps.reviews.services on PostgreSQL and SQLite: verdicts are append-only, name
who gave them, and follow the rules (one subject, a known verdict, members only)."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404

from apps.reviews.models import Review
from apps.reviews.selectors import latest_verdict
from apps.reviews.services import review_create
from tests.factories import AdaptedModelFactory, ReviewFactory
from tests.registry import test_metamodels_services

pytestmark = pytest.mark.django_db

#: Two versions of one meta-model in a team, with its users (a fixture).
versions = test_metamodels_services.versions


def test_verdict_history_is_append_only_and_names_who(versions):
    team, users, v1, _ = versions
    first = review_create(actor=users["member"], verdict="needs_work", comment="  noisy  ", meta_model=v1)
    second = review_create(actor=users["admin"], verdict="approve", comment="better now", meta_model=v1)
    assert first.team == team and first.comment == "noisy" and first.author == users["member"]
    history = list(v1.reviews.all())
    assert history == [second, first]
    assert [(r.verdict, r.author.username) for r in history] == [
        ("approve", "admin"),
        ("needs_work", "member"),
    ]
    assert latest_verdict(v1) == "approve"


def test_verdicts_on_adapted_models(team_roles):
    team, users = team_roles
    adapted = AdaptedModelFactory(adaptation__meta_model__experiment__team=team)
    review = review_create(actor=users["member"], verdict="reject", comment="", adapted_model=adapted)
    assert review.adapted_model == adapted and review.meta_model is None and review.team == team


def test_verdict_rules(versions):
    team, users, v1, _ = versions
    adapted = AdaptedModelFactory(adaptation__meta_model=v1)
    with pytest.raises(ValidationError) as error:
        review_create(actor=users["member"], verdict="approve", meta_model=v1, adapted_model=adapted)
    assert "subject" in error.value.message_dict
    with pytest.raises(ValidationError):
        review_create(actor=users["member"], verdict="approve")
    with pytest.raises(ValidationError) as error:
        review_create(actor=users["member"], verdict="maybe", meta_model=v1)
    assert "verdict" in error.value.message_dict
    with pytest.raises(ValidationError) as error:
        review_create(actor=users["member"], verdict="approve", comment="x" * 5001, meta_model=v1)
    assert "comment" in error.value.message_dict
    with pytest.raises(PermissionDenied):
        review_create(actor=users["viewer"], verdict="approve", meta_model=v1)
    with pytest.raises(Http404):
        review_create(actor=users["outsider"], verdict="approve", meta_model=v1)
    assert not Review.objects.exists()


def test_review_factory_fits_the_latest_verdict_helper(versions):
    _, _, v1, _ = versions
    ReviewFactory(meta_model=v1, verdict="reject")
    assert latest_verdict(v1) == "reject"
