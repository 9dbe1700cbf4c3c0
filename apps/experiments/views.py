"""Pages, partials and downloads for experiments and runs. Thin: parse, call a
selector or service, render. htmx requests get the page's partial."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.experiments import selectors, services
from apps.experiments.analysis.summary import duration_display
from apps.experiments.annotation_views import annotations_context
from apps.experiments.compare_selectors import run_metric_summaries
from apps.experiments.forms import ExperimentForm, RunLaunchForm
from apps.experiments.listing.columns import column_cells, headline_columns
from apps.experiments.listing.selectors import ARCHIVED_TOO, run_metric_names
from apps.experiments.models import Run, RunStatus, tag_name_clean
from apps.experiments.search import quoted
from apps.experiments.sweep_forms import SweepForm
from apps.experiments.sweep_views import sweep_form_for, sweep_launch
from apps.registry.downloads import checkpoint_response, run_file_response
from apps.teams.forms import add_service_errors
from apps.teams.models import Role, Team
from apps.teams.selectors import role_for, team_get_for_user
from apps.teams.services import ensure_role
from metaweb.htmx import HtmxHttpRequest, redirect_page, render_page, wants_partial
from metaweb.streaming import csv_response
from workers.metalearn.spikes import SPIKE

CANCELLABLE = (RunStatus.QUEUED, RunStatus.RUNNING)


# -- experiments ---------------------------------------------------------------------


@require_GET
def experiment_list(request: HtmxHttpRequest, team_slug: str) -> HttpResponse:
    team, role = team_get_for_user(user=request.user, slug=team_slug)
    tag, tag_error = request.GET.get("tag", "").strip(), ""
    if tag:
        try:
            tag = tag_name_clean(tag)
        except ValidationError as error:
            tag, tag_error = "", " ".join(error.messages)
    context = {
        "team": team,
        "role": role,
        "can_write": role.allows(Role.MEMBER),
        "experiments": selectors.experiment_list_for_team(team=team, tag=tag),
        "tag": tag,
        "tag_error": tag_error,
    }
    return render_page(request, "experiments/experiment_list.html", "experiment-table", context)


@require_http_methods(["GET", "POST"])
def experiment_create(request: HtmxHttpRequest, team_slug: str) -> HttpResponse:
    team, _ = team_get_for_user(user=request.user, slug=team_slug)
    ensure_role(user=request.user, team=team, required=Role.MEMBER)
    form = ExperimentForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            experiment = services.experiment_create(
                team=team,
                actor=request.user,
                name=form.cleaned_data["name"],
                description=form.cleaned_data["description"],
            )
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            return redirect_page(request, reverse("experiments:experiment-detail", args=[experiment.pk]))
    context = {"team": team, "form": form}
    return render_page(request, "experiments/experiment_form.html", "experiment-form", context)


@require_http_methods(["GET", "POST"])
def experiment_edit(request: HtmxHttpRequest, experiment_id: int) -> HttpResponse:
    """Rename the experiment or change its description."""
    experiment = selectors.experiment_get_visible(user=request.user, experiment_id=experiment_id)
    ensure_role(user=request.user, team=experiment.team_id, required=Role.MEMBER)
    initial = {"name": experiment.name, "description": experiment.description}
    form = ExperimentForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            services.experiment_update(experiment=experiment, actor=request.user, **form.cleaned_data)
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            return redirect_page(request, reverse("experiments:experiment-detail", args=[experiment.pk]))
    context = {"team": experiment.team, "form": form, "experiment": experiment}
    return render_page(request, "experiments/experiment_form.html", "experiment-form", context)


@require_GET
def experiment_detail(request: HtmxHttpRequest, experiment_id: int) -> HttpResponse:
    experiment = selectors.experiment_get_visible(user=request.user, experiment_id=experiment_id)
    role = role_for(user=request.user, team=experiment.team_id)
    with_archived = request.GET.get("archived") == ARCHIVED_TOO
    runs = selectors.run_list_for_experiment(experiment=experiment, archived=with_archived)
    headline = headline_columns(run_metric_names(runs), kind=selectors.KIND_ALL)
    column_cells(runs, headline)
    can_write = bool(role and role.allows(Role.MEMBER))
    context = {
        "team": experiment.team,
        "experiment": experiment,
        "can_write": can_write,
        "runs": runs,
        "column_headers": [(column, None) for column in headline],
        "archived_count": selectors.run_archived_count(experiment=experiment),
        "with_archived": with_archived,
        "archived": ARCHIVED_TOO if with_archived else "",
        "guide": None if runs else selectors.launch_guide_for_team(team=experiment.team),
        "runs_search": f"experiment={quoted(experiment.name)}",
    }
    if not wants_partial(request):
        context.update(annotations_context(target=experiment, kind="experiment", can_write=can_write))
    return render_page(request, "experiments/experiment_detail.html", "experiment-runs", context)


# -- launch ---------------------------------------------------------------


def _launch_context(
    team: Team, form: RunLaunchForm, source: Run | None = None, sweep_form: SweepForm | None = None
) -> dict[str, Any]:
    return {"team": team, "form": form, "source": source, "sweep_form": sweep_form or sweep_form_for(form)}


def _launch_initial(request: HtmxHttpRequest) -> dict[str, str]:
    """Values from the query string (``?taskset=<id>&experiment=<id>`` from the task-set
    and experiment pages; the whole form when the fields are swapped on a change).
    They only prefill the form: the ids are checked against the team by the form."""
    names = set(RunLaunchForm.base_fields) - {"cloned_from"}
    return {name: value for name, value in request.GET.items() if name in names}


def _last_used(request: HtmxHttpRequest, team: Team) -> dict[str, int]:
    last = selectors.run_last_launched(team=team, user=request.user)
    if last is None:
        return {}
    return {"experiment": last.experiment_id, "taskset": last.taskset_version.taskset_id}


@require_http_methods(["GET", "POST"])
def run_launch(request: HtmxHttpRequest, team_slug: str) -> HttpResponse:
    team, _ = team_get_for_user(user=request.user, slug=team_slug)
    ensure_role(user=request.user, team=team, required=Role.MEMBER)
    if request.method == "GET":
        form = RunLaunchForm(team=team, initial=_launch_initial(request), fallback=_last_used(request, team))
        # A swap of the fields keeps the sweep section's values (the query string).
        sweep_form = sweep_form_for(form, request.GET if "sweep_strategy" in request.GET else None)
        context = _launch_context(team, form, sweep_form=sweep_form)
        return render_page(request, "experiments/run_launch.html", "launch-form", context)

    form = RunLaunchForm(request.POST, team=team)
    sweep_form = sweep_form_for(form, request.POST)
    source = None
    if sweep_form.refuse_stray_dimensions():
        form.is_valid()  # its own errors shown beside the sweep's
    elif form.is_valid():
        source = _clone_source(request, form.cleaned_data.get("cloned_from"))
        version = selectors.taskset_latest_version(taskset=form.cleaned_data["taskset"])
        try:
            if version is None:
                raise ValidationError({"taskset": "This task set has no version yet."})
            if sweep_form.wanted:
                response = sweep_launch(request, form, sweep_form, version)
                return response or render_page(
                    request,
                    "experiments/run_launch.html",
                    "launch-form",
                    _launch_context(team, form, source, sweep_form),
                )
            run = services.run_create(
                experiment=form.cleaned_data["experiment"],
                actor=request.user,
                taskset_version=version,
                config=form.config(),
                queue=form.cleaned_data["queue"],
                cloned_from=source,
            )
        except ValidationError as error:
            form.add_service_errors(error)
        else:
            return redirect_page(request, reverse("experiments:run-detail", args=[run.pk]))
    return render_page(
        request, "experiments/run_launch.html", "launch-form", _launch_context(team, form, source, sweep_form)
    )


def _clone_source(request: HtmxHttpRequest, run_id: int | None) -> Run | None:
    if not run_id:
        return None
    try:
        return selectors.run_get_visible(user=request.user, run_id=run_id)
    except Http404:
        return None


@require_GET
def run_clone(request: HtmxHttpRequest, run_id: int) -> HttpResponse:
    source = selectors.run_get_visible(user=request.user, run_id=run_id)
    ensure_role(user=request.user, team=source.team_id, required=Role.MEMBER)
    form = RunLaunchForm(team=source.team, initial=services.run_clone_initial(run=source))
    return render_page(
        request, "experiments/run_launch.html", "launch-form", _launch_context(source.team, form, source)
    )


# -- one run ------------------------------------------------------------------------------


def _run_context(request: HttpRequest, run: Run, error: str = "") -> dict[str, Any]:
    role = role_for(user=request.user, team=run.team_id)
    latest = selectors.taskset_latest_version(taskset=run.taskset_version.taskset)
    state = selectors.run_state(run)
    speed = state["run"]["steps_per_sec"]
    events = list(selectors.run_events(run=run))
    return {
        "team": run.team,
        "run": run,
        "state": state,
        "speed_display": f"{speed:.1f} steps/s" if speed else "—",
        "eta_display": duration_display(state["run"]["eta_seconds"]),
        "config_json": json.dumps(run.config, indent=2, sort_keys=True),
        "events": events,
        "spike_steps": [event.step for event in events if event.kind == SPIKE],
        "can_cancel": bool(role and role.allows(Role.MEMBER)) and run.status in CANCELLABLE,
        "can_write": bool(role and role.allows(Role.MEMBER)),
        "has_checkpoint": selectors.run_has_checkpoint(run),
        "files": list(run.files.select_related("created_by")),
        "latest_version": latest,
        "queue_wait": selectors.run_queue_waits(runs=[run]).get(run.pk),
        "metric_summaries": run_metric_summaries(run=run),
        "cancel_error": error,
    }


@require_GET
def run_detail(request: HtmxHttpRequest, run_id: int) -> HttpResponse:
    run = selectors.run_get_visible(user=request.user, run_id=run_id)
    context = _run_context(request, run)
    if not wants_partial(request):  # the live refresh re-reads the status card only
        context.update(annotations_context(target=run, kind="run", can_write=context["can_write"]))
    return render_page(request, "experiments/run_detail.html", "run-live", context)


@require_POST
def run_cancel(request: HtmxHttpRequest, run_id: int) -> HttpResponse:
    run = selectors.run_get_visible(user=request.user, run_id=run_id)
    error = ""
    try:
        run = services.run_cancel(run=run, actor=request.user)
    except ValidationError as exc:
        error = " ".join(exc.messages)
    if not request.htmx:
        if error:
            messages.error(request, error)
        else:
            messages.success(request, "Cancelled." if run.is_finished else "Cancellation requested.")
        return redirect("experiments:run-detail", run_id=run.pk)
    run = selectors.run_get_visible(user=request.user, run_id=run.pk)
    return render(request, "experiments/run_detail.html#run-live", _run_context(request, run, error))


@require_GET
def run_file(request: HttpRequest, run_id: int, file_id: int) -> HttpResponse:
    """A file the run keeps, under its name (``RunFile``; read through its own run)."""
    run = selectors.run_get_visible(user=request.user, run_id=run_id)
    return run_file_response(request, selectors.run_file_get(run=run, file_id=file_id))


@require_GET
def run_metrics_csv(request: HttpRequest, run_id: int) -> StreamingHttpResponse:
    run = selectors.run_get_visible(user=request.user, run_id=run_id)
    return csv_response(request, selectors.run_metrics_csv(run=run), filename=f"run-{run.pk}-metrics.csv")


@require_GET
def run_checkpoint(request: HttpRequest, run_id: int) -> FileResponse:
    return checkpoint_response(request, selectors.run_get_visible(user=request.user, run_id=run_id))
