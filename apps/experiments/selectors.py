"""Reads for experiments and runs. Permission filtering happens here, once.

Torch-free: the web process (views, the websocket consumer) imports this module.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Count, F, Max, OuterRef, Prefetch, Q, QuerySet, Subquery
from django.http import Http404
from django.utils import timezone

from apps.experiments.analysis.curves import DEFAULT_POINTS, downsample_minmax, series_clean
from apps.experiments.fairshare import fair_order
from apps.experiments.metric_store import chart_read, run_chunks, run_series_names
from apps.experiments.models import Experiment, Queue, Run, RunEvent, RunFile, RunKind, RunStatus, Tag
from apps.reviews.models import Review
from apps.runfiles.checkpoints import stored_weights_key
from apps.runfiles.store import StoreUnavailable
from apps.tasksets.models import TaskSet, TaskSetVersion
from apps.teams.models import Role, Team
from apps.teams.selectors import team_ids_for_user
from apps.teams.types import AnyUser
from workers.metalearn.config import ConfigError
from workers.metalearn.families import family_desc_dim, family_input_shape, family_kind
from workers.metalearn.specs import MNN_CONDITIONS, SPECS

#: The run list's ``kind`` filter value that lists training runs and adaptations together.
KIND_ALL = "all"


# -- experiments ---------------------------------------------------------------


def experiment_list_for_team(*, team: Team, tag: str = "") -> QuerySet[Experiment]:
    """The team's experiments, those with the most recent run first, each annotated
    with ``run_count`` and ``latest_run_at`` (None when it has no run yet), and the
    latest verdict recorded on any of its meta-models: ``latest_verdict`` and the
    meta-model's id, ``latest_verdict_model_id`` (None when there is none); their
    tags are prefetched. ``tag`` (a cleaned name) keeps those that carry it."""
    latest_review = Review.objects.filter(meta_model__experiment=OuterRef("pk")).order_by(
        "-created_at", "-pk"
    )
    experiments = Experiment.objects.filter(team=team)
    if tag:  # a subquery, not a join: the run counts must not multiply
        tagged = Experiment.tags.through.objects.filter(tag__team=team, tag__name=tag)
        experiments = experiments.filter(pk__in=tagged.values("experiment_id"))
    return (
        experiments.select_related("created_by")
        .prefetch_related(Prefetch("tags", queryset=Tag.objects.order_by("name")))
        .annotate(
            run_count=Count("runs", filter=Q(runs__archived_at__isnull=True)),
            latest_run_at=Max("runs__created_at"),
            latest_verdict=Subquery(latest_review.values("verdict")[:1]),
            latest_verdict_model_id=Subquery(latest_review.values("meta_model_id")[:1]),
        )
        .order_by(F("latest_run_at").desc(nulls_last=True), "-created_at", "-pk")
    )


def experiment_get_visible(*, user: AnyUser, experiment_id: int) -> Experiment:
    """The experiment if the user is in its team; Http404 otherwise."""
    experiment = (
        Experiment.objects.filter(team_id__in=team_ids_for_user(user=user), pk=experiment_id)
        .select_related("team", "created_by")
        .first()
    )
    if experiment is None:
        raise Http404("No such experiment.")
    return experiment


# -- tags ------------------------------------------------------------------------


def tag_names_for_team(*, team: Team | int) -> list[str]:
    """Every tag name the team has used, A to Z: the add-a-tag suggestions."""
    return list(Tag.objects.filter(team=team).order_by("name").values_list("name", flat=True))


# -- runs ------------------------------------------------------------------------


def run_list_visible(*, user: AnyUser) -> QuerySet[Run]:
    """Runs of every team the user belongs to (any role)."""
    return Run.objects.filter(team_id__in=team_ids_for_user(user=user, min_role=Role.VIEWER))


def run_get_visible(*, user: AnyUser, run_id: int) -> Run:
    """The run if the user is in its team; Http404 otherwise (existence is not revealed).
    ``run.meta_model`` (the meta-model it registered, if any) comes with it."""
    run = (
        run_list_visible(user=user)
        .select_related("team", "experiment", "taskset_version__taskset", "meta_model")
        .filter(pk=run_id)
        .first()
    )
    if run is None:
        raise Http404("No such run.")
    return run


def runs_for_listing(queryset: QuerySet[Run]) -> QuerySet[Run]:
    """Each run with the meta-model it registered (``meta_model_pk``,
    ``meta_model_name``, ``meta_model_version``; None when none), that
    meta-model's latest verdict (``latest_verdict``) and its tags (prefetched:
    one more query for the whole list)."""
    latest_review = Review.objects.filter(meta_model__training_run=OuterRef("pk")).order_by(
        "-created_at", "-pk"
    )
    return (
        queryset.select_related("experiment", "taskset_version__taskset", "launched_by")
        .prefetch_related(Prefetch("tags", queryset=Tag.objects.order_by("name")))
        .annotate(
            meta_model_pk=F("meta_model__pk"),
            meta_model_name=F("meta_model__name"),
            meta_model_version=F("meta_model__version"),
            latest_verdict=Subquery(latest_review.values("verdict")[:1]),
        )
        .order_by("-created_at", "-pk")
    )


def run_list_for_experiment(*, experiment: Experiment, archived: bool = False) -> list[Run]:
    """The experiment's runs, newest first, each with its ``queue_wait``; archived
    runs only when ``archived``."""
    runs = Run.objects.filter(experiment=experiment)
    if not archived:
        runs = runs.filter(archived_at__isnull=True)
    return runs_with_queue_waits(runs_for_listing(runs))


def run_archived_count(*, experiment: Experiment) -> int:
    """How many of the experiment's runs are archived. One query."""
    return Run.objects.filter(experiment=experiment, archived_at__isnull=False).count()


