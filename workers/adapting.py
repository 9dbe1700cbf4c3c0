"""Adaptation runs, between the engine and the registry: build a task's data from an
:class:`~apps.registry.models.Adaptation`, adapt (streaming each inner step through
the run's reporter) or evaluate the fixed meta-test tasks, and shape the results
into the adapted model's fields (curves, predictions for the review page, the loss
matrix as compact bytes).

``workers.tasks.adapt_run`` is the Celery shell around these. torch is imported
lazily, inside the functions that run the engine.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings

from workers.metalearn.types import DivergenceError
from workers.reporting import RunReporter

#: Points of the dense x grid a regression adaptation is plotted on.
ADAPT_GRID_POINTS = 200
#: At most this many support and query images are kept (as small PNGs) for the review page.
ADAPT_MAX_IMAGES = 200

Adapt = Callable[..., Any]
Evaluate = Callable[..., Any]


class AdaptStopped(Exception):
    """Raised from the adaptation's ``on_step`` when a cancel was requested or the
    attempt lost the run: ends the engine call at once."""


def _r(value: Any, digits: int = 6) -> float | None:
    """A float for JSON, rounded to ``digits`` significant digits; None if not finite."""
    number = float(value)
    if not math.isfinite(number):
        return None
    return float(f"{number:.{digits}g}")


def _single_task_data(adaptation: Any, facts: Any, family: Any) -> dict[str, Any]:
    """Support, query and description of a single-task adaptation, as numpy arrays."""
    import numpy as np

    from apps.adaptations.models import AdaptationTarget
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


def adapt_single(
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
            raise AdaptStopped

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


def adapt_batch(
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
        shots=adaptation.shots,
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
