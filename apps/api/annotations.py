"""Tags and notes of runs from scripts, with the pages' rules
(``apps/experiments/services/annotations.py``): ``POST .../runs/{id}/tags`` puts
tags on a run (all or none), ``DELETE .../runs/{id}/tags/{tag}`` takes one off, and
``PUT .../runs/{id}/note`` replaces its Markdown note, refused when someone saved
the note after the ``note_version`` sent back."""

from __future__ import annotations

from typing import Annotated

from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest
from ninja import Router, Schema
from pydantic import Field

from apps.api.auth import caller
from apps.api.runs import WRITE_ERRORS, run_in_team, run_out
from apps.api.schemas import RunOut
from apps.experiments.models import NOTE_MAX_LENGTH, TAG_NAME_MAX_LENGTH, Tag
from apps.experiments.services.annotations import MAX_TAGS_PER_OBJECT, note_update, tag_add, tag_remove
from apps.teams.models import Role

router = Router(tags=["runs"])


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


@router.post("/teams/{team}/runs/{run_id}/tags", response={200: RunOut, **WRITE_ERRORS})
def run_tags_add(request: HttpRequest, team: str, run_id: int, payload: TagsIn) -> RunOut:
    """Put the team's tags of these names on the run (making those the team lacks);
    a tag it carries already changes nothing. A bad name refuses them all."""
    run = run_in_team(request, team, run_id, need=Role.MEMBER)
    with transaction.atomic():
        for index, name in enumerate(payload.tags):
            try:
                tag_add(target=run, actor=caller(request).user, name=name)
            except ValidationError as error:
                raise ValidationError({f"tags.{index}": error.messages}) from None
    return run_out(run)


@router.delete("/teams/{team}/runs/{run_id}/tags/{tag}", response={200: RunOut, **WRITE_ERRORS})
def run_tag_remove(request: HttpRequest, team: str, run_id: int, tag: str) -> RunOut:
    """Take the tag off the run (nothing happens if it does not carry it); the team
    keeps the tag's name for suggestions."""
    run = run_in_team(request, team, run_id, need=Role.MEMBER)
    found = Tag.objects.filter(team_id=run.team_id, name=tag.strip().lower()[:TAG_NAME_MAX_LENGTH]).first()
    if found is not None:
        tag_remove(target=run, actor=caller(request).user, tag_id=found.pk)
    return run_out(run)


@router.put("/teams/{team}/runs/{run_id}/note", response={200: RunOut, **WRITE_ERRORS})
def run_note_put(request: HttpRequest, team: str, run_id: int, payload: NoteIn) -> RunOut:
    """Replace the run's Markdown note (rendered on its page through the sanitiser)."""
    run = run_in_team(request, team, run_id, need=Role.MEMBER)
    note_update(target=run, actor=caller(request).user, text=payload.note, base_version=payload.note_version)
    return run_out(run)
