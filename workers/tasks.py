"""Celery tasks: thin shells around the engine.

``train_run`` takes a run id, claims the run (a duplicate or late delivery returns
quietly), builds the engine's inputs from the database, trains with a heartbeat
thread and a :class:`~workers.reporting.RunReporter`, and maps the outcome to the
run's final state. It is idempotent: a redelivered or requeued run resumes from
the last checkpoint in ``RUNS_DIR/<id>/checkpoints``, and metrics of replayed
steps are never duplicated.

``adapt_run`` does the same for runs of kind ``adapt``, around
:mod:`workers.adapting` (a redelivered adaptation runs again and still makes one
adapted model); ``watchdog`` requeues runs whose heartbeat stopped.

torch is imported lazily, inside the task: the web process imports this module
(Celery autodiscovery) and must not pay for it.
"""

from __future__ import annotations

import logging
import math
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import close_old_connections

from apps.experiments.models import Run, RunKind
from apps.experiments.services import (
    Claim,
    run_checkpointed,
    run_claim,
    run_fail,
    run_mark_cancelled,
    run_requeue_stale,
    run_stop_reason,
    run_succeed,
)
from apps.tasksets.models import TaskSetVersion
from workers.adapting import Adapt, AdaptStopped, Evaluate, adapt_batch, adapt_single
from workers.metalearn.config import ConfigError, parse_config
from workers.metalearn.families import make_family
from workers.metalearn.types import DataError, DivergenceError, EngineError, TrainResult
from workers.reporting import Heartbeat, RunReporter

logger = logging.getLogger(__name__)

INTERNAL_ERROR = "The run stopped because of an internal error ({kind}). The worker's log has the details."
NO_GPU = (
    "This run asks for CUDA, but its worker has no GPU. "
    "Launch it on the GPU queue, or with device auto or cpu."
)
#: Appended to an adaptation that diverged.
DIVERGENCE_HINT = (
    "The meta-model may have been meta-trained for fewer inner steps or a smaller step size: "
    "try fewer steps or a smaller learning rate."
)

MetaTrain = Callable[..., TrainResult]


def checkpoint_dir_for(run_id: int) -> Path:
    """Checkpoints of a run, built from its id only."""
    return Path(settings.RUNS_DIR) / str(int(run_id)) / "checkpoints"


def detect_device(requested: str = "auto") -> str:
    """The device this worker trains on, as recorded on the run: ``"cpu"`` or e.g.
    ``"cuda:0 NVIDIA H200"``."""
    if requested == "cpu":
        return "cpu"
    import torch

    if torch.cuda.is_available():
        index = torch.cuda.current_device()
        return f"cuda:{index} {torch.cuda.get_device_name(index)}"
    return "cpu"


def _device_memory_reader(device: str) -> Callable[[], float | None] | None:
    if not device.startswith("cuda"):
        return None
    import torch

    return lambda: torch.cuda.max_memory_allocated() / 2**20


def _data_path(version: TaskSetVersion) -> str | None:
    return version.data_file.path if version.data_file else None


def _worker_name(hostname: str | None) -> str:
    return f"{hostname or socket.gethostname()} pid {os.getpid()}"


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, name="workers.tasks.train_run")
def train_run(self, run_id: int) -> str:
    """Meta-train run ``run_id``. Returns what happened (for logs): ``succeeded``,
    ``failed``, ``cancelled``, ``lost`` or ``skipped``."""
    close_old_connections()
    try:
        return execute_run(run_id=int(run_id), worker=_worker_name(self.request.hostname))
    finally:
        close_old_connections()


@shared_task(name="workers.tasks.watchdog", ignore_result=True)
def watchdog() -> list[int]:
    """Requeue running runs whose heartbeat stopped (beat runs this periodically)."""
    return run_requeue_stale()


def _claim(
    *, run_id: int, worker: str, kind: str, device_for: Callable[[Run], str]
) -> tuple[Claim, str, Run] | None:
    """Claim run ``run_id`` of ``kind`` for this worker, on the device ``device_for``
    picks from the run: the claim, the device and the run as loaded before the claim.
    None (logged) when the run is missing, of another kind, finished or held by a live
    attempt: the delivery is then ignored."""
    run = Run.objects.filter(pk=run_id).only("kind", "queue", "config").first()
    if run is None:
        logger.warning("run %s: no such run, delivery ignored", run_id)
        return None
    if run.kind != kind:
        logger.error("run %s: a %s run was sent to the %s task, delivery ignored", run_id, run.kind, kind)
        return None
    device = device_for(run)
    claim = run_claim(run_id=run_id, worker=worker, device=device)
    if claim is not None:
        logger.info("run %s: %s attempt %s on %s (%s)", run_id, kind, claim.attempt, worker, device)
    return None if claim is None else (claim, device, run)


def _requested_device(run: Run) -> str:
    requested = run.config.get("device", "auto") if isinstance(run.config, dict) else "auto"
    return requested if isinstance(requested, str) else "auto"


