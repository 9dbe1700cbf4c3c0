"""Celery tasks: thin shells around the engine.

``train_run`` takes a run id, claims the run (a duplicate or late delivery returns
quietly), builds the engine's inputs from the database, trains with a heartbeat
thread and a :class:`~workers.reporting.RunReporter`, and maps the outcome to the
run's final state. It is idempotent: a redelivered or requeued run resumes from
the last checkpoint in ``RUNS_DIR/<id>/checkpoints``, and metrics of replayed
steps are never duplicated.

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
    run_checkpointed,
    run_claim,
    run_fail,
    run_mark_cancelled,
    run_requeue_stale,
    run_stop_reason,
    run_succeed,
)
from apps.tasksets.models import TaskSetVersion
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


def execute_run(*, run_id: int, worker: str, meta_train: MetaTrain | None = None) -> str:
    """The body of :func:`train_run`. ``meta_train`` replaces the engine (tests)."""
    row = Run.objects.filter(pk=run_id).values_list("config", "kind").first()
    if row is None:
        logger.warning("run %s: no such run, delivery ignored", run_id)
        return "skipped"
    raw, kind = row
    if kind != RunKind.TRAIN:
        logger.error("run %s: a %s run was sent to train_run, delivery ignored", run_id, kind)
        return "skipped"
    requested = raw.get("device", "auto") if isinstance(raw, dict) else "auto"
    device = detect_device(requested if isinstance(requested, str) else "auto")
    claim = run_claim(run_id=run_id, worker=worker, device=device)
    if claim is None:
        return "skipped"
    token = claim.token
    logger.info("run %s: attempt %s on %s (%s)", run_id, claim.attempt, worker, device)

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
        checkpoint_interval=config.checkpoint_interval,
        eval_interval=config.eval_interval,
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

#: Points of the dense x grid a regression adaptation is plotted on.
ADAPT_GRID_POINTS = 200
#: At most this many support and query images are kept (as small PNGs) for the review page.
ADAPT_MAX_IMAGES = 200

Adapt = Callable[..., Any]
Evaluate = Callable[..., Any]


class _AdaptStopped(Exception):
    """Raised from the adaptation's ``on_step`` when a cancel was requested or the
    attempt lost the run: ends the engine call at once."""


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

    row = Run.objects.filter(pk=run_id).values_list("kind", "queue").first()
    if row is None:
        logger.warning("run %s: no such run, delivery ignored", run_id)
        return "skipped"
    kind, queue = row
    if kind != RunKind.ADAPT:
        logger.error("run %s: a %s run was sent to adapt_run, delivery ignored", run_id, kind)
        return "skipped"
    device = detect_device("auto" if queue == Queue.GPU else "cpu")
    claim = run_claim(run_id=run_id, worker=worker, device=device)
    if claim is None:
        return "skipped"
    token = claim.token
    logger.info("run %s: adaptation attempt %s on %s (%s)", run_id, claim.attempt, worker, device)

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
        device_memory_mb=_device_memory_reader(device),
    )
    heartbeat = Heartbeat(run_id=run_id, token=token, reporter=reporter, interval=settings.HEARTBEAT_SECONDS)
    outcome: dict[str, Any] | None = None
    failure: str | None = None
    stopped = False
    with heartbeat:
        try:
            if batch:
                outcome = _adapt_batch(
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
                outcome = _adapt_single(
                    adaptation, facts, family, checkpoint, reporter, device=engine_device, adapt=adapt
                )
        except _AdaptStopped:
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


def _r(value: Any, digits: int = 6) -> float | None:
    """A float for JSON, rounded to ``digits`` significant digits; None if not finite."""
    number = float(value)
    if not math.isfinite(number):
        return None
    return float(f"{number:.{digits}g}")


def _single_task_data(adaptation: Any, facts: Any, family: Any) -> dict[str, Any]:
    """Support, query and description of a single-task adaptation, as numpy arrays."""
    import numpy as np

    from apps.registry.models import AdaptationTarget
    from workers.metalearn.types import EpisodeSpec

    if adaptation.target == AdaptationTarget.TEST_TASK:
        ways = facts.ways if facts.classification else 1
        spec = EpisodeSpec(shots=facts.shots, query=facts.query, ways=ways)
        task = family.fixed_tasks("test", spec, count=1, start=int(adaptation.task_index))
        return {
            "xs": task.x_support[0],
            "ys": task.y_support[0],
            "xq": task.x_query[0],
            "yq": task.y_query[0],
            "desc": None if task.desc is None else task.desc[0],
            "truth": task.desc is not None and callable(getattr(family, "truth", None)),
            "classes": [f"Class {c + 1}" for c in range(ways)] if facts.classification else [],
        }
    shape = (-1, *facts.input_shape)
    label_type = np.int64 if facts.classification else np.float32
    support, query = adaptation.support or {}, adaptation.query or {}
    data: dict[str, Any] = {
        "xs": np.asarray(support["x"], dtype=np.float32).reshape(shape),
        "ys": np.asarray(support["y"], dtype=label_type),
        "xq": None,
        "yq": None,
        "desc": None if adaptation.desc is None else np.asarray(adaptation.desc, dtype=np.float32),
        "truth": False,
        "classes": list(support.get("classes") or [f"Class {c + 1}" for c in range(facts.ways)])
        if facts.classification
        else [],
    }
    if query.get("x"):
        data["xq"] = np.asarray(query["x"], dtype=np.float32).reshape(shape)
        data["yq"] = np.asarray(query["y"], dtype=label_type)
    return data


def _adapt_single(
    adaptation: Any,
    facts: Any,
    family: Any,
    checkpoint: Path,
    reporter: RunReporter,
    *,
    device: str,
    adapt: Adapt | None,
) -> dict[str, Any]:
    """Adapt to one task, streaming each inner step; the adapted model's fields."""
    if adapt is None:
        from workers.metalearn import adapt  # torch-backed: imported here only
    from safetensors.torch import save as safetensors_bytes

    data = _single_task_data(adaptation, facts, family)
    xs, ys, xq, yq, desc = data["xs"], data["ys"], data["xq"], data["yq"], data["desc"]
    steps, lr = int(adaptation.steps), float(adaptation.lr)

    def on_step(step: int, entry: dict[str, float]) -> None:
        reporter.on_step(step, entry)
        if reporter.should_stop():
            raise _AdaptStopped

    query = None if xq is None else (xq, yq)
    result = adapt(checkpoint, (xs, ys), query, steps=steps, lr=lr, on_step=on_step, desc=desc, device=device)
    curve = [{"step": i, **{k: _r(v) for k, v in entry.items()}} for i, entry in enumerate(result.curve)]
    has_query = xq is not None
    if facts.classification:
        key = "query_accuracy" if has_query else "support_accuracy"
        metric = "accuracy" if has_query else "support_accuracy"
    else:
        key = "query_loss" if has_query else "support_loss"
        metric = "mse" if has_query else "support_mse"
    first, last = result.curve[0], result.curve[-1]
    before, after = first.get(key), last.get(key)

    if facts.classification:
        predictions = _classification_predictions(facts, data, result)
    else:
        predictions = _regression_predictions(
            adaptation, facts, family, checkpoint, data, result, adapt=adapt, device=device
        )
    weights = safetensors_bytes({k: v.contiguous() for k, v in result.weights.items()})
    n_steps = len(result.curve) - 1
    return {
        "result": {
            "metric": metric,
            "before": None if before is None else _r(before, 9),
            "after": None if after is None else _r(after, 9),
            "ci95": None,
            "curve": curve,
            "predictions": predictions,
            "n_tasks": 1,
            "n_steps": n_steps,
            "losses": None,
            "scores": None,
            "task_ids": None,
        },
        "weights": weights,
        "summary": {
            "metric": metric,
            "before": _r(before, 9) if before is not None else None,
            "after": _r(after, 9) if after is not None else None,
            "final": {k: _r(v, 9) for k, v in last.items()},
            "steps_per_sec": reporter.steps_per_sec,
            "shots": int(xs.shape[0]),
            "query": 0 if xq is None else int(xq.shape[0]),
            "device": device,
        },
        "step": n_steps,
    }


