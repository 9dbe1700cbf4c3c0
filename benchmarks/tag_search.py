"""``tag:`` at a team's year: 10,000 runs in 50 experiments, 30 tags.

In a database of its own (``metaweb_bench_<pid>``, created, migrated, dropped at
the end) it bulk-creates one team with ``--runs`` runs spread over 50
experiments; each run carries 0 to 3 of 30 tags and each experiment one, with a
second team holding the same tag names (the search must not see them). It then
times, over the team's runs, the first page (25 newest) and the count of
``tag:t07`` (the run's own tag or its experiment's), ``NOT tag:t07`` and a
combined query, against ``status:succeeded`` (a plain indexed-column filter) as
the baseline measured in the same run, and prints PostgreSQL's plan for the tag
page.

    .venv/bin/python benchmarks/tag_search.py [--runs 10000] [--repeats 30]

Last line: ``RESULT tag_page_p50_ms=<x> tag_count_p50_ms=<y> baseline_page_p50_ms=<z>``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import _stack  # noqa: E402

REDIS_URL = "redis://127.0.0.1:6379/15"  # nothing here talks to Redis; the settings need a URL
EXPERIMENTS = 50
TAGS = 30
PAGE = 25


def populate(runs: int) -> int:
    """Bulk-create the two teams, their runs and tags; return the searched team's id."""
    from django.utils import timezone

    from apps.experiments.models import Experiment, Run, RunStatus, Tag
    from tests.factories import SMALL_CONFIG, TaskSetVersionFactory, TeamFactory, UserFactory

    rng = random.Random(7)
    user = UserFactory(username="bench")
    teams = [TeamFactory(slug="bench"), TeamFactory(slug="other")]
    now = timezone.now()
    for team in teams:
        version = TaskSetVersionFactory(taskset__team=team, taskset__created_by=user)
        tags = Tag.objects.bulk_create(Tag(team=team, name=f"t{n:02d}") for n in range(TAGS))
        experiments = Experiment.objects.bulk_create(
            Experiment(team=team, name=f"exp {n}", created_by=user) for n in range(EXPERIMENTS)
        )
        Experiment.tags.through.objects.bulk_create(
            Experiment.tags.through(experiment=e, tag=rng.choice(tags)) for e in experiments
        )
        made = Run.objects.bulk_create(
            (
                Run(
                    experiment=rng.choice(experiments),
                    team=team,
                    algorithm="maml",
                    taskset_version=version,
                    config=SMALL_CONFIG,
                    status=rng.choice(RunStatus.values),
                    launched_by=user,
                )
                for _ in range(runs if team.slug == "bench" else runs // 10)
            ),
            batch_size=2000,
        )
        Run.objects.filter(team=team).update(created_at=now)  # then spread them over a year
        for run in made:
            run.created_at = now - timezone.timedelta(minutes=rng.randrange(525_600))
        Run.objects.bulk_update(made, ["created_at"], batch_size=2000)
        Run.tags.through.objects.bulk_create(
            (
                Run.tags.through(run=run, tag=tag)
                for run in made
                for tag in rng.sample(tags, rng.randint(0, 3))
            ),
            batch_size=5000,
        )
    return teams[0].pk


def timed(fn, repeats: int) -> list[float]:
    for _ in range(3):
        fn()
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        timings.append((time.perf_counter() - start) * 1000)
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()

    with _stack.bench_django("metaweb-tag-search-", redis_url=REDIS_URL):
        from django.db import connection

        from apps.experiments.models import Run
        from apps.experiments.search import run_search

        started = time.perf_counter()
        team_id = populate(args.runs)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        team_runs = Run.objects.filter(team_id=team_id)
        print(
            f"{team_runs.count()} runs of the team, {Run.tags.through.objects.count()} run tags in all, "
            f"made in {time.perf_counter() - started:.1f} s",
            flush=True,
        )

        def page(query: str):
            return lambda: list(
                run_search(queryset=team_runs, query=query).order_by("-created_at", "-pk")[:PAGE]
            )

        def count(query: str):
            return lambda: run_search(queryset=team_runs, query=query).count()

        queries = ["status:succeeded", "tag:t07", "NOT tag:t07", "tag:t07 status:succeeded -tag:t08"]
        results = {}
        for query in queries:
            matches = count(query)()
            for what, make in (("page", page), ("count", count)):
                timings = timed(make(query), args.repeats)
                results[(query, what)] = statistics.median(timings)
                p50, p90 = statistics.median(timings), _stack.percentile(timings, 90)
                print(
                    f"{query:<36} {what:<5} {matches:>6} matches   median {p50:6.2f} ms   p90 {p90:6.2f} ms",
                    flush=True,
                )
        sql, params = (
            run_search(queryset=team_runs, query="tag:t07")
            .order_by("-created_at", "-pk")[:PAGE]
            .query.sql_with_params()
        )
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN (ANALYZE, COSTS OFF) {sql}", params)
            print("plan of the tag:t07 page:\n  " + "\n  ".join(row[0] for row in cursor.fetchall()))
        base = results[("status:succeeded", "page")]
        tag_page, tag_count = results[("tag:t07", "page")], results[("tag:t07", "count")]
        print(f"tag:t07 page / status:succeeded page: {tag_page / base:.2f}x")
        print(
            f"RESULT tag_page_p50_ms={tag_page:.2f} tag_count_p50_ms={tag_count:.2f} "
            f"baseline_page_p50_ms={base:.2f}"
        )
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