# -- why a queued run waits -------------------------------------------------------


@dataclass(frozen=True)
class QueueWait:
    """Where a queued run stands in its queue, read from the database.

    ``position`` is 1 for the next run to start. Runs already sent to Celery go
    first, in the order they were sent (the broker is FIFO and workers prefetch one
    task); then the runs waiting in the database, in the fair dispatcher's order
    (:func:`apps.experiments.fairshare.fair_order`: teams take turns).
    ``ahead_run_id`` is the run directly ahead (the queued run before it, else a
    running one), shown only when it belongs to the same team; ``ahead`` counts every
    queued or running run before it, of any team. The number of workers is not known
    here and is not guessed.
    """

    queue: str
    position: int
    ahead: int
    running: int
    ahead_run_id: int | None
    ahead_is_running: bool

    @property
    def queue_label(self) -> str:
        return Queue(self.queue).label if self.queue in Queue.values else self.queue


#: (pk, team_id, status, dispatched_at) of one queue's queued and running runs, oldest first.
QueueRow = tuple[int, int, str, datetime | None]


def queue_last_served(*, queues: Iterable[str], teams: Iterable[int]) -> dict[tuple[str, int], datetime]:
    """Each team's latest dispatch on each of ``queues``, by ``(queue, team id)``
    (teams never served on a queue are absent). One query."""
    rows = (
        Run.objects.filter(queue__in=list(queues), team_id__in=list(teams), dispatched_at__isnull=False)
        .values("queue", "team_id")
        .annotate(last=Max("dispatched_at"))
        .values_list("queue", "team_id", "last")
    )
    return {(queue, team): last for queue, team, last in rows}