def _regression_predictions(
    adaptation: Any,
    facts: Any,
    family: Any,
    checkpoint: Path,
    data: dict[str, Any],
    result: Any,
    *,
    adapt: Adapt,
    device: str,
) -> dict[str, Any]:
    """Support and query points with the predictions before and after; for 1-D inputs
    also a dense grid over the family's input range with the predictions before and
    after and, for a meta-test task of a synthetic family, the true function."""
    import numpy as np

    xs, ys, xq, yq = data["xs"], data["ys"], data["xq"], data["yq"]
    predictions: dict[str, Any] = {
        "kind": "regression",
        "support": {
            "x": [[_r(v) for v in row] for row in xs.reshape(len(xs), -1)],
            "y": [_r(v) for v in ys.reshape(-1)],
        },
    }
    if xq is not None:
        predictions["query"] = {
            "x": [[_r(v) for v in row] for row in xq.reshape(len(xq), -1)],
            "y": [_r(v) for v in yq.reshape(-1)],
            "before": [_r(v) for v in np.asarray(result.predictions_before).reshape(-1)],
            "after": [_r(v) for v in np.asarray(result.predictions).reshape(-1)],
        }
    if facts.input_size != 1:
        return predictions
    params = getattr(family, "params", None)
    seen = [float(v) for v in xs.reshape(-1)] + ([] if xq is None else [float(v) for v in xq.reshape(-1)])
    low = min([float(getattr(params, "x_min", min(seen)))] + seen)
    high = max([float(getattr(params, "x_max", max(seen)))] + seen)
    if high <= low:
        low, high = low - 1.0, high + 1.0
    grid = np.linspace(low, high, ADAPT_GRID_POINTS, dtype=np.float32)
    on_grid = adapt(
        checkpoint,
        (xs, ys),
        grid[:, None],
        steps=int(adaptation.steps),
        lr=float(adaptation.lr),
        desc=data["desc"],
        device=device,
    )
    predictions["grid"] = {
        "x": [_r(v) for v in grid],
        "before": [_r(v) for v in np.asarray(on_grid.predictions_before).reshape(-1)],
        "after": [_r(v) for v in np.asarray(on_grid.predictions).reshape(-1)],
    }
    if data["truth"]:
        truth = family.truth(data["desc"], grid[:, None])
        predictions["grid"]["truth"] = [_r(v) for v in np.asarray(truth).reshape(-1)]
    predictions["has_truth"] = bool(data["truth"])
    return predictions


