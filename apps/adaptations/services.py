"""Launching adaptations and storing what they produce.

:func:`adaptation_start` validates everything first (the meta-model's checkpoint
against its task set, the target, a custom task's data, steps and learning rate),
then writes a run of kind ``adapt`` and its :class:`Adaptation` in one transaction
and sends ``workers.tasks.adapt_run`` by name after commit. On any error nothing is
written and nothing is queued.

:func:`adaptation_complete` is the worker's side: in one transaction it creates
(or, for a redelivered task, updates) the one :class:`AdaptedModel` of the
adaptation, writes its adapted weights atomically, and marks the run succeeded.

The checks themselves are in :mod:`apps.adaptations.checks`. Torch-free.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from apps.adaptations.checks import (
    DEFAULT_ADAPT_STEPS,
    MAX_ADAPT_LR,
    MAX_ADAPT_SHOTS,
    MAX_ADAPT_STEPS,
    MAX_SET_EXAMPLES,
    MAX_SET_VALUES,
    check_fits_taskset,
    check_split,
    check_steps_lr,
    clean_desc,
    clean_set,
    default_adapt_steps,
    model_facts,
    steps_warning,
)
from apps.adaptations.models import Adaptation, AdaptationTarget, AdaptedModel
from apps.adaptations.selectors import ADAPT_TEST_TASKS, ModelFacts
from apps.experiments.events import publish_run_status_on_commit
from apps.experiments.models import Queue, Run, RunEvent, RunKind, RunStatus
from apps.experiments.services import code_version, run_succeed
from apps.experiments.services.scheduling import TASK_BY_KIND, queue_dispatch_on_commit
from apps.registry import storage
from apps.registry.models import MetaModel
from apps.runfiles import keys
from apps.runfiles.folders import unpublish
from apps.runfiles.store import put_bytes
from apps.teams.models import Role
from apps.teams.quotas import quota_check_runs
from apps.teams.services import ensure_role
from apps.teams.types import AnyUser

__all__ = [
    "ADAPT_TASK",
    "DEFAULT_ADAPT_STEPS",
    "MAX_ADAPT_LR",
    "MAX_ADAPT_SHOTS",
    "MAX_ADAPT_STEPS",
    "MAX_SET_EXAMPLES",
    "MAX_SET_VALUES",
    "adaptation_batch_tasks",
    "AdaptedResult",
    "adaptation_complete",
    "adaptation_start",
    "evaluation_start",
]


#: The Celery task that adapts, dispatched by name (the web never imports the worker).
ADAPT_TASK = TASK_BY_KIND[RunKind.ADAPT]


def adaptation_batch_tasks() -> int:
    """Tasks a batch adaptation evaluates: the standard 600 meta-test tasks, fewer
    when ``settings.ADAPT_BATCH_TASKS`` says so (tests)."""
    return max(1, min(ADAPT_TEST_TASKS, int(getattr(settings, "ADAPT_BATCH_TASKS", ADAPT_TEST_TASKS))))


# -- launching ----------------------------------------------------------------------


@transaction.atomic
def adaptation_start(
    *,
    actor: AnyUser,
    meta_model: MetaModel,
    target: str,
    task_index: int | None = None,
    support: Mapping[str, Any] | None = None,
    query: Mapping[str, Any] | None = None,
    desc: Sequence[float] | None = None,
    steps: int,
    lr: float,
    queue: str = Queue.CPU,
    shots: int | None = None,
) -> Run:
    """Adapt ``meta_model`` to ``target``: queue a run of kind ``adapt``. Members only.

    ``target`` is ``test_task`` (``task_index`` 0..599 of the task set's meta-test
    split), ``custom`` (``support`` and optionally ``query`` as ``{"x": [[inputs],
    ...], "y": [targets or labels]}``, ``desc`` when the model needs it) or
    ``batch`` (the 600 meta-test tasks). ``shots`` cuts meta-test tasks with another
    support size than the model's training K (None: the training K). Raises
    ValidationError keyed by field (``meta_model``, ``target``, ``task_index``,
    ``shots``, ``support``, ``query``, ``desc``, ``steps``, ``lr``, ``queue``); nothing
    is written or queued then.
    """
    ensure_role(user=actor, team=meta_model.team_id, required=Role.MEMBER)
    if target not in AdaptationTarget.values:
        raise ValidationError({"target": f"Choose one of: {', '.join(AdaptationTarget.values)}."})
    if queue not in Queue.values:
        raise ValidationError({"queue": f"Choose one of: {', '.join(Queue.values)}."})
    steps, lr = check_steps_lr(steps, lr)
    facts = model_facts(meta_model)
    family = check_fits_taskset(meta_model, facts)
    if not facts.takes_steps:
        steps = 0  # prototypes and generated weights: nothing to step
    if target == AdaptationTarget.CUSTOM:
        what = _custom_target(facts, support=support, query=query, desc=desc)
    else:
        what = _test_target(target, family, facts, task_index=task_index, shots=shots)
    quota_check_runs(team_id=meta_model.team_id, adding=1)
    run = _records_create(actor=actor, meta_model=meta_model, what=what, steps=steps, lr=lr, queue=queue)
    RunEvent.objects.create(
        run=run,
        kind="queued",
        message=(
            f"Adaptation of {meta_model} to {what.shown} queued on the {Queue(queue).label} queue "
            f"by {actor.get_username()}."
        ),
    )
    warning = steps_warning(facts, steps)
    if warning:
        RunEvent.objects.create(run=run, kind="warning", message=warning)
    queue_dispatch_on_commit(run.queue)  # it waits for a slot, in fair-share order
    publish_run_status_on_commit(run)
    return run


@dataclass(frozen=True)
class _Target:
    """What an adaptation adapts to, checked: a meta-test task (``task_index``), all
    of them (``n_tasks``), or a custom task's cleaned sets; ``shown`` names it."""

    target: str
    shots: int
    shown: str
    n_tasks: int = 1
    task_index: int | None = None
    support: dict[str, Any] | None = None
    query: dict[str, Any] | None = None
    desc: list[float] | None = None


