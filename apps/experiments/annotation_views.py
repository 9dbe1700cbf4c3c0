"""Tags and notes on the run and experiment pages: the panels' htmx endpoints.

Each endpoint is mounted twice (``kind`` is ``"run"`` or ``"experiment"``, set by
``urls.py``). htmx posts get the panel back, with the error on its field (status
200, so htmx swaps it); plain form posts redirect to the page, errors as a
message. Viewers are refused by the services (403 with a message), other teams
and anonymous users never see the object (404).
"""

from __future__ import annotations

from typing import Any, Literal

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from apps.experiments import selectors, services
from apps.experiments.models import Experiment, Run
from metaweb.htmx import HtmxHttpRequest

Kind = Literal["run", "experiment"]
Annotated = Run | Experiment

TAGS_PANEL = "experiments/includes/tags_panel.html"
NOTE_PANEL = "experiments/includes/note_panel.html"


def annotations_context(*, target: Annotated, kind: Kind, can_write: bool) -> dict[str, Any]:
    """What the tags and note panels show, for the detail pages and the endpoints."""
    tags = [
        (tag, reverse(f"experiments:{kind}-tag-remove", kwargs={"pk": target.pk, "tag_id": tag.pk}))
        for tag in target.tags.order_by("name")
    ]
    return {
        "target": target,
        "target_kind": kind,
        "tags": tags,
        "team_tags": selectors.tag_names_for_team(team=target.team_id) if can_write else [],
        "can_write": can_write,
        "tag_add_url": reverse(f"experiments:{kind}-tag-add", kwargs={"pk": target.pk}),
        "note_url": reverse(f"experiments:{kind}-note", kwargs={"pk": target.pk}),
        "note_version": services.note_version(target),
    }


def _target(request: HtmxHttpRequest, kind: Kind, pk: int) -> Annotated:
    if kind == "run":
        return selectors.run_get_visible(user=request.user, run_id=pk)
    return selectors.experiment_get_visible(user=request.user, experiment_id=pk)


def _answer(
    request: HtmxHttpRequest, target: Annotated, kind: Kind, template: str, **extra: Any
) -> HttpResponse:
    """The panel for htmx; otherwise back to the page, an error as a message."""
    if not request.htmx:
        error = extra.get("tag_error") or extra.get("note_error")
        if error:
            field = "Tag" if "tag_error" in extra else "Note"
            messages.error(request, f"{field}: {error}")
        return redirect(f"experiments:{kind}-detail", target.pk)
    context = annotations_context(target=target, kind=kind, can_write=True)
    context.update(team=target.team, **extra)
    return render(request, template, context)


def _message(error: ValidationError, field: str) -> str:
    return " ".join(error.message_dict.get(field, error.messages))


@require_POST
def tag_add(request: HtmxHttpRequest, kind: Kind, pk: int) -> HttpResponse:
    target = _target(request, kind, pk)
    name = request.POST.get("name", "")
    try:
        services.tag_add(target=target, actor=request.user, name=name)
    except ValidationError as error:
        return _answer(request, target, kind, TAGS_PANEL, tag_error=_message(error, "name"), tag_value=name)
    return _answer(request, target, kind, TAGS_PANEL)


@require_POST
def tag_remove(request: HtmxHttpRequest, kind: Kind, pk: int, tag_id: int) -> HttpResponse:
    target = _target(request, kind, pk)
    services.tag_remove(target=target, actor=request.user, tag_id=tag_id)
    return _answer(request, target, kind, TAGS_PANEL)


@require_POST
def note_update(request: HtmxHttpRequest, kind: Kind, pk: int) -> HttpResponse:
    target = _target(request, kind, pk)
    text = request.POST.get("note", "")
    base = request.POST.get("base_version")  # absent from an old form: last write wins
    try:
        services.note_update(target=target, actor=request.user, text=text, base_version=base)
    except ValidationError as error:
        target = _target(request, kind, pk)  # a newer note, if one was saved meanwhile
        return _answer(request, target, kind, NOTE_PANEL, note_error=_message(error, "note"), note_value=text)
    return _answer(request, target, kind, NOTE_PANEL)
