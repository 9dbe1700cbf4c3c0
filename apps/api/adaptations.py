"""Adaptations: launch one from a meta-model (a test task, the 600-task batch, a
typed task given as support and query sets, or support and query CSV files read
by the adaptation form itself), and get its result. Kept apart
from the run endpoints: the registry app is being split; imports go through the
package level only."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest
from ninja import File, Form, Router, Schema, Status
from ninja.files import UploadedFile
from pydantic import Field

from apps.adaptations.forms import AdaptForm
from apps.adaptations.models import Adaptation, AdaptationTarget
from apps.adaptations.selectors import adaptation_get_visible, adapted_model_for, meta_model_facts
from apps.adaptations.services import DEFAULT_ADAPT_STEPS, adaptation_start
from apps.adaptations.uploads import MAX_CSV_BYTES
from apps.api.auth import caller, team_for
from apps.api.registry import model_in_team
from apps.api.runs import WRITE_ERRORS
from apps.api.schemas import MessageOut
from apps.api.uploads import form_invalid, refuse_oversized, upload_limit
from apps.teams.models import Role

router = Router(tags=["adaptations"])


class AdaptationIn(Schema):
    target: str = Field(max_length=12, description="test_task, custom (support/query given) or batch")
    task_index: int | None = Field(
        None, ge=0, le=100_000, description="test_task: 0..599 of the meta-test split"
    )
    support: dict[str, Any] | None = Field(None, description='custom: {"x": [[inputs], ...], "y": [...]}')
    query: dict[str, Any] | None = None
    desc: list[float] | None = Field(None, max_length=4096)
    steps: int = Field(DEFAULT_ADAPT_STEPS, ge=0, le=100_000)
    lr: float = Field(0.01, gt=0, le=1e6)
    queue: str = Field("cpu", max_length=10)
    shots: int | None = Field(None, ge=1, le=100_000)


class AdaptedOut(Schema):
    metric: str
    before: float | None
    after: float | None
    ci95: float | None
    n_tasks: int
    n_steps: int


class AdaptationOut(Schema):
    run_id: int
    meta_model_id: int
    status: str
    error: str
    target: str
    task_index: int | None
    steps: int
    lr: float
    shots: int | None
    result: AdaptedOut | None = Field(description="null until the run succeeded")


def _out(adaptation: Adaptation) -> AdaptationOut:
    adapted = adapted_model_for(adaptation)
    result = None
    if adapted is not None:
        result = AdaptedOut(
            metric=adapted.metric,
            before=adapted.before,
            after=adapted.after,
            ci95=adapted.ci95,
            n_tasks=adapted.n_tasks,
            n_steps=adapted.n_steps,
        )
    run = adaptation.run
    return AdaptationOut(
        run_id=run.pk,
        meta_model_id=adaptation.meta_model_id,
        status=run.status,
        error=run.error,
        target=adaptation.target,
        task_index=adaptation.task_index,
        steps=adaptation.steps,
        lr=adaptation.lr,
        shots=adaptation.shots,
        result=result,
    )


@router.post("/teams/{team}/models/{model_id}/adaptations", response={201: AdaptationOut, **WRITE_ERRORS})
def adaptation_launch(request: HttpRequest, team: str, model_id: int, payload: AdaptationIn) -> Status:
    """Queue an adaptation run (the launch form's validation and words)."""
    meta_model = model_in_team(request, team, model_id, need=Role.MEMBER)
    run = adaptation_start(
        actor=caller(request).user,
        meta_model=meta_model,
        target=payload.target,
        task_index=payload.task_index,
        support=payload.support,
        query=payload.query,
        desc=payload.desc,
        steps=payload.steps,
        lr=payload.lr,
        queue=payload.queue,
        shots=payload.shots,
    )
    return Status(201, _out(run.adaptation))


class AdaptationCsvForm(Schema):
    steps: int = Field(DEFAULT_ADAPT_STEPS, description="Inner steps.")
    lr: float | None = Field(None, description="Inner learning rate; empty: the model's meta-training one.")
    queue: str = Field("cpu", max_length=10)
    desc: str = Field("", max_length=1000, description="Task description values, comma-separated.")


@router.post("/teams/{team}/models/{model_id}/adaptations/csv", response={201: AdaptationOut, **WRITE_ERRORS})
@upload_limit(MAX_CSV_BYTES)
def adaptation_launch_csv(
    request: HttpRequest,
    team: str,
    model_id: int,
    form: Form[AdaptationCsvForm],
    support_file: File[UploadedFile],
    query_file: File[UploadedFile] = None,
) -> Status:
    """Adapt to a task given as CSV files (multipart): the model's inputs then the
    target per row, read and checked by the adaptation form's reader and rules."""
    meta_model = model_in_team(request, team, model_id, need=Role.MEMBER)
    refuse_oversized(request)
    facts = meta_model_facts(meta_model)
    if facts is not None and facts.image_shape is not None:
        raise ValidationError({"support_file": "This model takes images, not CSV rows; use the web form."})
    data = {
        "target": AdaptationTarget.CUSTOM,
        "steps": form.steps,
        "lr": form.lr if form.lr is not None else (facts.inner_lr if facts else None),
        "queue": form.queue,
        "desc": form.desc,
    }
    adapt = AdaptForm(data, {"support_file": support_file, "query_file": query_file}, facts=facts)
    if not adapt.is_valid():
        raise form_invalid(adapt)
    try:
        run = adaptation_start(actor=caller(request).user, meta_model=meta_model, **adapt.start_kwargs())
    except ValidationError as error:
        adapt.add_service_errors(error)
        raise form_invalid(adapt) from None
    return Status(201, _out(run.adaptation))


@router.get("/teams/{team}/adaptations/{run_id}", response={200: AdaptationOut, 404: MessageOut})
def adaptation_get(request: HttpRequest, team: str, run_id: int) -> AdaptationOut:
    the_team = team_for(request, team)
    adaptation = adaptation_get_visible(user=caller(request).user, run_id=run_id)
    if adaptation.run.team_id != the_team.pk:
        raise Http404("No such adaptation.")
    return _out(adaptation)
