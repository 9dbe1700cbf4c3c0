"""Pages, partials and downloads for meta-models: the team's model list, one
meta-model (lineage, aliases, its verdict panel from :mod:`apps.reviews.panels`),
uploads, and the safetensors and JSON model-card downloads. Thin: parse, call a
selector or service, render; htmx requests get the page's partial.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import FileResponse, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.registry import selectors, services
from apps.registry.downloads import card_response, weights_response
from apps.registry.explorer import explorer_model, explorer_reason, task_map_for, task_map_reason
from apps.registry.forms import SUGGESTED_ALIASES, AliasMoveForm, MetaModelFilterForm, MetaModelUploadForm
from apps.registry.models import MetaModel
from apps.reviews.panels import review_panel
from apps.teams.forms import add_service_errors
from apps.teams.models import Role
from apps.teams.selectors import role_for, team_get_for_user
from apps.teams.services import ensure_role
from metaweb.htmx import HtmxHttpRequest, redirect_page, render_page
from workers.metalearn.types import ConfigError


def _can_write(request: HtmxHttpRequest, team_id: int) -> bool:
    role = role_for(user=request.user, team=team_id)
    return bool(role and role.allows(Role.MEMBER))


# -- the team's models ----------------------------------------------------------------------


@require_GET
def metamodel_list(request: HtmxHttpRequest, team_slug: str) -> HttpResponse:
    team, role = team_get_for_user(user=request.user, slug=team_slug)
    filter_form = MetaModelFilterForm(request.GET, team=team)
    filters = filter_form.filters()
    context = {
        "team": team,
        "can_write": role.allows(Role.MEMBER),
        "filter_form": filter_form,
        "groups": selectors.metamodel_groups_for_team(team=team, filters=filters),
        "filtered": bool(filters),
    }
    return render_page(request, "registry/metamodel_list.html", "metamodel-table", context)


@require_http_methods(["GET", "POST"])
def metamodel_upload(request: HtmxHttpRequest, team_slug: str) -> HttpResponse:
    team, _ = team_get_for_user(user=request.user, slug=team_slug)
    ensure_role(user=request.user, team=team, required=Role.MEMBER)
    if request.method == "POST":
        form = MetaModelUploadForm(request.POST, request.FILES, team=team)
        if form.is_valid():
            data = form.cleaned_data
            try:
                meta_model = services.metamodel_upload(
                    team=team,
                    actor=request.user,
                    experiment=data["experiment"],
                    taskset_version=data["taskset_version"],
                    name=data["name"],
                    config=data["config"],
                    weights_file=data["weights_file"],
                    description=data["description"],
                )
            except ValidationError as error:
                add_service_errors(form, error)
            else:
                url = reverse("registry:metamodel-detail", args=[meta_model.pk])
                return redirect_page(request, url)
    else:
        form = MetaModelUploadForm(team=team)
    return render_page(request, "registry/metamodel_upload.html", "upload-form", {"team": team, "form": form})


# -- one meta-model ---------------------------------------------------------------------------


def _aliases_context(
    request: HtmxHttpRequest, meta_model: MetaModel, form: AliasMoveForm | None = None
) -> dict[str, Any]:
    aliases = selectors.alias_list_for_name(team=meta_model.team_id, model_name=meta_model.name)
    suggestions = sorted({*SUGGESTED_ALIASES, *(a.alias for a in aliases)})
    return {
        "meta_model": meta_model,
        "aliases": aliases,
        "alias_form": form or AliasMoveForm(),
        "alias_suggestions": suggestions,
        "can_write": _can_write(request, meta_model.team_id),
    }


def _task_map_context(meta_model: MetaModel) -> dict[str, Any]:
    if meta_model.algorithm not in ("mnn", "protonet"):
        return {"task_map_reason": None, "task_map": None}
    reason = task_map_reason(meta_model)
    return {"task_map_reason": reason, "task_map": None if reason else task_map_for(meta_model)}


def _detail_context(request: HtmxHttpRequest, meta_model: MetaModel) -> dict[str, Any]:
    return {
        "team": meta_model.team,
        "meta_model": meta_model,
        "config_json": json.dumps(meta_model.config, indent=2, sort_keys=True),
        "mnn_condition": selectors.metamodel_condition(meta_model),
        "explorer_reason": explorer_reason(meta_model) if meta_model.algorithm == "mnn" else None,
        **_task_map_context(meta_model),
        "metrics": sorted(meta_model.metrics.items()) if isinstance(meta_model.metrics, dict) else [],
        "adaptations": selectors.metamodel_lineage(meta_model),
        "has_weights": selectors.metamodel_weights_key(meta_model) is not None,
        "review_panel": review_panel(request, meta_model=meta_model),
        **_aliases_context(request, meta_model),
    }


@require_GET
def metamodel_detail(request: HtmxHttpRequest, meta_model_id: int) -> HttpResponse:
    meta_model = selectors.metamodel_get_visible(user=request.user, meta_model_id=meta_model_id)
    return render_page(
        request, "registry/metamodel_detail.html", "lineage", _detail_context(request, meta_model)
    )


@require_POST
def alias_move(request: HtmxHttpRequest, meta_model_id: int) -> HttpResponse:
    """Point an alias of the meta-model's name at this version."""
    meta_model = selectors.metamodel_get_visible(user=request.user, meta_model_id=meta_model_id)
    ensure_role(user=request.user, team=meta_model.team_id, required=Role.MEMBER)
    form = AliasMoveForm(request.POST)
    if form.is_valid():
        try:
            services.alias_move(
                team=meta_model.team,
                actor=request.user,
                model_name=meta_model.name,
                alias=form.cleaned_data["alias"],
                meta_model=meta_model,
            )
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            if not request.htmx:
                alias = form.cleaned_data["alias"].strip().lower()
                messages.success(request, f"{meta_model.name}@{alias} now points at v{meta_model.version}.")
                return redirect("registry:metamodel-detail", meta_model_id=meta_model.pk)
            form = AliasMoveForm()
    if request.htmx:
        return render(request, "registry/_aliases.html#aliases", _aliases_context(request, meta_model, form))
    context = _detail_context(request, meta_model)
    context.update(_aliases_context(request, meta_model, form))
    return render(request, "registry/metamodel_detail.html", context)


