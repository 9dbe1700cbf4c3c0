"""Reads for adaptations and adapted models. Permission filtering happens here, once.

Torch-free: the meta-model's ``checkpoint.json`` is read with the engine's
checkpoint layout (:mod:`workers.metalearn.checkpoint_layout`), and the
review page's figures (charts, confusion matrix, histogram) are computed with
numpy from what the worker stored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.http import Http404

from apps.adaptations.models import Adaptation, AdaptationTarget, AdaptedModel
from apps.experiments.models import Run
from apps.registry import storage
from apps.registry.models import MetaModel
from apps.registry.selectors import CARD_FORMAT, iso_or_none, metamodel_lineage_card
from apps.reviews.selectors.reviews import review_list, reviews_card
from apps.runfiles import keys
from apps.runfiles.store import StoreUnavailable, read_bytes, stored_or_none
from apps.tasksets.previews import FLAT_IMAGE_SHAPES, png_data_uri
from apps.teams.selectors import team_ids_for_user
from apps.teams.types import AnyUser
from workers.metalearn.checkpoint_layout import parse_record
from workers.metalearn.specs import MNN_CONDITIONS, AlgorithmSpec, spec_of
from workers.metalearn.types import ConfigError

__all__ = [
    "ADAPT_TEST_TASKS",
    "ModelFacts",
    "adaptation_get_visible",
    "adapted_card",
    "adapted_get_visible",
    "adapted_model_arrays",
    "adapted_model_for",
    "adapted_review",
    "adapted_weights_key",
    "meta_model_facts",
    "meta_model_get_for_adapt",
    "run_is_adaptation",
]


#: Tasks of the meta-test split a single-task adaptation may pick (the standard 600).
ADAPT_TEST_TASKS = 600
#: Bins of the per-task histogram on a batch's review page.
HISTOGRAM_BINS = 30
#: At most this many images of each set are shown on the review page.
MAX_IMAGES_SHOWN = 200


# -- the meta-model's checkpoint, read without torch ----------------------------------


@dataclass(frozen=True)
class ModelFacts:
    """What the adaptation form and service need to know about a meta-model, from its
    ``checkpoint.json`` (``family_info`` and ``config``)."""

    family: str
    kind: str
    input_shape: tuple[int, ...]
    desc_dim: int | None
    ways: int
    algorithm: str
    shots: int
    query: int
    inner_lr: float
    family_params: dict[str, Any]
    #: The config's ``mnn_condition`` (None: the family's default).
    mnn_condition: str | None = None
    #: Inner steps per task in meta-training (the config's ``inner_steps``).
    inner_steps: int = 1

    @property
    def classification(self) -> bool:
        return self.kind == "classification"

    @property
    def input_size(self) -> int:
        return math.prod(self.input_shape)

    @property
    def needs_desc(self) -> bool:
        """The model cannot adapt without the task's description (seed-mnn; MNN
        conditioned on the description)."""
        return self.spec.describes(self.desc_dim, self.mnn_condition)

    @property
    def takes_steps(self) -> bool:
        return self.spec.adapts

    @property
    def spec(self) -> AlgorithmSpec:
        return spec_of(self.algorithm)

    @property
    def image_shape(self) -> tuple[int, int] | None:
        """(height, width) when the model takes grey images, else None."""
        shape = self.input_shape
        if len(shape) == 3 and shape[0] == 1:
            return shape[1], shape[2]
        if len(shape) == 2:
            return shape[0], shape[1]
        flat = FLAT_IMAGE_SHAPES.get(self.family)
        if len(shape) == 1 and flat is not None and flat[0] * flat[1] == shape[0]:
            return flat
        return None


def _facts_from_checkpoint(meta: dict[str, Any]) -> ModelFacts:
    info = meta["family_info"]
    config = meta.get("config") or {}
    desc_dim = info.get("desc_dim")
    algorithm = str(meta.get("algorithm") or config.get("algorithm") or "")
    spec_of(algorithm)  # an unknown algorithm makes the record unusable
    return ModelFacts(
        family=str(info["name"]),
        kind=str(info["kind"]),
        input_shape=tuple(int(s) for s in info["input_shape"]),
        desc_dim=None if desc_dim is None else int(desc_dim),
        ways=int(info["ways"]),
        algorithm=algorithm,
        shots=int(config.get("shots", 5)),
        query=int(config.get("query", 10)),
        inner_lr=float(config.get("inner_lr", 0.01)),
        family_params=dict((config.get("family") or {}).get("params") or {}),
        mnn_condition=config.get("mnn_condition") if config.get("mnn_condition") in MNN_CONDITIONS else None,
        inner_steps=int(config.get("inner_steps", 1)),
    )


def meta_model_facts(meta_model: MetaModel) -> ModelFacts | None:
    """The meta-model's facts from ``<registry>/meta/<id>/checkpoint.json``; None when
    the file is missing or unreadable (the weights are not in storage)."""
    try:
        record = read_bytes(keys.join(keys.meta_model(meta_model.pk), storage.CHECKPOINT_JSON))
        return None if record is None else _facts_from_checkpoint(parse_record(record))
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, ConfigError, StoreUnavailable):
        return None


# -- objects, filtered by team ----------------------------------------------------------


def meta_model_get_for_adapt(*, user: AnyUser, meta_model_id: int) -> MetaModel:
    """The meta-model if the user is in its team (any role); Http404 otherwise."""
    meta_model = (
        MetaModel.objects.filter(team_id__in=team_ids_for_user(user=user), pk=meta_model_id)
        .select_related("team", "experiment", "taskset_version__taskset", "training_run")
        .first()
    )
    if meta_model is None:
        raise Http404("No such meta-model.")
    return meta_model


def adaptation_get_visible(*, user: AnyUser, run_id: int) -> Adaptation:
    """The adaptation of run ``run_id`` if the user is in its team; Http404 otherwise
    (also for a run that is not an adaptation)."""
    adaptation = (
        Adaptation.objects.filter(run__team_id__in=team_ids_for_user(user=user), run_id=run_id)
        .select_related(
            "run__team",
            "run__launched_by",
            "meta_model__experiment",
            "meta_model__taskset_version__taskset",
            "meta_model__training_run",
        )
        .first()
    )
    if adaptation is None:
        raise Http404("No such adaptation.")
    return adaptation


def adapted_model_for(adaptation: Adaptation) -> AdaptedModel | None:
    return AdaptedModel.objects.filter(adaptation=adaptation).first()


# -- arrays of a batch ----------------------------------------------------------------


def adapted_model_arrays(adapted: AdaptedModel) -> dict[str, np.ndarray] | None:
    """A batch's arrays from their little-endian bytes: ``losses`` ``[tasks, steps+1]``
    float32, ``scores`` ``[tasks]`` float32, ``task_ids`` ``[tasks]`` int64. None for
    a single-task adapted model."""
    if adapted.losses is None or adapted.scores is None:
        return None
    scores = np.frombuffer(bytes(adapted.scores), dtype="<f4")
    losses = np.frombuffer(bytes(adapted.losses), dtype="<f4")
    n_tasks = scores.size
    columns = losses.size // n_tasks if n_tasks else 0
    if not n_tasks or columns * n_tasks != losses.size:
        return None
    task_ids = (
        np.frombuffer(bytes(adapted.task_ids), dtype="<i8")
        if adapted.task_ids is not None
        else np.arange(n_tasks, dtype=np.int64)
    )
    return {"losses": losses.reshape(n_tasks, columns), "scores": scores, "task_ids": task_ids}


# -- the review page's figures ---------------------------------------------------------


def _finite_or_none(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _histogram(scores: np.ndarray, bins: int = HISTOGRAM_BINS) -> dict[str, Any]:
    """Bin edges and counts for a stepped-line histogram (uPlot's aligned data: the
    counts repeated at the right edge so the last bin is drawn)."""
    finite = scores[np.isfinite(scores)].astype(np.float64)
    if finite.size == 0:
        return {"x": [], "counts": []}
    low, high = float(finite.min()), float(finite.max())
    if high <= low:
        high = low + 1e-6
    counts, edges = np.histogram(finite, bins=bins, range=(low, high))
    return {
        "x": [float(e) for e in edges],
        "counts": [int(c) for c in counts] + [int(counts[-1])],
    }


def _curve_series(curve: list[dict[str, Any]]) -> dict[str, list[list[float]]]:
    """``[{step, name: value...}]`` -> ``{name: [[step, value], ...]}``."""
    series: dict[str, list[list[float]]] = {}
    for index, entry in enumerate(curve or []):
        if not isinstance(entry, dict):
            continue
        step = entry.get("step", index)
        for name, value in entry.items():
            if name == "step":
                continue
            number = _finite_or_none(value)
            if number is not None:
                series.setdefault(name, []).append([step, number])
    return series


def _confusion_cells(matrix: list[list[int]], names: list[str]) -> list[dict[str, Any]]:
    """Rows of the confusion matrix with a heat level (0-100) per cell, relative to
    the row's total (how each true class was predicted)."""
    rows = []
    for i, row in enumerate(matrix):
        total = sum(row) or 1
        cells = [
            {
                "count": int(count),
                "heat": round(100 * count / total),
                "alpha": f"{0.08 + 0.85 * count / total:.2f}" if count else "0",
                "dark": count / total > 0.55,
                "diagonal": i == j,
            }
            for j, count in enumerate(row)
        ]
        rows.append({"name": names[i] if i < len(names) else str(i), "cells": cells, "total": sum(row)})
    return rows