def _classification_predictions(facts: Any, data: dict[str, Any], result: Any) -> dict[str, Any]:
    """Predicted labels before and after, the confusion matrix (true x predicted,
    after adaptation) and the support and query images as small PNG data URIs."""
    import numpy as np

    from apps.tasksets.previews import png_data_uri

    ways = facts.ways
    predictions: dict[str, Any] = {"kind": "classification", "ways": ways, "classes": data["classes"]}
    shape = facts.image_shape
    xs, ys, xq, yq = data["xs"], data["ys"], data["xq"], data["yq"]

    def picture(x: Any) -> str:
        return png_data_uri(np.asarray(x, dtype=np.float32).reshape(1, *shape))

    if shape is not None:
        predictions["support_images"] = [
            {"src": picture(x), "label": int(y)} for x, y in list(zip(xs, ys, strict=True))[:ADAPT_MAX_IMAGES]
        ]
    if xq is None:
        return predictions
    after = np.asarray(result.predictions).argmax(axis=-1).astype(int)
    before = np.asarray(result.predictions_before).argmax(axis=-1).astype(int)
    labels = np.asarray(yq).astype(int).reshape(-1)
    confusion = np.zeros((ways, ways), dtype=int)
    np.add.at(confusion, (labels, after), 1)
    predictions["query"] = {"y": labels.tolist(), "before": before.tolist(), "after": after.tolist()}
    predictions["confusion"] = confusion.tolist()
    if shape is not None:
        predictions["query_images"] = [
            {"src": picture(x), "label": int(y), "pred": int(p), "pred_before": int(b)}
            for x, y, p, b in list(zip(xq, labels, after, before, strict=True))[:ADAPT_MAX_IMAGES]
        ]
    return predictions


