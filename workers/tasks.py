"""Celery tasks: thin shells around the engine.

``train_run`` takes a run id, claims the run (a duplicate or late delivery returns
quietly), builds the engine's inputs from the database, trains with a heartbeat
thread and a :class:`~workers.reporting.RunReporter`, and maps the outcome to the
run's final state. It is idempotent: a redelivered or requeued run resumes from
the last stored checkpoint (fetched from the run-file store into this machine's
``<data>/runs/<id>/checkpoints`` first, so any worker machine can resume it), and
metrics of replayed steps are never duplicated. Checkpoints go back to the store
off the training thread (:class:`workers.uploads.CheckpointUploader`).

``adapt_run`` does the same for runs of kind ``adapt``, around
:mod:`workers.adapting` (a redelivered adaptation runs again and still makes one
adapted model); ``watchdog`` requeues runs whose heartbeat stopped. Both go through
:func:`workers.attempt.run_attempt` (claim, heartbeat, outcome, errors).

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
from django.db import close_old_connections

from apps.experiments.models import Queue, Run, RunKind
from apps.experiments.services import run_checkpoints_retain_pending, run_requeue_stale, run_succeed
from apps.runfiles.checkpoints import fetch_newest, local_root
from workers.adapting import Adapt, Evaluate, adaptation_job
from workers.attempt import (
    INTERNAL_ERROR,
    Attempt,
    Failed,
    Finished,
    Job,
    Stopped,
    Wording,
    run_attempt,
    taskset_data_path,
)
from workers.metalearn.config import ConfigError, parse_config
from workers.metalearn.families import make_family
from workers.metalearn.specs import SPECS
from workers.metalearn.types import DataError, TrainResult
from workers.reporting import RunReporter
from workers.system_metrics import SystemSampler
from workers.uploads import CheckpointUploader

logger = logging.getLogger(__name__)

__all__ = [
    "INTERNAL_ERROR", "adapt_run", "execute_adaptation", "execute_run", "task_map", "train_run", "watchdog",
]  # fmt: skip

NO_GPU = (
    "This run asks for CUDA, but its worker has no GPU. "
    "Launch it on the GPU queue, or with device auto or cpu."
)

#: What to change after a diverged training run, per setting (as the launch form names them).
_DIVERGENCE_REMEDIES = {
    "meta_lr": "a smaller meta learning rate",
    "inner_lr": "a smaller inner learning rate",
    "inner_steps": "fewer inner steps",
    "grad_clip": "a gradient clip",
}


def divergence_hint(algorithm: str) -> str:
    """Appended to a training run that diverged: the remedies among ``algorithm``'s settings
    (its measured ``divergence_remedies``, else all of its own)."""
    spec = SPECS[algorithm]
    fields = spec.divergence_remedies or [field for field in _DIVERGENCE_REMEDIES if spec.applies(field)]
    remedies = [_DIVERGENCE_REMEDIES[field] for field in fields]
    if not remedies:
        return ""
    listed = remedies[0] if len(remedies) == 1 else ", ".join(remedies[:-1]) + f", or {remedies[-1]}"
    return f". Clone it with {listed}."


MetaTrain = Callable[..., TrainResult]


def checkpoint_dir_for(run_id: int) -> Path:
    """This machine's folder for a run's checkpoints, built from its id only."""
    return local_root(run_id)


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


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, name="workers.tasks.adapt_run")
def adapt_run(self, run_id: int) -> str:
    """Adapt a registered meta-model: run ``run_id`` of kind ``adapt``. Returns what
    happened (for logs), as :func:`train_run` does."""
    close_old_connections()
    try:
        return execute_adaptation(run_id=int(run_id), worker=_worker_name(self.request.hostname))
    finally:
        close_old_connections()


@shared_task(acks_late=True, reject_on_worker_lost=True, name="workers.tasks.task_map")
def task_map(meta_model_id: int) -> str:
    """The task embedding map of meta-model ``meta_model_id`` (``workers/task_map.py``)."""
    from workers.task_map import task_map_job

    close_old_connections()
    return task_map_job(int(meta_model_id))


@shared_task(name="workers.tasks.watchdog", ignore_result=True)
def watchdog() -> list[int]:
    """Requeue running runs whose heartbeat stopped, and trim the checkpoints of ended
    runs that the run-file store refused to trim (beat runs this periodically).
    Returns the ids of the runs requeued."""
    requeued = run_requeue_stale()
    run_checkpoints_retain_pending()
    return requeued


def _requested_device(run: Run) -> str:
    requested = run.config.get("device", "auto") if isinstance(run.config, dict) else "auto"
    return requested if isinstance(requested, str) else "auto"


def execute_run(*, run_id: int, worker: str, meta_train: MetaTrain | None = None) -> str:
    """The body of :func:`train_run`. ``meta_train`` replaces the engine (tests)."""
    return run_attempt(
        run_id=run_id,
        worker=worker,
        kind=RunKind.TRAIN,
        device_for=lambda run: detect_device(_requested_device(run)),
        prepare=lambda attempt: _training_job(attempt, meta_train),
    )


def execute_adaptation(
    *, run_id: int, worker: str, adapt: Adapt | None = None, evaluate: Evaluate | None = None
) -> str:
    """The body of :func:`adapt_run`: adapt one task or evaluate the meta-test batch
    (:func:`workers.adapting.adaptation_job`), then store the one adapted model and
    mark the run succeeded in one transaction. ``adapt``/``evaluate`` replace the
    engine (tests)."""
    return run_attempt(
        run_id=run_id,
        worker=worker,
        kind=RunKind.ADAPT,
        device_for=lambda run: detect_device("auto" if run.queue == Queue.GPU else "cpu"),
        prepare=lambda attempt: adaptation_job(
            attempt,
            memory=_device_memory_reader(attempt.device),
            adapt=adapt,
            evaluate=evaluate,
        ),
    )


def _training_job(attempt: Attempt, meta_train: MetaTrain | None) -> Job | Failed:
    """The engine call of a training attempt, or why it cannot start."""
    if _requested_device(attempt.run) == "cuda" and attempt.device == "cpu":
        return Failed(NO_GPU)
    run = Run.objects.select_related("taskset_version").get(pk=attempt.run_id)
    try:
        config = parse_config(run.config)
        family = make_family(config.family, data_path=taskset_data_path(run.taskset_version))
    except ConfigError as exc:
        return Failed(f"Invalid configuration: {exc}")
    except DataError as exc:
        return Failed(f"Problem with the task data: {exc}")
    except FileNotFoundError:
        return Failed("The task set's data file is missing from storage.")
    if meta_train is None:
        from workers.metalearn import meta_train  # torch-backed: imported here only
    checkpoint_dir = checkpoint_dir_for(attempt.run_id)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    fetch_newest(attempt.run_id)  # StoreUnavailable: the attempt is interrupted
    uploader = CheckpointUploader(run_id=attempt.run_id, root=checkpoint_dir)
    memory = _device_memory_reader(attempt.device)
    reporter = RunReporter(
        run_id=attempt.run_id,
        token=attempt.token,
        total_steps=config.iterations,
        device_memory_mb=memory,
        system=SystemSampler(device_memory_mb=memory),
    )
    reporter.uploader = uploader
    engine = meta_train

    def work() -> Finished | Stopped:
        result = engine(config, family, reporter, checkpoint_dir)
        uploader.wait()  # the last checkpoint is stored before the run counts as done
        if result.status != "completed":
            return Stopped(result.step)
        return Finished(  # stored after the reporter closed: its last figures are in
            result.step,
            store=lambda: run_succeed(
                run_id=attempt.run_id,
                token=attempt.token,
                summary=_summary(result, reporter, attempt=attempt.number),
                step=result.step,
                note=result.compile,
            ),
        )

    wording = Wording(
        noun="run",
        checkpoint=checkpoint_dir,
        checkpoint_label="the run's checkpoint folder",
        unasked_stop="The engine stopped at step {step} before the end, without being asked to.",
        divergence_hint=divergence_hint(config.algorithm),
    )
    return Job(reporter=reporter, work=work, wording=wording)


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
