"""What team members write about runs and experiments: tags and Markdown notes.

Members and admins may write; viewers get PermissionDenied, other teams Http404
(``ensure_role``). A tag belongs to the team: adding ``baseline`` to a run reuses
the team's tag of that name or creates it. Removing a tag from the last object
that carries it keeps it in the team's vocabulary (the add form suggests it).
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from apps.experiments.models import NOTE_MAX_LENGTH, Experiment, Run, Tag, tag_name_clean
from apps.teams.models import Role
from apps.teams.services import ensure_role
from apps.teams.types import AnyUser

__all__ = ["MAX_TAGS_PER_OBJECT", "note_update", "note_version", "tag_add", "tag_remove"]

Annotated = Run | Experiment

#: The most tags one run or experiment carries.
MAX_TAGS_PER_OBJECT = 20


@transaction.atomic
def tag_add(*, target: Annotated, actor: AnyUser, name: str) -> Tag:
    """Put the team's tag ``name`` on ``target`` (creating the tag if the team has
    none of that name). Adding a tag it already carries changes nothing.
    Raises ValidationError on ``name`` for a bad name or too many tags."""
    ensure_role(user=actor, team=target.team_id, required=Role.MEMBER)
    try:
        name = tag_name_clean(name)
    except ValidationError as error:
        raise ValidationError({"name": error.messages}) from error
    if target.tags.filter(name=name).exists():
        return target.tags.get(name=name)
    if target.tags.count() >= MAX_TAGS_PER_OBJECT:
        raise ValidationError(
            {"name": f"A {_noun(target)} carries at most {MAX_TAGS_PER_OBJECT} tags; remove one first."}
        )
    tag, _ = Tag.objects.get_or_create(team_id=target.team_id, name=name)
    target.tags.add(tag)
    return tag


@transaction.atomic
def tag_remove(*, target: Annotated, actor: AnyUser, tag_id: int) -> None:
    """Take the tag off ``target``; nothing happens if it does not carry it."""
    ensure_role(user=actor, team=target.team_id, required=Role.MEMBER)
    target.tags.remove(*Tag.objects.filter(team_id=target.team_id, pk=tag_id))


def note_version(target: Annotated) -> str:
    """A token for the note as it is now: the edit form sends it back, so that
    ``note_update`` can tell that someone saved in between. '' for no edit yet."""
    moment = target.note_updated_at
    return "" if moment is None else f"{moment.timestamp():.6f}"


@transaction.atomic
def note_update(
    *, target: Annotated, actor: AnyUser, text: str, base_version: str | None = None
) -> Annotated:
    """Replace the Markdown note of ``target`` (empty clears it), recording who and
    when. With ``base_version`` (``note_version`` when the editor opened), refuse
    to overwrite a note someone else saved since. Raises ValidationError on
    ``note`` for that, or when the text is too long."""
    ensure_role(user=actor, team=target.team_id, required=Role.MEMBER)
    text = text.replace("\r\n", "\n").rstrip()
    if len(text) > NOTE_MAX_LENGTH:
        raise ValidationError(
            {"note": f"A note is at most {NOTE_MAX_LENGTH:,} characters; this one has {len(text):,}."}
        )
    current = type(target).objects.select_for_update().get(pk=target.pk)
    if base_version is not None and base_version != note_version(current):
        raise ValidationError({"note": _changed_meanwhile(current)})
    target.note = text
    target.note_updated_by = actor
    target.note_updated_at = timezone.now()
    target.save(update_fields=["note", "note_updated_by", "note_updated_at"])
    return target


def _changed_meanwhile(current: Annotated) -> str:
    who = current.note_updated_by.get_username() if current.note_updated_by else "someone"
    moment = current.note_updated_at
    when = f" at {timezone.localtime(moment):%Y-%m-%d %H:%M:%S}" if moment else ""
    return (
        f"{who} saved this note{when}, after you opened it: theirs is shown above, "
        "your text is kept here. Merge them and save again."
    )


def _noun(target: Annotated) -> str:
    return "run" if isinstance(target, Run) else "experiment"
