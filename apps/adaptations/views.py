"""Adapting a meta-model from the browser, the review page of one adapted model, and
its safetensors and JSON model-card downloads. Thin: parse, call a selector or
service, render; htmx requests get the partial."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import FileResponse, HttpResponse, JsonResponse
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from apps.adaptations import selectors, services
from apps.adaptations.forms import AdaptForm
from apps.adaptations.models import Adaptation
from apps.experiments.models import RunStatus
from apps.experiments.selectors import run_events, run_state
from apps.registry.downloads import card_response, weights_response
from apps.reviews.panels import review_panel
from apps.teams.models import Role
from apps.teams.selectors import role_for
from apps.teams.services import ensure_role
from metaweb.htmx import HtmxHttpRequest, redirect_page, render_page

# -- the adaptation form ----------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def adapt_new(request: HtmxHttpRequest, meta_model_id: int) -> HttpResponse:
    meta_model = selectors.meta_model_get_for_adapt(user=request.user, meta_model_id=meta_model_id)
    ensure_role(user=request.user, team=meta_model.team_id, required=Role.MEMBER)
    facts = selectors.meta_model_facts(meta_model)
    if request.method == "POST":
        form = AdaptForm(request.POST, request.FILES, facts=facts)
        if form.is_valid():
            try:
                run = services.adaptation_start(
                    actor=request.user, meta_model=meta_model, **form.start_kwargs()
                )
            except ValidationError as error:
                form.add_service_errors(error)
            else:
                if form.steps_exceeded and form.steps_warning:
                    messages.warning(request, form.steps_warning)
                return redirect_page(request, reverse("adaptations:adapted-detail", args=[run.pk]))
    else:
        form = AdaptForm(facts=facts)
    context = {
        "team": meta_model.team,
        "meta_model": meta_model,
        "facts": facts,
        "form": form,
        "test_tasks": selectors.ADAPT_TEST_TASKS,
        "batch_tasks": services.adaptation_batch_tasks(),
        "meta_model_url": reverse("registry:metamodel-detail", args=[meta_model.pk]),
    }
    return render_page(request, "adaptations/adapt_new.html", "adapt-form", context)


# -- one adapted model --------------------------------------------------------------------


def _detail_context(request: HtmxHttpRequest, adaptation: Adaptation) -> dict[str, Any]:
    run = adaptation.run
    meta_model = adaptation.meta_model
    adapted = selectors.adapted_model_for(adaptation) if run.status == RunStatus.SUCCEEDED else None
    role = role_for(user=request.user, team=run.team_id)
    review = selectors.adapted_review(adaptation, adapted)
    state = run_state(run)
    facts = selectors.meta_model_facts(meta_model)
    return {
        "team": run.team,
        "run": run,
        "adaptation": adaptation,
        "meta_model": meta_model,
        "adapted": adapted,
        "review": review,
        "state": state,
        "events": run_events(run=run),
        "classification": bool(facts and facts.classification),
        "can_write": bool(role and role.allows(Role.MEMBER)),
        "meta_model_url": reverse("registry:metamodel-detail", args=[meta_model.pk]),
        # A batch evaluation keeps scores only: no weights to download.
        "weights_url": reverse("adaptations:adapted-weights", args=[run.pk])
        if adapted and adapted.weights_sha256
        else None,
        "card_url": reverse("adaptations:adapted-card", args=[run.pk]) if adapted else None,
        "review_panel": review_panel(request, adapted_model=adapted) if adapted else None,
    }


@require_GET
def adapted_detail(request: HtmxHttpRequest, run_id: int) -> HttpResponse:
    """The review page of an adaptation run: live status and curve while it runs, the
    adapted model's figures once it succeeded. Keyed by the run id, so it exists as
    soon as the run is queued."""
    adaptation = selectors.adaptation_get_visible(user=request.user, run_id=run_id)
    context = _detail_context(request, adaptation)
    return render_page(request, "adaptations/adapted_detail.html", "adapted-live", context)


# -- downloads ----------------------------------------------------------------------------------


@require_GET
def adapted_weights(request: HtmxHttpRequest, run_id: int) -> FileResponse:
    adapted = selectors.adapted_get_visible(user=request.user, run_id=run_id)
    return weights_response(
        request,
        selectors.adapted_weights_key(adapted),
        f"adapted-{adapted.pk}.safetensors",
        missing="This adapted model has no weights (a batch evaluation keeps scores only).",
    )


@require_GET
def adapted_card(request: HtmxHttpRequest, run_id: int) -> JsonResponse:
    adapted = selectors.adapted_get_visible(user=request.user, run_id=run_id)
    return card_response(selectors.adapted_card(adapted), f"adapted-{adapted.pk}.json")
