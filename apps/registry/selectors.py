"""Reads for meta-models: the team's models with their versions, aliases and latest
verdicts, one meta-model's lineage both ways, alias histories, and the JSON model
card. Permission filtering happens here, once: every ``*_visible``
function raises Http404 for users outside the object's team.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.db.models import OuterRef, Prefetch, QuerySet
from django.http import Http404

from apps.adaptations.models import Adaptation
from apps.experiments.selectors import mnn_condition_of
from apps.registry import storage
from apps.registry.models import AliasMove, MetaModel, ModelAlias
from apps.reviews.models import Review
from apps.reviews.selectors.reviews import latest_verdict_subquery, review_list, reviews_card
from apps.runfiles.store import stored_or_none
from apps.tasksets.models import TaskSet
from apps.teams.models import Team
from apps.teams.selectors import team_ids_for_user
from apps.teams.types import AnyUser

__all__ = [
    "CARD_FORMAT",
    "LINEAGE_LIMIT",
    "ModelGroup",
    "alias_list_for_name",
    "iso_or_none",
    "metamodel_card",
    "metamodel_get_visible",
    "metamodel_groups_for_team",
    "metamodel_lineage",
    "metamodel_lineage_card",
    "metamodel_tasksets_for_team",
    "metamodel_weights_key",
]


#: Adaptations listed on a meta-model's page (newest first).
LINEAGE_LIMIT = 100
#: Alias moves listed per alias.
ALIAS_HISTORY_LIMIT = 20
CARD_FORMAT = 1


# -- one meta-model -----------------------------------------------------------------------


def metamodel_get_visible(*, user: AnyUser, meta_model_id: int) -> MetaModel:
    """The meta-model if the user is in its team (any role), with its latest verdict
    as ``latest_verdict``; Http404 otherwise."""
    meta_model = (
        MetaModel.objects.filter(team_id__in=team_ids_for_user(user=user), pk=meta_model_id)
        .select_related("team", "experiment", "taskset_version__taskset", "training_run", "created_by")
        .annotate(latest_verdict=latest_verdict_subquery(meta_model=OuterRef("pk")))
        .first()
    )
    if meta_model is None:
        raise Http404("No such meta-model.")
    return meta_model


def metamodel_weights_key(meta_model: MetaModel) -> str | None:
    """The store key of ``registry/meta/<id>/params.safetensors``, or None when it is
    missing (the key itself when the store cannot be asked: the download says why)."""
    return stored_or_none(storage.meta_weights_key(meta_model.pk))


def metamodel_lineage(meta_model: MetaModel, limit: int = LINEAGE_LIMIT) -> list[Adaptation]:
    """The meta-model's newest adaptations, each with its run, its adapted model (when
    it has produced one) and that model's reviews (``adapted_model.reviews.all``),
    in three queries."""
    reviews = Review.objects.select_related("author").order_by("-created_at", "-pk")
    return list(
        Adaptation.objects.filter(meta_model=meta_model)
        .select_related("run", "adapted_model")
        .prefetch_related(Prefetch("adapted_model__reviews", queryset=reviews))
        .order_by("-pk")[:limit]
    )


def alias_list_for_name(*, team: Team | int, model_name: str) -> list[ModelAlias]:
    """The aliases of a model name, each with the version it points at and its
    newest moves as ``recent_moves`` (who, when, from, to)."""
    moves = AliasMove.objects.select_related("from_model", "to_model", "moved_by").order_by(
        "-moved_at", "-pk"
    )
    aliases = list(
        ModelAlias.objects.filter(team=team, model_name=model_name)
        .select_related("meta_model")
        .prefetch_related(Prefetch("moves", queryset=moves))
        .order_by("alias")
    )
    for alias in aliases:
        alias.recent_moves = list(alias.moves.all())[:ALIAS_HISTORY_LIMIT]
    return aliases


# -- the team's models --------------------------------------------------------------------


@dataclass
class ModelGroup:
    """One model name: its versions (newest first, each with ``latest_verdict`` and
    ``alias_names``) and its aliases as ``{alias: version}``."""

    name: str
    versions: list[MetaModel] = field(default_factory=list)
    aliases: dict[str, int] = field(default_factory=dict)

    @property
    def latest(self) -> MetaModel:
        return self.versions[0]

    @property
    def algorithms(self) -> list[str]:
        return sorted({m.algorithm for m in self.versions})

    @property
    def tasksets(self) -> list[str]:
        return sorted({m.taskset_version.taskset.name for m in self.versions})


def metamodel_groups_for_team(*, team: Team, filters: Mapping[str, Any] | None = None) -> list[ModelGroup]:
    """The team's meta-models grouped by name (names in alphabetical order), in two
    queries. ``filters`` holds cleaned values: ``taskset`` (a TaskSet or id) and
    ``algorithm``; a name is listed with its matching versions only."""
    filters = filters or {}
    queryset = MetaModel.objects.filter(team=team)
    if filters.get("taskset"):
        queryset = queryset.filter(taskset_version__taskset=filters["taskset"])
    if filters.get("algorithm"):
        queryset = queryset.filter(algorithm=filters["algorithm"])
    versions = (
        queryset.select_related("taskset_version__taskset", "created_by")
        .annotate(latest_verdict=latest_verdict_subquery(meta_model=OuterRef("pk")))
        .order_by("name", "-version")
    )
    groups: dict[str, ModelGroup] = {}
    for meta_model in versions:
        meta_model.alias_names = []
        groups.setdefault(meta_model.name, ModelGroup(name=meta_model.name)).versions.append(meta_model)
    if groups:
        by_pk = {m.pk: m for group in groups.values() for m in group.versions}
        rows = ModelAlias.objects.filter(team=team, model_name__in=list(groups)).order_by("alias")
        for model_name, alias, meta_model_id in rows.values_list("model_name", "alias", "meta_model_id"):
            target = by_pk.get(meta_model_id)
            if target is not None:
                groups[model_name].aliases[alias] = target.version
                target.alias_names.append(alias)
    return list(groups.values())


def metamodel_tasksets_for_team(*, team: Team) -> QuerySet[TaskSet]:
    """The team's task sets that have meta-models (choices of the list's filter)."""
    return TaskSet.objects.filter(team=team, versions__meta_models__isnull=False).distinct().order_by("name")


# -- model cards --------------------------------------------------------------------------


def iso_or_none(value: Any) -> str | None:
    return value.isoformat() if value else None


def metamodel_lineage_card(meta_model: MetaModel) -> dict[str, Any]:
    version = meta_model.taskset_version
    run = meta_model.training_run
    return {
        "taskset": {"id": version.taskset_id, "name": version.taskset.name, "family": version.taskset.family},
        "taskset_version": {"id": version.pk, "number": version.number},
        "training_run": None if run is None else {"id": run.pk, "status": run.status, "seed": run.seed},
        "experiment": {"id": meta_model.experiment_id, "name": meta_model.experiment.name},
    }


def metamodel_condition(meta_model: MetaModel) -> str:
    """What an MNN meta-model's hypernetwork reads ("description" or "support"); ''
    for the other algorithms."""
    family = meta_model.taskset_version.taskset.family
    return mnn_condition_of(algorithm=meta_model.algorithm, config=meta_model.config, family=family)


def metamodel_card(meta_model: MetaModel) -> dict[str, Any]:
    """The meta-model's JSON model card: what it is, where it came from, how good it
    was, which aliases point at it and what the team said about it."""
    aliases = (
        ModelAlias.objects.filter(meta_model=meta_model).order_by("alias").values_list("alias", flat=True)
    )
    return {
        "card_format": CARD_FORMAT,
        "kind": "meta-model",
        "id": meta_model.pk,
        "name": meta_model.name,
        "version": meta_model.version,
        "source": meta_model.source,
        "algorithm": meta_model.algorithm,
        "mnn_condition": metamodel_condition(meta_model) or None,
        "config": meta_model.config,
        "lineage": metamodel_lineage_card(meta_model),
        "metrics": meta_model.metrics,
        "weights": {
            "file": storage.WEIGHTS_FILE,
            "format": "safetensors",
            "sha256": meta_model.weights_sha256,
            "bytes": meta_model.weights_bytes,
        },
        "code_version": meta_model.code_version,
        "description": meta_model.description,
        "aliases": list(aliases),
        "reviews": reviews_card(review_list(meta_model=meta_model)),
        "created_by": meta_model.created_by.get_username(),
        "created_at": iso_or_none(meta_model.created_at),
    }
