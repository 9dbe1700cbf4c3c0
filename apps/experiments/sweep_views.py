"""Sweep pages: the team's sweeps, one sweep (leaderboard, parallel coordinates, its
runs' states), stopping it; and launching one from the launch form. Thin views."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from apps.experiments import services
from apps.experiments.analysis.importance import Importance
from apps.experiments.filters import saved_view_query
from apps.experiments.forms import RunLaunchForm
from apps.experiments.models import Sweep, SweepStatus, SweepStrategy
from apps.experiments.sweep_forms import SweepForm
from apps.experiments.sweep_selectors import (
    LeaderRow,
    sweep_get_for_team,
    sweep_leaderboard,
    sweep_list_for_team,
    sweep_parallel_data,
    sweep_seed_groups,
    sweep_setting_importance,
)
from apps.experiments.sweeps.bayes import STARTUP as BAYES_STARTUP
from apps.tasksets.models import TaskSetVersion
from apps.teams.models import Role, Team
from apps.teams.selectors import team_get_for_user
from metaweb.htmx import HtmxHttpRequest, redirect_page, render_page


def sweep_form_for(form: RunLaunchForm, data: Any = None) -> SweepForm:
    """The launch form's sweep section, for the settings that apply."""
    labels = {name: str(form[name].label) for name in form.fields}
    return SweepForm(data, applicable=form.applicable & set(form.fields), labels=labels)


def sweep_launch(
    request: HtmxHttpRequest, form: RunLaunchForm, sweep_form: SweepForm, version: TaskSetVersion
) -> HttpResponse | None:
    """Create the sweep the valid forms describe and redirect to it; None (errors on
    the forms' fields) when it is refused."""
    if not sweep_form.is_valid():
        return None
    try:
        sweep = services.sweep_create(
            experiment=form.cleaned_data["experiment"],
            actor=request.user,
            taskset_version=version,
            base_config=form.config(),
            dimensions=sweep_form.dimensions(),
            queue=form.cleaned_data["queue"],
            **sweep_form.options(),
        )
    except ValidationError as error:
        sweep_errors_add(form, sweep_form, error)
        return None
    return redirect_page(request, reverse("experiments:sweep-detail", args=[sweep.team.slug, sweep.pk]))


def sweep_errors_add(form: RunLaunchForm, sweep_form: SweepForm, error: ValidationError) -> None:
    """Sweep errors on the sweep section's fields (``dim_<setting>`` for a dimension); a
    dimension on a setting that is not shown, on the form (its message names the
    setting); the rest as for one run."""
    if not hasattr(error, "error_dict"):
        form.add_error(None, error)
        return
    for field, errors in error.error_dict.items():
        if field in sweep_form.fields:
            sweep_form.add_error(field, errors)
        elif field.startswith("dim_"):
            for item in errors:
                form.add_error(None, item.messages)
        else:
            form.add_service_errors(ValidationError({field: errors}))


def _page_context(team: Team, role: Role, sweep: Sweep) -> dict[str, Any]:
    rows = sweep_leaderboard(sweep=sweep)
    best = next((row for row in rows if row.rank == 1), None)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.run.status] = counts.get(row.run.status, 0) + 1
    return {
        "team": team,
        "sweep": sweep,
        "rows": rows,
        "best": best,
        "counts": sorted(counts.items()),
        "parallel": sweep_parallel_data(sweep=sweep, rows=rows),
        "seed_groups": sweep_seed_groups(sweep=sweep, rows=rows),
        "importance": _importance_rows(sweep, rows),
        "list_query": _run_list_query(sweep),
        "bayes_startup": BAYES_STARTUP if sweep.strategy == SweepStrategy.BAYES else 0,
        "can_write": role.allows(Role.MEMBER),
        "live": sweep.status == SweepStatus.RUNNING,
    }


def _run_list_query(sweep: Sweep) -> str:
    """The run list's query string for the sweep's runs: its settings and metric as
    columns, best first (so "Download CSV" exports the sweep's table)."""
    columns = [f"config.{name}" for name in sweep.dimensions or {}] + [f"metric.{sweep.metric}"]
    sort = f"{'-' if sweep.maximize else ''}metric.{sweep.metric}"
    return saved_view_query(query=f"sweep:{sweep.pk}", columns=columns, sort=sort, kind="", filters={})


def _importance_rows(sweep: Sweep, rows: list[LeaderRow]) -> list[Importance]:
    """The settings' association with the metric, once a run has succeeded with it."""
    found = sweep_setting_importance(sweep=sweep, rows=rows)
    return found if any(item.n for item in found) else []


@require_GET
def sweep_list(request: HtmxHttpRequest, team_slug: str) -> HttpResponse:
    team, role = team_get_for_user(user=request.user, slug=team_slug)
    context = {"team": team, "sweeps": sweep_list_for_team(team=team), "can_write": role.allows(Role.MEMBER)}
    return render_page(request, "experiments/sweep_list.html", "sweep-table", context)


@require_GET
def sweep_detail(request: HtmxHttpRequest, team_slug: str, sweep_id: int) -> HttpResponse:
    team, role = team_get_for_user(user=request.user, slug=team_slug)
    sweep = sweep_get_for_team(team=team, sweep_id=sweep_id)
    return render_page(
        request, "experiments/sweep_detail.html", "sweep-live", _page_context(team, role, sweep)
    )


@require_POST
def sweep_stop(request: HtmxHttpRequest, team_slug: str, sweep_id: int) -> HttpResponse:
    team, role = team_get_for_user(user=request.user, slug=team_slug)
    sweep = sweep_get_for_team(team=team, sweep_id=sweep_id)
    error = ""
    try:
        sweep = services.sweep_stop(sweep=sweep, actor=request.user)
    except ValidationError as exc:
        error = " ".join(exc.messages)
    if not request.htmx:
        if error:
            messages.error(request, error)
        return redirect("experiments:sweep-detail", team_slug=team.slug, sweep_id=sweep.pk)
    sweep = sweep_get_for_team(team=team, sweep_id=sweep.pk)
    context = {**_page_context(team, role, sweep), "stop_error": error}
    return render_page(request, "experiments/sweep_detail.html", "sweep-live", context)
