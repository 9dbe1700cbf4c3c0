"""The verdict panel's form on PostgreSQL and SQLite: htmx gets the panel with its
history, other browsers go back to the subject's page, and errors save nothing."""

from __future__ import annotations

import pytest
from django.urls import reverse

from apps.reviews.models import Review
from tests.registry import test_metamodels_views
from tests.registry.test_metamodels_views import HTMX

pytestmark = pytest.mark.django_db

#: A team with its users, meta-models, adaptations and adapted models (a fixture).
world = test_metamodels_views.world


def test_recording_a_verdict_with_htmx_returns_the_panel_with_history(client, world):
    client.force_login(world["users"]["member"])
    url = reverse("reviews:review-create", kwargs={"meta_model_id": world["v1"].pk})
    client.post(url, {"verdict": "needs_work", "comment": "first"}, **HTMX)
    response = client.post(url, {"verdict": "approve", "comment": "<script>x</script>"}, **HTMX)
    html = response.content.decode()
    assert response.status_code == 200 and "<html" not in html
    assert f'id="reviews-meta-{world["v1"].pk}"' in html
    assert html.index('data-verdict="approve"') < html.index('data-verdict="needs_work"')
    assert "&lt;script&gt;x&lt;/script&gt;" in html and "<script>x" not in html
    assert list(Review.objects.values_list("verdict", flat=True)) == ["approve", "needs_work"]


def test_an_invalid_verdict_shows_errors_and_saves_nothing(client, world):
    client.force_login(world["users"]["member"])
    url = reverse("reviews:review-create", kwargs={"meta_model_id": world["v1"].pk})
    html = client.post(url, {"verdict": "maybe"}, **HTMX).content.decode()
    assert "errorlist" in html and not Review.objects.exists()
    response = client.post(url, {"verdict": "maybe"}, follow=True)
    assert "The verdict was not recorded" in response.content.decode() and not Review.objects.exists()


def test_verdicts_on_adapted_models_without_htmx_go_back_to_its_page(client, world):
    single = world["single"]
    client.force_login(world["users"]["admin"])
    url = reverse("reviews:review-create", kwargs={"run_id": single.adaptation.run_id})
    response = client.post(url, {"verdict": "reject", "comment": "overfits"})
    assert response.status_code == 302
    assert response["Location"] == reverse("adaptations:adapted-detail", args=[single.adaptation.run_id])
    review = Review.objects.get()
    assert review.adapted_model == single and review.author == world["users"]["admin"]
    assert client.get(url).status_code == 302  # the panel lives on the subject's page
    panel = client.get(url, **HTMX).content.decode()
    assert "overfits" in panel and f'id="reviews-adapted-{single.pk}"' in panel
