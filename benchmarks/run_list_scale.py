"""The run list at a team's year: 10,000 runs, each with 5 final metrics and a
config, on PostgreSQL.

In a database of its own (``metaweb_bench_<pid>``, created, migrated, dropped at
the end) it bulk-creates one team's runs (a quarter of them adaptations, a few
without metrics), then times with Django's test ``Client`` logged in as a member:
the run list's first page, and a page 9,000 rows deep reached by its keyset cursor
(built from the 9,000th row, as the Next link would be), for the default order
(newest first), for a metric sort (``-metric.val_loss``) and for the loss-spike count
(``-spikes``, shown as a column; one run in 20 has 1-3 spikes). Baseline in the same
run: the page 9,000 rows deep read the old way, ``OFFSET 9000`` in the same order.
Each case gets warm-up requests, then the median of ``--repeats``.

    .venv/bin/python benchmarks/run_list_scale.py [--repeats 20]

Last line: ``RESULT deep_default_p50_ms=<x> offset_deep_p50_ms=<y>
keyset_deep_query_p50_ms=<z> deep_spikes_p50_ms=<s>``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import _stack  # noqa: E402

RUNS = 10_000
DEEP = 9_000
REDIS_URL = "redis://127.0.0.1:6379/15"


def populate(runs: int) -> dict:
    import datetime as dt
    import random

    from django.utils import timezone

    from apps.experiments.models import Experiment, Run, RunEvent, RunKind, RunStatus
    from apps.teams.models import Role
    from tests.factories import (
        SMALL_CONFIG,
        MembershipFactory,
        TaskSetVersionFactory,
        TeamFactory,
        UserFactory,
    )
    from workers.metalearn.spikes import SPIKE

    rng = random.Random(0)
    team = TeamFactory(name="Bench", slug="bench")
    user = UserFactory(username="member")
    MembershipFactory(team=team, user=user, role=Role.MEMBER)
    version = TaskSetVersionFactory(taskset__team=team, taskset__name="Sines", created_by=user)
    experiment = Experiment.objects.create(team=team, name="Year", created_by=user)
    start = timezone.now() - dt.timedelta(days=365)

    def summary(i: int) -> dict:
        if i % 50 == 0:
            return {}
        val = {"val_loss": round(rng.random(), 3), "val_acc": round(rng.random(), 3)}
        return {"metrics": {"loss": rng.random(), "acc": rng.random(), "grad_norm": rng.random()}, "val": val}

    rows = [
        Run(
            experiment=experiment,
            team=team,
            kind=RunKind.ADAPT if i % 4 == 3 else RunKind.TRAIN,
            algorithm=("maml", "reptile", "protonet")[i % 3],
            taskset_version=version,
            config={**SMALL_CONFIG, "inner_lr": rng.choice([0.001, 0.01, 0.1]), "seed": i},
            status=RunStatus.SUCCEEDED if i % 50 else RunStatus.FAILED,
            launched_by=user,
            total_steps=20,
            step=20,
            summary=summary(i),
        )
        for i in range(runs)
    ]
    created = Run.objects.bulk_create(rows, batch_size=2000)
    spikes = [
        RunEvent(run=run, kind=SPIKE, step=100 * (k + 1), message="Loss spike.")
        for run in created[::20]
        for k in range(rng.randint(1, 3))
    ]
    RunEvent.objects.bulk_create(spikes, batch_size=2000)
    with _cursor() as cursor:  # spread over the year; every fourth pair of runs ties
        cursor.execute(
            "UPDATE experiments_run SET created_at = %s + ((id / 2) * interval '50 minutes') "
            "WHERE team_id = %s",
            [start, team.pk],
        )
        cursor.execute("ANALYZE experiments_run")
    return {"team": team, "user": user}


def _cursor():
    from django.db import connection

    return connection.cursor()


def _timed(fn, *, repeats: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        fn()
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--runs", type=int, default=RUNS)
    parser.add_argument("--explain", action="store_true", help="print the deep default page's plan")
    args = parser.parse_args()

    with _stack.bench_django("metaweb-run-list-", redis_url=REDIS_URL):
        ok = _run(args)
    return 0 if ok else 1


def _run(args: argparse.Namespace) -> bool:
    from django.db import connection
    from django.test import Client
    from django.urls import reverse

    from apps.experiments.listing.columns import sort_parse
    from apps.experiments.listing.keyset import keyset_page
    from apps.experiments.listing.selectors import runs_filtered
    from apps.experiments.models import Run
    from apps.experiments.selectors import runs_for_listing

    started = time.perf_counter()
    world = populate(args.runs)
    team = world["team"]
    print(f"{args.runs} runs stored in {time.perf_counter() - started:.1f} s; load {os.getloadavg()[0]:.1f}")
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(world["user"])
    url = reverse("experiments:run-list", kwargs={"team_slug": team.slug})
    base = runs_filtered(Run.objects.filter(team=team), {"kind": "all"})

    def deep_cursor(token: str) -> str:
        """The Next cursor of the page that ends at row DEEP (what paging there gives)."""
        sort = sort_parse(token)
        page = keyset_page(runs_for_listing(base), sort=sort, cursor="", per_page=DEEP)
        return page.next_cursor

    results = {}
    for name, token in (("default", "-created"), ("metric", "-metric.val_loss"), ("spikes", "-spikes")):
        query = {"kind": "all", "sort": token, **({"cols": "spikes"} if name == "spikes" else {})}
        cursor = deep_cursor(token)

        def first(query=query) -> None:
            assert client.get(url, query).status_code == 200

        def deep(query=query, cursor=cursor) -> None:
            response = client.get(url, {**query, "cursor": cursor})
            assert response.status_code == 200 and response.content.count(b"data-run-id=") == 25

        queries: list[str] = []
        with connection.execute_wrapper(lambda run, sql, *rest: queries.append(sql) or run(sql, *rest)):
            deep()  # the wrapper outlives the request's reconnect, unlike connection.queries
        assert queries and not any("OFFSET" in sql.upper() for sql in queries), queries
        results[f"first_{name}"] = _timed(first, repeats=args.repeats)
        results[f"deep_{name}"] = _timed(deep, repeats=args.repeats)
        print(f"{name:>8} sort: {len(queries)} queries per page", flush=True)

    def offset_deep() -> None:  # the baseline: what Paginator did, OFFSET over the same order
        rows = list(runs_for_listing(base).order_by("-created_at", "-pk")[DEEP : DEEP + 25])
        assert len(rows) == 25

    def keyset_deep_query() -> None:
        sort = sort_parse("-created")
        rows = keyset_page(runs_for_listing(base), sort=sort, cursor=cursor_default, per_page=25).rows
        assert len(rows) == 25

    cursor_default = deep_cursor("-created")
    if args.explain:
        sort = sort_parse("-created")
        train = runs_filtered(Run.objects.filter(team=team), {"kind": "train"})
        deep = keyset_page(train, sort=sort, cursor="", per_page=DEEP // 2).next_cursor
        probe: list[str] = []
        with connection.execute_wrapper(
            lambda run, sql, *rest: (
                probe.append(
                    sql
                    % tuple(
                        repr(p) if isinstance(p, str) else f"'{p}'" if hasattr(p, "isoformat") else p
                        for p in rest[0]
                    )
                )
                or run(sql, *rest)
            )
        ):
            keyset_page(train, sort=sort, cursor=deep, per_page=25)
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN ANALYZE " + probe[0])
            print("plan, default list (training runs) 4,500 rows deep:")
            for (line,) in cursor.fetchall()[:8]:
                print("   ", line)
    results["offset_deep_query"] = _timed(offset_deep, repeats=args.repeats)
    results["keyset_deep_query"] = _timed(keyset_deep_query, repeats=args.repeats)
    for name, timings in results.items():
        print(f"{name:<20} median {statistics.median(timings):7.1f} ms  min {min(timings):7.1f} ms")
    print(
        f"RESULT deep_default_p50_ms={statistics.median(results['deep_default']):.1f} "
        f"offset_deep_p50_ms={statistics.median(results['offset_deep_query']):.1f} "
        f"keyset_deep_query_p50_ms={statistics.median(results['keyset_deep_query']):.1f} "
        f"deep_spikes_p50_ms={statistics.median(results['deep_spikes']):.1f}"
    )
    return True


if __name__ == "__main__":
    raise SystemExit(main())
