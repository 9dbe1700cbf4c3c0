"""The side-by-side comparison and the leaderboard. Thin: parse, call a selector,
render; htmx requests get the page's partial."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from django.views.decorators.http import require_GET

from apps.registry.forms_compare import CompareForm
from apps.registry.selectors import (
    MAX_ITEMS,
    MIN_ITEMS,
    ComparisonError,
    comparison_build,
    comparison_choices,
    leaderboard_for_taskset,
)
from apps.teams.selectors import team_get_for_user
from metaweb.htmx import HtmxHttpRequest, render_page, wants_partial


@require_GET
def compare(request: HtmxHttpRequest, team_slug: str) -> HttpResponse:
    team, _ = team_get_for_user(user=request.user, slug=team_slug)
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
    picked = set(adapted_ids)
    context: dict[str, Any] = {
        "team": team,
        "comparison": comparison,
        "error": error,
        "hint": hint,
        "picked_adapted": picked,
        "picked_meta": set(meta_ids),
        "min_items": MIN_ITEMS,
        "max_items": MAX_ITEMS,
    }
    if not wants_partial(request):
        groups = comparison_choices(team=team)
        models = [model for group in groups for model in group.models]
        listed = {e.adapted_id for model in models for e in model.evaluations}
        context["groups"] = groups
        context["unlisted"] = [pk for pk in adapted_ids if pk not in listed]
        context["open_models"] = {
            model.meta_model_id for model in models if any(e.adapted_id in picked for e in model.evaluations)
        }
    return render_page(request, "registry/compare.html", "compare-result", context)


@require_GET
def leaderboard(request: HtmxHttpRequest, taskset_id: int) -> HttpResponse:
    page = leaderboard_for_taskset(user=request.user, taskset_id=taskset_id)
    context = {"team": page.taskset.team, "taskset": page.taskset, "boards": page.boards}
    return render_page(request, "registry/leaderboard.html", "leaderboard-boards", context)
