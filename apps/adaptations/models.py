"""Adaptations of meta-models to new tasks, and the adapted models they produce.

An adaptation is the spec of a run of kind ``adapt`` (``apps.experiments``); its
adapted model holds the results. The tables were the registry's until they moved
here (``apps/registry/migrations/0002_move_adaptations_and_reviews.py``).
"""

from __future__ import annotations

from django.db import models

from apps.experiments.models import Run
from apps.registry.models import MetaModel
from apps.teams.models import Team


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
