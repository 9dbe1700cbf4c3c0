"""Launching adaptations and storing what they produce.

:func:`adaptation_start` validates everything first (the meta-model's checkpoint
against its task set, the target, a custom task's data, steps and learning rate),
then writes a run of kind ``adapt`` and its :class:`Adaptation` in one transaction
and sends ``workers.tasks.adapt_run`` by name after commit. On any error nothing is
written and nothing is queued.

:func:`adaptation_complete` is the worker's side: in one transaction it creates
(or, for a redelivered task, updates) the one :class:`AdaptedModel` of the
adaptation, writes its adapted weights atomically, and marks the run succeeded.

Torch-free: the meta-model's facts come from its ``checkpoint.json`` (read with
``json``), the task set's from the engine's numpy-only families.
"""

from __future__ import annotations

import hashlib
import math
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import ValidationError
from django.db import transaction

from apps.experiments.events import publish_run_status_on_commit
from apps.experiments.models import Queue, Run, RunEvent, RunKind, RunStatus
from apps.experiments.services import code_version, run_succeed
from apps.registry import storage
from apps.registry.models import Adaptation, AdaptationTarget, AdaptedModel, MetaModel
from apps.registry.selectors.adaptations import ADAPT_TEST_TASKS, ModelFacts, meta_model_facts
from apps.teams.models import Role
from apps.teams.services import ensure_role
from metaweb.celery import app as celery_app
from workers.metalearn.config import ConfigError, FamilySpec
from workers.metalearn.families import make_family
from workers.metalearn.fileio import write_atomic
from workers.metalearn.types import DataError, EpisodeSpec

__all__ = [
    "ADAPT_TASK",
    "MAX_ADAPT_LR",
    "MAX_ADAPT_SHOTS",
    "DEFAULT_ADAPT_STEPS",
    "MAX_ADAPT_STEPS",
    "MAX_SET_EXAMPLES",
    "MAX_SET_VALUES",
    "adaptation_batch_tasks",
    "AdaptedResult",
    "adaptation_complete",
    "adaptation_start",
    "evaluation_start",
]

AnyUser = AbstractBaseUser | AnonymousUser

#: The Celery task that adapts, dispatched by name (the web never imports the worker).
ADAPT_TASK = "workers.tasks.adapt_run"
MAX_ADAPT_STEPS = 100
#: Inner steps an adaptation takes unless told otherwise (the adapt form's default).
DEFAULT_ADAPT_STEPS = 10
#: As the engine's ``TrainConfig.inner_lr``.
MAX_ADAPT_LR = 10.0
#: Most support examples per meta-test task (per class) a test-task or batch adaptation may ask for.
MAX_ADAPT_SHOTS = 100
#: A custom support or query set holds at most this many examples...
MAX_SET_EXAMPLES = 2000
#: ... and this many input values in all (e.g. 600 images of 28x28).
MAX_SET_VALUES = 500_000


def adaptation_batch_tasks() -> int:
    """Tasks a batch adaptation evaluates: the standard 600 meta-test tasks, fewer
    when ``settings.ADAPT_BATCH_TASKS`` says so (tests)."""
    return max(1, min(ADAPT_TEST_TASKS, int(getattr(settings, "ADAPT_BATCH_TASKS", ADAPT_TEST_TASKS))))


# -- validation -------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_steps_lr(steps: Any, lr: Any) -> tuple[int, float]:
    errors: dict[str, str] = {}
    if not isinstance(steps, int) or isinstance(steps, bool) or not 0 <= steps <= MAX_ADAPT_STEPS:
        errors["steps"] = f"Give a whole number of steps from 0 to {MAX_ADAPT_STEPS}."
    if not _is_number(lr) or not math.isfinite(lr) or not 0 < lr <= MAX_ADAPT_LR:
        errors["lr"] = f"The learning rate must be a number above 0 and at most {MAX_ADAPT_LR:g}."
    if errors:
        raise ValidationError(errors)
    return int(steps), float(lr)


def _model_facts(meta_model: MetaModel) -> ModelFacts:
    facts = meta_model_facts(meta_model)
    if facts is None:
        raise ValidationError(
            {"meta_model": "This meta-model's checkpoint is missing from storage or unreadable."}
        )
    return facts


def _check_fits_taskset(meta_model: MetaModel, facts: ModelFacts) -> Any:
    """The meta-model's task set's family, after checking that the checkpoint's
    backbone fits it (kind, input shape, description size). Returns the family."""
    version = meta_model.taskset_version
    spec = FamilySpec(name=version.taskset.family, params=version.params or {})
    data_path = None
    if version.data_file:
        if not version.data_file.storage.exists(version.data_file.name):
            raise ValidationError({"meta_model": "The task set's data file is missing from storage."})
        data_path = version.data_file.path
    try:
        family = make_family(spec, data_path=data_path)
    except (ConfigError, DataError, OSError) as exc:
        raise ValidationError({"meta_model": f"The task set cannot be built: {exc}"}) from None
    theirs = (family.kind, tuple(int(s) for s in family.input_shape), family.desc_dim)
    ours = (facts.kind, facts.input_shape, facts.desc_dim)
    if theirs != ours:
        what = []
        if theirs[0] != ours[0]:
            what.append(f"it is a {ours[0]} model, the task set is {theirs[0]}")
        if theirs[1] != ours[1]:
            what.append(f"it takes inputs of shape {list(ours[1])}, the task set has {list(theirs[1])}")
        if theirs[2] != ours[2]:
            what.append(
                f"it expects task descriptions of {ours[2] or 0} values, the task set has {theirs[2] or 0}"
            )
        name = f"{version.taskset.name} v{version.number}"
        raise ValidationError(
            {"meta_model": f"This meta-model's backbone does not fit its task set {name}: {'; '.join(what)}."}
        )
    return family


