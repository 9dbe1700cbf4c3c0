"""Task-set pages. Views are thin: parse, call a selector or service, render.

With ``request.htmx`` they render a partial of the page template
(``"tasksets/<page>.html#<partial>"``, via ``render_page``), otherwise the whole page. The two views
that take uploads are wrapped in ``upload_limited``: ``csrf_exempt`` only to put the
upload-limit handler in front before the body is parsed, ``csrf_protect`` straight after.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.http import HttpResponse, HttpResponseBadRequest
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from apps.tasksets.display import summary_lines
from apps.tasksets.forms import (
    PARAMS_PREFIX,
    FamilyParamsForm,
    TaskSetCreateForm,
    TaskSetVersionForm,
    family_choices,
    ordered_params,
    params_initial,
)
from apps.tasksets.models import TaskSet
from apps.tasksets.previews import clamp_start, taskset_version_preview
from apps.tasksets.selectors import (
    taskset_get_visible,
    taskset_list_for_team,
    taskset_version_get_visible,
    taskset_version_latest,
    taskset_version_list,
)
from apps.tasksets.services import taskset_create, taskset_version_create
from apps.tasksets.uploads import DATA_FAMILIES, UploadLimitHandler, upload_limited
from apps.teams.forms import add_service_errors
from apps.teams.models import Role
from apps.teams.selectors import team_get_for_user
from apps.teams.services import ensure_role
from metaweb.htmx import HtmxHttpRequest, redirect_page, render_page


def _family_from(value: Any) -> str:
    families = [name for name, _label in family_choices()]
    return value if value in families else families[0]


# -- list -------------------------------------------------------------------------------------------


@require_GET
def taskset_list(request: HtmxHttpRequest, team_slug: str) -> HttpResponse:
    team, role = team_get_for_user(user=request.user, slug=team_slug)
    family = request.GET.get("family") or ""
    families = [name for name, _label in family_choices()]
    context = {
        "team": team,
        "can_edit": role.allows(Role.MEMBER),
        "tasksets": taskset_list_for_team(team=team, family=family if family in families else None),
        "families": families,
        "family": family if family in families else "",
    }
    return render_page(request, "tasksets/taskset_list.html", "taskset-table", context)


# -- create -----------------------------------------------------------------------------------------


def _form_context(
    *,
    team: Any,
    form: TaskSetCreateForm | TaskSetVersionForm,
    params_form: FamilyParamsForm,
    taskset: TaskSet | None = None,
) -> dict[str, Any]:
    return {
        "team": team,
        "taskset": taskset,
        "form": form,
        "params_form": params_form,
        "family": params_form.family,
        "takes_data": params_form.family in DATA_FAMILIES,
    }


def _render_form(request: HtmxHttpRequest, context: dict[str, Any]) -> HttpResponse:
    return render_page(request, "tasksets/taskset_form.html", "taskset-form", context)


def _save(
    request: HtmxHttpRequest, form: forms.Form, params_form: FamilyParamsForm, save: Callable[[], TaskSet]
) -> HttpResponse | None:
    """Call ``save`` (a service) and go to the task set's page; on its ValidationError
    put the errors on the two forms and return None (the view renders them)."""
    try:
        taskset = save()
    except ValidationError as error:
        add_service_errors(form, error, subforms={PARAMS_PREFIX: params_form})
        return None
    return redirect_page(request, reverse("tasksets:taskset-detail", kwargs={"taskset_id": taskset.pk}))


@require_http_methods(["GET", "POST"])
@upload_limited
def taskset_create_view(
    request: HtmxHttpRequest, team_slug: str, *, limit: UploadLimitHandler
) -> HttpResponse:
    team, _role = team_get_for_user(user=request.user, slug=team_slug)
    ensure_role(user=request.user, team=team, required=Role.MEMBER)
    if request.method == "GET":
        family = _family_from(request.GET.get("family"))
        form = TaskSetCreateForm(initial={"family": family})
        params_form = FamilyParamsForm(family=family)
        return _render_form(request, _form_context(team=team, form=form, params_form=params_form))

    family = _family_from(request.POST.get("family"))
    form = TaskSetCreateForm(request.POST, request.FILES, oversized="data_file" in limit.oversized)
    params_form = FamilyParamsForm(request.POST, family=family)
    forms_valid = form.is_valid() & params_form.is_valid()  # both, for every error at once
    if forms_valid:
        saved = _save(
            request,
            form,
            params_form,
            lambda: taskset_create(
                team=team,
                actor=request.user,
                name=form.cleaned_data["name"],
                family=form.cleaned_data["family"],
                description=form.cleaned_data["description"],
                params=params_form.params,
                data_file=form.cleaned_data.get("data_file"),
            ),
        )
        if saved is not None:
            return saved
    return _render_form(request, _form_context(team=team, form=form, params_form=params_form))


@require_GET
def taskset_family_fields(request: HtmxHttpRequest, team_slug: str) -> HttpResponse:
    """The parameter fields (and upload field) of the family chosen on the create form."""
    team, _role = team_get_for_user(user=request.user, slug=team_slug)
    ensure_role(user=request.user, team=team, required=Role.MEMBER)
    family = request.GET.get("family")
    if family not in [name for name, _label in family_choices()]:
        return HttpResponseBadRequest("Unknown family.")
    context = _form_context(
        team=team,
        form=TaskSetCreateForm(initial={"family": family}),
        params_form=FamilyParamsForm(family=family),
    )
    return render(request, "tasksets/taskset_form.html#family-params", context)


# -- detail, edit -----------------------------------------------------------------------------------


@require_GET
def taskset_detail(request: HtmxHttpRequest, taskset_id: int) -> HttpResponse:
    taskset = taskset_get_visible(user=request.user, taskset_id=taskset_id)
    _team, role = team_get_for_user(user=request.user, slug=taskset.team.slug)
    versions = list(taskset_version_list(taskset=taskset))
    for version in versions:
        version.param_items = ordered_params(taskset.family, version.params or {})
        version.summary_lines = summary_lines(version.data_summary)
    context = {
        "team": taskset.team,
        "taskset": taskset,
        "versions": versions,
        "can_edit": role.allows(Role.MEMBER),
    }
    return render_page(request, "tasksets/taskset_detail.html", "versions", context)


@require_http_methods(["GET", "POST"])
@upload_limited
def taskset_edit_view(
    request: HtmxHttpRequest, taskset_id: int, *, limit: UploadLimitHandler
) -> HttpResponse:
    taskset = taskset_get_visible(user=request.user, taskset_id=taskset_id)
    ensure_role(user=request.user, team=taskset.team, required=Role.MEMBER)
    family = taskset.family
    if request.method == "GET":
        latest = taskset_version_latest(taskset=taskset)
        form = TaskSetVersionForm(
            family=family, initial={"description": latest.description if latest else ""}
        )
        params_form = FamilyParamsForm(
            family=family, initial=params_initial(family, latest.params if latest else {})
        )
        return _render_form(
            request, _form_context(team=taskset.team, taskset=taskset, form=form, params_form=params_form)
        )

    form = TaskSetVersionForm(
        request.POST, request.FILES, family=family, oversized="data_file" in limit.oversized
    )
    params_form = FamilyParamsForm(request.POST, family=family)
    if form.is_valid() & params_form.is_valid():
        saved = _save(
            request,
            form,
            params_form,
            lambda: (
                taskset_version_create(
                    taskset=taskset,
                    actor=request.user,
                    description=form.cleaned_data["description"],
                    params=params_form.params,
                    data_file=form.cleaned_data.get("data_file"),
                ).taskset
            ),
        )
        if saved is not None:
            return saved
    return _render_form(
        request, _form_context(team=taskset.team, taskset=taskset, form=form, params_form=params_form)
    )


# -- preview ----------------------------------------------------------------------------------------


@require_GET
def taskset_preview(request: HtmxHttpRequest, taskset_id: int, number: int) -> HttpResponse:
    version = taskset_version_get_visible(user=request.user, taskset_id=taskset_id, number=number)
    preview = taskset_version_preview(version=version, start=clamp_start(request.GET.get("start")))
    context = {
        "team": version.taskset.team,
        "taskset": version.taskset,
        "version": version,
        "preview": preview,
    }
    return render_page(request, "tasksets/taskset_preview.html", "preview", context)
