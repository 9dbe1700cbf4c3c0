"""``/teams/{team}/models``: meta-models: list, get with lineage (the model card and
its adaptations), alias moves (the approve rule of ``alias_move``), downloads of
the safetensors and the card, and uploads (``metamodel_upload``, the registry
upload form's service: the safetensors header checked against the config's shapes).
Kept apart from the run endpoints: the registry app is being split, and its imports
go through the package level only."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.http import FileResponse, Http404, HttpRequest
from ninja import File, Form, Query, Router, Schema, Status
from ninja.files import UploadedFile
from pydantic import Field

from apps.api.auth import caller, team_for
from apps.api.paging import IdPageQuery, id_page
from apps.api.runs import WRITE_ERRORS, launch_targets
from apps.api.schemas import MessageOut, ValidationErrorOut
from apps.api.uploads import json_text_field, refuse_oversized, upload_limit
from apps.registry.downloads import weights_response
from apps.registry.models import MetaModel
from apps.registry.selectors import (
    metamodel_card,
    metamodel_get_visible,
    metamodel_lineage,
    metamodel_weights_key,
)
from apps.registry.services import alias_move, metamodel_upload
from apps.registry.services import uploads as registry_uploads
from apps.tasksets.models import TaskSetVersion
from apps.teams.models import Role

router = Router(tags=["meta-models"])


class MetaModelOut(Schema):
    id: int
    name: str
    version: int
    source: str
    algorithm: str
    experiment_id: int
    training_run_id: int | None
    weights_sha256: str
    created_at: datetime


class MetaModelPageOut(Schema):
    next_before: int | None = Field(description="Pass as ``before`` for the next page; null on the last.")
    results: list[MetaModelOut]


class LineageAdaptationOut(Schema):
    id: int
    run_id: int
    status: str


class MetaModelDetailOut(Schema):
    card: dict[str, Any] = Field(description="The model card: lineage, metrics, aliases, reviews.")
    adaptations: list[LineageAdaptationOut]


class AliasIn(Schema):
    alias: str = Field(max_length=40)


class AliasOut(Schema):
    model_name: str
    alias: str
    meta_model_id: int


class MetaModelUploadForm(Schema):
    name: str = Field(max_length=200, description="Versions count per name, e.g. sine-maml.")
    experiment_id: int = Field(ge=1, le=2**62)
    taskset_id: int = Field(ge=1, le=2**62)
    taskset_version: int | None = Field(
        None, ge=1, le=2**31, description="The task set's version number; empty: its latest."
    )
    config: str = Field(
        max_length=16 * 1024,
        description="The engine's TrainConfig as a JSON object (as for launching a run; "
        "the family comes from the task set).",
    )
    description: str = Field("", max_length=5000)


def model_in_team(request: HttpRequest, team: str, model_id: int, *, need: Role = Role.VIEWER) -> MetaModel:
    the_team = team_for(request, team, need=need)
    meta_model = metamodel_get_visible(user=caller(request).user, meta_model_id=model_id)
    if meta_model.team_id != the_team.pk:
        raise Http404("No such meta-model.")
    return meta_model


def model_out(m: MetaModel) -> MetaModelOut:
    return MetaModelOut(
        id=m.pk,
        name=m.name,
        version=m.version,
        source=m.source,
        algorithm=m.algorithm,
        experiment_id=m.experiment_id,
        training_run_id=m.training_run_id,
        weights_sha256=m.weights_sha256,
        created_at=m.created_at,
    )


@router.get("/teams/{team}/models", response={200: MetaModelPageOut, 422: ValidationErrorOut})
def model_list(request: HttpRequest, team: str, params: Query[IdPageQuery]) -> MetaModelPageOut:
    page, next_before = id_page(MetaModel.objects.filter(team=team_for(request, team)), params)
    return MetaModelPageOut(next_before=next_before, results=[model_out(m) for m in page])


def _upload_version(version: TaskSetVersion, number: int | None) -> TaskSetVersion:
    """The task set's version ``number`` (None: the latest, which ``version`` is)."""
    if number is None or number == version.number:
        return version
    chosen = TaskSetVersion.objects.filter(taskset_id=version.taskset_id, number=number).first()
    if chosen is None:
        raise ValidationError({"taskset_version": f"This task set has no version {number}."})
    return chosen


@router.post("/teams/{team}/models", response={201: MetaModelOut, **WRITE_ERRORS})
@upload_limit(lambda: registry_uploads.MAX_UPLOAD_BYTES)
def model_upload(
    request: HttpRequest, team: str, form: Form[MetaModelUploadForm], weights_file: File[UploadedFile]
) -> Status:
    """Register external meta-parameters (multipart): a ``.safetensors`` file of float32
    tensors named and shaped as the config's algorithm expects on the task set's family.
    Pickles and zips are refused; on any error nothing is stored."""
    the_team = team_for(request, team, need=Role.MEMBER)
    refuse_oversized(request)
    experiment, latest = launch_targets(
        the_team, experiment_id=form.experiment_id, taskset_id=form.taskset_id
    )
    meta_model = metamodel_upload(
        team=the_team,
        actor=caller(request).user,
        experiment=experiment,
        taskset_version=_upload_version(latest, form.taskset_version),
        name=form.name,
        config=json_text_field(form.config, field="config"),
        weights_file=weights_file,
        description=form.description,
    )
    return Status(201, model_out(meta_model))


@router.get("/teams/{team}/models/{model_id}", response={200: MetaModelDetailOut, 404: MessageOut})
def model_get(request: HttpRequest, team: str, model_id: int) -> MetaModelDetailOut:
    meta_model = model_in_team(request, team, model_id)
    adaptations = [
        LineageAdaptationOut(id=a.pk, run_id=a.run_id, status=a.run.status)
        for a in metamodel_lineage(meta_model)
    ]
    return MetaModelDetailOut(card=metamodel_card(meta_model), adaptations=adaptations)


@router.get("/teams/{team}/models/{model_id}/card", response={200: dict[str, Any], 404: MessageOut})
def model_card(request: HttpRequest, team: str, model_id: int) -> dict[str, Any]:
    return metamodel_card(model_in_team(request, team, model_id))


@router.get(
    "/teams/{team}/models/{model_id}/weights",
    response={200: bytes, 404: MessageOut},
    openapi_extra={"responses": {200: {"content": {"application/octet-stream": {}}}}},
)
def model_weights(request: HttpRequest, team: str, model_id: int) -> FileResponse:
    meta_model = model_in_team(request, team, model_id)
    return weights_response(
        request,
        metamodel_weights_key(meta_model),
        f"{meta_model.name}-v{meta_model.version}.safetensors",
        missing="This meta-model's weights are missing.",
    )


@router.post(
    "/teams/{team}/models/{model_id}/alias",
    response={200: AliasOut, 403: MessageOut, 404: MessageOut, 422: ValidationErrorOut},
)
def model_alias_move(request: HttpRequest, team: str, model_id: int, payload: AliasIn) -> AliasOut:
    """Point ``<name>@<alias>`` at this version; ``production`` needs an approve verdict."""
    meta_model = model_in_team(request, team, model_id, need=Role.MEMBER)
    pointer = alias_move(
        team=meta_model.team,
        actor=caller(request).user,
        model_name=meta_model.name,
        alias=payload.alias,
        meta_model=meta_model,
    )
    return AliasOut(model_name=pointer.model_name, alias=pointer.alias, meta_model_id=pointer.meta_model_id)