def _adapt_batch(
    adaptation: Any,
    family: Any,
    checkpoint: Path,
    reporter: RunReporter,
    *,
    total: int,
    device: str,
    evaluate: Evaluate | None,
) -> dict[str, Any] | None:
    """Evaluate the first ``total`` meta-test tasks, reporting progress per chunk (step =
    tasks done). None when stopped (cancelled, or the run was lost)."""
    import numpy as np

    if evaluate is None:
        from workers.metalearn import evaluate  # torch-backed: imported here only

    def progress(done: int, count: int) -> None:
        reporter.on_step(done, {})

    result = evaluate(
        checkpoint,
        split="test",
        count=total,
        steps=int(adaptation.steps),
        lr=float(adaptation.lr),
        family=family,
        # The engine sizes chunks by the tasks' inputs; a setting may pin it (tests do).
        batch_size=getattr(settings, "ADAPT_BATCH_CHUNK", None),
        device=device,
        progress=progress,
        should_stop=reporter.should_stop,
    )
    losses = np.asarray(result.losses, dtype="<f4")
    scores = np.asarray(result.scores, dtype="<f4")
    task_ids = np.asarray(result.task_ids, dtype="<i8")
    if reporter.stop_reason is not None or scores.shape[0] < total:
        return None
    bad = ~np.isfinite(losses)
    if bad.any():
        n_bad = int(bad.any(axis=1).sum())
        first_step = int(np.nonzero(bad.any(axis=0))[0][0])
        quantity = f"the query loss of {n_bad} of {losses.shape[0]} tasks"
        raise DivergenceError(first_step, quantity, float("nan"), phase="adaptation")
    mean_curve = losses.astype(np.float64).mean(axis=0)
    spread = (
        losses.astype(np.float64).std(axis=0, ddof=1) if losses.shape[0] > 1 else np.zeros(losses.shape[1])
    )
    ci_curve = 1.96 * spread / math.sqrt(losses.shape[0])
    curve = [
        {"step": i, "query_loss": _r(m, 9), "query_loss_ci95": _r(c, 9)}
        for i, (m, c) in enumerate(zip(mean_curve, ci_curve, strict=True))
    ]
    before = float(mean_curve[0])
    summary = {
        "metric": result.metric,
        "before": _r(before, 9),
        "after": _r(result.mean, 9),
        "ci95": _r(result.ci95, 9),
        "n_tasks": int(scores.shape[0]),
        "n_steps": int(result.steps),
        "device": device,
    }
    return {
        "result": {
            "metric": result.metric,
            "before": _r(before, 9),
            "after": _r(result.mean, 9),
            "ci95": _r(result.ci95, 9),
            "curve": curve,
            "predictions": {"kind": "batch", "metric": result.metric},
            "n_tasks": int(scores.shape[0]),
            "n_steps": int(result.steps),
            "losses": losses.tobytes(),
            "scores": scores.tobytes(),
            "task_ids": task_ids.tobytes(),
        },
        "weights": None,
        "summary": summary,
        "step": int(scores.shape[0]),
    }
