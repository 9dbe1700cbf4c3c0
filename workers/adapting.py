"""Adaptation runs, between the engine and the registry: build a task's data from an
:class:`~apps.adaptations.models.Adaptation`, adapt (streaming each inner step through
the run's reporter) or evaluate the fixed meta-test tasks, and shape the results
into a typed :class:`~apps.adaptations.services.AdaptedResult` (curves, predictions for
the review page as numbers, the loss matrix as compact bytes). Pictures are not drawn
here: images are stored as their pixel values, and the review page draws them.

``workers.tasks.adapt_run`` is the Celery shell around :func:`adaptation_job`, through
:func:`workers.attempt.run_attempt`. torch is imported lazily, inside the functions
that run the engine.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

from apps.adaptations.models import Adaptation, AdaptationTarget
from apps.adaptations.selectors import ModelFacts, meta_model_facts
from apps.adaptations.services import AdaptedResult, adaptation_complete
from apps.registry import storage
from apps.registry.models import MetaModel
from apps.runfiles import keys
from apps.runfiles.folders import fetch_folder
from workers.attempt import Attempt, Failed, Finished, Job, Outcome, Stopped, Wording, taskset_data_path
from workers.metalearn.config import ConfigError, FamilySpec
from workers.metalearn.families import make_family
from workers.metalearn.types import DataError, DivergenceError
from workers.reporting import RunReporter

#: Points of the dense x grid a regression adaptation is plotted on.
ADAPT_GRID_POINTS = 200
#: At most this many support and query images are kept (as pixel values) for the review page.
ADAPT_MAX_IMAGES = 200
#: Significant digits kept of each pixel value.
PIXEL_DIGITS = 3
#: Appended to an adaptation that diverged.
DIVERGENCE_HINT = (
    "The meta-model may have been meta-trained for fewer inner steps or a smaller step size: "
    "try fewer steps or a smaller learning rate."
)

Adapt = Callable[..., Any]
Evaluate = Callable[..., Any]


@dataclass(frozen=True)
class Adapted:
    """What one adaptation produced: the adapted model's fields, its weights
    (safetensors bytes; None for a batch), the run's summary and last step."""

    result: AdaptedResult
    weights: bytes | None
    summary: dict[str, Any]
    step: int


class AdaptStopped(Exception):
    """Raised from the adaptation's ``on_step`` when a cancel was requested or the
    attempt lost the run: ends the engine call at once."""


def _r(value: Any, digits: int = 6) -> float | None:
    """A float for JSON, rounded to ``digits`` significant digits; None if not finite."""
    number = float(value)
    if not math.isfinite(number):
        return None
    return float(f"{number:.{digits}g}")


def _single_task_data(adaptation: Adaptation, facts: ModelFacts, family: Any) -> dict[str, Any]:
    """Support, query and description of a single-task adaptation, as numpy arrays."""
    import numpy as np

    from workers.metalearn.types import EpisodeSpec

    if adaptation.target == AdaptationTarget.TEST_TASK:
        ways = facts.ways if facts.classification else 1
        spec = EpisodeSpec(shots=int(adaptation.shots or facts.shots), query=facts.query, ways=ways)
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


def adaptation_job(
    attempt: Attempt,
    *,
    memory: Callable[[], float | None] | None,
    adapt: Adapt | None = None,
    evaluate: Evaluate | None = None,
) -> Job | Failed:
    """The engine call of an adaptation attempt, or why it cannot start."""
    adaptation = (
        Adaptation.objects.select_related("run", "meta_model__taskset_version__taskset")
        .filter(run_id=attempt.run_id)
        .first()
    )
    if adaptation is None:
        return Failed("This adaptation run has no adaptation to carry out.")
    inputs = _local_inputs(adaptation.meta_model)  # first: an unreachable store interrupts
    if isinstance(inputs, Failed):
        return inputs
    family, checkpoint = inputs
    facts = meta_model_facts(adaptation.meta_model)
    if facts is None:
        return Failed("The meta-model's checkpoint is missing from storage or unreadable.")
    reporter = RunReporter(
        run_id=attempt.run_id,
        token=attempt.token,
        total_steps=adaptation.run.total_steps,
        aux_every=1,
        # A short curve watched step by step: the first points at once, then ten times a second.
        flush_seconds=0.1,
        first_points_at_once=True,
        device_memory_mb=memory,
    )
    device = "cuda" if attempt.device.startswith("cuda") else "cpu"

    def work() -> Outcome:
        try:
            if adaptation.target == AdaptationTarget.BATCH:
                adapted = adapt_batch(
                    adaptation, family, checkpoint, reporter, device=device, evaluate=evaluate
                )
            else:
                adapted = adapt_single(
                    adaptation, facts, family, checkpoint, reporter, device=device, adapt=adapt
                )
        except AdaptStopped:
            adapted = None
        return Stopped(reporter.step) if adapted is None else _finished(attempt, adapted)

    wording = Wording(
        noun="adaptation",
        checkpoint=checkpoint,
        checkpoint_label="the meta-model's checkpoint folder",
        unasked_stop="The adaptation stopped before the end, without being asked to.",
        divergence_hint=f". {DIVERGENCE_HINT}",
        name_steps=False,
    )
    return Job(reporter=reporter, work=work, wording=wording)


