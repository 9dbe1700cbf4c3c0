"""What people do from the browser: create and edit experiments, launch, cancel and
clone runs.

Runs are validated with the engine's torch-free ``parse_config`` and task
families before anything is written, then dispatched to Celery by task *name*
after the transaction commits, so the web process never imports the worker.
"""

from __future__ import annotations

import functools
import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.experiments.events import publish_run_status_on_commit
from apps.experiments.models import Experiment, Queue, Run, RunEvent, RunKind, RunStatus, Sweep
from apps.experiments.services.retention import run_checkpoints_retain_on_commit
from apps.experiments.services.scheduling import TRAIN_TASK, queue_dispatch_on_commit
from apps.runfiles.store import StoreUnavailable
from apps.tasksets.files import version_data_path
from apps.tasksets.models import TaskSetVersion
from apps.teams.models import Role, Team
from apps.teams.quotas import quota_check_runs
from apps.teams.services import ensure_role
from apps.teams.types import AnyUser
from workers.metalearn.config import (
    ConfigError,
    TrainConfig,
    config_to_dict,
    parse_config,
)
from workers.metalearn.cost import check_budget
from workers.metalearn.families import check_run_episodes, make_family
from workers.metalearn.shapes import family_info_dict
from workers.metalearn.specs import SPECS, check_compatible
from workers.metalearn.types import DataError

__all__ = [
    "MAX_CONFIG_BYTES",
    "TRAIN_TASK",
    "code_version",
    "experiment_create",
    "experiment_update",
    "run_cancel",
    "run_clone_initial",
    "run_create",
]


#: The Celery task that trains a run, dispatched by name.
#: A launch config larger than this (as compact JSON) is refused before it is parsed.
MAX_CONFIG_BYTES = 16 * 1024

#: Config fields the launch form shows under another name.
_FORM_FIELD = {"family": "taskset"}