def _named_images(images: Any, names: list[str], shape: Any) -> list[dict[str, Any]]:
    """Images with their class names, and whether the prediction is right (query),
    drawn now as small grey PNG data URIs from their stored pixel values (``x``, flat,
    ``shape`` = ``[H, W]``). Rows stored before pixel values were (a ``src`` data
    URI drawn by the worker) are shown as they are."""

    def name(label: Any) -> str:
        return names[label] if isinstance(label, int) and 0 <= label < len(names) else str(label)

    shown = []
    for image in (images if isinstance(images, list) else [])[:MAX_IMAGES_SHOWN]:
        src = _image_src(image, shape) if isinstance(image, dict) else None
        if src is None:
            continue
        entry = {"src": src, "label_name": name(image.get("label"))}
        if "pred" in image:
            entry["pred_name"] = name(image["pred"])
            entry["correct"] = image.get("pred") == image.get("label")
        shown.append(entry)
    return shown


def _image_src(image: dict[str, Any], shape: Any) -> str | None:
    """A PNG data URI of one stored image, or None when it cannot be drawn."""
    src = image.get("src")
    if isinstance(src, str):  # a row stored before pixel values were
        return src if src.startswith("data:image/png;base64,") else None
    pixels = image.get("x")
    if not isinstance(pixels, list) or not isinstance(shape, list) or len(shape) != 2:
        return None
    try:
        array = np.asarray([np.nan if v is None else v for v in pixels], dtype=np.float32)
        return png_data_uri(array.reshape([1, *(int(n) for n in shape)]))
    except (TypeError, ValueError):
        return None


