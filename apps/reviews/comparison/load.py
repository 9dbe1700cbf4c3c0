"""The comparison's loading: ORM rows to numpy arrays and plain checks. Torch-free.

An adapted model holds its results as little-endian float32 bytes (losses
``[tasks, steps+1]`` and scores ``[tasks]``) and its task ids as int64 or int32;
these helpers read them with ``numpy.frombuffer``, tell whether two evaluations ran
on identical tasks, and pick the newest row of each group portably (PostgreSQL and
SQLite). The comparison (:mod:`apps.reviews.selectors.comparison`) and the
leaderboard read stored evaluations through here, and hand the arrays to
:mod:`apps.reviews.comparison.analysis`.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db.models import F, Q, QuerySet, Window
from django.db.models.functions import RowNumber
from django.http import Http404

from apps.adaptations.models import Adaptation, AdaptationTarget, AdaptedModel
from apps.experiments.models import RunStatus
from apps.registry.models import MetaModel
from apps.reviews.models import Review
from apps.teams.models import Team
from apps.teams.selectors import team_ids_for_user
from apps.teams.types import AnyUser

__all__ = [
    "BATCH_EVALUATION_HINT",
    "ComparisonError",
    "LoadedEvaluation",
    "Pick",
    "adapted_ids_for_runs",
    "batch_evaluations",
    "check_comparable",
    "curve_values",
    "describe",
    "evaluations_load",
    "latest_verdicts",
    "newest_per",
    "picks_load",
    "stored_floats",
    "stored_task_ids",
    "tasks_key",
]

BATCH_EVALUATION_HINT = "run the 600-task evaluation first"


class ComparisonError(Exception):
    """The picked items cannot be compared; ``str(error)`` says why, for the page."""


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


# -- what was picked ------------------------------------------------------------------


@dataclass(frozen=True)
class Pick:
    """One compared evaluation: ``picked`` is ``"meta"`` when the user chose its
    meta-model (standing for its latest batch evaluation), ``"adapted"`` otherwise."""

    picked: str
    adapted: AdaptedModel

    @property
    def subject(self) -> tuple[str, int]:
        """The key of the verdict that counts for this pick in :func:`latest_verdicts`."""
        if self.picked == "meta":
            return ("meta", self.adapted.meta_model_id)
        return ("adapted", self.adapted.pk)


def _allowed_team_ids(user: AnyUser, team: Team | None) -> list[int]:
    ids = team_ids_for_user(user=user)
    if team is not None:
        return [team.pk] if team.pk in ids else []
    return ids


def unique_ints(values: Iterable[Any]) -> list[int]:
    """``values`` as ints, first occurrence kept, order kept."""
    seen: dict[int, None] = {}
    for value in values:
        seen.setdefault(int(value), None)
    return list(seen)


def _related(queryset: QuerySet[AdaptedModel]) -> QuerySet[AdaptedModel]:
    return queryset.select_related("adaptation__run", "meta_model__taskset_version__taskset")


def _adapted_picks(adapted_ids: list[int], teams: list[int]) -> list[Pick]:
    if not adapted_ids:
        return []
    rows = _related(AdaptedModel.objects.filter(pk__in=adapted_ids, team_id__in=teams))
    by_id = {row.pk: row for row in rows}
    if len(by_id) != len(adapted_ids):
        raise Http404("No such adapted model.")
    return [Pick("adapted", by_id[pk]) for pk in adapted_ids]


def _meta_picks(meta_model_ids: list[int], teams: list[int]) -> list[Pick]:
    if not meta_model_ids:
        return []
    metas = {row.pk: row for row in MetaModel.objects.filter(pk__in=meta_model_ids, team_id__in=teams)}
    if len(metas) != len(meta_model_ids):
        raise Http404("No such meta-model.")
    rows = _related(newest_per(batch_evaluations().filter(meta_model_id__in=meta_model_ids), "meta_model_id"))
    latest = {row.meta_model_id: row for row in rows}
    picks = []
    for pk in meta_model_ids:
        if pk not in latest:
            raise ComparisonError(
                f"{metas[pk]} has no finished evaluation on the meta-test tasks: {BATCH_EVALUATION_HINT}."
            )
        picks.append(Pick("meta", latest[pk]))
    return picks


def adapted_ids_for_runs(*, user: AnyUser, run_ids: Sequence[int], team: Team | None) -> list[int]:
    """The adapted models of adaptation runs (the API names adaptations by their run),
    in order. Runs the user may not see (or, with ``team``, outside it) raise Http404;
    one without a result yet raises :class:`ComparisonError`."""
    run_ids = unique_ints(run_ids)
    if not run_ids:
        return []
    rows = Adaptation.objects.filter(run_id__in=run_ids, run__team_id__in=_allowed_team_ids(user, team))
    adapted = dict(rows.values_list("run_id", "adapted_model__id"))
    if len(adapted) != len(run_ids):
        raise Http404("No such adaptation.")
    for run_id in run_ids:
        if adapted[run_id] is None:
            raise ComparisonError(f"Adaptation #{run_id} has no result yet: it has not succeeded.")
    return [adapted[run_id] for run_id in run_ids]


def picks_load(
    *, user: AnyUser, adapted_ids: list[int], meta_model_ids: list[int], team: Team | None
) -> tuple[list[Pick], list[str]]:
    """The evaluations picked, adapted models first, each once, and notes for the
    page about those picked twice. Ids the user may not see (or, with ``team``,
    outside that team) raise Http404, whether or not they exist; a meta-model without
    a finished batch evaluation raises :class:`ComparisonError`."""
    teams = _allowed_team_ids(user, team)
    chosen = _adapted_picks(adapted_ids, teams) + _meta_picks(meta_model_ids, teams)
    notes: list[str] = []
    seen: set[int] = set()
    unique: list[Pick] = []
    for pick in chosen:
        if pick.adapted.pk in seen:
            notes.append(f"{describe(pick.adapted)} was picked twice; it is shown once.")
            continue
        seen.add(pick.adapted.pk)
        unique.append(pick)
    return unique, notes


# -- whether they compare -------------------------------------------------------------


def _is_batch(adapted: AdaptedModel) -> bool:
    if adapted.adaptation.target != AdaptationTarget.BATCH:
        return False
    if adapted.adaptation.run.status != RunStatus.SUCCEEDED or adapted.scores is None:
        raise ComparisonError(f"{describe(adapted)} has no results yet: its evaluation has not finished.")
    return True


def _check_same_metric(adapted: list[AdaptedModel]) -> None:
    first = adapted[0]
    for other in adapted[1:]:
        if other.metric != first.metric:
            raise ComparisonError(
                f"{describe(first)} is scored by {first.metric} and {describe(other)} by "
                f"{other.metric}: they solve different kinds of task."
            )


def _check_same_tasks(adapted: list[AdaptedModel]) -> None:
    first = adapted[0]
    key, shown = tasks_key(first.meta_model, first)
    for other in adapted[1:]:
        other_key, other_shown = tasks_key(other.meta_model, other)
        if other_key != key:
            raise ComparisonError(
                f"{describe(first)} and {describe(other)} were not evaluated on the same tasks: "
                f"{shown} against {other_shown}."
            )


def _target(adapted: AdaptedModel) -> tuple[Any, ...]:
    spec = adapted.adaptation
    if spec.target == AdaptationTarget.TEST_TASK:
        return ("test_task", spec.task_index)
    data = json.dumps([spec.support, spec.query, spec.desc], sort_keys=True, default=str)
    return ("custom", hashlib.sha256(data.encode()).hexdigest())


def _check_same_target(adapted: list[AdaptedModel]) -> None:
    """Single-task items: the same meta-test task of the same family and episode, or
    the same typed/uploaded data (whatever task set the meta-models came from)."""
    first = adapted[0]
    for other in adapted[1:]:
        if _target(other) != _target(first):
            raise ComparisonError(
                f"{describe(first)} and {describe(other)} were adapted to different tasks: "
                "single-task adaptations are compared only on the same task."
            )
    if _target(first)[0] == "test_task":
        _check_same_tasks(adapted)


def check_comparable(picks: list[Pick]) -> bool:
    """Whether the picks are batch evaluations (True) or single-task adaptations
    (False); :class:`ComparisonError` when they mix, or differ in metric, tasks or
    target."""
    adapted = [pick.adapted for pick in picks]
    batch = [_is_batch(row) for row in adapted]
    if any(batch) and not all(batch):
        one = next(row for row, is_batch in zip(adapted, batch, strict=True) if is_batch)
        other = next(row for row, is_batch in zip(adapted, batch, strict=True) if not is_batch)
        raise ComparisonError(
            f"{describe(one)} is an evaluation on the meta-test tasks and {describe(other)} a "
            "single-task adaptation: compare evaluations with evaluations, or single-task "
            "adaptations to the same task with each other."
        )
    _check_same_metric(adapted)
    if all(batch):
        _check_same_tasks(adapted)
    else:
        _check_same_target(adapted)
    return all(batch)


# -- the arrays -----------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedEvaluation:
    """A batch evaluation's stored arrays: ``task_ids`` and finite ``scores`` in the
    stored order, and the ``[tasks, steps+1]`` ``losses`` (None when not stored)."""

    task_ids: np.ndarray
    scores: np.ndarray
    losses: np.ndarray | None


def _evaluation_load(adapted: AdaptedModel) -> LoadedEvaluation:
    ids = stored_task_ids(adapted)
    try:
        scores = stored_floats(adapted.scores, adapted.n_tasks)
        losses = stored_floats(adapted.losses) if adapted.losses is not None else None
        if losses is not None:
            if losses.size % adapted.n_tasks:
                raise ValueError(f"{losses.size} losses do not split into {adapted.n_tasks} tasks")
            losses = losses.reshape(adapted.n_tasks, -1)
    except ValueError as error:
        raise ComparisonError(f"{describe(adapted)}: its stored results are damaged ({error}).") from error
    if not np.all(np.isfinite(scores)):
        raise ComparisonError(f"{describe(adapted)} has non-finite scores (a diverged adaptation).")
    return LoadedEvaluation(task_ids=ids, scores=scores, losses=losses)


def evaluations_load(picks: list[Pick]) -> list[LoadedEvaluation]:
    """Each pick's stored arrays; :class:`ComparisonError` naming a damaged one."""
    return [_evaluation_load(pick.adapted) for pick in picks]


def curve_values(curve: Any) -> list[float | None]:
    """A single-task curve (``[{"support_loss", "query_loss", ...}, ...]``): the query
    loss per step, or the support loss when there is no query set."""
    values: list[float | None] = []
    for entry in curve or []:
        value = entry.get("query_loss", entry.get("support_loss")) if isinstance(entry, dict) else None
        values.append(float(value) if isinstance(value, int | float) and math.isfinite(value) else None)
    return values
