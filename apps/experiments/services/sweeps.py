"""Sweeps: launch runs over the values of some settings, keep at most
``max_concurrent`` of them queued or running, stop the poor ones early (ASHA), or
propose each next config from the results so far (bayes).

Design. A sweep stores every config it will run (``configs``, expanded and
validated when it is created, in one transaction: on any error nothing is
written or queued). Runs are created only when there is room: ``sweep_create``
creates the first ``max_concurrent``, and each time one of its runs ends
(succeeded, failed, cancelled: ``runs.sweep_next_on_commit`` after the commit)
``sweep_advance`` creates the next. A bayes sweep stores its first ``bayes.STARTUP``
random configs, and each later one is proposed, validated and stored when its run is
due (``planned`` counts them all). Sweep runs are ordinary runs (``run_create``):
same queue, claim, resume, metrics and registry.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import Http404

from apps.experiments.metric_store import points_read, values_at
from apps.experiments.models import Experiment, Run, RunStatus, Sweep, SweepStatus, SweepStrategy
from apps.experiments.selectors import taskset_family_facts
from apps.experiments.services.runs import AnyUser, _validated_config, run_cancel, run_create
from apps.experiments.sweep_selectors import sweep_leaderboard
from apps.experiments.sweeps.asha import asha_keeps, asha_rungs
from apps.experiments.sweeps.bayes import bayes_point
from apps.experiments.sweeps.dimensions import Dimension, DimensionError, dimension_parse
from apps.experiments.sweeps.expand import GRID, grid_size, point_config, sweep_points
from apps.experiments.sweeps.fields import SWEEP_METRICS, sweepable_fields
from apps.tasksets.models import TaskSetVersion
from apps.teams.models import Role
from apps.teams.quotas import quota_check_runs
from apps.teams.services import ensure_role
from workers.metalearn.config import TrainConfig
from workers.metalearn.specs import SPECS, launch_fields

__all__ = ["sweep_advance", "sweep_asha_check", "sweep_create", "sweep_stop"]

logger = logging.getLogger(__name__)

#: The most runs of one sweep queued or running at once.
MAX_CONCURRENT = 50
ACTIVE = (RunStatus.QUEUED, RunStatus.RUNNING)


def _applicable(
    texts: Mapping[str, str], *, algorithm: str, version: TaskSetVersion, condition: Any
) -> frozenset[str]:
    """The settings that apply to ``algorithm`` on the version's family, conditioned
    as the base config says, or either way when ``mnn_condition`` is itself swept."""
    facts = taskset_family_facts(taskset=version.taskset, version=version)
    described = None if facts.kind is None else bool(facts.desc_dim)
    swept = bool((texts.get("mnn_condition") or "").strip())
    conditions = ("description", "support") if swept else (condition if isinstance(condition, str) else None,)
    return frozenset().union(
        *(
            launch_fields(
                algorithm, kind=facts.kind, input_shape=facts.input_shape, described=described, condition=c
            )
            for c in conditions
        )
    )


def _dimensions(
    texts: Mapping[str, str], *, algorithm: str, version: TaskSetVersion, strategy: str, condition: Any = None
) -> list[Dimension]:
    """Parse the non-empty dimension texts; errors keyed ``dim_<field>``."""
    applicable = _applicable(texts, algorithm=algorithm, version=version, condition=condition)
    label = SPECS[algorithm].label if algorithm in SPECS else algorithm
    errors: dict[str, str] = {}
    dimensions: list[Dimension] = []
    for field, text in texts.items():
        if not (text or "").strip():
            continue
        key = f"dim_{field}"
        if field not in sweepable_fields():
            errors[key] = f"{field} cannot be swept."
        elif field not in applicable:
            errors[key] = f"{label} ignores {field} on this task set, so it cannot be swept."
        else:
            value_type, choices = sweepable_fields()[field]
            try:
                dimension = dimension_parse(field, text, value_type=value_type, choices=choices)
            except DimensionError as exc:
                errors[key] = str(exc)
                continue
            if strategy == GRID and not dimension.finite:
                errors[key] = (
                    "A grid needs a list or a range with a step; log ranges are for random, ASHA and bayes."
                )
            dimensions.append(dimension)
    if errors:
        raise ValidationError(errors)
    if not dimensions:
        raise ValidationError({"sweep_strategy": "Give at least one setting a sweep dimension."})
    return dimensions


def _run_count(strategy: str, dimensions: list[Dimension], samples: int) -> int:
    limit = settings.SWEEP_MAX_RUNS
    if strategy == GRID:
        count = grid_size(dimensions)
        if count > limit:
            raise ValidationError(
                {"sweep_strategy": f"The grid makes {count:,} runs; the limit is {limit:,}."}
            )
        return count
    if not 1 <= samples <= limit:
        raise ValidationError({"sweep_samples": f"Choose between 1 and {limit:,} samples."})
    return samples


def _checked_configs(
    base: dict[str, Any], points: list[dict[str, Any]], *, version: TaskSetVersion, queue: str
) -> list[dict[str, Any]]:
    """Each point's config, validated like a single run's; an error names the point."""
    configs = []
    for point in points:
        config = point_config(base, point)
        try:
            _validated_config(config=config, version=version, queue=queue)
        except ValidationError as exc:
            detail = ", ".join(f"{k}={v}" for k, v in point.items())
            raise ValidationError(
                {
                    (f"dim_{field}" if field in point else field): [f"With {detail}: {m}" for m in messages]
                    for field, messages in exc.message_dict.items()
                }
            ) from None
        configs.append(config)
    return configs


def _check_options(*, strategy: str, metric: str, max_concurrent: int, name: str) -> None:
    errors = {}
    if strategy not in SweepStrategy.values:
        errors["sweep_strategy"] = f"Choose one of: {', '.join(SweepStrategy.values)}."
    if metric not in SWEEP_METRICS:
        errors["sweep_metric"] = f"Choose one of: {', '.join(SWEEP_METRICS)}."
    if not 1 <= max_concurrent <= MAX_CONCURRENT:
        errors["sweep_max_concurrent"] = f"Choose between 1 and {MAX_CONCURRENT}."
    if len(name) > Sweep._meta.get_field("name").max_length:  # type: ignore[operator]
        errors["sweep_name"] = "Use at most 120 characters."
    if errors:
        raise ValidationError(errors)


@transaction.atomic
def sweep_create(
    *,
    experiment: Experiment,
    actor: AnyUser,
    taskset_version: TaskSetVersion,
    base_config: dict[str, Any],
    dimensions: Mapping[str, str],
    strategy: str,
    metric: str,
    max_concurrent: int,
    samples: int = 0,
    seed: int = 0,
    queue: str = "cpu",
    name: str = "",
    early_stop: bool = False,
) -> Sweep:
    """Validate a sweep, store its configs and queue its first ``max_concurrent`` runs;
    with ``early_stop`` (always under ASHA), poor runs stop at ASHA's rungs.

    ``dimensions`` maps a setting to its dimension's text (``0.1, 0.2``,
    ``1..5 step 1``, ``1e-4..1e-1 log``). Errors are ValidationErrors keyed by
    launch-form field (``dim_<setting>`` for a dimension); nothing is written or
    queued on error.
    """
    ensure_role(user=actor, team=experiment.team_id, required=Role.MEMBER)
    algorithm = _algorithm_of(experiment, taskset_version, base_config)
    name = (name or "").strip()
    _check_options(strategy=strategy, metric=metric, max_concurrent=max_concurrent, name=name)
    condition = base_config.get("mnn_condition")
    parsed = _dimensions(
        dimensions, algorithm=algorithm, version=taskset_version, strategy=strategy, condition=condition
    )
    count = _run_count(strategy, parsed, samples)
    points = sweep_points(strategy, parsed, samples=count, seed=seed)
    configs = _checked_configs(base_config, points, version=taskset_version, queue=queue)
    early_stop = bool(early_stop) or strategy == SweepStrategy.ASHA
    _check_rungs(configs if early_stop else [])
    # The runs it queues at once count whole; later ones only replace runs that ended.
    quota_check_runs(team_id=experiment.team_id, adding=min(max_concurrent, len(configs)))
    sweep = Sweep.objects.create(
        team_id=experiment.team_id,
        experiment=experiment,
        taskset_version=taskset_version,
        name=name or f"{algorithm} {strategy} sweep over {', '.join(d.field for d in parsed)}",
        strategy=strategy,
        base_config=base_config,
        dimensions={d.field: d.to_dict() for d in parsed},
        configs=configs,
        planned=count,
        metric=metric,
        maximize=SWEEP_METRICS[metric],
        max_concurrent=max_concurrent,
        early_stop=early_stop,
        seed=seed,
        queue=queue,
        created_by=actor,
    )
    _launch_next(sweep)
    return sweep


def _check_rungs(configs: list[dict[str, Any]]) -> None:
    """Stopping early judges runs at evaluations (ASHA's rungs): each config must
    evaluate at least once before its last step."""
    defaults = TrainConfig.model_fields
    for config in configs:
        iterations = int(config.get("iterations", defaults["iterations"].default))
        interval = int(config.get("eval_interval", defaults["eval_interval"].default))
        if not asha_rungs(min_resource=interval, max_resource=iterations):
            message = (
                f"Stopping early judges runs at evaluations, and a run of {iterations:,} iterations that "
                f"evaluates every {interval:,} steps has none before its end: lower eval_interval."
            )
            raise ValidationError({"sweep_early_stop": message})


def _algorithm_of(
    experiment: Experiment, taskset_version: TaskSetVersion, base_config: dict[str, Any]
) -> str:
    """The sweep's algorithm, once its task set is the team's and the algorithm known."""
    if taskset_version.taskset.team_id != experiment.team_id:
        raise ValidationError({"taskset": "Choose one of this team's task sets."})
    algorithm = str(base_config.get("algorithm", ""))
    if algorithm not in SPECS:
        raise ValidationError({"algorithm": "Choose an algorithm."})
    return algorithm


def _launch_next(sweep: Sweep) -> list[Run]:
    """Create runs from the pending configs while there is room (``sweep`` locked); a
    bayes sweep proposes each config past its first ones when its run is due."""
    active = Run.objects.filter(sweep=sweep, status__in=ACTIVE).count()
    launched = []
    fields = ["next_index", "status"]
    while active < sweep.max_concurrent and sweep.next_index < sweep.planned:
        if sweep.next_index >= len(sweep.configs):
            if sweep.strategy != SweepStrategy.BAYES:
                break
            sweep.configs = [*sweep.configs, _bayes_config(sweep)]
            fields.append("configs")
        config = sweep.configs[sweep.next_index]
        sweep.next_index += 1
        launched.append(
            run_create(
                experiment=sweep.experiment,
                actor=sweep.created_by,
                taskset_version=sweep.taskset_version,
                config=config,
                queue=sweep.queue,
                sweep=sweep,
                check_quota=False,
            )
        )
        active += 1
    if active == 0 and sweep.next_index >= sweep.planned:
        sweep.status = SweepStatus.DONE
    sweep.save(update_fields=sorted(set(fields)))
    return launched


def _bayes_config(sweep: Sweep) -> dict[str, Any]:
    """A bayes sweep's next config: TPE's proposal from its succeeded runs' final
    metric, its runs stopped early (by ASHA's rungs, or a person) with their last value,
    and its runs still going (``sweeps/bayes.py``), seeded by the sweep's seed and how
    many configs it has, and checked like a single run's."""
    dimensions = [Dimension.from_dict(field, data) for field, data in (sweep.dimensions or {}).items()]
    rows = sweep_leaderboard(sweep=sweep)
    done = [(r.point, r.value) for r in rows if r.run.status == RunStatus.SUCCEEDED and r.value is not None]
    stopped = [
        (r.point, r.step, r.value)
        for r in rows
        if r.run.status == RunStatus.CANCELLED and r.value is not None and r.step is not None
    ]
    running = [row.point for row in rows if row.run.status in ACTIVE]
    point = bayes_point(
        dimensions,
        done=done,
        stopped=stopped,
        running=running,
        maximize=sweep.maximize,
        seed=sweep.seed + len(sweep.configs),
    )
    (config,) = _checked_configs(sweep.base_config, [point], version=sweep.taskset_version, queue=sweep.queue)
    return config


def sweep_advance(*, sweep_id: int) -> list[Run]:
    """Launch the sweep's next runs if some of its runs ended; mark it done when all
    have. Called after a sweep run ends. A config that no longer validates (its
    creator left the team...) stops the sweep with the reason."""
    try:
        with transaction.atomic():
            sweep = Sweep.objects.select_for_update().filter(pk=sweep_id, status=SweepStatus.RUNNING).first()
            if sweep is None:
                return []
            return _launch_next(sweep)
    except (ValidationError, PermissionDenied, Http404) as exc:
        message = "; ".join(getattr(exc, "messages", None) or [str(exc) or "not allowed"])
        Sweep.objects.filter(pk=sweep_id).update(
            status=SweepStatus.STOPPED, message=f"Stopped: its next run could not be launched ({message})."
        )
        logger.warning("sweep %s: next run refused: %s", sweep_id, message)
        return []


@transaction.atomic
def sweep_stop(*, sweep: Sweep, actor: AnyUser) -> Sweep:
    """Stop a sweep: no more runs start, and its queued and running runs are cancelled
    (through ``run_cancel``). Members and admins only."""
    ensure_role(user=actor, team=sweep.team_id, required=Role.MEMBER)
    locked = Sweep.objects.select_for_update().get(pk=sweep.pk)
    if locked.status != SweepStatus.RUNNING:
        raise ValidationError({"status": f"This sweep is {locked.get_status_display().lower()} already."})
    locked.status = SweepStatus.STOPPED
    locked.message = f"Stopped by {actor.get_username()}."
    locked.save(update_fields=["status", "message"])
    for run in Run.objects.filter(sweep=locked, status__in=ACTIVE).order_by("pk"):
        if run.cancel_requested_at is None:
            run_cancel(run=run, actor=actor, reason=f"Cancelled: {actor.get_username()} stopped the sweep.")
    return locked


def sweep_asha_check(*, run_id: int) -> bool:
    """Stop a running run of a running sweep that stops early (``Sweep.early_stop``: an
    ASHA sweep, or another asked to) unless, at the highest rung it has
    reached, its value of the sweep's metric ranks in the top 1/eta of the runs that
    reached that rung (``run_cancel``, with the reason). True when it was stopped.
    Called from the worker's stop poll (``run_stop_reason``): at most three small
    reads. The highest rung reached, not the latest evaluation: a poll that comes
    after the next (non-rung) evaluation still judges the run."""
    row = (
        Run.objects.filter(pk=run_id, status=RunStatus.RUNNING, cancel_requested_at__isnull=True)
        .filter(sweep__early_stop=True, sweep__status=SweepStatus.RUNNING)
        .values("sweep_id", "sweep__metric", "sweep__maximize", "config", "total_steps")
        .first()
    )
    if row is None:
        return False
    metric = row["sweep__metric"]
    config = row["config"] if isinstance(row["config"], dict) else {}
    rungs = asha_rungs(min_resource=int(config.get("eval_interval") or 0), max_resource=row["total_steps"])
    if not rungs:
        return False
    steps, values = points_read(run_ids=[run_id], name=metric, lo=min(rungs), hi=max(rungs)).get(
        run_id, ((), ())
    )
    at_rungs = [(int(s), float(v)) for s, v in zip(steps, values, strict=True) if int(s) in rungs]
    if not at_rungs:
        return False
    step, value = at_rungs[-1]
    others = values_at(name=metric, step=step, sweep_id=row["sweep_id"])
    others.pop(run_id, None)
    if asha_keeps(value, list(others.values()), maximize=row["sweep__maximize"]):
        return False
    return _asha_stop(run_id, rung=rungs.index(step) + 1, step=step, name=metric, value=value)


def _asha_stop(run_id: int, *, rung: int, step: int, name: str, value: float) -> bool:
    run = Run.objects.select_related("sweep__created_by").get(pk=run_id)
    reason = f"Stopped by ASHA at rung {rung} (step {step}): {name} {value:.4g} is not in the top third."
    try:
        run_cancel(run=run, actor=run.sweep.created_by, reason=reason)  # type: ignore[union-attr]
    except (ValidationError, PermissionDenied, Http404):
        logger.info("run %s: ASHA stop refused (finished already, or its launcher left)", run_id)
        return False
    return True