def _aligned(columns: dict[str, dict[float, float | None]], kinds: dict[str, str]) -> dict[str, Any]:
    """uPlot's aligned data: one sorted x shared by every series, None where a series
    has no point. ``columns`` maps a label to ``{x: y}``."""
    xs = sorted({x for points in columns.values() for x in points})
    return {
        "x": xs,
        "series": [
            {"label": label, "kind": kinds[label], "values": [points.get(x) for x in xs]}
            for label, points in columns.items()
            if points
        ],
    }


def _points(xs: Any, ys: Any) -> dict[float, float | None]:
    out: dict[float, float | None] = {}
    if not isinstance(xs, list) or not isinstance(ys, list):
        return out
    for x, y in zip(xs, ys, strict=False):
        x = x[0] if isinstance(x, list) and len(x) == 1 else x
        xf, yf = _finite_or_none(x), _finite_or_none(y)
        if xf is not None:
            out[xf] = yf
    return out


def _regression_chart(predictions: dict[str, Any]) -> dict[str, Any] | None:
    """The review plot. 1-D inputs: the true function (meta-test tasks of synthetic
    families), the predictions before and after adaptation on a dense grid, the
    support and query points. Wider inputs: predicted against true target on the
    query set, before and after, with the diagonal."""
    support = predictions.get("support") or {}
    query = predictions.get("query") or {}
    grid = predictions.get("grid")
    if isinstance(grid, dict):
        columns = {
            "true function": _points(grid.get("x"), grid.get("truth")),
            "before adaptation": _points(grid.get("x"), grid.get("before")),
            "after adaptation": _points(grid.get("x"), grid.get("after")),
            "support": _points(support.get("x"), support.get("y")),
            "query": _points(query.get("x"), query.get("y")),
        }
        kinds = {label: "line" for label in list(columns)[:3]} | {"support": "points", "query": "points"}
        return {"xlabel": "x", "ylabel": "y", **_aligned(columns, kinds)}
    truth = query.get("y")
    if not isinstance(truth, list) or not truth:
        return None
    columns = {
        "before adaptation": _points(truth, query.get("before")),
        "after adaptation": _points(truth, query.get("after")),
        "ideal": _points(truth, truth),
    }
    kinds = {"before adaptation": "points", "after adaptation": "points", "ideal": "line"}
    return {"xlabel": "true target", "ylabel": "predicted", **_aligned(columns, kinds)}