def _check_split(family: Any, facts: ModelFacts, shots: int | None) -> int:
    """The support size of meta-test tasks (``shots``, or the model's training K),
    checked against what the task set's meta-test split can give."""
    if shots is not None and (
        not isinstance(shots, int) or isinstance(shots, bool) or not 1 <= shots <= MAX_ADAPT_SHOTS
    ):
        raise ValidationError({"shots": f"Give 1 to {MAX_ADAPT_SHOTS} shots, or leave it empty."})
    k = facts.shots if shots is None else int(shots)
    ways = facts.ways if facts.classification else 1
    try:
        family.check_episode(EpisodeSpec(shots=k, query=facts.query, ways=ways), "test")
    except DataError as exc:
        field = "shots" if shots is not None else "target"
        raise ValidationError(
            {field: f"The task set's meta-test split cannot give these tasks: {exc}"}
        ) from None
    return k


def _where(index: int, names: Sequence[Any] | None) -> str:
    if names and index < len(names) and isinstance(names[index], str) and names[index]:
        return names[index]
    return f"example {index + 1}"


def _clean_set(data: Any, facts: ModelFacts, field: str, *, support: bool) -> dict[str, Any]:
    """A custom support or query set ``{"x": [[...], ...], "y": [...], "classes"?,
    "names"?}`` checked against the model: shapes, finite numbers, labels, shots.
    Returns it cleaned (floats and ints only)."""
    if not isinstance(data, Mapping):
        raise ValidationError({field: "Give the examples as inputs and targets."})
    xs, ys = data.get("x"), data.get("y")
    names = data.get("names") if isinstance(data.get("names"), list) else None
    if not isinstance(xs, list) or not isinstance(ys, list) or not xs:
        need = "at least 1 point" if not facts.classification else "at least 1 image for each class"
        raise ValidationError({field: f"Give {need}."})
    if len(xs) != len(ys):
        raise ValidationError({field: f"There are {len(xs)} inputs but {len(ys)} targets."})
    if len(xs) > MAX_SET_EXAMPLES:
        raise ValidationError({field: f"Give at most {MAX_SET_EXAMPLES} examples, not {len(xs)}."})
    size = facts.input_size
    if len(xs) * size > MAX_SET_VALUES:
        raise ValidationError({field: f"Too much data: at most {MAX_SET_VALUES:,} input values in all."})
    clean_x: list[list[float]] = []
    for i, row in enumerate(xs):
        if not isinstance(row, list) or len(row) != size:
            found = len(row) if isinstance(row, list) else 0
            raise ValidationError(
                {field: f"{_where(i, names)}: the model takes {size} input value(s), got {found}."}
            )
        if not all(_is_number(v) and math.isfinite(v) for v in row):
            raise ValidationError(
                {field: f"{_where(i, names)}: inputs must be finite numbers (no NaN or inf)."}
            )
        clean_x.append([float(v) for v in row])
    clean: dict[str, Any] = {"x": clean_x}
    if facts.classification:
        labels = []
        for i, label in enumerate(ys):
            if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < facts.ways:
                raise ValidationError(
                    {field: f"{_where(i, names)}: labels must be classes 0 to {facts.ways - 1}."}
                )
            labels.append(label)
        if support:
            missing = sorted(set(range(facts.ways)) - set(labels))
            if missing:
                raise ValidationError(
                    {
                        field: f"This model tells {facts.ways} classes apart: give at least 1 image "
                        f"for each of {facts.ways} classes ({len(set(labels))} given)."
                    }
                )
        clean["y"] = labels
        classes = data.get("classes")
        if isinstance(classes, list) and len(classes) == facts.ways:
            clean["classes"] = [str(c)[:100] for c in classes]
    else:
        values = []
        for i, value in enumerate(ys):
            if not _is_number(value) or not math.isfinite(value):
                raise ValidationError({field: f"{_where(i, names)}: targets must be finite numbers."})
            values.append(float(value))
        clean["y"] = values
    if names is not None and len(names) == len(xs):
        clean["names"] = [str(n)[:200] for n in names]
    return clean


