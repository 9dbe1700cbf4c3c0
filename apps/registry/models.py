"""The model registry: meta-trained models, their versions and their aliases.

Lineage, both ways: task-set version -> training run -> meta-model -> adaptations
(``apps.adaptations``) -> adapted models -> reviews (``apps.reviews``). Files live
under ``settings.DATA_DIR / "registry"`` in folders named by database ids, never by
user input.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from apps.experiments.models import Experiment, Run
from apps.tasksets.models import TaskSetVersion
from apps.teams.models import Team
from workers.metalearn.config import ALGORITHMS

ALGORITHM_CHOICES = [(name, name) for name in ALGORITHMS]


class MetaModelSource(models.TextChoices):
    RUN = "run", "Training run"
    UPLOAD = "upload", "Uploaded"


class MetaModel(models.Model):
    """A meta-trained model: an immutable copy of a checkpoint's weights and config.

    Versioned by name within the team ("sine-maml" v1, v2, ...). The weights are
    ``<registry>/meta/<pk>/params.safetensors`` and the engine's checkpoint JSON sits
    beside them as ``checkpoint.json``.
    """

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="meta_models")
    experiment = models.ForeignKey(Experiment, on_delete=models.PROTECT, related_name="meta_models")
    name = models.SlugField(max_length=80)
    version = models.PositiveIntegerField()
    source = models.CharField(max_length=10, choices=MetaModelSource.choices, default=MetaModelSource.RUN)
    training_run = models.OneToOneField(
        Run, null=True, blank=True, on_delete=models.PROTECT, related_name="meta_model"
    )
    taskset_version = models.ForeignKey(TaskSetVersion, on_delete=models.PROTECT, related_name="meta_models")
    algorithm = models.CharField(max_length=20, choices=ALGORITHM_CHOICES)
    config = models.JSONField()
    metrics = models.JSONField(default=dict, blank=True)
    code_version = models.CharField(max_length=100, blank=True)
    weights_sha256 = models.CharField(max_length=64)
    weights_bytes = models.PositiveBigIntegerField(default=0)
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["team", "name", "version"], name="uniq_meta_model_version")
        ]
        ordering = ["team", "name", "-version"]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class ModelAlias(models.Model):
    """A movable pointer such as ``candidate`` or ``production`` to one version of a
    named meta-model. Every move is kept in :class:`AliasMove`."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="model_aliases")
    model_name = models.SlugField(max_length=80)
    alias = models.SlugField(max_length=40)
    meta_model = models.ForeignKey(MetaModel, on_delete=models.PROTECT, related_name="aliases")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["team", "model_name", "alias"], name="uniq_alias_per_model")
        ]
        ordering = ["model_name", "alias"]

    def __str__(self) -> str:
        return f"{self.model_name}@{self.alias}"


class AliasMove(models.Model):
    """One move of an alias: who moved it, when, from which version to which."""

    alias = models.ForeignKey(ModelAlias, on_delete=models.CASCADE, related_name="moves")
    from_model = models.ForeignKey(
        MetaModel, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    to_model = models.ForeignKey(MetaModel, on_delete=models.PROTECT, related_name="+")
    moved_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    moved_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-moved_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.alias} -> {self.to_model}"
