"""The sweep page at scale: one sweep of 200 runs, each with 20 evaluations of its
metric stored (plus 200 loss points), rendered server-side.

In a database of its own (``metaweb_bench_<pid>``, created, migrated, dropped at
the end) it bulk-creates the team, a 200-run random sweep over two settings, the
runs (a mix of states) and their metric points. Then, with Django's test
``Client`` logged in as a member (the full middleware stack), it times
``GET /t/<team>/sweeps/<id>/``: the full page and its htmx partial (what the live
leaderboard re-fetches). Baseline in the same run: a 20-run sweep's page.
Each case gets warm-up requests, then the median and p90 of ``--repeats``.

    .venv/bin/python benchmarks/sweep_page.py [--repeats 30]

Target: median under 200 ms for 200 runs. Last line: ``RESULT sweep200_p50_ms=<x>``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import _stack  # noqa: E402

RUNS = 200
EVALS = 20
TARGET_MS = 200.0
REDIS_URL = "redis://127.0.0.1:6379/15"  # nothing in a page render talks to Redis


def populate_sweep(world: dict, runs: int, name: str):
    """A sweep of ``runs`` runs with their metric points, bulk-created."""
    import random

    from apps.experiments.metric_store import points_append
    from apps.experiments.models import Run, RunStatus, Sweep
    from tests.factories import SMALL_CONFIG

    rng = random.Random(runs)
    sweep = Sweep.objects.create(
        team=world["team"],
        experiment=world["experiment"],
        taskset_version=world["version"],
        name=name,
        strategy="asha",
        base_config=SMALL_CONFIG,
        dimensions={
            "inner_lr": {"kind": "log", "low": 1e-4, "high": 0.5, "integer": False},
            "inner_steps": {"kind": "list", "values": [1, 2, 3, 5]},
        },
        configs=[{}] * runs,
        planned=runs,
        next_index=runs,
        metric="val_loss",
        max_concurrent=8,
        created_by=world["user"],
    )
    statuses = [RunStatus.SUCCEEDED] * 6 + [RunStatus.CANCELLED] * 2 + [RunStatus.RUNNING, RunStatus.QUEUED]
    created = Run.objects.bulk_create(
        [
            Run(
                experiment=world["experiment"],
                team=world["team"],
                algorithm="maml",
                taskset_version=world["version"],
                config={
                    **SMALL_CONFIG,
                    "inner_lr": rng.uniform(1e-4, 0.5),
                    "inner_steps": rng.choice([1, 2, 3, 5]),
                },
                status=statuses[i % len(statuses)],
                launched_by=world["user"],
                total_steps=1000,
                step=1000,
                sweep=sweep,
            )
            for i in range(runs)
        ]
    )
    for run in created:
        evals = 0 if run.status == RunStatus.QUEUED else rng.randint(1, EVALS)
        points = [("val_loss", 50 * (k + 1), rng.random()) for k in range(evals)]
        points += [("loss", s, rng.random()) for s in range(1, 201)]
        points_append(run_id=run.pk, points=points)
    return sweep


def populate() -> dict:
    from apps.experiments.models import Experiment
    from apps.teams.models import Role
    from tests.factories import MembershipFactory, TaskSetVersionFactory, TeamFactory, UserFactory

    team = TeamFactory(name="Bench", slug="bench")
    user = UserFactory(username="sweeper")
    MembershipFactory(team=team, user=user, role=Role.MEMBER)
    version = TaskSetVersionFactory(taskset__team=team, taskset__name="Sines", created_by=user)
    experiment = Experiment.objects.create(team=team, name="Scale", created_by=user)
    world = {"team": team, "user": user, "version": version, "experiment": experiment}
    world["big"] = populate_sweep(world, RUNS, "200 runs")
    world["small"] = populate_sweep(world, 20, "20 runs")
    return world


def time_requests(client, url: str, *, repeats: int, warmup: int, headers: dict, rows: int) -> list[float]:
    import gc

    for _ in range(warmup):
        _check(client.get(url, **headers), rows)
    timings = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        response = client.get(url, **headers)
        timings.append((time.perf_counter() - start) * 1000)
        _check(response, rows)
    return timings


def _check(response, rows: int) -> None:
    if response.status_code != 200:
        raise RuntimeError(f"sweep page answered {response.status_code}")
    shown = response.content.count(b"<tr data-run-id=")
    if shown != rows:
        raise RuntimeError(f"sweep page shows {shown} runs, not {rows}")


def _summary(name: str, timings: list[float]) -> str:
    return (
        f"{name:<30} median {statistics.median(timings):7.1f} ms   "
        f"p90 {_stack.percentile(timings, 90):7.1f} ms   min {min(timings):7.1f} ms   (n={len(timings)})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="metaweb-sweep-page-"))
    env = _stack.stack_env(database_url=_stack.BENCH_DB_URL, redis_url=REDIS_URL, data_dir=work)
    _stack.recreate_database(_stack.BENCH_DB_URL)
    ok = False
    try:
        _stack.setup_django(env, migrate=True)
        from django.db import connection
        from django.test import Client
        from django.test.utils import CaptureQueriesContext
        from django.urls import reverse

        world = populate()
        client = Client(HTTP_HOST="127.0.0.1")
        client.force_login(world["user"])

        def url(sweep) -> str:
            return reverse("experiments:sweep-detail", kwargs={"team_slug": "bench", "sweep_id": sweep.pk})

        with CaptureQueriesContext(connection) as queries:
            page = client.get(url(world["big"]))
        _check(page, RUNS)
        print(f"200-run page: {len(page.content) / 1024:.0f} KiB, {len(queries)} queries", flush=True)
        cases = [
            ("full page, 200 runs", url(world["big"]), {}, RUNS),
            ("htmx partial, 200 runs", url(world["big"]), {"HTTP_HX_REQUEST": "true"}, RUNS),
            ("full page, 20 runs (baseline)", url(world["small"]), {}, 20),
        ]
        results = {}
        for name, target, headers, rows in cases:
            results[name] = time_requests(
                client, target, repeats=args.repeats, warmup=args.warmup, headers=headers, rows=rows
            )
            print(_summary(name, results[name]), flush=True)
        p50 = statistics.median(results["full page, 200 runs"])
        partial = statistics.median(results["htmx partial, 200 runs"])
        baseline = statistics.median(results["full page, 20 runs (baseline)"])
        print(
            f"200 / 20 runs: {p50 / baseline:.2f}x; target median < {TARGET_MS:.0f} ms: "
            f"{'ok' if p50 < TARGET_MS else 'ABOVE TARGET'} (load now {os.getloadavg()[0]:.1f})"
        )
        ok = True
        print(
            f"RESULT sweep200_p50_ms={p50:.1f} sweep200_partial_p50_ms={partial:.1f} "
            f"sweep20_p50_ms={baseline:.1f}"
        )
        return 0
    finally:
        _stack.teardown(work, ok=ok)


if __name__ == "__main__":
    raise SystemExit(main())
