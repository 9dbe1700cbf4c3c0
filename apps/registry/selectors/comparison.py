"""Side-by-side comparisons of adapted models. Torch-free.

What can be compared
--------------------
* **Batch evaluations** (the 600 fixed meta-test tasks). A meta-model stands for its
  latest successful batch adaptation. Every item must have been evaluated on the
  same tasks: the same family and family parameters (and, for uploaded data, the
  same file), the same episode (shots, query, and ways when classifying) and the
  same task ids. Items are paired task by task: the per-task post-adaptation
  scores (MSE or accuracy) of each item are compared with the first item's by
  :func:`apps.registry.stats.paired_comparison` (difference = item - first).
  Inner-step counts may differ (the curves then have different lengths).
* **Single-task adaptations** to the same target: the same meta-test task index,
  or the same typed/uploaded support and query sets, on the same family and
  episode. With one task there is nothing to pair over, so they are compared on
  their per-step curves and before/after figures only (no intervals, no test).
  Batch and single-task items never mix.

Matrices are read straight from the database bytes (``selectors/evaluations.py``,
shared with the leaderboard). A comparison of up to 6 items costs a constant
number of queries.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.http import Http404

from apps.experiments.models import RunStatus
from apps.registry.models import AdaptationTarget, AdaptedModel, MetaModel, Verdict
from apps.registry.selectors.evaluations import (
    ComparisonError,
    batch_evaluations,
    describe,
    higher_is_better,
    latest_verdicts,
    newest_per,
    outcome,
    p_text,
    stored_floats,
    stored_task_ids,
    tasks_key,
)
from apps.registry.stats import MeanCI, PairedResult, mean_ci95, paired_comparison
from apps.teams.models import Team
from apps.teams.selectors import team_ids_for_user

__all__ = [
    "MAX_ITEMS",
    "MIN_ITEMS",
    "BoxStats",
    "Comparison",
    "ComparisonError",
    "ComparisonItem",
    "comparison_build",
]

AnyUser = AbstractBaseUser | AnonymousUser

MIN_ITEMS = 2
MAX_ITEMS = 6
#: Shared histogram bins across the compared models.
HIST_BINS = 30
#: The histogram's right edge is this quantile of the pooled scores for MSE (heavy
#: right tail); higher values are counted as ``overflow``. Accuracy uses its maximum.
HIST_UPPER_QUANTILE = 0.99
#: Width of the server-side box plots, in SVG user units.
BOX_WIDTH = 1000.0
BATCH_EVALUATION_HINT = "run the 600-task evaluation first"


# -- results ------------------------------------------------------------------------


@dataclass(frozen=True)
class BoxStats:
    """Tukey's box plot: quartiles, whiskers at the furthest values within 1.5 IQR,
    the counts beyond them, and ``x_*`` positions on the comparison's shared axis
    (``0 .. BOX_WIDTH``; points beyond the axis sit on its edge)."""

    minimum: float
    whisker_low: float
    q1: float
    median: float
    q3: float
    whisker_high: float
    maximum: float
    outliers_low: int
    outliers_high: int
    x_whisker_low: float = 0.0
    x_q1: float = 0.0
    x_median: float = 0.0
    x_q3: float = 0.0
    x_whisker_high: float = 0.0

    @property
    def x_box_width(self) -> float:
        return max(self.x_q3 - self.x_q1, 1.0)


@dataclass
class ComparisonItem:
    """One compared model. ``picked`` is ``"meta"`` when it was chosen as a meta-model
    (standing for its latest batch evaluation) and ``"adapted"`` otherwise;
    ``verdict`` is the latest verdict on what was picked."""

    adapted_id: int
    run_id: int
    meta_model_id: int
    picked: str
    name: str
    version: int
    algorithm: str
    taskset_name: str
    metric: str
    n_tasks: int
    n_steps: int
    curve: list[float | None]
    before: float | None
    after: float | None
    mean_ci: MeanCI | None = None
    paired: PairedResult | None = None
    hist_counts: list[int] = field(default_factory=list)
    overflow: int = 0
    box: BoxStats | None = None
    verdict: str | None = None
    target: str = ""

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}"

    @property
    def verdict_label(self) -> str:
        return Verdict(self.verdict).label if self.verdict else ""

    @property
    def outcome(self) -> str:
        return outcome(self.paired, self.metric)

    @property
    def p_text(self) -> str:
        return p_text(self.paired.p_value if self.paired else None)

    @property
    def wilcoxon_text(self) -> str:
        return p_text(self.paired.wilcoxon_p if self.paired else None)


@dataclass
class Comparison:
    """Items in the order picked; the first is the reference of every paired test."""

    kind: str  # "batch" or "single"
    metric: str
    items: list[ComparisonItem]
    n_tasks: int
    max_steps: int
    bin_edges: list[float] = field(default_factory=list)
    box_axis: tuple[float, float] = (0.0, 1.0)
    notes: list[str] = field(default_factory=list)

    @property
    def higher_is_better(self) -> bool:
        return higher_is_better(self.metric)

    @property
    def reference(self) -> ComparisonItem:
        return self.items[0]

    def chart_data(self) -> dict[str, Any]:
        """What ``static/js/compare.js`` draws (passed through ``json_script``)."""
        return {
            "kind": self.kind,
            "metric": self.metric,
            "steps": list(range(self.max_steps + 1)),
            "labels": [f"{item.label} · #{item.run_id}" for item in self.items],
            "curves": [item.curve for item in self.items],
            "bin_edges": self.bin_edges,
            "hist": [item.hist_counts for item in self.items],
        }


# -- helpers ---------------------------------------------------------------------------


def _allowed_team_ids(user: AnyUser, team: Team | None) -> list[int]:
    ids = team_ids_for_user(user=user)
    if team is not None:
        return [team.pk] if team.pk in ids else []
    return ids


def _unique_ints(values: Iterable[Any]) -> list[int]:
    seen: dict[int, None] = {}
    for value in values:
        seen.setdefault(int(value), None)
    return list(seen)


def _latest_batch_per_meta_model(meta_ids: Sequence[int]) -> dict[int, AdaptedModel]:
    rows = newest_per(batch_evaluations().filter(meta_model_id__in=list(meta_ids)), "meta_model_id")
    rows = rows.select_related("adaptation__run", "meta_model__taskset_version__taskset")
    return {row.meta_model_id: row for row in rows}


def _box(values: np.ndarray) -> BoxStats:
    q1, median, q3 = (float(v) for v in np.percentile(values, [25, 50, 75]))
    iqr = q3 - q1
    inside = values[(values >= q1 - 1.5 * iqr) & (values <= q3 + 1.5 * iqr)]
    low, high = float(inside.min()), float(inside.max())
    return BoxStats(
        minimum=float(values.min()),
        whisker_low=low,
        q1=q1,
        median=median,
        q3=q3,
        whisker_high=high,
        maximum=float(values.max()),
        outliers_low=int(np.count_nonzero(values < low)),
        outliers_high=int(np.count_nonzero(values > high)),
    )


def _place(box: BoxStats, lo: float, hi: float) -> BoxStats:
    span = hi - lo if hi > lo else 1.0

    def x(value: float) -> float:
        return round(min(max((value - lo) / span, 0.0), 1.0) * BOX_WIDTH, 1)

    return dataclasses.replace(
        box,
        x_whisker_low=x(box.whisker_low),
        x_q1=x(box.q1),
        x_median=x(box.median),
        x_q3=x(box.q3),
        x_whisker_high=x(box.whisker_high),
    )


def _shared_edges(pooled: np.ndarray, metric: str) -> np.ndarray:
    lo = float(pooled.min())
    if higher_is_better(metric):
        hi = float(pooled.max())
    else:
        hi = float(np.quantile(pooled, HIST_UPPER_QUANTILE))
    if not hi > lo:
        hi = lo + max(abs(lo) * 1e-6, 1e-9)
    return np.linspace(lo, hi, HIST_BINS + 1)


# -- comparison --------------------------------------------------------------------------


def comparison_build(
    *,
    user: AnyUser,
    adapted_ids: Sequence[int | str] = (),
    meta_model_ids: Sequence[int | str] = (),
    team: Team | None = None,
) -> Comparison:
    """Compare 2 to 6 models side by side; see the module docstring for the rules.

    The items are the adapted models of ``adapted_ids`` then the meta-models of
    ``meta_model_ids``, each in the order given (the first is the reference); an
    adapted model picked twice (directly and through its meta-model) counts once.
    Ids the user may not see (or, with ``team``, outside that team) raise Http404,
    whether or not they exist. Anything else that makes the items incomparable
    raises :class:`ComparisonError` with a message for the page.
    """
    adapted_ids = _unique_ints(adapted_ids)
    meta_model_ids = _unique_ints(meta_model_ids)
    picked_count = len(adapted_ids) + len(meta_model_ids)
    if picked_count < MIN_ITEMS:
        raise ComparisonError(f"Pick at least {MIN_ITEMS} models to compare (you picked {picked_count}).")
    if picked_count > MAX_ITEMS:
        raise ComparisonError(f"Pick at most {MAX_ITEMS} models to compare (you picked {picked_count}).")

    teams = _allowed_team_ids(user, team)
    adapted_by_id: dict[int, AdaptedModel] = {}
    if adapted_ids:
        adapted_by_id = {
            row.pk: row
            for row in AdaptedModel.objects.filter(pk__in=adapted_ids, team_id__in=teams).select_related(
                "adaptation__run", "meta_model__taskset_version__taskset"
            )
        }
        if len(adapted_by_id) != len(adapted_ids):
            raise Http404("No such adapted model.")
    metas: dict[int, MetaModel] = {}
    latest: dict[int, AdaptedModel] = {}
    if meta_model_ids:
        metas = {row.pk: row for row in MetaModel.objects.filter(pk__in=meta_model_ids, team_id__in=teams)}
        if len(metas) != len(meta_model_ids):
            raise Http404("No such meta-model.")
        latest = _latest_batch_per_meta_model(meta_model_ids)

    chosen: list[tuple[str, AdaptedModel]] = [("adapted", adapted_by_id[pk]) for pk in adapted_ids]
    for pk in meta_model_ids:
        if pk not in latest:
            raise ComparisonError(
                f"{metas[pk]} has no finished evaluation on the meta-test tasks: {BATCH_EVALUATION_HINT}."
            )
        chosen.append(("meta", latest[pk]))
    notes: list[str] = []
    items_seen: set[int] = set()
    unique: list[tuple[str, AdaptedModel]] = []
    for picked, adapted in chosen:
        if adapted.pk in items_seen:
            notes.append(f"{describe(adapted)} was picked twice; it is shown once.")
            continue
        items_seen.add(adapted.pk)
        unique.append((picked, adapted))
    if len(unique) < MIN_ITEMS:
        raise ComparisonError(f"Pick at least {MIN_ITEMS} different models to compare.")

    verdicts = latest_verdicts(
        meta_ids=[a.meta_model_id for p, a in unique if p == "meta"],
        adapted_ids=[a.pk for p, a in unique if p == "adapted"],
    )
    batch = [_is_batch(adapted) for _, adapted in unique]
    if any(batch) and not all(batch):
        one = next(a for (_, a), b in zip(unique, batch, strict=True) if b)
        other = next(a for (_, a), b in zip(unique, batch, strict=True) if not b)
        raise ComparisonError(
            f"{describe(one)} is an evaluation on the meta-test tasks and {describe(other)} a "
            "single-task adaptation: compare evaluations with evaluations, or single-task "
            "adaptations to the same task with each other."
        )
    _check_same_metric(unique)
    if all(batch):
        _check_same_tasks(unique)
        comparison = _batch_comparison(unique, verdicts)
    else:
        _check_same_target(unique)
        comparison = _single_comparison(unique, verdicts)
    comparison.notes = notes + comparison.notes
    return comparison


def _is_batch(adapted: AdaptedModel) -> bool:
    if adapted.adaptation.target != AdaptationTarget.BATCH:
        return False
    if adapted.adaptation.run.status != RunStatus.SUCCEEDED or adapted.scores is None:
        raise ComparisonError(f"{describe(adapted)} has no results yet: its evaluation has not finished.")
    return True


def _check_same_metric(unique: list[tuple[str, AdaptedModel]]) -> None:
    first = unique[0][1]
    for _, adapted in unique[1:]:
        if adapted.metric != first.metric:
            raise ComparisonError(
                f"{describe(first)} is scored by {first.metric} and {describe(adapted)} by "
                f"{adapted.metric}: they solve different kinds of task."
            )


def _check_same_tasks(unique: list[tuple[str, AdaptedModel]]) -> None:
    first = unique[0][1]
    key, shown = tasks_key(first.meta_model, first)
    for _, adapted in unique[1:]:
        other_key, other_shown = tasks_key(adapted.meta_model, adapted)
        if other_key != key:
            raise ComparisonError(
                f"{describe(first)} and {describe(adapted)} were not evaluated on the same tasks: "
                f"{shown} against {other_shown}."
            )


def _check_same_target(unique: list[tuple[str, AdaptedModel]]) -> None:
    """Single-task items: the same meta-test task of the same family and episode, or
    the same typed/uploaded data (whatever task set the meta-models came from)."""

    def target(adapted: AdaptedModel) -> tuple[Any, ...]:
        spec = adapted.adaptation
        if spec.target == AdaptationTarget.TEST_TASK:
            return ("test_task", spec.task_index)
        data = json.dumps([spec.support, spec.query, spec.desc], sort_keys=True, default=str)
        return ("custom", hashlib.sha256(data.encode()).hexdigest())

    first = unique[0][1]
    for _, adapted in unique[1:]:
        if target(adapted) != target(first):
            raise ComparisonError(
                f"{describe(first)} and {describe(adapted)} were adapted to different tasks: "
                "single-task adaptations are compared only on the same task."
            )
    if target(first)[0] == "test_task":
        _check_same_tasks(unique)


def _batch_comparison(
    unique: list[tuple[str, AdaptedModel]], verdicts: dict[tuple[str, int], str]
) -> Comparison:
    metric = unique[0][1].metric
    loaded: list[tuple[str, AdaptedModel, np.ndarray, np.ndarray]] = []
    reference_ids: np.ndarray | None = None
    for picked, adapted in unique:
        ids = stored_task_ids(adapted)
        order = np.argsort(ids, kind="stable")
        ids = ids[order]
        if reference_ids is None:
            reference_ids = ids
        elif ids.shape != reference_ids.shape or not np.array_equal(ids, reference_ids):
            raise ComparisonError(
                f"{describe(unique[0][1])} was evaluated on {reference_ids.size} tasks and "
                f"{describe(adapted)} on {ids.size} tasks that are not the same ones."
            )
        try:
            scores = stored_floats(adapted.scores, adapted.n_tasks)[order]
            losses = stored_floats(adapted.losses) if adapted.losses is not None else None
            if losses is not None:
                if losses.size % adapted.n_tasks:
                    raise ValueError(f"{losses.size} losses do not split into {adapted.n_tasks} tasks")
                losses = losses.reshape(adapted.n_tasks, -1)
        except ValueError as error:
            raise ComparisonError(
                f"{describe(adapted)}: its stored results are damaged ({error})."
            ) from error
        if not np.all(np.isfinite(scores)):
            raise ComparisonError(f"{describe(adapted)} has non-finite scores (a diverged adaptation).")
        loaded.append((picked, adapted, scores, losses))

    pooled = np.concatenate([scores for _, _, scores, _ in loaded])
    edges = _shared_edges(pooled, metric)
    items: list[ComparisonItem] = []
    reference_scores = loaded[0][2]
    max_steps = 0
    for index, (picked, adapted, scores, losses) in enumerate(loaded):
        curve: list[float | None] = []
        before = None
        if losses is not None:
            with np.errstate(invalid="ignore", over="ignore"):
                mean_curve = losses.mean(axis=0, dtype=np.float64)
            curve = [float(v) if math.isfinite(v) else None for v in mean_curve]
            before = curve[0] if curve else None
        max_steps = max(max_steps, len(curve) - 1)
        counts, _ = np.histogram(np.clip(scores, edges[0], edges[-1]), bins=edges)
        overflow = int(np.count_nonzero(scores > edges[-1]))
        counts[-1] -= overflow  # clipping put them in the last bin; they are shown apart
        meta = adapted.meta_model
        subject = ("meta", meta.pk) if picked == "meta" else ("adapted", adapted.pk)
        items.append(
            ComparisonItem(
                adapted_id=adapted.pk,
                run_id=adapted.adaptation.run_id,
                meta_model_id=meta.pk,
                picked=picked,
                name=meta.name,
                version=meta.version,
                algorithm=meta.algorithm,
                taskset_name=meta.taskset_version.taskset.name,
                metric=metric,
                n_tasks=int(scores.size),
                n_steps=max(len(curve) - 1, 0),
                curve=curve,
                before=before,
                after=float(scores.mean(dtype=np.float64)),
                mean_ci=mean_ci95(scores),
                paired=None if index == 0 else paired_comparison(reference_scores, scores),
                hist_counts=[int(c) for c in counts],
                overflow=overflow,
                box=_box(scores.astype(np.float64)),
                verdict=verdicts.get(subject),
            )
        )
    lo = min(item.box.whisker_low for item in items if item.box)
    hi = max(item.box.whisker_high for item in items if item.box)
    for item in items:
        item.box = _place(item.box, lo, hi) if item.box else None
        item.curve = item.curve + [None] * (max_steps + 1 - len(item.curve))
    notes = []
    if any(item.overflow for item in items):
        notes.append(
            f"The histogram stops at {edges[-1]:.4g} (the 99th percentile of all tasks); "
            "the tasks above it are counted beside each model."
        )
    return Comparison(
        kind="batch",
        metric=metric,
        items=items,
        n_tasks=int(reference_scores.size),
        max_steps=max_steps,
        bin_edges=[float(e) for e in edges],
        box_axis=(lo, hi),
        notes=notes,
    )


def _curve_values(curve: Any) -> list[float | None]:
    """A single-task curve (``[{"support_loss", "query_loss", ...}, ...]``): the query
    loss per step, or the support loss when there is no query set."""
    values: list[float | None] = []
    for entry in curve or []:
        value = entry.get("query_loss", entry.get("support_loss")) if isinstance(entry, dict) else None
        values.append(float(value) if isinstance(value, int | float) and math.isfinite(value) else None)
    return values


def _single_comparison(
    unique: list[tuple[str, AdaptedModel]], verdicts: dict[tuple[str, int], str]
) -> Comparison:
    items = []
    for picked, adapted in unique:
        meta = adapted.meta_model
        curve = _curve_values(adapted.curve)
        spec = adapted.adaptation
        target = f"meta-test task {spec.task_index}" if spec.task_index is not None else "a typed task"
        subject = ("meta", meta.pk) if picked == "meta" else ("adapted", adapted.pk)
        items.append(
            ComparisonItem(
                adapted_id=adapted.pk,
                run_id=adapted.adaptation.run_id,
                meta_model_id=meta.pk,
                picked=picked,
                name=meta.name,
                version=meta.version,
                algorithm=meta.algorithm,
                taskset_name=meta.taskset_version.taskset.name,
                metric=adapted.metric,
                n_tasks=1,
                n_steps=max(len(curve) - 1, 0),
                curve=curve,
                before=adapted.before if adapted.before is not None else (curve[0] if curve else None),
                after=adapted.after,
                verdict=verdicts.get(subject),
                target=target,
            )
        )
    max_steps = max(item.n_steps for item in items)
    for item in items:
        item.curve = item.curve + [None] * (max_steps + 1 - len(item.curve))
    return Comparison(
        kind="single",
        metric=items[0].metric,
        items=items,
        n_tasks=1,
        max_steps=max_steps,
        notes=["One task each: curves and before/after only; a paired test needs the 600-task evaluations."],
    )