def adapted_review(adaptation: Adaptation, adapted: AdaptedModel | None) -> dict[str, Any]:
    """Everything the review page shows of a finished adaptation, JSON-ready where it
    goes to a chart (``*_chart`` keys go through ``json_script``)."""
    review: dict[str, Any] = {
        "is_batch": adaptation.target == AdaptationTarget.BATCH,
        "adapted": adapted,
    }
    if adapted is None:
        return review
    predictions = adapted.predictions if isinstance(adapted.predictions, dict) else {}
    review["curve_chart"] = {"series": _curve_series(adapted.curve)}
    review["lower_is_better"] = adapted.metric != "accuracy" and not adapted.metric.endswith("accuracy")
    if review["is_batch"]:
        arrays = adapted_model_arrays(adapted)
        if arrays is not None:
            scores = arrays["scores"]
            review["histogram_chart"] = {"metric": adapted.metric, **_histogram(scores)}
            review["batch"] = {
                "n_tasks": int(scores.size),
                "n_steps": int(arrays["losses"].shape[1] - 1),
                "median": float(np.median(scores)),
                "best": float(scores.min() if review["lower_is_better"] else scores.max()),
                "worst": float(scores.max() if review["lower_is_better"] else scores.min()),
                "loss_before": float(arrays["losses"][:, 0].mean()),
                "loss_after": float(arrays["losses"][:, -1].mean()),
            }
        return review
    kind = predictions.get("kind")
    if kind == "regression":
        review["regression_chart"] = _regression_chart(predictions)
        review["has_truth"] = bool(predictions.get("has_truth"))
    elif kind == "classification":
        names = [str(n) for n in predictions.get("classes") or []]
        review["class_names"] = names
        matrix = predictions.get("confusion")
        if isinstance(matrix, list) and matrix:
            review["confusion"] = _confusion_cells(matrix, names)
        shape = predictions.get("image_shape")
        review["support_images"] = _named_images(predictions.get("support_images"), names, shape)
        review["query_images"] = _named_images(predictions.get("query_images"), names, shape)
        query = predictions.get("query") or {}
        labels, before = query.get("y") or [], query.get("before") or []
        if labels and len(before) == len(labels):
            review["query_accuracy_before"] = sum(a == b for a, b in zip(labels, before, strict=True)) / len(
                labels
            )
    return review


def run_is_adaptation(run: Run) -> bool:
    return Adaptation.objects.filter(run=run).exists()


# -- adapted models (downloads and cards) -------------------------------------------------------------


def adapted_get_visible(*, user: AnyUser, run_id: int) -> AdaptedModel:
    """The adapted model made by adaptation run ``run_id`` (adapted models are
    addressed by their run, as their page is) if the user is in its team (any role),
    with its adaptation, run and meta-model; Http404 otherwise."""
    adapted = (
        AdaptedModel.objects.filter(team_id__in=team_ids_for_user(user=user), adaptation__run_id=run_id)
        .select_related(
            "adaptation__run",
            "meta_model__taskset_version__taskset",
            "meta_model__training_run",
            "meta_model__experiment",
        )
        .first()
    )
    if adapted is None:
        raise Http404("No such adapted model.")
    return adapted


def adapted_weights_key(adapted: AdaptedModel) -> str | None:
    """The store key of the adapted weights, or None when the adapted model has none
    (a batch evaluation keeps scores only) or the file is missing."""
    return stored_or_none(storage.adapted_weights_key(adapted.pk))


def adapted_card(adapted: AdaptedModel) -> dict[str, Any]:
    """The adapted model's JSON card: lineage back to its meta-model and its
    adaptation's target, and the metric before and after adaptation."""
    adaptation = adapted.adaptation
    meta_model = adapted.meta_model
    has_weights = adapted_weights_key(adapted) is not None
    return {
        "card_format": CARD_FORMAT,
        "kind": "adapted-model",
        "id": adapted.pk,
        "lineage": {
            **metamodel_lineage_card(meta_model),
            "meta_model": {
                "id": meta_model.pk,
                "name": meta_model.name,
                "version": meta_model.version,
                "algorithm": meta_model.algorithm,
                "sha256": meta_model.weights_sha256,
            },
            "adaptation": {
                "id": adaptation.pk,
                "run": adaptation.run_id,
                "target": adaptation.target,
                "target_label": adaptation.get_target_display(),
                "task_index": adaptation.task_index,
                "shots": adaptation.shots,
                "steps": adaptation.steps,
                "lr": adaptation.lr,
            },
        },
        "metrics": {
            "metric": adapted.metric,
            "before": adapted.before,
            "after": adapted.after,
            "ci95": adapted.ci95,
            "tasks": adapted.n_tasks,
            "steps": adapted.n_steps,
        },
        "weights": (
            {"file": storage.WEIGHTS_FILE, "format": "safetensors", "sha256": adapted.weights_sha256}
            if has_weights
            else None
        ),
        "reviews": reviews_card(review_list(adapted_model=adapted)),
        "created_at": iso_or_none(adapted.created_at),
    }
