"""Responses that download a model's files: its safetensors weights and its JSON
model card, for meta-models (``apps.registry.views``) and adapted models
(``apps.adaptations.views``) alike."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.http import FileResponse, Http404, JsonResponse


def weights_response(path: Path | None, filename: str, *, missing: str) -> FileResponse:
    """The weights file as an attachment named ``filename``; Http404 with ``missing``
    when there is no file."""
    if path is None:
        raise Http404(missing)
    return FileResponse(
        path.open("rb"), as_attachment=True, filename=filename, content_type="application/octet-stream"
    )


def card_response(card: dict[str, Any], filename: str) -> JsonResponse:
    response = JsonResponse(card, json_dumps_params={"indent": 2})
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