# -- downloads ----------------------------------------------------------------------------------


@require_GET
def metamodel_weights(request: HtmxHttpRequest, meta_model_id: int) -> FileResponse:
    meta_model = selectors.metamodel_get_visible(user=request.user, meta_model_id=meta_model_id)
    return weights_response(
        request,
        selectors.metamodel_weights_key(meta_model),
        f"{meta_model.name}-v{meta_model.version}.safetensors",
        missing="This meta-model's weights are missing.",
    )


@require_GET
def metamodel_card(request: HtmxHttpRequest, meta_model_id: int) -> JsonResponse:
    meta_model = selectors.metamodel_get_visible(user=request.user, meta_model_id=meta_model_id)
    return card_response(
        selectors.metamodel_card(meta_model), f"{meta_model.name}-v{meta_model.version}.json"
    )


@require_GET
def metamodel_explorer(request: HtmxHttpRequest, meta_model_id: int) -> JsonResponse:
    """The MNN's hypernetwork, exported once for the page's task-space explorer (the
    browser evaluates it on every slider move); 404 with the reason when there is
    none to explore."""
    meta_model = selectors.metamodel_get_visible(user=request.user, meta_model_id=meta_model_id)
    try:
        model = explorer_model(meta_model)
    except ConfigError as exc:
        return JsonResponse({"error": exc.errors.get("explorer", "Nothing to explore.")}, status=404)
    response = JsonResponse(model)
    response["Cache-Control"] = "private, max-age=3600"  # a registered model never changes
    return response


@require_POST
def metamodel_task_map(request: HtmxHttpRequest, meta_model_id: int) -> HttpResponse:
    """Ask a worker for the task embedding map (members), then back to the page."""
    meta_model = selectors.metamodel_get_visible(user=request.user, meta_model_id=meta_model_id)
    try:
        queued = services.metamodel_task_map_request(meta_model=meta_model, actor=request.user)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        if queued:
            messages.info(request, "The task map is being computed by a worker; reload the page in a minute.")
    return redirect_page(request, reverse("registry:metamodel-detail", args=[meta_model.pk]))