def _local_inputs(meta_model: MetaModel) -> tuple[Any, Path] | Failed:
    """The meta-model's task family and this machine's copy of its checkpoint folder
    (``StoreUnavailable`` when the store cannot be reached: the attempt is interrupted)."""
    version = meta_model.taskset_version
    try:
        spec = FamilySpec(name=version.taskset.family, params=version.params or {})
        family = make_family(spec, data_path=taskset_data_path(version))
    except FileNotFoundError:
        return Failed("The task set's data file is missing from storage.")
    except (ConfigError, DataError, OSError) as exc:
        return Failed(f"Problem with the task set: {exc}")
    try:
        return family, fetch_folder(keys.meta_model(meta_model.pk), storage.meta_model_files)
    except FileNotFoundError:
        return Failed("The meta-model's checkpoint is missing from storage or unreadable.")


def _finished(attempt: Attempt, adapted: Adapted) -> Finished:
    """Store the one adapted model and mark the run succeeded, in one transaction."""
    return Finished(
        adapted.step,
        store=lambda: (
            adaptation_complete(
                run_id=attempt.run_id,
                token=attempt.token,
                result=adapted.result,
                weights=adapted.weights,
                summary=adapted.summary,
                step=adapted.step,
            )
            is not None
        ),
    )


def adapt_single(
    adaptation: Adaptation,
    facts: ModelFacts,
    family: Any,
    checkpoint: Path,
    reporter: RunReporter,
    *,
    device: str,
    adapt: Adapt | None,
) -> Adapted:
    """Adapt to one task in one engine call, streaming each inner step: the support
    and query predictions and, for a 1-D regression, those on a dense grid."""
    if adapt is None:
        from workers.metalearn import adapt  # torch-backed: imported here only
    from safetensors.torch import save as safetensors_bytes

    data = _single_task_data(adaptation, facts, family)

    def on_step(step: int, entry: dict[str, float]) -> None:
        reporter.on_step(step, entry)
        if reporter.should_stop():
            raise AdaptStopped

    query = None if data["xq"] is None else (data["xq"], data["yq"])
    grid = None if facts.classification else _grid(facts, family, data)
    extra = {} if grid is None else {"grid": grid[:, None]}
    result = adapt(
        checkpoint,
        (data["xs"], data["ys"]),
        query,
        steps=int(adaptation.steps),
        lr=float(adaptation.lr),
        on_step=on_step,
        desc=data["desc"],
        device=device,
        **extra,
    )
    if facts.classification:
        predictions = _classification_predictions(facts, data, result)
    else:
        predictions = _regression_predictions(family, data, result, grid)
    weights = safetensors_bytes(
        {k: v.contiguous() for k, v in result.weights.items()}, metadata={"format": "pt", **result.metadata}
    )
    return _single_adapted(facts, data, result, predictions, weights, reporter=reporter, device=device)


def _single_adapted(
    facts: ModelFacts,
    data: dict[str, Any],
    result: Any,
    predictions: dict[str, Any],
    weights: bytes,
    *,
    reporter: RunReporter,
    device: str,
) -> Adapted:
    """The adapted model's fields and the run's summary of a one-task adaptation."""
    has_query = data["xq"] is not None
    if facts.classification:
        key, metric = (
            ("query_accuracy", "accuracy") if has_query else ("support_accuracy", "support_accuracy")
        )
    else:
        key, metric = ("query_loss", "mse") if has_query else ("support_loss", "support_mse")
    first, last = result.curve[0], result.curve[-1]
    before = None if first.get(key) is None else _r(first[key], 9)
    after = None if last.get(key) is None else _r(last[key], 9)
    n_steps = len(result.curve) - 1
    curve = [{"step": i, **{k: _r(v) for k, v in entry.items()}} for i, entry in enumerate(result.curve)]
    summary = {
        "metric": metric,
        "before": before,
        "after": after,
        "final": {k: _r(v, 9) for k, v in last.items()},
        "steps_per_sec": reporter.steps_per_sec,
        "shots": int(data["xs"].shape[0]),
        "query": int(data["xq"].shape[0]) if has_query else 0,
        "device": device,
    }
    fields = AdaptedResult(
        metric=metric, before=before, after=after, curve=curve, predictions=predictions, n_steps=n_steps
    )
    return Adapted(result=fields, weights=weights, summary=summary, step=n_steps)


