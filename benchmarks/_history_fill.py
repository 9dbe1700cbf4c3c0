"""The fill of ``benchmarks/history_scale.py``: teams, runs, a sweep, and metric points
packed by the metric store's codec, written with binary ``COPY``."""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import numpy as np

RUNS = 10_000
POINTS = 50_000_000
TEAMS = 3
BIG_RUNS = 10
BIG_POINTS = 100_000
SWEEP_RUNS = 200
METRICS = ("loss", "val_loss", "accuracy", "grad_norm", "lr")
ALGORITHMS = ("maml", "reptile", "protonet", "fomaml", "anil")
CHUNK_COLUMNS = '(series_id, first_step, last_step, count, steps, "values", envelope)'
SERIES_COLUMNS = "(id, run_id, name, count, last_step, last_value, low, high)"


def database_filled(url: str, *, runs: int, points: int) -> bool:
    """Whether the kept database already holds this fill (``--keep`` reuses it)."""
    import psycopg

    try:
        with psycopg.connect(url) as conn:
            found = conn.execute(
                "SELECT (SELECT COUNT(*) FROM experiments_run),"
                " (SELECT SUM(count) FROM experiments_metricseries)"
            ).fetchone()
    except psycopg.Error:
        return False
    name = urlsplit(url).path.lstrip("/")
    return bool(found) and "bench" in name and found[0] >= runs and (found[1] or 0) >= points * 0.99


def _series_sizes(runs: int, points: int, rng: np.random.Generator) -> tuple[int, np.ndarray]:
    """Points per metric of the big runs, and of every other run."""
    big = min(BIG_POINTS, max(points // (2 * len(METRICS) * BIG_RUNS), 1000))
    rest = max(points - BIG_RUNS * len(METRICS) * big, 0)
    others = max(runs - BIG_RUNS, 1)
    mean = max(rest / (others * len(METRICS)), 2)
    sizes = rng.integers(int(mean * 0.5), int(mean * 1.5) + 1, size=others)
    return big, sizes


def _world(runs: int) -> dict:
    from apps.experiments.models import Experiment
    from apps.teams.models import Role
    from tests.factories import MembershipFactory, TaskSetVersionFactory, TeamFactory, UserFactory

    teams, users, versions, experiments = [], [], [], []
    for t in range(TEAMS):
        team = TeamFactory(name=f"Team {t}", slug=f"team-{t}")
        user = UserFactory(username=f"member{t}")
        MembershipFactory(team=team, user=user, role=Role.MEMBER)
        version = TaskSetVersionFactory(taskset__team=team, taskset__name="Sines", created_by=user)
        teams.append(team)
        users.append(user)
        versions.append(version)
        experiments.append(Experiment.objects.create(team=team, name="Year", created_by=user))
    return {"teams": teams, "users": users, "versions": versions, "experiments": experiments}


def _runs(world: dict, runs: int, sizes: np.ndarray, big: int) -> tuple[list, object]:
    """Bulk-create the runs (round-robin across teams; the big runs and the sweep in the
    first team) and the sweep; returns (runs in creation order, sweep)."""
    from django.utils import timezone

    from apps.experiments.models import Run, RunStatus, Sweep
    from tests.factories import SMALL_CONFIG

    rng = random.Random(0)
    sweep = Sweep.objects.create(
        team=world["teams"][0],
        experiment=world["experiments"][0],
        taskset_version=world["versions"][0],
        name="Learning rates",
        strategy="random",
        base_config=SMALL_CONFIG,
        dimensions={"inner_lr": {"kind": "log", "low": 1e-4, "high": 0.5, "integer": False}},
        configs=[{}] * SWEEP_RUNS,
        planned=SWEEP_RUNS,
        next_index=SWEEP_RUNS,
        metric="val_loss",
        status="done",
        created_by=world["users"][0],
    )
    start = timezone.now() - dt.timedelta(days=365)
    rows = []
    for i in range(runs):
        team = 0 if i < BIG_RUNS + SWEEP_RUNS else i % TEAMS
        steps = big if i < BIG_RUNS else int(sizes[(i - BIG_RUNS) % len(sizes)])
        val_loss = round(rng.random(), 3)
        rows.append(
            Run(
                experiment=world["experiments"][team],
                team=world["teams"][team],
                algorithm=ALGORITHMS[i % len(ALGORITHMS)],
                taskset_version=world["versions"][team],
                config={**SMALL_CONFIG, "inner_lr": rng.choice([0.001, 0.003, 0.01, 0.03, 0.1]), "seed": i},
                status=RunStatus.SUCCEEDED if i % 20 else RunStatus.FAILED,
                launched_by=world["users"][team],
                total_steps=steps,
                step=steps,
                seed=i,
                started_at=start + dt.timedelta(minutes=50 * i),
                finished_at=start + dt.timedelta(minutes=50 * i + 30),
                summary={
                    "metrics": {"loss": rng.random(), "accuracy": rng.random()},
                    "val": {"val_loss": val_loss, "val_accuracy": round(1 - val_loss, 3)},
                },
                sweep=sweep if BIG_RUNS <= i < BIG_RUNS + SWEEP_RUNS else None,
            )
        )
    created = Run.objects.bulk_create(rows, batch_size=2000)
    from django.db import connection

    with connection.cursor() as cursor:  # spread over the year, oldest first
        cursor.execute(
            "UPDATE experiments_run SET created_at = %s + ((id - %s) * interval '50 minutes')",
            [start, created[0].pk],
        )
    return created, sweep


def _curve(name: str, steps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    noise = rng.standard_normal(steps.size)
    if name in ("loss", "val_loss"):
        return 2.0 / np.sqrt(steps) + 0.05 * np.abs(noise)
    if name == "accuracy":
        return np.clip(1.0 - 1.0 / np.sqrt(steps) + 0.02 * noise, 0, 1)
    if name == "grad_norm":
        return 1.0 + 0.3 * np.abs(noise)
    return np.full(steps.size, 1e-3)


def _copy_points(created: list, sizes: dict[int, int], log: Callable[[str], None]) -> int:
    """Every chunk, then every series, of the runs by binary COPY, streamed, in one
    transaction (the chunks' foreign key is checked at commit); returns the points."""
    from django.db import connection, transaction

    from apps.experiments.metric_store.codec import chunks_split

    rng = np.random.default_rng(0)
    series: list[tuple] = []
    total = 0
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as wrapper:
        cursor = wrapper.cursor  # psycopg's own, for COPY
        with cursor.copy(f"COPY experiments_metricchunk {CHUNK_COLUMNS} FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int8", "int4", "int4", "int4", "bytea", "bytea", "bytea"])
            for index, run in enumerate(created):
                n = sizes[run.pk]
                steps = np.arange(1, n + 1, dtype=np.int64)
                for name in METRICS:
                    values = _curve(name, steps, rng)
                    series_id = len(series) + 1
                    low, high = float(values.min()), float(values.max())
                    series.append((series_id, run.pk, name, n, n, float(values[-1]), low, high))
                    for f in chunks_split(steps, values):
                        row = (
                            f["first_step"],
                            f["last_step"],
                            f["count"],
                            f["steps"],
                            f["values"],
                            f["envelope"],
                        )
                        copy.write_row((series_id, *row))
                    total += n
                if index % 1000 == 999:
                    log(f"  {index + 1} runs, {total:,} points ({time.perf_counter() - started:.0f} s)")
        with cursor.copy(
            f"COPY experiments_metricseries {SERIES_COLUMNS} FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int8", "int8", "varchar", "int4", "int4", "float8", "float8", "float8"])
            for row in series:
                copy.write_row(row)
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence('experiments_metricseries', 'id'), %s)", [len(series)]
        )
    log(f"  COPY done in {time.perf_counter() - started:.0f} s")
    return total


