"""``/teams/{team}/model-refs?ref=...``: a meta-model named the way people name it:
``name@alias`` (``glyphs-maml@production``), ``name:version`` (``glyphs-maml:3``)
``name`` (its newest version) or its id. The command line's ``models pull`` and ``adapt``
take such a reference."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest
from ninja import Query, Router, Schema
from pydantic import Field

from apps.api.auth import team_for
from apps.api.registry import MetaModelOut, model_out
from apps.api.schemas import MessageOut, ValidationErrorOut
from apps.registry.models import MetaModel, ModelAlias

router = Router(tags=["meta-models"])

REF = re.compile(
    r"^(?P<id>[0-9]{1,18})$|^(?P<name>[-a-zA-Z0-9_]+)(?:@(?P<alias>[-a-zA-Z0-9_]+)|:(?P<version>[0-9]{1,9}))?$"
)


class RefQuery(Schema):
    ref: str = Field(
        max_length=130, description="name@alias, name:version, name (its newest version) or an id"
    )


@router.get(
    "/teams/{team}/model-refs",
    response={200: MetaModelOut, 404: MessageOut, 422: ValidationErrorOut},
)
def model_ref_resolve(request: HttpRequest, team: str, params: Query[RefQuery]) -> MetaModelOut:
    the_team = team_for(request, team)
    match = REF.match(params.ref.strip())
    if match is None:
        raise ValidationError({"ref": "Name a model as name@alias, name:version, name or its id."})
    if match["id"]:
        found = MetaModel.objects.filter(team=the_team, pk=int(match["id"])).first()
        if found is None:
            raise Http404(f"No meta-model {params.ref.strip()} in this team.")
        return model_out(found)
    name, alias, version = match["name"], match["alias"], match["version"]
    if alias:
        pointer = (
            ModelAlias.objects.filter(team=the_team, model_name=name, alias=alias)
            .select_related("meta_model")
            .first()
        )
        found = pointer.meta_model if pointer is not None else None
    else:
        rows = MetaModel.objects.filter(team=the_team, name=name)
        found = rows.filter(version=int(version)).first() if version else rows.order_by("-version").first()
    if found is None:
        raise Http404(f"No meta-model {params.ref.strip()} in this team.")
    return model_out(found)
