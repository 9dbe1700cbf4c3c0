"""Per-team quotas: runs queued or running at once, and bytes stored.

The site sets the limits (``TEAM_MAX_ACTIVE_RUNS``, ``TEAM_MAX_STORED_BYTES``); a
team's admins may set lower ones (:func:`team_quota_set`). The services that add
work or files check first and refuse with a ValidationError on the form field
they name, which the launch, sweep and upload forms show on that field and the
API answers as a 422 with the same words:

* :func:`quota_check_runs` before runs are queued (a sweep checks all the runs it
  would queue at once, and is refused whole);
* :func:`quota_check_storage` before a run is queued or a file is stored.

Stored bytes are the sizes of the team's stored objects (run folders, registry
copies, adapted weights in the run-file store; task-set uploads in the default
storage; keys from ids only), summed through the store layer
(:func:`apps.runfiles.store.prefix_bytes`, local folder or object store), kept on
the team with the time of the measure, measured again when older than
``TEAM_STORAGE_MAX_AGE_SECONDS`` at a check, when a run ends (after its checkpoints
are trimmed), and on the team's page.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

from django.conf import DEFAULT_STORAGE_ALIAS, settings
from django.core.exceptions import ValidationError
from django.core.files.storage import storages
from django.db import transaction
from django.utils import timezone

from apps.runfiles import keys
from apps.runfiles.store import StoreUnavailable, prefix_bytes
from apps.teams.models import Role, Team
from apps.teams.services import ensure_role
from apps.teams.types import AnyUser
from metaweb.settings.storage import RUNFILES

logger = logging.getLogger(__name__)

__all__ = [
    "TeamQuota",
    "quota_check_runs",
    "quota_check_storage",
    "team_quota",
    "team_quota_set",
    "team_storage_refresh",
    "team_storage_refresh_on_commit",
]


@dataclass(frozen=True)
class TeamQuota:
    """A team's limits (its own, capped by the site's) and what it uses of them."""

    active_runs: int
    active_runs_used: int
    stored_bytes: int
    stored_bytes_used: int
    site_active_runs: int
    site_stored_bytes: int
    measured_at: object

    @property
    def stored_bytes_free(self) -> int:
        return max(0, self.stored_bytes - self.stored_bytes_used)


def _fmt(size: float) -> str:
    from apps.tasksets.uploads import format_bytes  # noqa: PLC0415 - tasksets depends on teams

    return format_bytes(size)


def _limits(team: Team) -> tuple[int, int]:
    runs, stored = settings.TEAM_MAX_ACTIVE_RUNS, settings.TEAM_MAX_STORED_BYTES
    if team.max_active_runs is not None:
        runs = min(runs, team.max_active_runs)
    if team.max_stored_bytes is not None:
        stored = min(stored, team.max_stored_bytes)
    return runs, stored


def _active_runs(team_id: int) -> int:
    from apps.experiments.models import Run, RunKind, RunStatus  # noqa: PLC0415 - experiments depends on teams

    return (
        Run.objects.filter(team_id=team_id, status__in=[RunStatus.QUEUED, RunStatus.RUNNING])
        .exclude(kind=RunKind.EXTERNAL)  # logged by the user's own loop: no worker, no queue
        .count()
    )


def _team_prefixes(team_id: int) -> Iterator[tuple[str, str]]:
    """``(storage alias, key)`` of every folder or file the team's objects own in the
    stores; keys come from ids only (:mod:`apps.runfiles.keys`)."""
    # noqa: PLC0415 below - these apps depend on teams
    from apps.adaptations.models import AdaptedModel  # noqa: PLC0415
    from apps.experiments.models import Run  # noqa: PLC0415
    from apps.registry.models import MetaModel  # noqa: PLC0415
    from apps.tasksets.models import TaskSetVersion  # noqa: PLC0415

    # Lists, not ``.iterator()``: the caller asks the store between items and may stop
    # at a refusal, and an abandoned server-side cursor's CLOSE fails inside a
    # transaction (aborting it). A team's ids are a few hundred KB at most.
    runs = list(Run.objects.filter(team_id=team_id).values_list("pk", flat=True))
    metas = list(MetaModel.objects.filter(team_id=team_id).values_list("pk", flat=True))
    adapted = list(AdaptedModel.objects.filter(team_id=team_id).values_list("pk", flat=True))
    versions = TaskSetVersion.objects.filter(taskset__team_id=team_id).exclude(data_file="")
    files = list(versions.values_list("data_file", flat=True))
    yield from ((RUNFILES, keys.run(run_id)) for run_id in runs)
    yield from ((RUNFILES, keys.meta_model(model_id)) for model_id in metas)
    yield from ((RUNFILES, keys.adapted_model(model_id)) for model_id in adapted)
    yield from ((DEFAULT_STORAGE_ALIAS, name) for name in files)


def team_storage_refresh(*, team_id: int) -> int:
    """Measure the team's stored bytes now, from the stores (the sizes of the stored
    objects: a walk of the folders locally, a listing of an object store), and keep
    the figure on the team. Raises StoreUnavailable when a store cannot be asked."""
    used = sum(prefix_bytes(key, storage=storages[alias]) for alias, key in _team_prefixes(team_id))
    Team.objects.filter(pk=team_id).update(stored_bytes=used, stored_bytes_at=timezone.now())
    return used


def team_storage_refresh_on_commit(team_id: int) -> None:
    """After the current transaction commits: :func:`team_storage_refresh`."""
    transaction.on_commit(partial(team_storage_refresh, team_id=team_id), robust=True)


def _stored_bytes(team: Team, *, fresh: bool = False) -> int:
    max_age = timedelta(seconds=settings.TEAM_STORAGE_MAX_AGE_SECONDS)
    if fresh or team.stored_bytes_at is None or timezone.now() - team.stored_bytes_at > max_age:
        try:
            return team_storage_refresh(team_id=team.pk)
        except StoreUnavailable as exc:  # the last measure stands until the store answers
            logger.warning("team %s: stored bytes not measured: %s", team.pk, exc)
    return team.stored_bytes


def team_quota(*, team: Team, fresh: bool = False) -> TeamQuota:
    """The team's limits and usage (stored bytes measured again when stale, or ``fresh``)."""
    runs, stored = _limits(team)
    used = _stored_bytes(team, fresh=fresh)
    team.refresh_from_db(fields=["stored_bytes_at"])
    return TeamQuota(
        active_runs=runs,
        active_runs_used=_active_runs(team.pk),
        stored_bytes=stored,
        stored_bytes_used=used,
        site_active_runs=settings.TEAM_MAX_ACTIVE_RUNS,
        site_stored_bytes=settings.TEAM_MAX_STORED_BYTES,
        measured_at=team.stored_bytes_at,
    )