def _queue_order(rows: list[QueueRow], last_served: dict[int, datetime]) -> list[QueueRow]:
    """A queue's queued runs in the order they will start."""
    in_flight: dict[int, int] = {}
    for _pk, team, status, dispatched_at in rows:
        if status == RunStatus.RUNNING or dispatched_at is not None:
            in_flight[team] = in_flight.get(team, 0) + 1
    queued = [row for row in rows if row[2] == RunStatus.QUEUED]
    sent = sorted((row for row in queued if row[3] is not None), key=lambda row: row[3])
    waiting = [row for row in queued if row[3] is None]
    by_id = {row[0]: row for row in waiting}
    order = fair_order([(row[0], row[1]) for row in waiting], in_flight=in_flight, last_served=last_served)
    return sent + [by_id[pk] for pk in order]


def _queue_wait(run: Run, running: list[QueueRow], order: list[QueueRow]) -> QueueWait:
    index = next(i for i, row in enumerate(order) if row[0] == run.pk)
    queued_ahead = order[:index]
    nearest = queued_ahead[-1] if queued_ahead else (running[-1] if running else None)
    return QueueWait(
        queue=run.queue,
        position=len(queued_ahead) + 1,
        ahead=len(queued_ahead) + len(running),
        running=len(running),
        ahead_run_id=nearest[0] if nearest is not None and nearest[1] == run.team_id else None,
        ahead_is_running=nearest is not None and nearest[2] == RunStatus.RUNNING,
    )


def run_queue_waits(*, runs: Iterable[Run]) -> dict[int, QueueWait]:
    """Each queued run's place in its queue, by run id: one query whatever the number
    of runs, a second when some wait for a slot (their teams' turns), none when no
    run is queued."""
    queued = [run for run in runs if run.status == RunStatus.QUEUED]
    if not queued:
        return {}
    rows = list(
        Run.objects.filter(
            queue__in={run.queue for run in queued}, status__in=[RunStatus.QUEUED, RunStatus.RUNNING]
        )
        .exclude(kind=RunKind.EXTERNAL)  # no worker: not in any queue
        .order_by("created_at", "pk")
        .values_list("pk", "team_id", "queue", "status", "dispatched_at")
    )
    waiting_teams = {team for _, team, _, status, sent in rows if status == RunStatus.QUEUED and sent is None}
    served = (
        queue_last_served(queues={run.queue for run in queued}, teams=waiting_teams) if waiting_teams else {}
    )
    waits: dict[int, QueueWait] = {}
    for queue in {run.queue for run in queued}:
        mine = [(pk, team, status, sent) for pk, team, q, status, sent in rows if q == queue]
        running = [row for row in mine if row[2] == RunStatus.RUNNING]
        last_served = {team: last for (q, team), last in served.items() if q == queue}
        order = _queue_order(mine, last_served)
        listed = {row[0] for row in order}
        for run in queued:
            if run.queue == queue and run.pk in listed:
                waits[run.pk] = _queue_wait(run, running, order)
    return waits


def runs_with_queue_waits(runs: Iterable[Run]) -> list[Run]:
    """The runs as a list, each with ``queue_wait`` (a QueueWait, or None unless queued)."""
    listed = list(runs)
    waits = run_queue_waits(runs=listed)
    for run in listed:
        run.queue_wait = waits.get(run.pk)
    return listed


def run_file_get(*, run: Run, file_id: int) -> RunFile:
    """One of the files ``run`` keeps; Http404 otherwise (a file is read through its own run)."""
    kept = run.files.filter(pk=file_id).first()
    if kept is None:
        raise Http404("No such file.")
    return kept


def run_events(*, run: Run) -> QuerySet[RunEvent]:
    """The run's history, oldest first."""
    return RunEvent.objects.filter(run=run).order_by("created_at", "pk")


