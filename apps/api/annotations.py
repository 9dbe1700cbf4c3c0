"""Tags and notes of runs and experiments from scripts, with the pages' rules
(``apps/experiments/services/annotations.py``): ``POST .../runs/{id}/tags`` puts
tags on a run (all or none), ``DELETE .../runs/{id}/tags/{tag}`` takes one off, and
``PUT .../runs/{id}/note`` replaces its Markdown note, refused when someone saved
the note after the ``note_version`` sent back; the same under ``.../experiments/{id}``."""

from __future__ import annotations

from typing import Annotated

from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest
from ninja import Router, Schema
from pydantic import Field

from apps.api.auth import caller
from apps.api.experiments import ExperimentOut, experiment_in_team, experiment_out
from apps.api.runs import WRITE_ERRORS, run_in_team, run_out
from apps.api.schemas import RunOut
from apps.experiments.models import NOTE_MAX_LENGTH, TAG_NAME_MAX_LENGTH, Experiment, Run, Tag
from apps.experiments.services.annotations import MAX_TAGS_PER_OBJECT, note_update, tag_add, tag_remove
from apps.teams.models import Role
from apps.teams.types import AnyUser

router = Router(tags=["tags and notes"])

Target = Run | Experiment


class TagsIn(Schema):
    tags: list[Annotated[str, Field(max_length=100)]] = Field(
        min_length=1,
        max_length=MAX_TAGS_PER_OBJECT,
        description=f"Names of at most {TAG_NAME_MAX_LENGTH} letters, digits, '_', '.' or '-' "
        "(kept lowercase).",
    )


class NoteIn(Schema):
    note: str = Field(max_length=2 * NOTE_MAX_LENGTH, description="Markdown; empty clears the note.")
    note_version: str | None = Field(
        None,
        max_length=40,
        description="The run's note_version when you read it: a note saved since then is not "
        "overwritten (422 on note). Null: overwrite whatever is there.",
    )


def _tags_add(target: Target, actor: AnyUser, names: list[str]) -> None:
    """All or none: a bad name (``tags.<i>``) refuses the others too."""
    with transaction.atomic():
        for index, name in enumerate(names):
            try:
                tag_add(target=target, actor=actor, name=name)
            except ValidationError as error:
                raise ValidationError({f"tags.{index}": error.messages}) from None


def _tag_remove(target: Target, actor: AnyUser, name: str) -> None:
    """Nothing happens if it does not carry the tag; the team keeps the name for suggestions."""
    found = Tag.objects.filter(
        team_id=target.team_id, name=name.strip().lower()[:TAG_NAME_MAX_LENGTH]
    ).first()
    if found is not None:
        tag_remove(target=target, actor=actor, tag_id=found.pk)


@router.post("/teams/{team}/runs/{run_id}/tags", response={200: RunOut, **WRITE_ERRORS})
def run_tags_add(request: HttpRequest, team: str, run_id: int, payload: TagsIn) -> RunOut:
    """Put the team's tags of these names on the run (making those the team lacks);
    a tag it carries already changes nothing. A bad name refuses them all."""
    run = run_in_team(request, team, run_id, need=Role.MEMBER)
    _tags_add(run, caller(request).user, payload.tags)
    return run_out(run)


@router.delete("/teams/{team}/runs/{run_id}/tags/{tag}", response={200: RunOut, **WRITE_ERRORS})
def run_tag_remove(request: HttpRequest, team: str, run_id: int, tag: str) -> RunOut:
    """Take the tag off the run (nothing happens if it does not carry it)."""
    run = run_in_team(request, team, run_id, need=Role.MEMBER)
    _tag_remove(run, caller(request).user, tag)
    return run_out(run)


@router.put("/teams/{team}/runs/{run_id}/note", response={200: RunOut, **WRITE_ERRORS})
def run_note_put(request: HttpRequest, team: str, run_id: int, payload: NoteIn) -> RunOut:
    """Replace the run's Markdown note (rendered on its page through the sanitiser)."""
    run = run_in_team(request, team, run_id, need=Role.MEMBER)
    note_update(target=run, actor=caller(request).user, text=payload.note, base_version=payload.note_version)
    return run_out(run)


@router.post("/teams/{team}/experiments/{experiment_id}/tags", response={200: ExperimentOut, **WRITE_ERRORS})
def experiment_tags_add(
    request: HttpRequest, team: str, experiment_id: int, payload: TagsIn
) -> ExperimentOut:
    """As for a run; ``tag:<name>`` in the run search finds the experiment's runs too."""
    experiment = experiment_in_team(request, team, experiment_id, need=Role.MEMBER)
    _tags_add(experiment, caller(request).user, payload.tags)
    return experiment_out(experiment)


@router.delete(
    "/teams/{team}/experiments/{experiment_id}/tags/{tag}", response={200: ExperimentOut, **WRITE_ERRORS}
)
def experiment_tag_remove(request: HttpRequest, team: str, experiment_id: int, tag: str) -> ExperimentOut:
    experiment = experiment_in_team(request, team, experiment_id, need=Role.MEMBER)
    _tag_remove(experiment, caller(request).user, tag)
    return experiment_out(experiment)


@router.put("/teams/{team}/experiments/{experiment_id}/note", response={200: ExperimentOut, **WRITE_ERRORS})
def experiment_note_put(
    request: HttpRequest, team: str, experiment_id: int, payload: NoteIn
) -> ExperimentOut:
    experiment = experiment_in_team(request, team, experiment_id, need=Role.MEMBER)
    user = caller(request).user
    note_update(target=experiment, actor=user, text=payload.note, base_version=payload.note_version)
    return experiment_out(experiment)