def execute_run(*, run_id: int, worker: str, meta_train: MetaTrain | None = None) -> str:
    """The body of :func:`train_run`. ``meta_train`` replaces the engine (tests)."""
    claimed = _claim(
        run_id=run_id,
        worker=worker,
        kind=RunKind.TRAIN,
        device_for=lambda run: detect_device(_requested_device(run)),
    )
    if claimed is None:
        return "skipped"
    claim, device, loaded = claimed
    token = claim.token
    requested = _requested_device(loaded)

    if requested == "cuda" and device == "cpu":
        run_fail(run_id=run_id, token=token, error=NO_GPU)
        return "failed"

    run = Run.objects.select_related("taskset_version").get(pk=run_id)
    try:
        config = parse_config(run.config)
        family = make_family(config.family, data_path=_data_path(run.taskset_version))
    except ConfigError as exc:
        run_fail(run_id=run_id, token=token, error=f"Invalid configuration: {exc}")
        return "failed"
    except DataError as exc:
        run_fail(run_id=run_id, token=token, error=f"Problem with the task data: {exc}")
        return "failed"

    if meta_train is None:
        from workers.metalearn import meta_train  # torch-backed: imported here only

    checkpoint_dir = checkpoint_dir_for(run_id)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    reporter = RunReporter(
        run_id=run_id,
        token=token,
        total_steps=config.iterations,
        device_memory_mb=_device_memory_reader(device),
    )
    heartbeat = Heartbeat(run_id=run_id, token=token, reporter=reporter, interval=settings.HEARTBEAT_SECONDS)
    result: TrainResult | None = None
    failure: tuple[str, int | None] | None = None
    with heartbeat:
        try:
            result = meta_train(config, family, reporter, checkpoint_dir)
        except DivergenceError as exc:
            failure = (str(exc), exc.step)
        except ConfigError as exc:
            failure = (f"Invalid configuration: {exc}", None)
        except DataError as exc:
            failure = (f"Problem with the task data: {exc}", None)
        except EngineError as exc:  # CheckpointError and the like: name no server paths
            failure = (
                str(exc).replace(str(checkpoint_dir), "the run's checkpoint folder"),
                reporter.step or None,
            )
        except SoftTimeLimitExceeded:
            limit = settings.CELERY_TASK_SOFT_TIME_LIMIT
            failure = (f"The run exceeded the time limit of {limit} seconds.", reporter.step or None)
        except Exception as exc:  # noqa: BLE001 - mapped to a short message, logged in full
            logger.exception("run %s: the engine raised", run_id)
            failure = (INTERNAL_ERROR.format(kind=type(exc).__name__), reporter.step or None)
        finally:
            try:
                reporter.close()
            except Exception:  # noqa: BLE001
                logger.exception("run %s: could not store the last metrics", run_id)

    if failure is not None:
        message, step = failure
        logger.info("run %s: failed at step %s: %s", run_id, step, message)
        return "failed" if run_fail(run_id=run_id, token=token, error=message, step=step) else "lost"

    assert result is not None
    if result.checkpoint_dir and reporter.stop_reason != "lost":
        # The engine checkpoints at the end and when it stops.
        run_checkpointed(run_id=run_id, token=token, step=result.step)
    if result.status == "completed":
        summary = _summary(result, reporter, attempt=claim.attempt)
        return (
            "succeeded"
            if run_succeed(run_id=run_id, token=token, summary=summary, step=result.step)
            else "lost"
        )

    # Stopped: because a cancel was requested, or because this attempt lost the run.
    reason = reporter.stop_reason or run_stop_reason(run_id=run_id, token=token)
    if reason == "cancel":
        return "cancelled" if run_mark_cancelled(run_id=run_id, token=token, step=result.step) else "lost"
    if reason is None:  # the engine stopped although nobody asked: say so rather than hang
        message = f"The engine stopped at step {result.step} before the end, without being asked to."
        return "failed" if run_fail(run_id=run_id, token=token, error=message, step=result.step) else "lost"
    logger.info("run %s: attempt %s stopped, the run belongs to a newer attempt", run_id, claim.attempt)
    return "lost"


def _is_finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _summary(result: TrainResult, reporter: RunReporter, *, attempt: int) -> dict[str, Any]:
    """The run's final figures: the engine's final metrics, the last evaluation,
    the speed of the last attempt and how many attempts it took."""
    return {
        "metrics": {k: float(v) for k, v in result.metrics.items() if _is_finite(v)},
        "val": reporter.last_eval_metrics,
        "step": result.step,
        "steps_per_sec": reporter.steps_per_sec,
        "attempts": attempt,
    }


# -- adaptation runs ------------------------------------------------------------------------


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, name="workers.tasks.adapt_run")
def adapt_run(self, run_id: int) -> str:
    """Adapt a registered meta-model: run ``run_id`` of kind ``adapt``. Returns what
    happened (for logs): ``succeeded``, ``failed``, ``cancelled``, ``lost`` or ``skipped``."""
    close_old_connections()
    try:
        return execute_adaptation(run_id=int(run_id), worker=_worker_name(self.request.hostname))
    finally:
        close_old_connections()


