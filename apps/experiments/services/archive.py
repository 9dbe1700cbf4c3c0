"""Archiving runs: members tidy the team's history by archiving ended runs, and
restore them.

An archived run leaves the team's lists and searches (the run list, the API's run
list, an experiment's page, the compare page's search) unless they ask for
archived runs. Nothing else changes: it keeps its metrics, checkpoints, history
and meta-model, and its own page and the compare page still open it by number. A
run still queued or running cannot be archived: cancel it first. Each change is a
run event naming who made it, and the team's open lists hear of it (``runs.archived``).
"""

from __future__ import annotations

from collections.abc import Sequence

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from apps.experiments.events import RunsArchivedEvent, publish_on_commit, team_group
from apps.experiments.models import Run, RunEvent
from apps.teams.models import Role, Team
from apps.teams.services import ensure_role
from apps.teams.types import AnyUser

__all__ = ["MAX_ARCHIVE_RUNS", "runs_archive", "runs_restore"]

#: The most runs one request archives or restores.
MAX_ARCHIVE_RUNS = 200


def runs_archive(*, team: Team, run_ids: Sequence[int], actor: AnyUser) -> list[Run]:
    """Archive the team's runs ``run_ids``, all or none (see :func:`_runs_set`)."""
    return _runs_set(team=team, run_ids=run_ids, actor=actor, archived=True)


def runs_restore(*, team: Team, run_ids: Sequence[int], actor: AnyUser) -> list[Run]:
    """Bring the team's archived runs ``run_ids`` back to its lists, all or none."""
    return _runs_set(team=team, run_ids=run_ids, actor=actor, archived=False)


@transaction.atomic
def _runs_set(*, team: Team, run_ids: Sequence[int], actor: AnyUser, archived: bool) -> list[Run]:
    """Members and admins only. ValidationError on ``ids`` when none is given, more
    than ``MAX_ARCHIVE_RUNS``, one that is not the team's run, or (archiving) a run
    that has not ended. Runs already archived (or restored) are left as they are,
    without a second event, so a repeated request changes nothing. Returns the runs
    by number."""
    ensure_role(user=actor, team=team, required=Role.MEMBER)
    ids = list(dict.fromkeys(run_ids))
    verb = "archive" if archived else "restore"
    if not ids:
        raise ValidationError({"ids": f"Tick the runs to {verb}."})
    if len(ids) > MAX_ARCHIVE_RUNS:
        raise ValidationError({"ids": f"At most {MAX_ARCHIVE_RUNS} runs at a time; {len(ids)} were given."})
    locked = Run.objects.select_for_update(of=("self",)).select_related("taskset_version")
    runs = list(locked.filter(team=team, pk__in=ids).order_by("pk"))
    missing = sorted(set(ids) - {run.pk for run in runs})
    if missing:
        raise ValidationError({"ids": f"Not runs of this team: {_numbers(missing)}."})
    going = [run for run in runs if not run.is_finished]
    if archived and going:
        states = ", ".join(f"#{run.pk} is {run.get_status_display().lower()}" for run in going[:5])
        them = "it" if len(going) == 1 else "them"
        message = f"Only ended runs can be archived: {states}. Cancel or untick {them} first."
        raise ValidationError({"ids": message})
    changed = [run for run in runs if (run.archived_at is not None) != archived]
    now, who = timezone.now(), actor.get_username()
    for run in changed:
        run.archived_at = now if archived else None
    Run.objects.bulk_update(changed, ["archived_at"])
    RunEvent.objects.bulk_create(
        RunEvent(
            run=run,
            kind="archived" if archived else "restored",
            message=f"{'Archived' if archived else 'Restored'} by {who}.",
            attempt=run.attempt,
        )
        for run in changed
    )
    if changed:
        event = RunsArchivedEvent(run_ids=[run.pk for run in changed], archived=archived)
        publish_on_commit([team_group(team.pk)], event)
    return runs


def _numbers(ids: Sequence[int], limit: int = 10) -> str:
    shown = ", ".join(f"#{pk}" for pk in ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")