def quota_check_runs(*, team_id: int, adding: int = 1, field: str = "queue") -> None:
    """Refuse ``adding`` more runs when the team's queued and running runs would pass
    its quota, or when it stores more than its quota. Locks the team's row until the
    transaction ends, so that two launches cannot both take the last place."""
    team = Team.objects.select_for_update().get(pk=team_id)
    limit, _ = _limits(team)
    active = _active_runs(team_id)
    if active + adding > limit:
        what = "this run" if adding == 1 else f"these {adding} runs"
        raise ValidationError(
            {
                field: f"Your team has {active} runs queued or running and a quota of {limit}; "
                f"{what} would pass it. Wait for runs to finish, or cancel some."
            }
        )
    quota_check_storage(team_id=team_id, adding=0, field=field, team=team)


def quota_check_storage(*, team_id: int, adding: int, field: str, team: Team | None = None) -> None:
    """Refuse a write of ``adding`` bytes (0: a run, whose checkpoints come later)
    when the team's stored bytes would pass its quota."""
    team = team or Team.objects.get(pk=team_id)
    _, limit = _limits(team)
    used = _stored_bytes(team)
    if used + adding > limit or (adding == 0 and used >= limit):
        adds = f" and this adds {_fmt(adding)}" if adding else ""
        raise ValidationError(
            {
                field: f"Your team stores {_fmt(used)} of its {_fmt(limit)} storage quota{adds}. "
                "Delete runs, models or task sets, or ask an admin to raise the quota."
            }
        )


@transaction.atomic
def team_quota_set(
    *, team: Team, actor: AnyUser, max_active_runs: int | None, max_stored_bytes: int | None
) -> Team:
    """Set the team's own quotas (None: the site's limit). Admins only; each must lie
    between 1 and the site's limit."""
    ensure_role(user=actor, team=team, required=Role.ADMIN)
    errors = {}
    site_runs, site_bytes = settings.TEAM_MAX_ACTIVE_RUNS, settings.TEAM_MAX_STORED_BYTES
    if max_active_runs is not None and not 1 <= max_active_runs <= site_runs:
        errors["max_active_runs"] = f"Choose between 1 and {site_runs}, the site's limit."
    if max_stored_bytes is not None and not 1 <= max_stored_bytes <= site_bytes:
        errors["max_stored_bytes"] = f"Choose at most {_fmt(site_bytes)}, the site's limit."
    if errors:
        raise ValidationError(errors)
    locked = Team.objects.select_for_update().get(pk=team.pk)
    locked.max_active_runs = max_active_runs
    locked.max_stored_bytes = max_stored_bytes
    locked.save(update_fields=["max_active_runs", "max_stored_bytes"])
    return locked