def _test_target(target: str, family: Any, facts: ModelFacts, *, task_index: Any, shots: Any) -> _Target:
    """One meta-test task (``test_task``) or all of them (``batch``)."""
    if target == AdaptationTarget.BATCH:
        n_tasks = adaptation_batch_tasks()
        shots = check_split(family, facts, shots)
        return _Target(target=target, shots=shots, shown=f"{n_tasks} meta-test tasks", n_tasks=n_tasks)
    if (
        not isinstance(task_index, int)
        or isinstance(task_index, bool)
        or not 0 <= task_index < ADAPT_TEST_TASKS
    ):
        raise ValidationError({"task_index": f"Pick a meta-test task from 0 to {ADAPT_TEST_TASKS - 1}."})
    index, shots = int(task_index), check_split(family, facts, shots)
    return _Target(target=target, shots=shots, shown=f"meta-test task {index}", task_index=index)


def _custom_target(
    facts: ModelFacts,
    *,
    support: Mapping[str, Any] | None,
    query: Mapping[str, Any] | None,
    desc: Sequence[float] | None,
) -> _Target:
    """A new task: its support set, optional query set and description, cleaned; its
    shots are the support set's size (per class when classifying)."""
    clean_support = clean_set(support, facts, "support", support=True)
    clean_query = clean_set(query, facts, "query", support=False) if query is not None else None
    clean_desc_values = clean_desc(list(desc) if desc is not None else None, facts)
    if facts.classification:
        shots = min(clean_support["y"].count(c) for c in range(facts.ways))
    else:
        shots = len(clean_support["y"])
    return _Target(
        target=AdaptationTarget.CUSTOM,
        shots=shots,
        shown="a new task",
        support=clean_support,
        query=clean_query,
        desc=clean_desc_values,
    )


def _records_create(
    *, actor: AnyUser, meta_model: MetaModel, what: _Target, steps: int, lr: float, queue: str
) -> Run:
    """The queued run of kind ``adapt`` (its config records what it adapts to) and
    its :class:`Adaptation`."""
    config: dict[str, Any] = {
        "kind": "adapt",
        "meta_model": meta_model.pk,
        "target": what.target,
        "steps": steps,
        "lr": lr,
    }
    if what.task_index is not None:
        config["task_index"] = what.task_index
    batch = what.target == AdaptationTarget.BATCH
    if batch:
        config["tasks"] = what.n_tasks
    run = Run.objects.create(
        experiment_id=meta_model.experiment_id,
        team_id=meta_model.team_id,
        kind=RunKind.ADAPT,
        algorithm=meta_model.algorithm,
        taskset_version_id=meta_model.taskset_version_id,
        config=config,
        seed=0,
        queue=queue,
        status=RunStatus.QUEUED,
        code_version=code_version(),
        launched_by=actor,
        total_steps=what.n_tasks if batch else steps,
    )
    Adaptation.objects.create(
        run=run,
        meta_model=meta_model,
        target=what.target,
        task_index=what.task_index,
        support=what.support,
        query=what.query,
        desc=what.desc,
        steps=steps,
        lr=lr,
        shots=what.shots,
    )
    return run


