"""The leaderboard of a task set: its meta-models ranked by their latest 600-task
evaluation, one board per set of identical tasks. Torch-free."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from apps.adaptations.models import AdaptedModel
from apps.reviews.comparison.analysis import (
    MeanCI,
    PairedResult,
    higher_is_better,
    mean_ci95,
    paired_comparison,
)
from apps.reviews.comparison.display import ModelLabels
from apps.reviews.comparison.load import (
    ComparisonError,
    batch_evaluations,
    latest_verdicts,
    newest_per,
    stored_floats,
    stored_task_ids,
    tasks_key,
)
from apps.tasksets.models import TaskSet
from apps.tasksets.selectors import taskset_get_visible
from apps.teams.types import AnyUser

__all__ = ["Leaderboard", "LeaderboardPage", "LeaderboardRow", "leaderboard_for_taskset"]


@dataclass(frozen=True)
class LeaderboardRow(ModelLabels):
    rank: int
    metric: str
    meta_model_id: int
    adapted_id: int
    run_id: int
    name: str
    version: int
    algorithm: str
    taskset_version: int
    n_tasks: int
    n_steps: int
    mean_ci: MeanCI
    versus_best: PairedResult | None
    verdict: str | None

    @property
    def compared(self) -> PairedResult | None:
        return self.versus_best


@dataclass
class Leaderboard:
    """One board: meta-models evaluated on identical tasks, best first."""

    metric: str
    description: str
    versions: list[int]
    rows: list[LeaderboardRow]

    @property
    def higher_is_better(self) -> bool:
        return higher_is_better(self.metric)


@dataclass
class LeaderboardPage:
    taskset: TaskSet
    boards: list[Leaderboard]


def leaderboard_for_taskset(*, user: AnyUser, taskset_id: int) -> LeaderboardPage:
    """Every meta-model of the task set (any version) that has a finished batch
    evaluation, ranked by its latest one: lowest mean MSE or highest mean accuracy
    first, each with mean ± 95% CI and the paired comparison with the best.

    Meta-models whose evaluations ran on different tasks (versions with other family
    parameters, another episode) are never ranked together: each set of identical
    tasks gets a board of its own. Http404 if the user cannot see the task set.
    """
    taskset = taskset_get_visible(user=user, taskset_id=taskset_id)
    evaluations = batch_evaluations().filter(meta_model__taskset_version__taskset=taskset)
    rows = list(
        newest_per(evaluations, "meta_model_id")
        .select_related("adaptation", "meta_model__taskset_version__taskset")
        .defer("losses", "curve", "predictions", "meta_model__description")
        .order_by("meta_model_id")
    )
    verdicts = latest_verdicts(meta_ids=[row.meta_model_id for row in rows], adapted_ids=[])
    boards = [
        _board(members, description, verdicts) for description, members in _same_tasks_groups(rows).values()
    ]
    boards.sort(key=lambda board: (-len(board.rows), board.versions))
    return LeaderboardPage(taskset=taskset, boards=boards)


Member = tuple[AdaptedModel, np.ndarray]


def _same_tasks_groups(rows: list[AdaptedModel]) -> dict[str, tuple[str, list[Member]]]:
    """The evaluations with their scores sorted by task id, grouped by identical
    tasks (metric, family, episode, task ids): {key: (description, members)}."""
    grouped: dict[str, tuple[str, list[Member]]] = {}
    for adapted in rows:
        try:
            ids = stored_task_ids(adapted)
            scores = stored_floats(adapted.scores, adapted.n_tasks)
        except (ComparisonError, ValueError):
            continue  # damaged rows are left off the board rather than failing it
        if not np.all(np.isfinite(scores)):
            continue
        order = np.argsort(ids, kind="stable")
        ids, scores = ids[order], scores[order]
        key, shown = tasks_key(adapted.meta_model, adapted)
        key = f"{adapted.metric}|{key}|{hashlib.sha256(ids.tobytes()).hexdigest()}"
        grouped.setdefault(key, (f"{shown}, {ids.size} tasks", []))[1].append((adapted, scores))
    return grouped


def _board(members: list[Member], description: str, verdicts: dict[tuple[str, int], str]) -> Leaderboard:
    """One board, best mean first, each row compared with the best."""
    metric = members[0][0].metric
    sign = -1.0 if higher_is_better(metric) else 1.0
    ranked = sorted(
        ((adapted, scores, mean_ci95(scores)) for adapted, scores in members),
        key=lambda entry: (sign * entry[2].mean, entry[0].meta_model.name, entry[0].meta_model.version),
    )
    best_scores = ranked[0][1]
    rows = []
    for rank, (adapted, scores, ci) in enumerate(ranked, start=1):
        meta = adapted.meta_model
        rows.append(
            LeaderboardRow(
                rank=rank,
                metric=metric,
                meta_model_id=meta.pk,
                adapted_id=adapted.pk,
                run_id=adapted.adaptation.run_id,
                name=meta.name,
                version=meta.version,
                algorithm=meta.algorithm,
                taskset_version=meta.taskset_version.number,
                n_tasks=int(scores.size),
                n_steps=adapted.n_steps,
                mean_ci=ci,
                versus_best=None if rank == 1 else paired_comparison(best_scores, scores),
                verdict=verdicts.get(("meta", meta.pk)),
            )
        )
    versions = sorted({row.taskset_version for row in rows})
    return Leaderboard(metric=metric, description=description, versions=versions, rows=rows)