def run_metrics(run: Run | int, *, points: int = DEFAULT_POINTS) -> dict[str, list[list[float]]]:
    """The run's metrics as ``{name: [[step, value], ...]}``, each series ordered by
    step, finite values only, and downsampled to at most ``points`` by min-max per
    bucket (``analysis/curves.py``): a 100k-point run sends 2,000 points a metric,
    spikes kept. Three queries (``metric_store.chart_read``)."""
    run_id = run if isinstance(run, int) else run.pk
    names = run_series_names(run_id=run_id)
    read = chart_read(bounds={(run_id, name): (None, None) for name in names}, points=points)
    series: dict[str, list[list[float]]] = {}
    for name in names:
        found = read.get((run_id, name))
        if found is None:
            continue
        clean, _ = series_clean(found.steps, found.values)
        if len(clean):
            clean = downsample_minmax(clean, points=points)
            series[name] = [[int(x), y] for x, y in zip(clean.x.tolist(), clean.y.tolist(), strict=True)]
    return series


def _speed(run: Run, now: datetime) -> tuple[float | None, float | None]:
    """Steps per second and seconds left: the worker's figures when it left them in
    ``summary``, otherwise the average since the run started."""
    summary = run.summary if isinstance(run.summary, dict) else {}
    rate = summary.get("steps_per_sec")
    eta = summary.get("eta_seconds")
    if isinstance(rate, int | float) and rate > 0:
        rate = float(rate)
    else:
        rate = None
        if run.status == RunStatus.RUNNING and run.started_at and run.step > 0:
            elapsed = (now - run.started_at).total_seconds()
            if elapsed > 0:
                rate = run.step / elapsed
    if run.status != RunStatus.RUNNING:
        eta = None
    elif not isinstance(eta, int | float) and rate:
        eta = max(run.total_steps - run.step, 0) / rate
    return rate, (float(eta) if isinstance(eta, int | float) else None)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def run_state(run: Run) -> dict[str, Any]:
    """The run's current state, as the run page renders it and as the websocket
    sends it on connect (``type: "run.state"``). JSON-ready."""
    steps_per_sec, eta_seconds = _speed(run, timezone.now())
    return {
        "type": "run.state",
        "run": {
            "id": run.pk,
            "status": run.status,
            "step": run.step,
            "total_steps": run.total_steps,
            "error": run.error,
            "error_step": run.error_step,
            "finished": run.is_finished,
            "cancel_requested": run.cancel_requested_at is not None,
            "algorithm": run.algorithm,
            "queue": run.queue,
            "worker": run.worker,
            "device": run.device,
            "attempt": run.attempt,
            "checkpoint_step": run.checkpoint_step,
            "created_at": _iso(run.created_at),
            "started_at": _iso(run.started_at),
            "finished_at": _iso(run.finished_at),
            "heartbeat_at": _iso(run.heartbeat_at),
            "steps_per_sec": steps_per_sec,
            "eta_seconds": eta_seconds,
        },
        "metrics": run_metrics(run),
    }


def _csv_lines(name: str, steps: list[int], values: list[float]) -> str:
    # Metric names are identifiers the engine chose; quote anyway, so that a comma or
    # quote in a name cannot break a row.
    quoted = '"' + name.replace('"', '""') + '"' if any(c in name for c in ',"\r\n') else name
    return "".join([f"{step},{quoted},{value!r}\r\n" for step, value in zip(steps, values, strict=True)])


CSV_HEADER = "step,name,value\r\n"


def run_metrics_csv(*, run: Run) -> Iterator[str]:
    """The run's metrics as CSV text chunks (``step,name,value``; ordered by name,
    then step) in one pass: ``metric_store.run_chunks`` walks the chunks by keyset
    (a query per 16 chunks of up to 4,096 points), so memory stays flat and no point
    is read twice."""
    yield CSV_HEADER
    for name, steps, values in run_chunks(run_id=run.pk):
        yield _csv_lines(name, steps.tolist(), values.tolist())


def run_checkpoint_key(run: Run) -> str | None:
    """The store key of the newest complete checkpoint's weights, or None when there
    is none. The engine's own lookup rule (:mod:`workers.metalearn.checkpoint_layout`):
    the ``latest`` pointer when it names a complete ``step-NNNNNN`` folder, else the
    highest-numbered complete one. Raises ``StoreUnavailable`` when the store is down."""
    return stored_weights_key(run.pk)


