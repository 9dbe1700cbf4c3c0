from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from apps.tasksets.models import TaskSetVersion
from apps.teams.models import Team
from workers.metalearn.config import ALGORITHMS

ALGORITHM_CHOICES = [(name, name) for name in ALGORITHMS]


#: A tag name: letters, digits, ``_``, ``.`` and ``-``, stored lowercase.
TAG_NAME_MAX_LENGTH = 40
TAG_NAME_RE = re.compile(r"[\w.-]+")
#: The longest note accepted, in characters.
NOTE_MAX_LENGTH = 20_000


def tag_name_clean(name: str) -> str:
    """``name`` stripped and lowercased, or ValidationError saying what a tag name is.
    The one rule for tag names: the services and the search's ``tag:`` field use it."""
    cleaned = name.strip().lower()
    if not cleaned:
        raise ValidationError("Give the tag a name.")
    if len(cleaned) > TAG_NAME_MAX_LENGTH or not TAG_NAME_RE.fullmatch(cleaned):
        raise ValidationError(
            f"A tag is at most {TAG_NAME_MAX_LENGTH} letters, digits, '_', '.' or '-', without spaces."
        )
    return cleaned


class Tag(models.Model):
    """A label a team puts on its runs and experiments (``baseline``, ``paper-v2``)."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="tags")
    name = models.CharField(max_length=TAG_NAME_MAX_LENGTH)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="uniq_tag_name_per_team")]
        # ``tag:<name>`` looks tags up by name across the visible teams.
        indexes = [models.Index(fields=["name"], name="tag_name")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Noted(models.Model):
    """A Markdown note, who last changed it and when (shown rendered and sanitised)."""

    note = models.TextField(blank=True)
    note_updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    note_updated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True


class Experiment(Noted):
    """A group of runs that answer one question, shared by the team."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="experiments")
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    tags = models.ManyToManyField(Tag, blank=True, related_name="experiments")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="uniq_experiment_name_per_team")]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


FINISHED_STATUSES = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED})


class RunKind(models.TextChoices):
    TRAIN = "train", "Meta-training"
    ADAPT = "adapt", "Adaptation"
    #: Logged through the API by the user's own training loop; no worker, no checkpoint.
    EXTERNAL = "external", "External"


class Queue(models.TextChoices):
    GPU = "gpu", "GPU"
    CPU = "cpu", "CPU"


class SweepStatus(models.TextChoices):
    RUNNING = "running", "Running"
    STOPPED = "stopped", "Stopped"
    DONE = "done", "Done"


class SweepStrategy(models.TextChoices):
    GRID = "grid", "Grid"
    RANDOM = "random", "Random"
    ASHA = "asha", "Random with ASHA"
    BAYES = "bayes", "Bayesian (TPE)"


