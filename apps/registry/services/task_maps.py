"""Asking for a meta-model's task embedding map: computed once by a worker
(``workers.tasks.task_map``), dispatched after the commit."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction

from apps.experiments.models import Queue
from apps.registry.explorer import task_map_for, task_map_reason
from apps.registry.models import MetaModel
from apps.teams.models import Role
from apps.teams.services import ensure_role
from apps.teams.types import AnyUser
from metaweb.celery import app as celery_app

__all__ = ["TASK_MAP_TASK", "metamodel_task_map_request"]

#: The Celery task that computes a map, dispatched by name.
TASK_MAP_TASK = "workers.tasks.task_map"


@transaction.atomic
def metamodel_task_map_request(*, meta_model: MetaModel, actor: AnyUser) -> bool:
    """Queue the map's computation on the CPU queue. Members only. Returns False
    when it is stored already (nothing queued); raises ValidationError
    (``task_map``) for a model that does not embed tasks."""
    ensure_role(user=actor, team=meta_model.team_id, required=Role.MEMBER)
    why = task_map_reason(meta_model)
    if why:
        raise ValidationError({"task_map": why})
    if task_map_for(meta_model) is not None:
        return False
    meta_model_id = meta_model.pk
    transaction.on_commit(lambda: celery_app.send_task(TASK_MAP_TASK, args=[meta_model_id], queue=Queue.CPU))
    return True
