"""Stored evaluations, as the comparison and the leaderboard read them. Torch-free.

An adapted model holds its results as little-endian float32 bytes (losses
``[tasks, steps+1]`` and scores ``[tasks]``) and its task ids as int64 or int32;
these helpers read them with ``numpy.frombuffer``, tell whether two evaluations ran
on identical tasks, and pick the newest row of each group portably (PostgreSQL and
SQLite).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
from django.db.models import F, Q, QuerySet, Window
from django.db.models.functions import RowNumber

from apps.experiments.models import RunStatus
from apps.registry.models import AdaptationTarget, AdaptedModel, MetaModel, Review
from apps.registry.stats import PairedResult

__all__ = [
    "ComparisonError",
    "batch_evaluations",
    "describe",
    "higher_is_better",
    "latest_verdicts",
    "newest_per",
    "outcome",
    "p_text",
    "stored_floats",
    "stored_task_ids",
    "tasks_key",
]


class ComparisonError(Exception):
    """The picked items cannot be compared; ``str(error)`` says why, for the page."""


def higher_is_better(metric: str) -> bool:
    """Accuracy rises, losses fall."""
    return metric == "accuracy"


def outcome(paired: PairedResult | None, metric: str) -> str:
    """``"better"``, ``"worse"`` (significant at 0.05, by the metric's direction),
    ``"not significant"``, or ``""`` for the reference itself."""
    if paired is None:
        return ""
    if not paired.significant:
        return "not significant"
    improved = paired.mean_diff > 0 if higher_is_better(metric) else paired.mean_diff < 0
    return "better" if improved else "worse"


def p_text(p: float | None) -> str:
    """A p-value as a page shows it: ``< 0.001`` below a thousandth, else 3 digits."""
    if p is None:
        return ""
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def stored_floats(raw: Any, count: int | None = None) -> np.ndarray:
    """Stored little-endian float32 values; ValueError when there are not ``count``."""
    array = np.frombuffer(raw, dtype="<f4")
    if count is not None and array.size != count:
        raise ValueError(f"{array.size} values stored, {count} expected")
    return array


def stored_task_ids(adapted: AdaptedModel) -> np.ndarray:
    """The stored task ids (int64 or int32 by their length); the engine numbers the
    fixed tasks 0..n-1, which is what a row without ids means."""
    raw = adapted.task_ids
    if raw is None or len(raw) == 0:
        return np.arange(adapted.n_tasks, dtype=np.int64)
    size = len(raw) // max(adapted.n_tasks, 1)
    if size not in (4, 8) or len(raw) != size * adapted.n_tasks:
        raise ComparisonError(
            f"{describe(adapted)}: its stored task ids do not fit its {adapted.n_tasks} tasks."
        )
    return np.frombuffer(raw, dtype="<i8" if size == 8 else "<i4").astype(np.int64)


def describe(adapted: AdaptedModel) -> str:
    """How a message names an evaluation: the model and the adaptation's run id."""
    meta = adapted.meta_model
    return f"{meta.name} v{meta.version} (adaptation #{adapted.adaptation.run_id})"


def _episode(meta: MetaModel, adapted: AdaptedModel, metric: str) -> dict[str, Any]:
    config = meta.config or {}
    shots = adapted.adaptation.shots or config.get("shots")
    episode = {"shots": shots, "query": config.get("query")}
    if metric == "accuracy":
        episode["ways"] = config.get("ways")
    return episode


def tasks_key(meta: MetaModel, adapted: AdaptedModel) -> tuple[str, str]:
    """What makes two evaluations' tasks identical, as (a key, a readable description)."""
    family = (meta.config or {}).get("family") or {}
    version = meta.taskset_version
    name = family.get("name") or version.taskset.family
    params = family.get("params", version.params or {})
    episode = _episode(meta, adapted, adapted.metric)
    key = json.dumps(
        {"family": name, "params": params, "data": version.data_sha256, "episode": episode},
        sort_keys=True,
        default=str,
    )
    shown = ", ".join(f"{k} {v}" for k, v in episode.items() if v is not None)
    params_text = json.dumps(params, sort_keys=True) if params else "default parameters"
    return key, f"{name} ({params_text}; {shown})"


def newest_per(queryset: QuerySet, *partition: str) -> QuerySet:
    """The newest row (by ``created_at``, then ``pk``) of each group of equal
    ``partition`` fields, in one query. A ``ROW_NUMBER()`` window, which PostgreSQL
    and SQLite both run (and where NULLs partition together), in place of
    PostgreSQL's ``DISTINCT ON``."""
    newest_first = Window(
        RowNumber(),
        partition_by=[F(name) for name in partition],
        order_by=[F("created_at").desc(), F("pk").desc()],
    )
    return queryset.annotate(newest_rank=newest_first).filter(newest_rank=1)


def latest_verdicts(*, meta_ids: Sequence[int], adapted_ids: Sequence[int]) -> dict[tuple[str, int], str]:
    """{("meta", id) or ("adapted", id): latest verdict}, in one query (the subject's
    other field is NULL, so each subject keeps its newest review)."""
    if not meta_ids and not adapted_ids:
        return {}
    reviews = Review.objects.filter(
        Q(meta_model_id__in=list(meta_ids)) | Q(adapted_model_id__in=list(adapted_ids))
    )
    rows = newest_per(reviews, "meta_model_id", "adapted_model_id").values_list(
        "meta_model_id", "adapted_model_id", "verdict"
    )
    verdicts: dict[tuple[str, int], str] = {}
    for meta_id, adapted_id, verdict in rows:
        if adapted_id is not None:
            verdicts[("adapted", adapted_id)] = verdict
        else:
            verdicts[("meta", meta_id)] = verdict
    return verdicts


def batch_evaluations() -> QuerySet[AdaptedModel]:
    """Adapted models that hold a finished batch evaluation."""
    return AdaptedModel.objects.filter(
        adaptation__target=AdaptationTarget.BATCH,
        adaptation__run__status=RunStatus.SUCCEEDED,
        scores__isnull=False,
    )
