"""Responses that download a model's files: its safetensors weights and its JSON
model card, for meta-models (``apps.registry.views``) and adapted models
(``apps.adaptations.views``) alike, and a run's newest checkpoint (its page and the API)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.http import FileResponse, Http404, JsonResponse

from apps.experiments.models import Run
from apps.experiments.selectors import run_checkpoint_file


def weights_response(path: Path | None, filename: str, *, missing: str) -> FileResponse:
    """The weights file as an attachment named ``filename``; Http404 with ``missing``
    when there is no file."""
    if path is None:
        raise Http404(missing)
    return FileResponse(
        path.open("rb"), as_attachment=True, filename=filename, content_type="application/octet-stream"
    )


def checkpoint_response(run: Run) -> FileResponse:
    """The run's newest complete checkpoint's weights; Http404 before the first."""
    path = run_checkpoint_file(run)
    filename = f"run-{run.pk}-{path.parent.name}.safetensors" if path else ""
    return weights_response(path, filename, missing="This run has no checkpoint yet.")


def card_response(card: dict[str, Any], filename: str) -> JsonResponse:
    response = JsonResponse(card, json_dumps_params={"indent": 2})
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