# -- the worker's side ------------------------------------------------------------------


@dataclass(frozen=True)
class AdaptedResult:
    """What an adaptation run produced: the :class:`AdaptedModel`'s fields. A single
    task gives the curve and the review data (``predictions``, numbers only: pictures
    are drawn when the page asks); a batch the ``[tasks, steps+1]`` query losses,
    scores and task ids as little-endian bytes."""

    metric: str
    before: float | None = None
    after: float | None = None
    ci95: float | None = None
    curve: list[dict[str, Any]] = field(default_factory=list)
    predictions: dict[str, Any] = field(default_factory=dict)
    n_tasks: int = 1
    n_steps: int = 0
    losses: bytes | None = None
    scores: bytes | None = None
    task_ids: bytes | None = None


def adaptation_complete(
    *,
    run_id: int,
    token: str,
    result: AdaptedResult,
    weights: bytes | None = None,
    summary: Mapping[str, Any] | None = None,
    step: int | None = None,
) -> AdaptedModel | None:
    """Store the product of adaptation run ``run_id`` and mark the run succeeded, in
    one transaction. None (nothing written) when ``token`` no longer owns the run.

    ``result`` holds the :class:`AdaptedModel`'s fields.
    ``weights`` are the adapted weights as safetensors bytes, stored (whole or not at
    all) as ``registry/adapted/<id>/params.safetensors`` in the run-file store. The
    adapted model is one-to-one with the adaptation: a redelivered task updates it, never duplicates it.
    """
    written: str | None = None
    try:
        with transaction.atomic():
            run = (
                Run.objects.select_for_update()
                .filter(pk=run_id, status=RunStatus.RUNNING, attempt_token=token)
                .first()
            )
            if run is None or not token:
                return None
            adaptation = Adaptation.objects.select_related("meta_model").get(run_id=run_id)
            values: dict[str, Any] = asdict(result)
            if weights is None:
                values["weights_sha256"] = ""
            adapted, _ = AdaptedModel.objects.update_or_create(
                adaptation=adaptation,
                defaults={
                    "meta_model_id": adaptation.meta_model_id,
                    "team_id": run.team_id,
                    **values,
                },
            )
            if weights is not None:
                written = _weights_write(adapted, weights)
            final = dict(summary or {})
            final["adapted_model"] = adapted.pk
            if not run_succeed(run_id=run_id, token=token, summary=final, step=step):
                raise _Lost
            return adapted
    except _Lost:
        if written is not None:
            unpublish(written)
        return None
    except BaseException:
        if written is not None:
            unpublish(written)
        raise


def _weights_write(adapted: AdaptedModel, weights: bytes) -> str:
    """Store the adapted weights (whole or not at all) and record their sha256; the
    folder's key, for a rollback."""
    put_bytes(storage.adapted_weights_key(adapted.pk), weights)
    adapted.weights_sha256 = hashlib.sha256(weights).hexdigest()
    adapted.save(update_fields=["weights_sha256"])
    return keys.adapted_model(adapted.pk)


class _Lost(Exception):
    """The run changed hands between the lock and the finish (cannot happen while the
    row is locked; kept so that a refusal rolls everything back)."""


def evaluation_start(*, actor: AnyUser, meta_model: MetaModel) -> Run:
    """The 600-task evaluation with the defaults of the adapt form: ``default_adapt_steps``
    inner steps at the model's training inner learning rate, on the CPU queue (what the
    compare page offers for a model it cannot compare yet). Members only; raises
    ValidationError as :func:`adaptation_start` does."""
    ensure_role(user=actor, team=meta_model.team_id, required=Role.MEMBER)
    facts = model_facts(meta_model)
    return adaptation_start(
        actor=actor,
        meta_model=meta_model,
        target=AdaptationTarget.BATCH,
        steps=default_adapt_steps(facts),
        lr=facts.inner_lr,
    )