def run_has_checkpoint(run: Run) -> bool:
    """Whether the run page offers the checkpoint download (the run's recorded
    checkpoint step when the store cannot be asked)."""
    try:
        return run_checkpoint_key(run) is not None
    except StoreUnavailable:
        return run.checkpoint_step is not None


# -- choices for the launch and filter forms ----------------------------------------


def taskset_list_launchable(*, team: Team) -> QuerySet[TaskSet]:
    """The team's task sets that have at least one version."""
    return TaskSet.objects.filter(team=team, versions__isnull=False).distinct().order_by("name")


def launch_guide_for_team(*, team: Team, limit: int = 6) -> dict[str, list[Any]]:
    """What an empty run list offers a new user: the task sets a run can be launched
    on (``tasksets``) and the team's newest experiments (``experiments``; for a
    fresh demo team, the seeded one). Two queries."""
    return {
        "tasksets": list(taskset_list_launchable(team=team)[:limit]),
        "experiments": list(Experiment.objects.filter(team=team).order_by("-created_at", "-pk")[:3]),
    }


def taskset_latest_version(*, taskset: TaskSet) -> TaskSetVersion | None:
    return TaskSetVersion.objects.filter(taskset=taskset).order_by("-number").first()


@dataclass(frozen=True)
class LaunchFacts:
    """What the launch form needs to know about a task set's family (None: unknown)."""

    kind: str | None = None
    input_shape: tuple[int, ...] | None = None
    desc_dim: int | None = None
    #: The most ways, and shots + query, that every task of an upload gives (its
    #: summary's ``episode_room``); None for built-in families and older uploads.
    max_ways: int | None = None
    max_examples: int | None = None


def mnn_condition_of(*, algorithm: str, config: Any, family: str) -> str:
    """What a run's (or meta-model's) hypernetwork reads: "description" or "support";
    '' for algorithms without the choice. Runs launched since ``mnn_condition`` existed
    store it resolved; older ones read their family's default (the description where
    it has one), by the rule of ``workers.metalearn.specs``."""
    spec = SPECS.get(algorithm)
    if spec is None or not spec.conditioned:
        return ""
    asked = config.get("mnn_condition") if isinstance(config, dict) else None
    if asked in MNN_CONDITIONS:
        return str(asked)
    try:
        return spec.condition(family_desc_dim(family)) or ""
    except ConfigError:  # an unknown family name
        return ""


def taskset_family_facts(*, taskset: TaskSet, version: TaskSetVersion) -> LaunchFacts:
    """The family kind, input shape, description size and episode room of a task set's
    version, without building the family (unknown: bad parameters, or a table without
    its upload summary)."""
    family = taskset.family
    try:
        kind = family_kind(family, version.params or {})
        shape = family_input_shape(family)
        desc_dim = family_desc_dim(family)
    except ConfigError:
        return LaunchFacts()
    summary = version.data_summary if isinstance(version.data_summary, dict) else {}
    if shape is None and isinstance(summary.get("input_shape"), list):
        shape = tuple(int(s) for s in summary["input_shape"])
    room = summary.get("episode_room")
    room = room if isinstance(room, dict) else {}
    return LaunchFacts(
        kind=kind,
        input_shape=shape,
        desc_dim=desc_dim,
        max_ways=room.get("ways") if isinstance(room.get("ways"), int) else None,
        max_examples=room.get("examples") if isinstance(room.get("examples"), int) else None,
    )


def run_last_launched(*, team: Team, user: AnyUser) -> Run | None:
    """The user's most recent training run in the team (what they used last)."""
    if not user.is_authenticated:
        return None
    runs = Run.objects.filter(team=team, launched_by=user, kind=RunKind.TRAIN)
    return runs.select_related("taskset_version").order_by("-created_at", "-pk").first()
