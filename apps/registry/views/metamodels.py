"""Pages, partials and downloads for meta-models: the team's model list, one
meta-model (lineage, aliases, verdicts), uploads, and the safetensors and JSON
model-card downloads of meta-models and adapted models. Thin: parse, call a
selector or service, render; htmx requests get the page's partial.

The verdict panel is reusable. A page that shows a reviewable subject puts
``review_panel(request, meta_model=...)`` or ``review_panel(request,
adapted_model=...)`` into its context as ``review_panel`` and includes
``registry/_reviews.html``; the panel's form posts to ``registry:review-create``
(``/models/<id>/reviews/`` or ``/adapted/<id>/reviews/``), which answers htmx
with the panel (``registry/_reviews.html#reviews``) and other browsers with a
redirect back to the subject's page.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import FileResponse, Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.registry.forms import (
    SUGGESTED_ALIASES,
    AliasMoveForm,
    MetaModelFilterForm,
    MetaModelUploadForm,
    ReviewForm,
    add_service_errors,
)
from apps.registry.models import AdaptedModel, MetaModel
from apps.registry.selectors import metamodels as selectors
from apps.registry.services import metamodels as services
from apps.teams.models import Role
from apps.teams.selectors import role_for, team_get_for_user
from apps.teams.services import ensure_role
from metaweb.htmx import HtmxHttpRequest, redirect_page, render_page


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


def review_panel(
    request: HtmxHttpRequest,
    *,
    meta_model: MetaModel | None = None,
    adapted_model: AdaptedModel | None = None,
    form: ReviewForm | None = None,
) -> dict[str, Any]:
    """The context ``registry/_reviews.html`` needs (as ``review_panel``) for one
    subject: its verdict history, the form, where it posts, and whether the user
    may record a verdict (members and admins)."""
    if meta_model is not None:
        subject: MetaModel | AdaptedModel = meta_model
        url = reverse("registry:review-create", kwargs={"meta_model_id": meta_model.pk})
        dom_id = f"reviews-meta-{meta_model.pk}"
    elif adapted_model is not None:
        subject = adapted_model
        url = reverse("registry:review-create", kwargs={"run_id": adapted_model.adaptation.run_id})
        dom_id = f"reviews-adapted-{adapted_model.pk}"
    else:
        raise ValueError("give a meta_model or an adapted_model")
    reviews = list(selectors.review_list(meta_model=meta_model, adapted_model=adapted_model))
    return {
        "url": url,
        "dom_id": dom_id,
        "reviews": reviews,
        "latest": reviews[0] if reviews else None,
        "form": form or ReviewForm(),
        "can_review": _can_write(request, subject.team_id),
    }


def _detail_context(request: HtmxHttpRequest, meta_model: MetaModel) -> dict[str, Any]:
    return {
        "team": meta_model.team,
        "meta_model": meta_model,
        "config_json": json.dumps(meta_model.config, indent=2, sort_keys=True),
        "metrics": sorted(meta_model.metrics.items()) if isinstance(meta_model.metrics, dict) else [],
        "adaptations": selectors.metamodel_lineage(meta_model),
        "has_weights": selectors.metamodel_weights_file(meta_model) is not None,
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


def _review_subject(
    request: HtmxHttpRequest, meta_model_id: int | None, run_id: int | None
) -> tuple[MetaModel | None, AdaptedModel | None]:
    if meta_model_id is not None:
        return selectors.metamodel_get_visible(user=request.user, meta_model_id=meta_model_id), None
    if run_id is not None:
        return None, selectors.adapted_get_visible(user=request.user, run_id=run_id)
    raise Http404("Nothing to review.")


def _subject_page(meta_model: MetaModel | None, adapted_model: AdaptedModel | None) -> str:
    if meta_model is not None:
        return reverse("registry:metamodel-detail", args=[meta_model.pk])
    assert adapted_model is not None
    return reverse("registry:adapted-detail", args=[adapted_model.adaptation.run_id])


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
    response = render(request, "registry/_reviews.html#reviews", {"review_panel": panel})
    patch_vary_headers(response, ["HX-Request"])
    return response


# -- downloads ----------------------------------------------------------------------------------


def _weights_response(path: Any, filename: str) -> FileResponse:
    return FileResponse(
        path.open("rb"), as_attachment=True, filename=filename, content_type="application/octet-stream"
    )


def _card_response(card: dict[str, Any], filename: str) -> JsonResponse:
    response = JsonResponse(card, json_dumps_params={"indent": 2})
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@require_GET
def metamodel_weights(request: HtmxHttpRequest, meta_model_id: int) -> FileResponse:
    meta_model = selectors.metamodel_get_visible(user=request.user, meta_model_id=meta_model_id)
    path = selectors.metamodel_weights_file(meta_model)
    if path is None:
        raise Http404("This meta-model's weights are missing.")
    return _weights_response(path, f"{meta_model.name}-v{meta_model.version}.safetensors")


@require_GET
def metamodel_card(request: HtmxHttpRequest, meta_model_id: int) -> JsonResponse:
    meta_model = selectors.metamodel_get_visible(user=request.user, meta_model_id=meta_model_id)
    return _card_response(
        selectors.metamodel_card(meta_model), f"{meta_model.name}-v{meta_model.version}.json"
    )


@require_GET
def adapted_weights(request: HtmxHttpRequest, run_id: int) -> FileResponse:
    adapted = selectors.adapted_get_visible(user=request.user, run_id=run_id)
    path = selectors.adapted_weights_file(adapted)
    if path is None:
        raise Http404("This adapted model has no weights (a batch evaluation keeps scores only).")
    return _weights_response(path, f"adapted-{adapted.pk}.safetensors")


@require_GET
def adapted_card(request: HtmxHttpRequest, run_id: int) -> JsonResponse:
    adapted = selectors.adapted_get_visible(user=request.user, run_id=run_id)
    return _card_response(selectors.adapted_card(adapted), f"adapted-{adapted.pk}.json")