def _clean_desc(desc: Any, facts: ModelFacts) -> list[float] | None:
    if desc is None or desc == []:
        if facts.needs_desc:
            needed = f"the task's description ({facts.desc_dim} values)"
            raise ValidationError({"desc": f"This {facts.algorithm} model needs {needed}."})
        return None
    if not facts.desc_dim:
        raise ValidationError({"desc": "This model takes no task description."})
    if (
        not isinstance(desc, list | tuple)
        or len(desc) != facts.desc_dim
        or not all(_is_number(v) and math.isfinite(v) for v in desc)
    ):
        raise ValidationError({"desc": f"Give {facts.desc_dim} finite numbers."})
    return [float(v) for v in desc]


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
    steps, lr = _check_steps_lr(steps, lr)
    facts = _model_facts(meta_model)
    family = _check_fits_taskset(meta_model, facts)
    if not facts.takes_steps:
        steps = 0  # prototypes and generated weights: nothing to step

    clean_support = clean_query = clean_desc = None
    index: int | None = None
    if target == AdaptationTarget.TEST_TASK:
        if (
            not isinstance(task_index, int)
            or isinstance(task_index, bool)
            or not 0 <= task_index < ADAPT_TEST_TASKS
        ):
            raise ValidationError({"task_index": f"Pick a meta-test task from 0 to {ADAPT_TEST_TASKS - 1}."})
        index, shots = int(task_index), _check_split(family, facts, shots)
    elif target == AdaptationTarget.BATCH:
        shots = _check_split(family, facts, shots)
    else:
        clean_support = _clean_set(support, facts, "support", support=True)
        if query is not None:
            clean_query = _clean_set(query, facts, "query", support=False)
        clean_desc = _clean_desc(list(desc) if desc is not None else None, facts)
        if facts.classification:
            shots = min(clean_support["y"].count(c) for c in range(facts.ways))
        else:
            shots = len(clean_support["y"])

    n_tasks = adaptation_batch_tasks() if target == AdaptationTarget.BATCH else 1
    config: dict[str, Any] = {
        "kind": "adapt",
        "meta_model": meta_model.pk,
        "target": target,
        "steps": steps,
        "lr": lr,
    }
    if index is not None:
        config["task_index"] = index
    if target == AdaptationTarget.BATCH:
        config["tasks"] = n_tasks
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
        total_steps=n_tasks if target == AdaptationTarget.BATCH else steps,
    )
    Adaptation.objects.create(
        run=run,
        meta_model=meta_model,
        target=target,
        task_index=index,
        support=clean_support,
        query=clean_query,
        desc=clean_desc,
        steps=steps,
        lr=lr,
        shots=shots,
    )
    what = {
        AdaptationTarget.TEST_TASK: f"meta-test task {index}",
        AdaptationTarget.CUSTOM: "a new task",
        AdaptationTarget.BATCH: f"{n_tasks} meta-test tasks",
    }[AdaptationTarget(target)]
    RunEvent.objects.create(
        run=run,
        kind="queued",
        message=(
            f"Adaptation of {meta_model} to {what} queued on the {Queue(queue).label} queue "
            f"by {actor.get_username()}."
        ),
    )
    run_id, run_queue = run.pk, run.queue
    transaction.on_commit(lambda: celery_app.send_task(ADAPT_TASK, args=[run_id], queue=run_queue))
    publish_run_status_on_commit(run)
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
    ``weights`` are the adapted weights as safetensors bytes, written atomically to
    ``<registry>/adapted/<id>/params.safetensors``. The adapted model is one-to-one
    with the adaptation: a redelivered task updates it, never duplicates it.
    """
    written: Path | None = None
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
                folder = storage.adapted_model_dir(adapted.pk)
                written = folder / storage.WEIGHTS_FILE
                write_atomic(written, weights)
                adapted.weights_sha256 = hashlib.sha256(weights).hexdigest()
                adapted.save(update_fields=["weights_sha256"])
            final = dict(summary or {})
            final["adapted_model"] = adapted.pk
            if not run_succeed(run_id=run_id, token=token, summary=final, step=step):
                raise _Lost
            return adapted
    except _Lost:
        if written is not None:
            shutil.rmtree(written.parent, ignore_errors=True)
        return None
    except BaseException:
        if written is not None:
            shutil.rmtree(written.parent, ignore_errors=True)
        raise


class _Lost(Exception):
    """The run changed hands between the lock and the finish (cannot happen while the
    row is locked; kept so that a refusal rolls everything back)."""


def evaluation_start(*, actor: AnyUser, meta_model: MetaModel) -> Run:
    """The 600-task evaluation with the defaults of the adapt form: ``DEFAULT_ADAPT_STEPS``
    inner steps at the model's training inner learning rate, on the CPU queue (what the
    compare page offers for a model it cannot compare yet). Members only; raises
    ValidationError as :func:`adaptation_start` does."""
    ensure_role(user=actor, team=meta_model.team_id, required=Role.MEMBER)
    facts = _model_facts(meta_model)
    return adaptation_start(
        actor=actor,
        meta_model=meta_model,
        target=AdaptationTarget.BATCH,
        steps=DEFAULT_ADAPT_STEPS,
        lr=facts.inner_lr,
    )
