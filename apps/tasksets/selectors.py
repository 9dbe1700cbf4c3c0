"""Reads about task sets. Permission filtering happens here, once: a task set is
visible to the members of its team (any role), and to nobody else (Http404)."""

from __future__ import annotations

from django.db.models import Count, Max, OuterRef, QuerySet, Subquery
from django.http import Http404

from apps.tasksets.models import TaskSet, TaskSetVersion
from apps.teams.models import Role, Team
from apps.teams.selectors import team_ids_for_user
from apps.teams.types import AnyUser


def taskset_list_for_team(*, team: Team, family: str | None = None) -> QuerySet[TaskSet]:
    """The team's task sets, each annotated with ``latest_number`` and ``version_count``.

    ``team`` comes from ``team_get_for_user``, which has checked membership.
    """
    tasksets = TaskSet.objects.filter(team=team)
    if family:
        tasksets = tasksets.filter(family=family)
    return (
        tasksets.select_related("created_by")
        .annotate(latest_number=Max("versions__number"), version_count=Count("versions"))
        .order_by("name")
    )


def taskset_list_visible(*, user: AnyUser) -> QuerySet[TaskSet]:
    """Task sets of every team the user belongs to."""
    return TaskSet.objects.filter(team_id__in=team_ids_for_user(user=user, min_role=Role.VIEWER))


def taskset_get_visible(*, user: AnyUser, taskset_id: int) -> TaskSet:
    """The task set if the user is in its team; Http404 otherwise (existence is not revealed)."""
    taskset = (
        taskset_list_visible(user=user).select_related("team", "created_by").filter(pk=taskset_id).first()
    )
    if taskset is None:
        raise Http404("No such task set.")
    return taskset


def taskset_version_get_visible(
    *,
    user: AnyUser,
    version_id: int | None = None,
    taskset_id: int | None = None,
    number: int | None = None,
) -> TaskSetVersion:
    """One version, by its id or by (task set id, number), if the user is in its
    team; Http404 otherwise."""
    versions = TaskSetVersion.objects.filter(
        taskset__team_id__in=team_ids_for_user(user=user, min_role=Role.VIEWER)
    ).select_related("taskset__team", "created_by")
    if version_id is not None:
        versions = versions.filter(pk=version_id)
    elif taskset_id is not None and number is not None:
        versions = versions.filter(taskset_id=taskset_id, number=number)
    else:
        raise TypeError("pass version_id, or taskset_id and number")
    version = versions.first()
    if version is None:
        raise Http404("No such task set version.")
    return version


def taskset_version_list(*, taskset: TaskSet) -> QuerySet[TaskSetVersion]:
    """The task set's versions, newest first, each with ``run_count``."""
    return (
        TaskSetVersion.objects.filter(taskset=taskset)
        .select_related("created_by")
        .annotate(run_count=Count("runs"))
        .order_by("-number")
    )


def taskset_version_latest(*, taskset: TaskSet) -> TaskSetVersion | None:
    """The task set's newest version (None only for a task set without versions)."""
    return TaskSetVersion.objects.filter(taskset=taskset).order_by("-number").first()


def taskset_version_latest_for_team(*, team: Team) -> QuerySet[TaskSetVersion]:
    """The newest version of each of the team's task sets (for launch forms), by task-set name."""
    newest = TaskSetVersion.objects.filter(taskset=OuterRef("taskset")).order_by("-number").values("pk")[:1]
    return (
        TaskSetVersion.objects.filter(taskset__team=team, pk=Subquery(newest))
        .select_related("taskset")
        .order_by("taskset__name")
    )