def execute_adaptation(
    *, run_id: int, worker: str, adapt: Adapt | None = None, evaluate: Evaluate | None = None
) -> str:
    """The body of :func:`adapt_run`: claim, adapt one task (streaming each inner step
    as ``support_loss``/``query_loss``/``query_accuracy`` metrics) or evaluate the
    meta-test batch (progress per chunk, step = tasks done), then store the one
    adapted model and mark the run succeeded in one transaction
    (``adaptation_complete``). ``adapt``/``evaluate`` replace the engine (tests)."""
    from apps.experiments.models import Queue
    from apps.registry import storage
    from apps.registry.models import Adaptation, AdaptationTarget
    from apps.registry.selectors.adaptations import meta_model_facts
    from apps.registry.services.adaptations import adaptation_complete

    claimed = _claim(
        run_id=run_id,
        worker=worker,
        kind=RunKind.ADAPT,
        device_for=lambda run: detect_device("auto" if run.queue == Queue.GPU else "cpu"),
    )
    if claimed is None:
        return "skipped"
    claim, device, _run = claimed
    token = claim.token

    adaptation = (
        Adaptation.objects.select_related("run", "meta_model__taskset_version__taskset")
        .filter(run_id=run_id)
        .first()
    )
    if adaptation is None:
        run_fail(run_id=run_id, token=token, error="This adaptation run has no adaptation to carry out.")
        return "failed"
    meta_model = adaptation.meta_model
    facts = meta_model_facts(meta_model)
    if facts is None:
        message = "The meta-model's checkpoint is missing from storage or unreadable."
        run_fail(run_id=run_id, token=token, error=message)
        return "failed"
    version = meta_model.taskset_version
    try:
        from workers.metalearn.config import FamilySpec

        family = make_family(
            FamilySpec(name=version.taskset.family, params=version.params or {}),
            data_path=_data_path(version),
        )
    except (ConfigError, DataError, OSError) as exc:
        run_fail(run_id=run_id, token=token, error=f"Problem with the task set: {exc}")
        return "failed"

    checkpoint = storage.meta_model_dir(meta_model.pk)
    engine_device = "cuda" if device.startswith("cuda") else "cpu"
    batch = adaptation.target == AdaptationTarget.BATCH
    total = adaptation.run.total_steps
    reporter = RunReporter(
        run_id=run_id,
        token=token,
        total_steps=total,
        aux_every=1,
        # Points travel in events once stored: an adaptation's curve is short and watched
        # step by step, so store ten times a second (a training run stores once a second).
        flush_seconds=0.1,
        device_memory_mb=_device_memory_reader(device),
    )
    heartbeat = Heartbeat(run_id=run_id, token=token, reporter=reporter, interval=settings.HEARTBEAT_SECONDS)
    outcome: dict[str, Any] | None = None
    failure: str | None = None
    stopped = False
    with heartbeat:
        try:
            if batch:
                outcome = adapt_batch(
                    adaptation,
                    family,
                    checkpoint,
                    reporter,
                    total=total,
                    device=engine_device,
                    evaluate=evaluate,
                )
                stopped = outcome is None
            else:
                outcome = adapt_single(
                    adaptation, facts, family, checkpoint, reporter, device=engine_device, adapt=adapt
                )
        except AdaptStopped:
            stopped = True
        except DataError as exc:
            failure = f"Problem with the task data: {exc}"
        except DivergenceError as exc:
            failure = f"{exc}. {DIVERGENCE_HINT}"
        except EngineError as exc:  # CheckpointError and the like: name no server paths
            failure = str(exc).replace(str(checkpoint), "the meta-model's checkpoint folder")
        except SoftTimeLimitExceeded:
            failure = (
                f"The adaptation exceeded the time limit of {settings.CELERY_TASK_SOFT_TIME_LIMIT} seconds."
            )
        except Exception as exc:  # noqa: BLE001 - mapped to a short message, logged in full
            logger.exception("run %s: the engine raised during adaptation", run_id)
            failure = INTERNAL_ERROR.format(kind=type(exc).__name__)
        finally:
            try:
                reporter.close()
            except Exception:  # noqa: BLE001
                logger.exception("run %s: could not store the last metrics", run_id)

    if failure is not None:
        logger.info("run %s: adaptation failed: %s", run_id, failure)
        return "failed" if run_fail(run_id=run_id, token=token, error=failure) else "lost"
    if stopped or outcome is None:
        reason = reporter.stop_reason or run_stop_reason(run_id=run_id, token=token)
        if reason == "cancel":
            return (
                "cancelled" if run_mark_cancelled(run_id=run_id, token=token, step=reporter.step) else "lost"
            )
        if reason is None:
            message = "The adaptation stopped before the end, without being asked to."
            return "failed" if run_fail(run_id=run_id, token=token, error=message) else "lost"
        return "lost"

    adapted = adaptation_complete(
        run_id=run_id,
        token=token,
        result=outcome["result"],
        weights=outcome.get("weights"),
        summary=outcome["summary"],
        step=outcome["step"],
    )
    return "succeeded" if adapted is not None else "lost"
