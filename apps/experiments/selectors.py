"""Reads for experiments and runs. Permission filtering happens here, once."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet
from django.http import Http404

from apps.experiments.models import Run
from apps.teams.models import Role
from apps.teams.selectors import team_ids_for_user

AnyUser = AbstractBaseUser | AnonymousUser


def run_list_visible(*, user: AnyUser) -> QuerySet[Run]:
    """Runs of every team the user belongs to (any role)."""
    return Run.objects.filter(team_id__in=team_ids_for_user(user=user, min_role=Role.VIEWER))


def run_get_visible(*, user: AnyUser, run_id: int) -> Run:
    """The run if the user is in its team; Http404 otherwise (existence is not revealed)."""
    run = run_list_visible(user=user).select_related("team", "experiment", "taskset_version__taskset").filter(
        pk=run_id
    ).first()
    if run is None:
        raise Http404("No such run.")
    return run
