"""Verdicts (the panel's form, see :mod:`apps.reviews.panels`), the side-by-side
comparison (with the 600-task evaluation it needs, started from its picker) and the
leaderboard. Thin: parse, call a selector or service, render; htmx requests get the
page's partial."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRefresh

from apps.adaptations import services as adaptation_services
from apps.adaptations.models import AdaptedModel
from apps.adaptations.selectors import adapted_get_visible, meta_model_get_for_adapt
from apps.registry.models import MetaModel
from apps.registry.selectors import metamodel_get_visible
from apps.reviews import services
from apps.reviews.forms import CompareForm, ReviewForm
from apps.reviews.panels import review_panel
from apps.reviews.selectors import (
    MAX_ITEMS,
    MIN_ITEMS,
    ComparisonError,
    adaptation_numbers,
    comparison_build,
    comparison_choices,
    leaderboard_for_taskset,
    pending_evaluations_exist,
)
from apps.teams.forms import add_service_errors
from apps.teams.models import Role, Team
from apps.teams.selectors import team_get_for_user
from apps.teams.services import ensure_role
from metaweb.htmx import HtmxHttpRequest, redirect_page, render_page, wants_partial

#: The id of the picker's element that polls while 600-task evaluations are under way.
PENDING_POLL_ID = "compare-pending"


# -- verdicts ---------------------------------------------------------------------------


def _review_subject(
    request: HtmxHttpRequest, meta_model_id: int | None, run_id: int | None
) -> tuple[MetaModel | None, AdaptedModel | None]:
    if meta_model_id is not None:
        return metamodel_get_visible(user=request.user, meta_model_id=meta_model_id), None
    if run_id is not None:
        return None, adapted_get_visible(user=request.user, run_id=run_id)
    raise Http404("Nothing to review.")


def _subject_page(meta_model: MetaModel | None, adapted_model: AdaptedModel | None) -> str:
    if meta_model is not None:
        return reverse("registry:metamodel-detail", args=[meta_model.pk])
    assert adapted_model is not None
    return reverse("adaptations:adapted-detail", args=[adapted_model.adaptation.run_id])


def _error_text(form: ReviewForm) -> str:
    return " ".join(f"{name}: {' '.join(errors)}" for name, errors in form.errors.items())


@require_http_methods(["GET", "POST"])
def review_create(
    request: HtmxHttpRequest, meta_model_id: int | None = None, run_id: int | None = None
) -> HttpResponse:
    """The verdict panel of a meta-model or an adapted model (GET), or record a
    verdict (POST, members). htmx gets the panel; other browsers are sent back to
    the subject's page, with the outcome as a message."""
    meta_model, adapted_model = _review_subject(request, meta_model_id, run_id)
    form = None
    if request.method == "POST":
        subject = meta_model or adapted_model
        assert subject is not None
        ensure_role(user=request.user, team=subject.team_id, required=Role.MEMBER)
        form = ReviewForm(request.POST)
        if form.is_valid():
            try:
                services.review_create(
                    actor=request.user,
                    verdict=form.cleaned_data["verdict"],
                    comment=form.cleaned_data["comment"],
                    meta_model=meta_model,
                    adapted_model=adapted_model,
                )
            except ValidationError as error:
                add_service_errors(form, error)
            else:
                form = None
                if not request.htmx:
                    messages.success(request, "Verdict recorded.")
        if form is not None and not request.htmx:
            messages.error(request, "The verdict was not recorded: " + _error_text(form))
    if not request.htmx:
        return redirect(_subject_page(meta_model, adapted_model))
    panel = review_panel(request, meta_model=meta_model, adapted_model=adapted_model, form=form)
    response = render(request, "reviews/_reviews.html#reviews", {"review_panel": panel})
    patch_vary_headers(response, ["HX-Request"])
    return response


# -- comparison and leaderboard -----------------------------------------------------------