def fill(*, runs: int, points: int, log: Callable[[str], None]) -> dict:
    from django.db import connection

    rng = np.random.default_rng(1)
    big, sizes = _series_sizes(runs, points, rng)
    world = _world(runs)
    created, sweep = _runs(world, runs, sizes, big)
    log(
        f"  {len(created)} runs created; metrics: {big:,} points each for {BIG_RUNS} runs,"
        f" ~{int(sizes.mean())} for the others"
    )
    per_run = {run.pk: run.total_steps for run in created}
    total = _copy_points(created, per_run, log)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE experiments_run")
        cursor.execute("VACUUM ANALYZE experiments_metricseries")
        cursor.execute("VACUUM ANALYZE experiments_metricchunk")
    return {**world_load(), "points": total}


def world_load() -> dict:
    """What the timings need, read back from a filled database."""
    from django.contrib.auth import get_user_model

    from apps.experiments.models import Run, Sweep
    from apps.teams.models import Team

    team = Team.objects.get(slug="team-0")
    sweep = Sweep.objects.get(team=team)
    big = list(
        Run.objects.filter(team=team, sweep=None).order_by("pk").values_list("pk", flat=True)[:BIG_RUNS]
    )
    return {
        "team": team,
        "user": get_user_model().objects.get(username="member0"),
        "sweep": sweep,
        "sweep_runs": Run.objects.filter(sweep=sweep).count(),
        "big_runs": big,
        "big_points": Run.objects.get(pk=big[0]).total_steps,
    }


def ingest_runs(world: dict, *, count: int) -> list[int]:
    """Fresh running runs of the first team to ingest into."""
    from apps.experiments.models import Run, RunStatus

    template = Run.objects.get(pk=world["big_runs"][0])
    made = []
    for _ in range(count):
        template.pk = None
        template.status = RunStatus.RUNNING
        template.sweep = None
        template._state.adding = True
        template.save()
        made.append(template.pk)
    return made
