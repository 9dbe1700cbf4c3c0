"""The model registry: meta-trained models, their aliases, adaptations to new tasks,
the adapted models they produce, and the team's verdicts on them.

Lineage, both ways: task-set version -> training run -> meta-model -> adaptations
-> adapted models -> reviews. Files live under ``settings.DATA_DIR / "registry"``
in folders named by database ids, never by user input.
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


class AdaptationTarget(models.TextChoices):
    TEST_TASK = "test_task", "A task of the meta-test split"
    CUSTOM = "custom", "A new task (typed, pasted or uploaded)"
    BATCH = "batch", "All 600 meta-test tasks"


class Adaptation(models.Model):
    """What to adapt and to what: the spec of a run of kind ``adapt``.

    ``support`` and ``query`` hold a custom task's data as JSON
    (``{"x": [...], "y": [...]}``; images as nested lists of pixel values).
    """

    run = models.OneToOneField(Run, on_delete=models.CASCADE, related_name="adaptation")
    meta_model = models.ForeignKey(MetaModel, on_delete=models.PROTECT, related_name="adaptations")
    target = models.CharField(max_length=12, choices=AdaptationTarget.choices)
    task_index = models.PositiveIntegerField(null=True, blank=True)
    support = models.JSONField(null=True, blank=True)
    query = models.JSONField(null=True, blank=True)
    desc = models.JSONField(null=True, blank=True)
    steps = models.PositiveIntegerField()
    lr = models.FloatField()
    shots = models.PositiveIntegerField(null=True, blank=True)

    def __str__(self) -> str:
        return f"Adaptation of {self.meta_model} ({self.target})"


class AdaptedModel(models.Model):
    """The product of an adaptation.

    A single task gives adapted weights (``<registry>/adapted/<pk>/params.safetensors``),
    the per-step curve and predictions. A batch gives the ``[tasks, steps+1]`` query
    loss matrix and the per-task post-adaptation scores, stored compactly as
    little-endian float32 bytes (one array per adaptation, never a row per task).
    """

    adaptation = models.OneToOneField(Adaptation, on_delete=models.CASCADE, related_name="adapted_model")
    meta_model = models.ForeignKey(MetaModel, on_delete=models.PROTECT, related_name="adapted_models")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="adapted_models")
    metric = models.CharField(max_length=20)
    before = models.FloatField(null=True, blank=True)
    after = models.FloatField(null=True, blank=True)
    ci95 = models.FloatField(null=True, blank=True)
    curve = models.JSONField(default=list, blank=True)
    predictions = models.JSONField(default=dict, blank=True)
    n_tasks = models.PositiveIntegerField(default=1)
    n_steps = models.PositiveIntegerField(default=0)
    losses = models.BinaryField(null=True, blank=True)
    scores = models.BinaryField(null=True, blank=True)
    task_ids = models.BinaryField(null=True, blank=True)
    weights_sha256 = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Adapted {self.meta_model} #{self.pk}"


class Verdict(models.TextChoices):
    APPROVE = "approve", "Approve"
    REJECT = "reject", "Reject"
    NEEDS_WORK = "needs_work", "Needs work"


class Review(models.Model):
    """A verdict with a comment, on a meta-model or on an adapted model. Append-only:
    the history of verdicts is the list of reviews."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="reviews")
    meta_model = models.ForeignKey(
        MetaModel, null=True, blank=True, on_delete=models.CASCADE, related_name="reviews"
    )
    adapted_model = models.ForeignKey(
        AdaptedModel, null=True, blank=True, on_delete=models.CASCADE, related_name="reviews"
    )
    verdict = models.CharField(max_length=12, choices=Verdict.choices)
    comment = models.TextField(blank=True)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(meta_model__isnull=False, adapted_model__isnull=True)
                    | models.Q(meta_model__isnull=True, adapted_model__isnull=False)
                ),
                name="review_has_exactly_one_subject",
            )
        ]

    def __str__(self) -> str:
        return f"{self.verdict} by {self.author}"