@require_GET
def compare(request: HtmxHttpRequest, team_slug: str) -> HttpResponse:
    team, role = team_get_for_user(user=request.user, slug=team_slug)
    if request.htmx and request.htmx.trigger == PENDING_POLL_ID:
        return _pending_poll(team)
    form = CompareForm(request.GET)
    comparison, error, hint = None, "", ""
    adapted_ids: list[int] = []
    meta_ids: list[int] = []
    if not form.is_valid():
        error = form.error_text()
    else:
        adapted_ids, meta_ids = form.picked()
        if len(set(adapted_ids)) + len(set(meta_ids)) == 1:
            hint = f"Pick at least {MIN_ITEMS - 1} more model to compare with."
        elif adapted_ids or meta_ids:
            try:
                comparison = comparison_build(
                    user=request.user, adapted_ids=adapted_ids, meta_model_ids=meta_ids, team=team
                )
            except ComparisonError as exc:
                error = str(exc)
    context: dict[str, Any] = {
        "team": team,
        "comparison": comparison,
        "error": error,
        "hint": hint,
        "picked_adapted": set(adapted_ids),
        "picked_meta": set(meta_ids),
        "min_items": MIN_ITEMS,
        "max_items": MAX_ITEMS,
        "can_evaluate": role.allows(Role.MEMBER),
        "pending_poll_id": PENDING_POLL_ID,
    }
    if not wants_partial(request):
        context.update(_picker_context(team, adapted_ids))
    return render_page(request, "reviews/compare.html", "compare-result", context)


def _picker_context(team: Team, adapted_ids: list[int]) -> dict[str, Any]:
    """The picker of the full page: the team's models by task set, the picked
    evaluations that it does not list, and which models to show open."""
    groups = comparison_choices(team=team)
    models = [model for group in groups for model in group.models]
    listed = {e.adapted_id for model in models for e in model.evaluations}
    unlisted = [pk for pk in adapted_ids if pk not in listed]
    picked = set(adapted_ids)
    numbers = adaptation_numbers(team=team, adapted_ids=unlisted)
    return {
        "groups": groups,
        "pending": any(model.pending_run_id for group in groups for model in group.unevaluated),
        "unlisted": [(pk, numbers.get(pk)) for pk in unlisted],
        "open_models": {
            model.meta_model_id for model in models if any(e.adapted_id in picked for e in model.evaluations)
        },
    }


def _pending_poll(team: Team) -> HttpResponse:
    """While an evaluation is under way, nothing to swap (204); once none is, the
    page reloads, with the finished ones in the picker."""
    if pending_evaluations_exist(team=team):
        return HttpResponse(status=204)
    return HttpResponseClientRefresh()


@require_POST
def evaluation_start(request: HtmxHttpRequest, meta_model_id: int) -> HttpResponse:
    """Start the meta-model's 600-task evaluation from the compare page, then back to it."""
    meta_model = meta_model_get_for_adapt(user=request.user, meta_model_id=meta_model_id)
    label = f"{meta_model.name} v{meta_model.version}"
    try:
        run = adaptation_services.evaluation_start(actor=request.user, meta_model=meta_model)
    except ValidationError as error:
        by_field = error.message_dict if hasattr(error, "error_dict") else {"meta_model": error.messages}
        reasons = "; ".join(f"{field}: {' '.join(texts)}" for field, texts in by_field.items())
        messages.error(request, f"{label} could not be evaluated ({reasons}).")
    else:
        messages.success(request, f"{label}: the 600-task evaluation is queued as adaptation #{run.pk}.")
    return redirect_page(request, reverse("reviews:compare", kwargs={"team_slug": meta_model.team.slug}))


@require_GET
def leaderboard(request: HtmxHttpRequest, taskset_id: int) -> HttpResponse:
    page = leaderboard_for_taskset(user=request.user, taskset_id=taskset_id)
    context = {"team": page.taskset.team, "taskset": page.taskset, "boards": page.boards}
    return render_page(request, "reviews/leaderboard.html", "leaderboard-boards", context)
