"""Review at scale: the side-by-side page for 6 models, rendered server-side, with
200 adapted models and their 600-task matrices stored.

In a database of its own (``metaweb_bench_<pid>``, created, migrated, dropped at
the end; never the dev database) it bulk-creates one team with 200 meta-models,
each with a training run, a batch adaptation run, the adaptation and the adapted
model holding a ``[600, 11]`` float32 loss matrix, 600 float32 scores and 600
int64 task ids (about 29 KB per model), plus a verdict on every fifth
meta-model. Then, with Django's test ``Client`` logged in as a member (the full
middleware stack: sessions, auth, login-required, htmx, CSRF), it times
``GET /t/<team>/compare/?a=..&m=..``: the full page, whose picker lists all 200
evaluations, comparing 6 models (3 picked as adapted models, 3 as meta-models,
which costs the latest-evaluation lookup). Baselines in the same run: the same
page comparing 2 models, and the htmx partial for 6 (no picker). Each case gets
warm-up requests, then the median and p90 of ``--repeats`` (at least 20).

    .venv/bin/python benchmarks/review_scale.py [--repeats 30]

Target: median under 300 ms for 6 models. Last line: ``RESULT review6_p50_ms=<x>``.
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

MODELS = 200
TASKS = 600
STEPS = 10
TARGET_MS = 300.0
#: Nothing in a page render talks to Redis (sessions live in the database, the cache
#: is local memory); the settings only need a URL.
REDIS_URL = "redis://127.0.0.1:6379/15"


def populate(models: int = MODELS) -> dict:
    """Bulk-create the team, its task set and ``models`` evaluated meta-models."""
    import numpy as np
    from django.utils import timezone

    from apps.adaptations.models import Adaptation, AdaptationTarget, AdaptedModel
    from apps.experiments.models import Run, RunKind, RunStatus
    from apps.registry.models import MetaModel
    from apps.reviews.models import Review, Verdict
    from apps.teams.models import Role
    from tests.factories import SMALL_CONFIG

    team, user = _stack.bench_member(username="reviewer", role=Role.MEMBER)
    version, experiment = _stack.bench_experiment(team=team, user=user)
    algorithms = ["maml", "fomaml", "reptile", "metasgd", "anil"]
    now = timezone.now()

    def run(kind: str) -> Run:
        return Run(
            experiment=experiment,
            team=team,
            kind=kind,
            algorithm="maml",
            taskset_version=version,
            config=dict(SMALL_CONFIG),
            status=RunStatus.SUCCEEDED,
            launched_by=user,
            total_steps=20,
            step=20,
            finished_at=now,
        )

    train_runs = Run.objects.bulk_create([run(RunKind.TRAIN) for _ in range(models)])
    adapt_runs = Run.objects.bulk_create([run(RunKind.ADAPT) for _ in range(models)])
    metas = MetaModel.objects.bulk_create(
        [
            MetaModel(
                team=team,
                experiment=experiment,
                name=f"sine-{algorithms[i % len(algorithms)]}",
                version=i // len(algorithms) + 1,
                training_run=train_runs[i],
                taskset_version=version,
                algorithm=algorithms[i % len(algorithms)],
                config=dict(SMALL_CONFIG, algorithm=algorithms[i % len(algorithms)]),
                weights_sha256="0" * 64,
                created_by=user,
            )
            for i in range(models)
        ]
    )
    adaptations = Adaptation.objects.bulk_create(
        [
            Adaptation(
                run=adapt_runs[i], meta_model=metas[i], target=AdaptationTarget.BATCH, steps=STEPS, lr=0.01
            )
            for i in range(models)
        ]
    )
    rng = np.random.default_rng(0)
    task_ids = np.arange(TASKS, dtype="<i8").tobytes()
    adapted = []
    for i in range(models):
        start = rng.gamma(2.0, 1.0, size=(TASKS, 1)) + 1.0
        level = 0.5 + rng.random()
        decay = np.exp(-0.3 * np.arange(STEPS + 1))[None, :]
        losses = (start * decay * level + rng.gamma(1.5, 0.05, size=(TASKS, STEPS + 1))).astype("<f4")
        scores = losses[:, -1].copy()
        adapted.append(
            AdaptedModel(
                adaptation=adaptations[i],
                meta_model=metas[i],
                team=team,
                metric="mse",
                before=float(losses[:, 0].mean()),
                after=float(scores.mean()),
                ci95=float(1.96 * scores.std(ddof=1) / np.sqrt(TASKS)),
                n_tasks=TASKS,
                n_steps=STEPS,
                losses=losses.tobytes(),
                scores=scores.tobytes(),
                task_ids=task_ids,
            )
        )
    adapted = AdaptedModel.objects.bulk_create(adapted)
    Review.objects.bulk_create(
        [
            Review(team=team, meta_model=metas[i], verdict=Verdict.APPROVE, comment="ok", author=user)
            for i in range(0, models, 5)
        ]
    )
    return {"team": team, "user": user, "metas": metas, "adapted": adapted}


def time_requests(
    client, url: str, *, repeats: int, warmup: int, headers: dict, expect_rows: int
) -> list[float]:
    import gc

    for _ in range(warmup):
        _check(client.get(url, **headers), expect_rows)
    timings = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        response = client.get(url, **headers)
        elapsed = (time.perf_counter() - start) * 1000
        _check(response, expect_rows)
        timings.append(elapsed)
    return timings


def _check(response, expect_rows: int) -> None:
    if response.status_code != 200:
        raise RuntimeError(f"compare page answered {response.status_code}")
    rows = response.content.count(b'data-testid="compare-row"')
    if rows != expect_rows:
        raise RuntimeError(
            f"compare page shows {rows} models, not {expect_rows}: {response.content[:2000]!r}"
        )


def _summary(name: str, timings: list[float]) -> str:
    return (
        f"{name:<34} median {statistics.median(timings):7.1f} ms   "
        f"p90 {_stack.percentile(timings, 90):7.1f} ms   min {min(timings):7.1f} ms   (n={len(timings)})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--models", type=int, default=MODELS)
    args = parser.parse_args()
    if args.repeats < 20:
        parser.error("--repeats must be at least 20")

    with _stack.bench_django("metaweb-review-scale-", redis_url=REDIS_URL):
        from django.db import connection
        from django.test import Client
        from django.test.utils import CaptureQueriesContext
        from django.urls import reverse

        from apps.adaptations.models import AdaptedModel
        from apps.reviews.selectors import comparison_build

        started = time.perf_counter()
        world = populate(args.models)
        stored = AdaptedModel.objects.count()
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_size_pretty(pg_total_relation_size(%s))", [AdaptedModel._meta.db_table])
            size = cursor.fetchone()[0]
        print(
            f"{stored} adapted models of [{TASKS}, {STEPS + 1}] float32 stored ({size} with TOAST) "
            f"in {time.perf_counter() - started:.1f} s; database {_stack.BENCH_DB_URL.rsplit('/', 1)[-1]}; "
            f"load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        metas, adapted = world["metas"], world["adapted"]
        base = reverse("reviews:compare", kwargs={"team_slug": world["team"].slug})
        # Spread over the table: old and new rows, some picked as adapted models, some
        # as meta-models (those go through the latest-evaluation lookup).
        picks = [7, 51, 103, 149, 176, 198]
        six = (
            base
            + "?"
            + "&".join([f"a={adapted[i].pk}" for i in picks[:3]] + [f"m={metas[i].pk}" for i in picks[3:]])
        )
        two = base + f"?a={adapted[picks[0]].pk}&m={metas[picks[3]].pk}"

        client = Client(HTTP_HOST="127.0.0.1")  # the stack settings allow local hosts only
        client.force_login(world["user"])
        with CaptureQueriesContext(connection) as queries:
            page = client.get(six)
        _check(page, 6)
        print(f"6-model page: {len(page.content) / 1024:.0f} KiB of HTML, {len(queries)} queries", flush=True)

        cases = [
            ("full page, 6 models", six, {}, 6),
            ("full page, 2 models (baseline)", two, {}, 2),
            ("htmx partial, 6 models", six, {"HTTP_HX_REQUEST": "true"}, 6),
        ]
        results = {}
        for name, url, headers, rows in cases:
            results[name] = time_requests(
                client, url, repeats=args.repeats, warmup=args.warmup, headers=headers, expect_rows=rows
            )
            print(_summary(name, results[name]), flush=True)

        selector = []
        ids = {
            "adapted_ids": [adapted[i].pk for i in picks[:3]],
            "meta_model_ids": [metas[i].pk for i in picks[3:]],
        }
        for _ in range(args.repeats):
            start = time.perf_counter()
            comparison_build(user=world["user"], team=world["team"], **ids)
            selector.append((time.perf_counter() - start) * 1000)
        print(_summary("comparison_build alone, 6 models", selector), flush=True)

        p50 = statistics.median(results["full page, 6 models"])
        p90 = _stack.percentile(results["full page, 6 models"], 90)
        baseline = statistics.median(results["full page, 2 models (baseline)"])
        print(
            f"6 models / 2 models: {p50 / baseline:.2f}x; p90 {p90:.1f} ms; "
            f"target median < {TARGET_MS:.0f} ms: {'ok' if p50 < TARGET_MS else 'ABOVE TARGET'} "
            f"(load now {os.getloadavg()[0]:.1f})"
        )
        print(f"RESULT review6_p50_ms={p50:.1f} review6_p90_ms={p90:.1f} review2_p50_ms={baseline:.1f}")
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