class Sweep(models.Model):
    """Runs launched together over the values of some settings. The sweep links its
    runs (``Run.sweep``) and holds the configs not yet launched: ``configs[next_index:]``
    become runs as earlier ones finish, at most ``max_concurrent`` queued or running."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="sweeps")
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="sweeps")
    taskset_version = models.ForeignKey(TaskSetVersion, on_delete=models.PROTECT, related_name="sweeps")
    name = models.CharField(max_length=120)
    strategy = models.CharField(max_length=10, choices=SweepStrategy.choices)
    base_config = models.JSONField()
    dimensions = models.JSONField()
    configs = models.JSONField(default=list)
    #: How many runs the sweep makes, so that lists need not load the configs:
    #: ``len(configs)``, except a bayes sweep's, which proposes its later configs.
    planned = models.PositiveIntegerField(default=0)
    next_index = models.PositiveIntegerField(default=0)
    metric = models.CharField(max_length=50)
    maximize = models.BooleanField(default=False)
    max_concurrent = models.PositiveIntegerField(default=1)
    #: Stop poor runs at ASHA's rungs (``sweep_asha_check``): always for the ``asha``
    #: strategy, on request for the others (W&B's ``early_terminate``).
    early_stop = models.BooleanField(default=False)
    seed = models.BigIntegerField(default=0)
    queue = models.CharField(max_length=10, choices=Queue.choices, default=Queue.CPU)
    status = models.CharField(max_length=10, choices=SweepStatus.choices, default=SweepStatus.RUNNING)
    message = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["team", "-created_at"], name="sweep_team_recent")]

    def __str__(self) -> str:
        return self.name

    @property
    def pending(self) -> int:
        """Configs not launched yet."""
        return max(self.planned - self.next_index, 0)


class Run(Noted):
    """One execution of the engine: queued -> running -> succeeded | failed | cancelled.

    ``attempt`` counts deliveries that claimed the run; ``attempt_token`` identifies
    the live attempt, so a late duplicate delivery can tell it is not the owner.
    Checkpoints live in the run-file store under ``runs/<pk>/checkpoints``
    (:mod:`apps.runfiles.keys`), built from the id.
    """

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="runs")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="runs")
    kind = models.CharField(max_length=10, choices=RunKind.choices, default=RunKind.TRAIN)
    algorithm = models.CharField(max_length=20, choices=ALGORITHM_CHOICES)
    taskset_version = models.ForeignKey(TaskSetVersion, on_delete=models.PROTECT, related_name="runs")
    config = models.JSONField()
    seed = models.BigIntegerField(default=0)
    queue = models.CharField(max_length=10, choices=Queue.choices, default=Queue.CPU)
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.QUEUED)
    code_version = models.CharField(max_length=100, blank=True)
    launched_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    cloned_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    # Execution bookkeeping, written by the worker.
    worker = models.CharField(max_length=200, blank=True)
    device = models.CharField(max_length=100, blank=True)
    attempt = models.PositiveIntegerField(default=0)
    attempt_token = models.CharField(max_length=64, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    checkpoint_step = models.PositiveIntegerField(null=True, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    #: When the fair dispatcher last sent the run to Celery (None: it waits in the
    #: database for a slot of its queue; ``services/scheduling.py``).
    dispatched_at = models.DateTimeField(null=True, blank=True)
    #: When the ended run's checkpoints were trimmed to its latest and best (None: not
    #: yet; the watchdog retries a trim the run-file store refused; ``services/retention.py``).
    checkpoints_retained_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    error_step = models.PositiveIntegerField(null=True, blank=True)
    summary = models.JSONField(default=dict, blank=True)
    tags = models.ManyToManyField(Tag, blank=True, related_name="runs")
    sweep = models.ForeignKey(Sweep, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs")
    #: When a member archived the ended run (None: not archived). Archived runs leave
    #: the team's lists and searches unless asked for, and keep everything else
    #: (metrics, checkpoints, model); ``services/archive.py`` archives and restores.
    archived_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["team", "-created_at"], name="run_team_recent"),
            models.Index(fields=["status", "heartbeat_at"], name="run_status_heartbeat"),
            # The run list: a team's runs of one kind (training runs by default), newest
            # first, resumed after a (created_at, id) cursor; and its common filters.
            models.Index(fields=["team", "kind", "-created_at", "-id"], name="run_team_kind_recent"),
            models.Index(fields=["team", "status", "-created_at"], name="run_team_status_recent"),
            models.Index(fields=["team", "algorithm", "-created_at"], name="run_team_algorithm_recent"),
            # How many runs a list hides: a team's archived runs, few, so a small index.
            models.Index(
                fields=["team", "kind"],
                name="run_team_archived",
                condition=models.Q(archived_at__isnull=False),
            ),
            # The fair dispatcher: a queue's waiting and in-flight runs, and each team's
            # last dispatch on it.
            models.Index(fields=["queue", "status", "created_at"], name="run_queue_status_created"),
            models.Index(fields=["queue", "team", "dispatched_at"], name="run_queue_team_dispatched"),
        ]

    def __str__(self) -> str:
        return f"Run {self.pk} ({self.algorithm}, {self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    @property
    def progress_pct(self) -> float:
        """How far the run got, in percent of its steps (0 before it knows its length)."""
        return round(100 * min(self.step / self.total_steps, 1), 1) if self.total_steps else 0


class MetricSeries(models.Model):
    """One metric of one run: its running figures (points stored, the highest step,
    its value, the lowest and highest finite values) and the row its writers lock.
    The points live in :class:`MetricChunk` rows. Written and read only through
    ``apps.experiments.metric_store``, which states the rules (a step not above
    ``last_step`` is a replay and is skipped)."""

    # No index of its own: the unique (run, name) index serves lookups by run.
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="metric_series", db_index=False)
    name = models.CharField(max_length=50)
    count = models.PositiveIntegerField(default=0)
    last_step = models.IntegerField(default=-1)
    last_value = models.FloatField(null=True)
    low = models.FloatField(null=True)
    high = models.FloatField(null=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "name"], name="uniq_metric_series")]
        ordering = ["run", "name"]

    def __str__(self) -> str:
        return f"{self.name} of run {self.run_id} ({self.count} points)"


class MetricChunk(models.Model):
    """Up to ``CHUNK_POINTS`` (4,096) consecutive points of one series, packed:
    ``steps`` (int32) and ``values`` (float64), little-endian, ascending steps, and
    ``envelope``, the chunk's min-max per block of points (what wide charts read)."""

    series = models.ForeignKey(MetricSeries, on_delete=models.CASCADE, related_name="chunks", db_index=False)
    first_step = models.IntegerField()
    last_step = models.IntegerField()
    count = models.PositiveIntegerField()
    steps = models.BinaryField()
    values = models.BinaryField()
    envelope = models.BinaryField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["series", "first_step"], name="uniq_metric_chunk")]
        ordering = ["series", "first_step"]

    def __str__(self) -> str:
        return f"steps {self.first_step}..{self.last_step} of series {self.series_id}"


