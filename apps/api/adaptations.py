"""Adaptations: launch one from a meta-model (a test task, the 600-task batch, or
a typed task given as support and query sets), and get its result. Kept apart
from the run endpoints: the registry app is being split; imports go through the
package level only."""

from __future__ import annotations

from typing import Any

from django.http import Http404, HttpRequest
from ninja import Router, Schema, Status
from pydantic import Field

from apps.adaptations.models import Adaptation
from apps.adaptations.selectors import adaptation_get_visible, adapted_model_for
from apps.adaptations.services import DEFAULT_ADAPT_STEPS, adaptation_start
from apps.api.auth import caller, team_for
from apps.api.registry import model_in_team
from apps.api.runs import WRITE_ERRORS
from apps.api.schemas import MessageOut
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


@router.get("/teams/{team}/adaptations/{run_id}", response={200: AdaptationOut, 404: MessageOut})
def adaptation_get(request: HttpRequest, team: str, run_id: int) -> AdaptationOut:
    the_team = team_for(request, team)
    adaptation = adaptation_get_visible(user=caller(request).user, run_id=run_id)
    if adaptation.run.team_id != the_team.pk:
        raise Http404("No such adaptation.")
    return _out(adaptation)
