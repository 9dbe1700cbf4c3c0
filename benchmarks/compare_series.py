"""Compare runs at scale: the compare page and its downsampled series endpoint over
20 runs with 100,000 points of ``loss`` each (and 4 more metrics of 10,000 points).

In a database of its own (``metaweb_bench_<pid>``, created, migrated, dropped at the
end; never the dev database) it creates one team with ``--runs`` finished runs and
stores their metric points through the metric store's write path, in batches of
50,000 (one run's loss has a one-step spike of 100x). Then, with
Django's test ``Client`` logged in as a viewer (the full middleware stack), it times:

- ``GET .../runs/compare/series/?metric=loss``: every run's full range, read and
  downsampled to at most 2,000 points per run (the chart's first load);
- the same for a 1% window (a zoom), which reads only that range;
- ``GET .../runs/compare/?ids=...``: the page (summaries of every metric of every run);
- baselines in the same run: the series and the page for 2 runs.

It checks that the spike is in the answer, and prints the answer's size.

    .venv/bin/python benchmarks/compare_series.py [--runs 20] [--points 100000] [--repeats 10]

``COMPARE_PROFILE=1`` prints a cProfile of one full-range series request first.

Last line: ``RESULT series20_p50_ms=<x> zoom20_p50_ms=<y> page20_p50_ms=<z>``.
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

#: Nothing in a page render talks to Redis; the settings only need a URL.
REDIS_URL = "redis://127.0.0.1:6379/15"
OTHER_METRICS = ("val_loss", "val_accuracy", "grad_norm", "accuracy")
OTHER_POINTS = 10_000


def populate(runs: int, points: int) -> dict:
    """The team, its runs, and their points by COPY (one run's loss spikes 100x)."""
    import numpy as np
    from django.db import connection
    from django.utils import timezone

    from apps.experiments.metric_store import points_append
    from apps.experiments.models import Run, RunStatus
    from apps.teams.models import Role
    from tests.factories import SMALL_CONFIG

    team, user = _stack.bench_member(username="viewer", role=Role.VIEWER)
    version, experiment = _stack.bench_experiment(team=team, user=user)
    now = timezone.now()
    created = Run.objects.bulk_create(
        Run(
            experiment=experiment,
            team=team,
            algorithm="maml",
            taskset_version=version,
            config=dict(SMALL_CONFIG, inner_lr=0.01 * (i + 1)),
            status=RunStatus.SUCCEEDED,
            launched_by=user,
            total_steps=points,
            step=points,
            started_at=now - timezone.timedelta(hours=2),
            finished_at=now,
        )
        for i in range(runs)
    )
    rng = np.random.default_rng(0)
    spike_step = points * 61 // 100
    for index, run in enumerate(created):
        for name, count in (("loss", points), *((m, OTHER_POINTS) for m in OTHER_METRICS)):
            steps = np.linspace(1, points, count).astype(np.int64)
            values = (1.0 + 0.05 * rng.standard_normal(count)) / np.sqrt(steps)
            if index == 0 and name == "loss":
                values[np.searchsorted(steps, spike_step)] *= 100
            rows = [(name, step, value) for step, value in zip(steps.tolist(), values.tolist(), strict=True)]
            for start in range(0, len(rows), 50_000):  # the metric store's own write path
                points_append(run_id=run.pk, points=rows[start : start + 50_000])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE experiments_metricchunk")
    return {"team": team, "user": user, "runs": created, "spike_step": spike_step}


def timed(client, url: str, *, repeats: int) -> tuple[list[float], object]:
    response = client.get(url)  # warm-up
    assert response.status_code == 200, (response.status_code, response.content[:300])
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        response = client.get(url)
        timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    return timings, response


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()

    with _stack.bench_django("metaweb-compare-series-", redis_url=REDIS_URL):
        from urllib.parse import urlencode

        from django.test import Client
        from django.urls import reverse

        started = time.perf_counter()
        world = populate(args.runs, args.points)
        total = args.runs * (args.points + len(OTHER_METRICS) * OTHER_POINTS)
        print(
            f"{total:,} points of {args.runs} runs stored in {time.perf_counter() - started:.1f} s; "
            f"load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        client = Client(HTTP_HOST="127.0.0.1")
        client.force_login(world["user"])
        kwargs = {"team_slug": world["team"].slug}
        series = reverse("experiments:run-compare-series", kwargs=kwargs)
        page = reverse("experiments:run-compare", kwargs=kwargs)
        all_ids = ",".join(str(run.pk) for run in world["runs"])
        two_ids = ",".join(str(run.pk) for run in world["runs"][:2])
        window = {"from": args.points // 2, "to": args.points // 2 + args.points // 100}
        full, two = {"ids": all_ids, "metric": "loss"}, {"ids": two_ids, "metric": "loss"}
        cases = {
            f"series, {args.runs} runs, full range": f"{series}?{urlencode(full)}",
            f"series, {args.runs} runs, 1% zoom": f"{series}?{urlencode({**full, **window})}",
            "series, 2 runs, full range": f"{series}?{urlencode(two)}",
            f"page, {args.runs} runs": f"{page}?{urlencode({'ids': all_ids})}",
            "page, 2 runs": f"{page}?{urlencode({'ids': two_ids})}",
        }
        if os.environ.get("COMPARE_PROFILE"):
            import cProfile
            import pstats

            client.get(next(iter(cases.values())))
            profile = cProfile.Profile()
            profile.runcall(client.get, next(iter(cases.values())))
            pstats.Stats(profile).sort_stats("cumulative").print_stats(18)
        medians = []
        for name, url in cases.items():
            timings, response = timed(client, url, repeats=args.repeats)
            medians.append(statistics.median(timings))
            size = len(response.content)
            print(
                f"{name:32s} p50 {medians[-1]:8.1f} ms   max {max(timings):8.1f} ms   {size / 1024:8.1f} KiB",
                flush=True,
            )
            if name.startswith("series") and "full" in name:
                first = response.json()["runs"][0]
                assert max(len(run["x"]) for run in response.json()["runs"]) <= 2000
                # The spike is 100x its neighbours, not the run's maximum (step 1 is higher).
                at = first["x"].index(float(world["spike_step"]))
                assert first["y"][at] > 50 * first["y"][at - 1], first["y"][at - 2 : at + 2]
        print(f"the 100x spike at step {world['spike_step']} is in the downsampled answer")
        series_ms, zoom_ms, page_ms = medians[0], medians[1], medians[3]
        print(
            f"RESULT series20_p50_ms={series_ms:.1f} zoom20_p50_ms={zoom_ms:.1f} page20_p50_ms={page_ms:.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