class RunEvent(models.Model):
    """The run's history: claimed, requeued after a lost heartbeat, cancelled, failed..."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="events")
    created_at = models.DateTimeField(auto_now_add=True)
    kind = models.CharField(max_length=30)
    message = models.TextField(blank=True)
    attempt = models.PositiveIntegerField(default=0)
    #: The training step the event is about, where it is about one (a loss spike).
    step = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


class RunFile(models.Model):
    """A file a run keeps beside its metrics (MLflow's artifacts): a plot, a table, a
    model exported by the script that logged an external run. Stored in the run-file
    store under a key made of ids only (``apps.runfiles.keys.run_file``); the name is
    only shown and given back on download. Files are kept as uploaded, never replaced."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="files")
    name = models.CharField(max_length=200)
    size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "pk"]
        constraints = [models.UniqueConstraint(fields=["run", "name"], name="run_file_unique_name")]

    def __str__(self) -> str:
        return self.name


class SavedView(models.Model):
    """A named run-list view shared by the team: a search, extra columns, a sort, the
    kind of runs and the filters (``{"status": "failed", "archived": "include"}``, as
    the query string spells them). Members create them; the creator or an admin
    deletes them."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="saved_views")
    name = models.CharField(max_length=80)
    query = models.TextField(blank=True)
    columns = models.JSONField(default=list, blank=True)
    sort = models.CharField(max_length=200, blank=True)
    kind = models.CharField(max_length=10, blank=True)
    filters = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="uniq_saved_view_name_per_team")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def list_fields(self) -> dict[str, Any]:
        """What the run list reads of the view (``saved_view_query``, ``RunListParams.shows``)."""
        return {
            "query": self.query,
            "columns": self.columns,
            "sort": self.sort,
            "kind": self.kind,
            "filters": self.filters,
        }
