from __future__ import annotations

import uuid
from pathlib import PurePosixPath

from django.conf import settings
from django.db import models

from apps.teams.models import Team
from workers.metalearn.config import FAMILIES

FAMILY_CHOICES = [(name, name) for name in FAMILIES]
ALLOWED_DATA_SUFFIXES = {".csv", ".zip"}


def taskset_data_path(instance: TaskSetVersion, filename: str) -> str:
    """Storage name for an uploaded data file, built from ids and a random token.

    The user's file name contributes only its (allow-listed) suffix.
    """
    suffix = PurePosixPath(filename).suffix.lower()
    if suffix not in ALLOWED_DATA_SUFFIXES:
        suffix = ".bin"
    return f"tasksets/{instance.taskset_id}/{uuid.uuid4().hex}{suffix}"


class TaskSet(models.Model):
    """A named family of few-shot tasks, owned by a team. Edits create versions."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="tasksets")
    name = models.CharField(max_length=100)
    family = models.CharField(max_length=20, choices=FAMILY_CHOICES)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="uniq_taskset_name_per_team")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class TaskSetVersion(models.Model):
    """An immutable version of a task set: the family parameters and, for the
    ``table`` family, the uploaded data file. Runs point at the version they used."""

    taskset = models.ForeignKey(TaskSet, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    description = models.TextField(blank=True)
    params = models.JSONField(default=dict, blank=True)
    data_file = models.FileField(upload_to=taskset_data_path, blank=True, max_length=200)
    data_sha256 = models.CharField(max_length=64, blank=True)
    data_summary = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["taskset", "number"], name="uniq_taskset_version_number")
        ]
        ordering = ["taskset", "-number"]

    def __str__(self) -> str:
        return f"{self.taskset.name} v{self.number}"
