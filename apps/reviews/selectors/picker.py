"""The compare page's picker. Torch-free.

The team's meta-models, grouped by task set: those with finished 600-task
evaluations (each with its evaluations, newest first), and those without one, with
the evaluation under way when there is one, so that the page can offer to run it.
Adaptations are numbered by their run id, as on their own page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Exists, F, OuterRef, QuerySet, Subquery

from apps.adaptations.models import Adaptation, AdaptationTarget, AdaptedModel
from apps.experiments.models import RunStatus
from apps.registry.models import MetaModel
from apps.reviews.comparison.load import batch_evaluations
from apps.teams.models import Team

__all__ = [
    "PickerChoice",
    "PickerGroup",
    "PickerModel",
    "UnevaluatedModel",
    "adaptation_numbers",
    "comparison_choices",
    "pending_evaluations_exist",
]

UNFINISHED = (RunStatus.QUEUED, RunStatus.RUNNING)


@dataclass(frozen=True)
class PickerChoice:
    adapted_id: int
    run_id: int
    created_at: datetime
    after: float | None
    ci95: float | None
    n_tasks: int
    n_steps: int


@dataclass
class PickerModel:
    meta_model_id: int
    name: str
    version: int
    algorithm: str
    metric: str
    evaluations: list[PickerChoice] = field(default_factory=list)

    @property
    def latest(self) -> PickerChoice:
        return self.evaluations[0]


@dataclass(frozen=True)
class UnevaluatedModel:
    """A meta-model without a finished 600-task evaluation; ``pending_run_id`` is
    its queued or running evaluation, if any."""

    meta_model_id: int
    name: str
    version: int
    algorithm: str
    pending_run_id: int | None
    pending_status: str | None

    @property
    def pending_label(self) -> str:
        return RunStatus(self.pending_status).label if self.pending_status else ""


@dataclass
class PickerGroup:
    taskset_id: int
    taskset_name: str
    models: list[PickerModel] = field(default_factory=list)
    unevaluated: list[UnevaluatedModel] = field(default_factory=list)


def _pending_batch() -> QuerySet[Adaptation]:
    """The meta-model's (``OuterRef("pk")``) unfinished 600-task evaluations, newest first."""
    return Adaptation.objects.filter(
        meta_model=OuterRef("pk"), target=AdaptationTarget.BATCH, run__status__in=UNFINISHED
    ).order_by("-run_id")


def _evaluated(team: Team, groups: dict[int, PickerGroup]) -> None:
    rows = (
        batch_evaluations()
        .filter(team=team)
        .order_by(
            "meta_model__taskset_version__taskset__name",
            "meta_model__name",
            "-meta_model__version",
            "-created_at",
            "-pk",
        )
        .values(
            "pk",
            "created_at",
            "after",
            "ci95",
            "n_tasks",
            "n_steps",
            "metric",
            "meta_model_id",
            run_id=F("adaptation__run_id"),
            name=F("meta_model__name"),
            version=F("meta_model__version"),
            algorithm=F("meta_model__algorithm"),
            taskset_id=F("meta_model__taskset_version__taskset_id"),
            taskset_name=F("meta_model__taskset_version__taskset__name"),
        )
    )
    models: dict[int, PickerModel] = {}
    for row in rows:
        group = groups.setdefault(
            row["taskset_id"], PickerGroup(taskset_id=row["taskset_id"], taskset_name=row["taskset_name"])
        )
        model = models.get(row["meta_model_id"])
        if model is None:
            model = models[row["meta_model_id"]] = PickerModel(
                meta_model_id=row["meta_model_id"],
                name=row["name"],
                version=row["version"],
                algorithm=row["algorithm"],
                metric=row["metric"],
            )
            group.models.append(model)
        model.evaluations.append(
            PickerChoice(
                adapted_id=row["pk"],
                run_id=row["run_id"],
                created_at=row["created_at"],
                after=row["after"],
                ci95=row["ci95"],
                n_tasks=row["n_tasks"],
                n_steps=row["n_steps"],
            )
        )


def _unevaluated(team: Team, groups: dict[int, PickerGroup]) -> None:
    pending = _pending_batch()
    rows = (
        MetaModel.objects.filter(team=team)
        .exclude(Exists(batch_evaluations().filter(meta_model=OuterRef("pk"))))
        .annotate(
            pending_run_id=Subquery(pending.values("run_id")[:1]),
            pending_status=Subquery(pending.values("run__status")[:1]),
        )
        .order_by("taskset_version__taskset__name", "name", "-version")
        .values_list(
            "pk",
            "name",
            "version",
            "algorithm",
            "pending_run_id",
            "pending_status",
            "taskset_version__taskset_id",
            "taskset_version__taskset__name",
        )
    )
    for pk, name, version, algo, run_id, status, ts_id, ts_name in rows:
        group = groups.setdefault(ts_id, PickerGroup(taskset_id=ts_id, taskset_name=ts_name))
        group.unevaluated.append(
            UnevaluatedModel(
                meta_model_id=pk,
                name=name,
                version=version,
                algorithm=algo,
                pending_run_id=run_id,
                pending_status=status,
            )
        )


def comparison_choices(*, team: Team) -> list[PickerGroup]:
    """The team's meta-models by task set (by name): the evaluated ones with their
    evaluations, newest first, then those not evaluated yet. Two queries, without
    the matrices."""
    groups: dict[int, PickerGroup] = {}
    _evaluated(team, groups)
    _unevaluated(team, groups)
    return sorted(groups.values(), key=lambda group: (group.taskset_name, group.taskset_id))


def pending_evaluations_exist(*, team: Team) -> bool:
    """Whether a 600-task evaluation of the team is queued or running (one query)."""
    return Adaptation.objects.filter(
        run__team=team, target=AdaptationTarget.BATCH, run__status__in=UNFINISHED
    ).exists()


def adaptation_numbers(*, team: Team, adapted_ids: list[int]) -> dict[int, int]:
    """{adapted model id: its adaptation's run id} for the team's adapted models, the
    number the pages show (one query)."""
    if not adapted_ids:
        return {}
    rows = AdaptedModel.objects.filter(team=team, pk__in=adapted_ids).values_list("pk", "adaptation__run_id")
    return dict(rows)