def _grid(facts: ModelFacts, family: Any, data: dict[str, Any]) -> Any:
    """A dense x grid over the family's input range and the task's points, for a
    regression with 1-D inputs (None otherwise)."""
    import numpy as np

    if facts.input_size != 1:
        return None
    xs, xq = data["xs"], data["xq"]
    params = getattr(family, "params", None)
    seen = [float(v) for v in xs.reshape(-1)] + ([] if xq is None else [float(v) for v in xq.reshape(-1)])
    low = min([float(getattr(params, "x_min", min(seen)))] + seen)
    high = max([float(getattr(params, "x_max", max(seen)))] + seen)
    if high <= low:
        low, high = low - 1.0, high + 1.0
    return np.linspace(low, high, ADAPT_GRID_POINTS, dtype=np.float32)


def _regression_predictions(family: Any, data: dict[str, Any], result: Any, grid: Any) -> dict[str, Any]:
    """Support and query points with the predictions before and after; for 1-D inputs
    also the dense grid with the predictions before and after and, for a meta-test
    task of a synthetic family, the true function."""
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
    if grid is None:
        return predictions
    predictions["grid"] = {
        "x": [_r(v) for v in grid],
        "before": [_r(v) for v in np.asarray(result.grid_before).reshape(-1)],
        "after": [_r(v) for v in np.asarray(result.grid).reshape(-1)],
    }
    if data["truth"]:
        truth = family.truth(data["desc"], grid[:, None])
        predictions["grid"]["truth"] = [_r(v) for v in np.asarray(truth).reshape(-1)]
    predictions["has_truth"] = bool(data["truth"])
    return predictions


def _classification_predictions(facts: ModelFacts, data: dict[str, Any], result: Any) -> dict[str, Any]:
    """Predicted labels before and after, the confusion matrix (true x predicted,
    after adaptation) and the support and query images as their pixel values
    (``x``, flat, ``image_shape`` long), which the review page draws."""
    import numpy as np

    ways = facts.ways
    predictions: dict[str, Any] = {"kind": "classification", "ways": ways, "classes": data["classes"]}
    shape = facts.image_shape
    xs, ys, xq, yq = data["xs"], data["ys"], data["xq"], data["yq"]

    def pixels(x: Any) -> list[float | None]:
        return [_r(v, PIXEL_DIGITS) for v in np.asarray(x, dtype=np.float32).reshape(-1)]

    if shape is not None:
        predictions["image_shape"] = list(shape)
        predictions["support_images"] = [
            {"x": pixels(x), "label": int(y)} for x, y in list(zip(xs, ys, strict=True))[:ADAPT_MAX_IMAGES]
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
            {"x": pixels(x), "label": int(y), "pred": int(p), "pred_before": int(b)}
            for x, y, p, b in list(zip(xq, labels, after, before, strict=True))[:ADAPT_MAX_IMAGES]
        ]
    return predictions


def adapt_batch(
    adaptation: Adaptation,
    family: Any,
    checkpoint: Path,
    reporter: RunReporter,
    *,
    device: str,
    evaluate: Evaluate | None,
) -> Adapted | None:
    """Evaluate the first ``total_steps`` meta-test tasks, reporting progress per chunk
    (step = tasks done). None when stopped (cancelled, or the run was lost)."""
    import numpy as np

    if evaluate is None:
        from workers.metalearn import evaluate  # torch-backed: imported here only
    total = reporter.total_steps
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
        progress=lambda done, count: reporter.on_step(done, {}),
        should_stop=reporter.should_stop,
        shots=adaptation.shots,
    )
    if reporter.stop_reason is not None or np.asarray(result.scores).shape[0] < total:
        return None
    return _batch_adapted(result, device=device)


def _batch_adapted(result: Any, *, device: str) -> Adapted:
    """The loss matrix, scores and mean curve with its 95% CI of a finished batch;
    a non-finite loss raises :class:`DivergenceError` naming the first inner step."""
    import numpy as np

    losses = np.asarray(result.losses, dtype="<f4")
    scores = np.asarray(result.scores, dtype="<f4")
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
    figures = {
        "metric": result.metric,
        "before": _r(float(mean_curve[0]), 9),
        "after": _r(result.mean, 9),
        "ci95": _r(result.ci95, 9),
        "n_tasks": int(scores.shape[0]),
        "n_steps": int(result.steps),
    }
    fields = AdaptedResult(
        **figures,
        curve=curve,
        predictions={"kind": "batch", "metric": result.metric},
        losses=losses.tobytes(),
        scores=scores.tobytes(),
        task_ids=np.asarray(result.task_ids, dtype="<i8").tobytes(),
    )
    return Adapted(
        result=fields, weights=None, summary={**figures, "device": device}, step=figures["n_tasks"]
    )
