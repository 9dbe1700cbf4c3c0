"""Responses that download a model's files: its safetensors weights and its JSON
model card, for meta-models (``apps.registry.views``) and adapted models
(``apps.adaptations.views``) alike, a run's newest checkpoint and the files it keeps
(its page and the API).

Weights stream straight from the run-file store (:func:`apps.runfiles.store.open_stream`)
in the kind of iterator the request's server streams (:func:`metaweb.streaming.streamed`):
the web process holds no copy, wherever the worker that wrote them ran. Callers
check the permissions first, as for any page.
"""

from __future__ import annotations

from typing import Any

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.utils.http import content_disposition_header

from apps.experiments.models import Run, RunFile
from apps.experiments.selectors import run_checkpoint_key
from apps.runfiles import keys
from apps.runfiles.store import StoreUnavailable, open_stream
from metaweb.streaming import streamed


def unavailable_response(exc: StoreUnavailable) -> HttpResponse:
    """503 with the store's message (it names the store, never a stack trace)."""
    return HttpResponse(f"{exc} Try again later.", status=503, content_type="text/plain; charset=utf-8")


def weights_response(request: HttpRequest, key: str | None, filename: str, *, missing: str) -> HttpResponse:
    """The stored weights ``key`` as an attachment named ``filename``; Http404 with
    ``missing`` when there is no such file, 503 when the store cannot be reached."""
    if key is None:
        raise Http404(missing)
    try:
        opened = open_stream(key)
    except StoreUnavailable as exc:
        return unavailable_response(exc)
    if opened is None:
        raise Http404(missing)
    chunks, size = opened
    response = StreamingHttpResponse(streamed(request, chunks), content_type="application/octet-stream")
    response["Content-Length"] = str(size)
    response["Content-Disposition"] = content_disposition_header(True, filename)
    return response


def checkpoint_response(request: HttpRequest, run: Run) -> HttpResponse:
    """The run's newest complete checkpoint's weights; Http404 before the first."""
    try:
        key = run_checkpoint_key(run)
    except StoreUnavailable as exc:
        return unavailable_response(exc)
    step_folder = key.rsplit("/", 2)[-2] if key else ""
    filename = f"run-{run.pk}-{step_folder}.safetensors" if key else ""
    return weights_response(request, key, filename, missing="This run has no checkpoint yet.")


def run_file_response(request: HttpRequest, kept: RunFile) -> HttpResponse:
    """A file the run keeps, as an attachment under its name (encoded by Django's
    ``content_disposition_header``; served as bytes, never rendered)."""
    key = keys.run_file(kept.run_id, kept.pk)
    return weights_response(request, key, kept.name, missing="This file is missing from the store.")


def card_response(card: dict[str, Any], filename: str) -> JsonResponse:
    response = JsonResponse(card, json_dumps_params={"indent": 2})
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