@functools.cache
def code_version() -> str:
    """``git describe --always --dirty`` of the deployed code, once per process; ''
    when git or the repository is unavailable."""
    try:
        result = subprocess.run(  # noqa: S603
            ["git", "describe", "--always", "--dirty"],  # noqa: S607
            cwd=settings.BASE_DIR,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return result.stdout.strip()[:100] if result.returncode == 0 else ""


# -- experiments -------------------------------------------------------------------


def _experiment_name(team: Team, name: str, *, other_than: int | None = None) -> str:
    """``name`` stripped, if an experiment may have it: not blank, not too long, and
    no other experiment of the team has it (in any case). ValidationError on ``name``."""
    name = (name or "").strip()
    max_length = Experiment._meta.get_field("name").max_length
    if not name:
        raise ValidationError({"name": "Give the experiment a name."})
    if max_length and len(name) > max_length:
        raise ValidationError({"name": f"Use at most {max_length} characters."})
    if Experiment.objects.filter(team=team, name__iexact=name).exclude(pk=other_than).exists():
        raise ValidationError({"name": f"The team has an experiment called '{name}' already."})
    return name


@transaction.atomic
def experiment_create(*, team: Team, actor: AnyUser, name: str, description: str = "") -> Experiment:
    """A new experiment in the team. Members and admins only."""
    ensure_role(user=actor, team=team, required=Role.MEMBER)
    name = _experiment_name(team, name)
    description = (description or "").strip()
    with _name_taken(name):
        return Experiment.objects.create(team=team, name=name, description=description, created_by=actor)


@transaction.atomic
def experiment_update(
    *, experiment: Experiment, actor: AnyUser, name: str | None = None, description: str | None = None
) -> Experiment:
    """Rename the experiment or change its description (None leaves a field as it is),
    under the rules of a new one. Members and admins only. Its runs, models and
    reviews follow, since they point to it, not to its name."""
    ensure_role(user=actor, team=experiment.team_id, required=Role.MEMBER)
    locked = Experiment.objects.select_for_update().get(pk=experiment.pk)
    if name is not None:
        locked.name = _experiment_name(locked.team, name, other_than=locked.pk)
    if description is not None:
        locked.description = description.strip()
    with _name_taken(locked.name):
        locked.save(update_fields=["name", "description"])
    return locked


@contextmanager
def _name_taken(name: str) -> Iterator[None]:
    """A write that lost a race for ``name`` (the database's unique constraint) is
    refused on ``name`` as the check before it would have refused it."""
    try:
        with transaction.atomic():
            yield
    except IntegrityError as error:
        raise ValidationError({"name": f"The team has an experiment called '{name}' already."}) from error


# -- runs ----------------------------------------------------------------------------


def _form_field(config_field: str) -> str:
    """``"family.params.x"`` -> ``"taskset"``; ``"hidden.0"`` -> ``"hidden"``."""
    head = config_field.split(".", 1)[0] or "config"
    return _FORM_FIELD.get(head, head)


def _config_errors(errors: dict[str, str]) -> ValidationError:
    by_field: dict[str, list[str]] = {}
    for config_field, message in errors.items():
        field = _form_field(config_field)
        detail = config_field.split(".", 1)[1] if "." in config_field else ""
        if field == "taskset" and detail:
            message = f"{detail}: {message}"
        by_field.setdefault(field, []).append(message)
    return ValidationError(by_field)


def _check_family(*, config: TrainConfig, version: TaskSetVersion, queue: str) -> dict[str, Any]:
    """Build the task set's family (numpy only) and check that the algorithm suits
    the family (its spec's rule), that its splits give the run's episodes, and that the estimated
    cost fits the queue's budget (``RUN_BUDGETS``). Raises ValidationError on form
    fields; returns the family's facts (``family_info_dict``)."""
    try:
        family = make_family(config.family, data_path=version_data_path(version))
        info = family_info_dict(family, config)
        check_compatible(config.algorithm, info, config)
        check_run_episodes(config, family)
        check_budget(config, info, settings.RUN_BUDGETS[queue], queue=queue)
        return info
    except ConfigError as exc:
        raise _config_errors(exc.errors) from None
    except DataError as exc:  # the data file itself
        raise ValidationError({"taskset": f"{exc.field}: {exc.message}"}) from None
    except StoreUnavailable as exc:
        raise ValidationError({"taskset": str(exc)}) from None
    except OSError:
        raise ValidationError({"taskset": "The task set's data file cannot be read."}) from None


def _validated_config(*, config: Any, version: TaskSetVersion, queue: str) -> TrainConfig:
    if not isinstance(config, dict):
        raise ValidationError({"config": "The configuration must be a JSON object."})
    try:
        size = len(json.dumps(config, separators=(",", ":"), allow_nan=False).encode())
    except (TypeError, ValueError):
        message = "The configuration must be plain JSON (numbers, text, lists)."
        raise ValidationError({"config": message}) from None
    if size > MAX_CONFIG_BYTES:
        raise ValidationError(
            {"config": f"The configuration is {size:,} bytes; the limit is {MAX_CONFIG_BYTES:,}."}
        )
    if queue not in Queue.values:
        raise ValidationError({"queue": f"Choose one of: {', '.join(Queue.values)}."})
    data = dict(config)
    data["family"] = {"name": version.taskset.family, "version": 1, "params": version.params or {}}
    try:
        parsed = parse_config(data)
    except ConfigError as exc:
        raise _config_errors(exc.errors) from None
    if parsed.device == "cuda" and queue != Queue.GPU:
        raise ValidationError({"device": "A CUDA run needs the GPU queue."})
    info = _check_family(config=parsed, version=version, queue=queue)
    spec = SPECS[parsed.algorithm]
    if spec.conditioned and parsed.mnn_condition is None:
        # Stored as resolved, so that lists, searches and the registry read it as is.
        parsed = parsed.model_copy(update={"mnn_condition": spec.condition(info["desc_dim"])})
    return parsed


@transaction.atomic
def run_create(
    *,
    experiment: Experiment,
    actor: AnyUser,
    taskset_version: TaskSetVersion,
    config: dict[str, Any],
    queue: str = Queue.CPU,
    cloned_from: Run | None = None,
    sweep: Sweep | None = None,
    check_quota: bool = True,
) -> Run:
    """Validate and queue a meta-training run, then dispatch it after commit.

    The config is parsed by the engine (``parse_config``), its ``family`` taken from
    the task-set version, and the episode checked against the family; the team's
    quotas are checked (``check_quota``: a sweep checks its runs at once instead).
    Errors are ValidationErrors keyed by launch-form field; nothing is written on error.
    """
    ensure_role(user=actor, team=experiment.team_id, required=Role.MEMBER)
    if taskset_version.taskset.team_id != experiment.team_id:
        raise ValidationError({"taskset": "Choose one of this team's task sets."})
    if cloned_from is not None and cloned_from.team_id != experiment.team_id:
        raise ValidationError({"cloned_from": "Only runs of this team can be cloned."})
    parsed = _validated_config(config=config, version=taskset_version, queue=queue)
    if check_quota:
        quota_check_runs(team_id=experiment.team_id, adding=1)

    run = Run.objects.create(
        experiment=experiment,
        team_id=experiment.team_id,
        kind=RunKind.TRAIN,
        algorithm=parsed.algorithm,
        taskset_version=taskset_version,
        config=config_to_dict(parsed),
        seed=parsed.seed,
        queue=queue,
        status=RunStatus.QUEUED,
        code_version=code_version(),
        launched_by=actor,
        cloned_from=cloned_from,
        total_steps=parsed.iterations,
        sweep=sweep,
    )
    message = f"Queued on the {Queue(queue).label} queue by {actor.get_username()}"
    if cloned_from is not None:
        message += f", cloned from run {cloned_from.pk}"
    if sweep is not None:
        message += f", in sweep '{sweep.name}'"
    RunEvent.objects.create(run=run, kind="queued", message=message + ".")

    queue_dispatch_on_commit(run.queue)  # it waits for a slot, in fair-share order
    publish_run_status_on_commit(run)
    return run


def sweep_next_on_commit(run: Run) -> None:
    """After commit, let the sweep of a run that just ended launch its next run."""
    if run.sweep_id is None:
        return
    sweep_id = run.sweep_id

    def advance() -> None:
        from apps.experiments.services.sweeps import sweep_advance  # it imports this module

        sweep_advance(sweep_id=sweep_id)

    transaction.on_commit(advance, robust=True)


@transaction.atomic
def run_cancel(*, run: Run, actor: AnyUser, reason: str = "") -> Run:
    """Cancel a run. Members and admins only.

    A queued run is cancelled at once (a worker that later receives it finds it
    cancelled and returns). A running run gets ``cancel_requested_at``; the worker's
    reporter sees it between iterations and marks the run cancelled. A finished run
    cannot be cancelled. ``reason`` (e.g. a sweep's ASHA stop) replaces the event's
    "cancelled by" message. A sweep's run that ends makes room for its next one.
    """
    ensure_role(user=actor, team=run.team_id, required=Role.MEMBER)
    locked = Run.objects.select_for_update().get(pk=run.pk)
    who = actor.get_username()
    now = timezone.now()
    if locked.status == RunStatus.QUEUED:
        locked.status = RunStatus.CANCELLED
        locked.finished_at = now
        locked.cancel_requested_at = now
        locked.save(update_fields=["status", "finished_at", "cancel_requested_at"])
        message = reason or f"Cancelled by {who} before it started."
        RunEvent.objects.create(run=locked, kind="cancelled", message=message, attempt=locked.attempt)
        publish_run_status_on_commit(locked)
        sweep_next_on_commit(locked)
        if locked.attempt:  # requeued after a lost worker: it has checkpoints
            run_checkpoints_retain_on_commit(locked)
        if locked.dispatched_at is not None:  # it held a slot
            queue_dispatch_on_commit(locked.queue)
    elif locked.status == RunStatus.RUNNING:
        if locked.cancel_requested_at is None:
            locked.cancel_requested_at = now
            locked.save(update_fields=["cancel_requested_at"])
            RunEvent.objects.create(
                run=locked,
                kind="cancel_requested",
                message=reason or f"{who} asked to cancel; the worker stops after the current iteration.",
                attempt=locked.attempt,
            )
            publish_run_status_on_commit(locked)
    else:
        raise ValidationError({"status": f"This run has {locked.get_status_display().lower()} already."})
    return locked


#: Launch-form fields that come straight from the stored config.
CLONED_FIELDS = (
    "algorithm",
    "inner_lr",
    "inner_steps",
    "meta_lr",
    "meta_lr_schedule",
    "meta_batch",
    "shots",
    "ways",
    "query",
    "iterations",
    "eval_interval",
    "eval_tasks",
    "checkpoint_interval",
    "seed",
    "first_order",
    "grad_clip",
    "device",
    "bf16",
    "compile",
    "conv_filters",
    "mnn_hidden",
    "mnn_embed_dim",
    "mnn_finetune_steps",
    "mnn_condition",
    "train_tasks",
    "train_ways",
)


def run_clone_initial(*, run: Run) -> dict[str, Any]:
    """Initial data for the launch form, prefilled from ``run`` (clone and edit).
    Submitting the form creates a new run whose ``cloned_from`` is ``run``."""
    config = run.config if isinstance(run.config, dict) else {}
    defaults = TrainConfig()
    initial: dict[str, Any] = {name: config.get(name, getattr(defaults, name)) for name in CLONED_FIELDS}
    if isinstance(initial["compile"], bool):  # stored before compile took auto/on/off
        initial["compile"] = TrainConfig(compile=initial["compile"]).compile
    hidden = config.get("hidden", defaults.hidden)
    if isinstance(hidden, list | tuple):
        initial["hidden"] = ", ".join(str(h) for h in hidden)
    initial["experiment"] = run.experiment_id
    initial["taskset"] = run.taskset_version.taskset_id
    initial["queue"] = run.queue
    initial["cloned_from"] = run.pk
    return initial
