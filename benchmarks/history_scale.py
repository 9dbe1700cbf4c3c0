"""A team's year of history on PostgreSQL: 10,000 runs across 3 teams and 50 M
metric points, then the pages a member opens and the metric store's ingestion.

In a database of its own (``mw_history_bench``, dropped and created, migrated; dropped
at the end unless ``--keep``) it fills:

* 3 teams, a member each; 10,000 runs spread over the year, round-robin across the
  teams, each with a config and final metrics in its summary (what the search reads);
  a sweep of 200 runs in the first team;
* 5 metrics per run (``loss``, ``val_loss``, ``accuracy``, ``grad_norm``, ``lr``): 10
  runs of the first team with 100,000 points per metric, the rest sharing what is left
  of ``--points`` (about 900 points per metric at 50 M). Points are packed by the metric
  store's own codec (``metric_store.codec.chunks_split``) and written with binary
  ``COPY``, the fastest bulk path.

Then, as the first team's member through the real views (Django's test ``Client``),
the median of ``--repeats`` after 3 warm-ups: the run list's first page; a filtered
page (status and algorithm); a search with 3 conditions, one on a metric; the compare
page of the 10 big runs, which carries every chart's first data (5 metrics, at most
2,000 points per run each: the browser makes no other request to draw them), and, for
reference, a zoom (the series endpoint for 1% of the steps); a sweep page of 200 runs;
the run page and the metrics CSV of a big run. Ingestion goes through
``run_metrics_record`` (what the workers' reporter
and external runs call) in batches of ``--batch`` points (the reporter's flush size,
500, by default: 100 steps of 5 metrics), from 1 process, and from 4 processes at once
(forked, a run each). Storage is ``pg_total_relation_size`` of the two metric tables
over the points stored.

    .venv/bin/python benchmarks/history_scale.py                 # the full size
    .venv/bin/python benchmarks/history_scale.py --runs 1000 --points 2000000   # a quick check

Last line: ``RESULT ingest_pts_s= ingest4_pts_s= bytes_per_point= list_p50_ms=
search_p50_ms= compare10_p50_ms= sweep200_p50_ms= points= runs=``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import _history_fill as fill  # noqa: E402
from benchmarks import _stack  # noqa: E402

DB_URL = os.environ.get(
    "METAWEB_HISTORY_BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/mw_history_bench"
)
REDIS_URL = "redis://127.0.0.1:6379/15"  # nothing in a page render or a metric write talks to Redis
SEARCH = "algorithm:maml config.inner_lr>=0.01 metric.val_loss<0.3"
INGEST_POINTS = 300_000
TARGETS = {
    "ingest_pts_s": (">=", 100_000),
    "bytes_per_point": ("<=", 120),
    "list_p50_ms": ("<", 100),
    "search_p50_ms": ("<", 150),
    "compare10_p50_ms": ("<", 200),
    "sweep200_p50_ms": ("<", 200),
}


def _median_ms(fn, *, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def _pages(world: dict, repeats: int) -> dict[str, float]:
    import json

    from django.test import Client
    from django.urls import reverse

    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(world["user"])
    slug = world["team"].slug
    run_list = reverse("experiments:run-list", kwargs={"team_slug": slug})
    compare = reverse("experiments:run-compare", kwargs={"team_slug": slug})
    series = reverse("experiments:run-compare-series", kwargs={"team_slug": slug})
    sweep = reverse("experiments:sweep-detail", kwargs={"team_slug": slug, "sweep_id": world["sweep"].pk})
    ids = ",".join(str(pk) for pk in world["big_runs"])

    def get(url: str, params: dict | None = None, marker: bytes = b""):
        response = client.get(url, params or {})
        assert response.status_code == 200, (url, params, response.status_code)
        assert marker in response.content, (url, params, marker)
        return response

    def listing() -> None:
        get(run_list, marker=b"data-run-id=")

    def filtered() -> None:
        get(run_list, {"status": "succeeded", "algorithm": "maml"}, marker=b"data-run-id=")

    def search() -> None:
        body = get(run_list, {"q": SEARCH}, marker=b"data-run-id=").content
        assert b'id="search-error"' not in body

    def compare10() -> None:
        # The page carries every chart's first data (config.initial): on load the
        # browser draws the charts from it and sends no series request.
        html = get(compare, {"ids": ids}, marker=b'data-metric="loss"').content.decode()
        config = json.loads(
            html.split('id="compare-runs-data" type="application/json">')[1].split("</script>")[0]
        )
        assert sorted(config["initial"]) == sorted(fill.METRICS)
        for data in config["initial"].values():
            assert all(0 < len(run["x"]) <= 2000 for run in data["runs"]), data["metric"]

    def zoom10() -> None:  # a drag across one chart: the finer range, by the series endpoint
        lo, hi = world["big_points"] // 2, world["big_points"] // 2 + world["big_points"] // 100
        params = {"ids": ids, "metric": "loss", "x": "step", "points": 2000, "from": lo, "to": hi}
        data = json.loads(get(series, params).content)
        assert all(len(run["x"]) == hi - lo + 1 for run in data["runs"])

    def sweep200() -> None:
        body = get(sweep, marker=b"data-run-id=").content
        assert body.count(b"data-run-id=") >= world["sweep_runs"], body.count(b"data-run-id=")

    big = world["big_runs"][0]
    run_page = reverse("experiments:run-detail", args=[big])
    csv_url = reverse("experiments:run-metrics-csv", args=[big])
    size = len(get(run_page, marker=b"run-state").content)

    def csv() -> None:
        body = b"".join(client.get(csv_url).streaming_content)
        assert body.count(b"\n") == 1 + len(fill.METRICS) * world["big_points"]

    extra = {
        "run_page_p50_ms": _median_ms(lambda: get(run_page), repeats=5, warmup=1),
        "csv_p50_ms": _median_ms(csv, repeats=3, warmup=1),
    }
    print(
        f"the run page of a run with {world['big_points']:,} points per metric: {size / 1024:.0f} KiB,"
        f" p50 {extra['run_page_p50_ms']:.0f} ms; its metrics CSV"
        f" ({len(fill.METRICS) * world['big_points']:,} lines): p50 {extra['csv_p50_ms']:.0f} ms"
    )
    return {
        **extra,
        "list_p50_ms": _median_ms(listing, repeats=repeats),
        "filtered_p50_ms": _median_ms(filtered, repeats=repeats),
        "search_p50_ms": _median_ms(search, repeats=repeats),
        "compare10_p50_ms": _median_ms(compare10, repeats=repeats),
        "zoom10_p50_ms": _median_ms(zoom10, repeats=repeats),
        "sweep200_p50_ms": _median_ms(sweep200, repeats=repeats),
    }


def _ingest(run_id: int, points: int, batch: int, start=None) -> tuple[int, float]:
    """Store ``points`` new points of 5 metrics in batches of ``batch`` through the
    workers' path; returns (points stored, seconds)."""
    from apps.experiments.services import run_metrics_record

    per_batch = max(batch // len(fill.METRICS), 1)
    batches = []
    step = 0
    while len(batches) * per_batch * len(fill.METRICS) < points:
        rows = []
        for s in range(step + 1, step + per_batch + 1):
            rows += [(name, s, 1.0 / s) for name in fill.METRICS]
        batches.append(rows)
        step += per_batch
    if start is not None:
        start.wait()
    began = time.perf_counter()
    stored = sum(run_metrics_record(run_id=run_id, token="", points=rows) for rows in batches)
    return stored, time.perf_counter() - began


def _ingest_child(run_id: int, points: int, batch: int, start, results) -> None:
    results.put(_ingest(run_id, points, batch, start))


def _ingest_parallel(run_ids: list[int], points: int, batch: int) -> float:
    """Points per second of ``len(run_ids)`` forked processes writing at once (a run
    each): all start together at a barrier; the slowest one's time counts."""
    from django.db import connections

    connections.close_all()  # each child opens its own connection
    context = multiprocessing.get_context("fork")
    start, results = context.Barrier(len(run_ids)), context.Queue()
    children = [
        context.Process(target=_ingest_child, args=(run_id, points, batch, start, results))
        for run_id in run_ids
    ]
    for child in children:
        child.start()
    done = [results.get(timeout=600) for _ in children]
    for child in children:
        child.join()
    assert all(n == done[0][0] for n, _ in done), done
    return sum(n for n, _ in done) / max(seconds for _, seconds in done)


def _storage() -> tuple[int, int]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_total_relation_size('experiments_metricseries')"
            " + pg_total_relation_size('experiments_metricchunk'),"
            " (SELECT SUM(count) FROM experiments_metricseries)"
        )
        size, points = cursor.fetchone()
    return int(size), int(points)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=fill.RUNS)
    parser.add_argument("--points", type=int, default=fill.POINTS)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--batch", type=int, default=500, help="points per run_metrics_record call")
    parser.add_argument("--ingest-points", type=int, default=INGEST_POINTS, help="per process")
    parser.add_argument("--keep", action="store_true", help="keep the database (and reuse it next time)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="metaweb-history-"))
    env = _stack.stack_env(database_url=DB_URL, redis_url=REDIS_URL, data_dir=work)
    reuse = args.keep and fill.database_filled(DB_URL, runs=args.runs, points=args.points)
    if not reuse:
        _stack.recreate_database(DB_URL)
    _stack.setup_django(env, migrate=not reuse)
    ok = False
    try:
        _run(args, reuse)
        ok = True
    finally:
        if args.keep:
            from django.db import connections

            connections.close_all()
        else:
            _stack.teardown(work, ok=ok, database_url=DB_URL)
    return 0


def _run(args: argparse.Namespace, reuse: bool) -> None:
    load = " ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"load average {load} on {os.cpu_count()} cores")
    if reuse:
        world = fill.world_load()
        print(f"reusing the filled database ({args.runs} runs, {args.points} points)")
    else:
        started = time.perf_counter()
        world = fill.fill(runs=args.runs, points=args.points, log=print)
        print(
            f"fill: {args.runs} runs and {world['points']:,} points in {time.perf_counter() - started:.0f} s"
        )
    size, points = _storage()
    bytes_per_point = size / points
    print(f"storage: {size / 2**20:.0f} MiB for {points:,} points: {bytes_per_point:.1f} bytes a point")

    figures = _pages(world, args.repeats)
    for name, value in figures.items():
        print(f"{name}: {value:.1f} ms", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f}")

    runs = fill.ingest_runs(world, count=5)
    stored, seconds = _ingest(runs[0], args.ingest_points, args.batch)
    ingest = stored / seconds
    print(
        f"ingest, 1 process: {stored:,} points in batches of {args.batch} in {seconds:.2f} s:"
        f" {ingest:,.0f} points/s"
    )
    ingest4 = _ingest_parallel(runs[1:], args.ingest_points, args.batch)
    print(f"ingest, 4 processes: {ingest4:,.0f} points/s; load average {os.getloadavg()[0]:.1f}")
    for batch in sorted({500, 5000} - {args.batch}):
        other = fill.ingest_runs(world, count=1)[0]
        stored, seconds = _ingest(other, args.ingest_points, batch)
        print(f"ingest, 1 process, batches of {batch}: {stored / seconds:,.0f} points/s (for reference)")

    result = {
        "ingest_pts_s": ingest,
        "ingest4_pts_s": ingest4,
        "bytes_per_point": bytes_per_point,
        **{k: v for k, v in figures.items() if k in TARGETS},
    }
    for name, (op, target) in TARGETS.items():
        value = result[name]
        met = {">=": value >= target, "<=": value <= target, "<": value < target}[op]
        print(f"{name} {value:.1f} {op} {target}: {'met' if met else 'NOT met'}")
    print(
        f"RESULT ingest_pts_s={ingest:.0f} ingest4_pts_s={ingest4:.0f} bytes_per_point={bytes_per_point:.1f}"
        f" list_p50_ms={figures['list_p50_ms']:.1f} search_p50_ms={figures['search_p50_ms']:.1f}"
        f" compare10_p50_ms={figures['compare10_p50_ms']:.1f}"
        f" sweep200_p50_ms={figures['sweep200_p50_ms']:.1f}"
        f" points={points} runs={args.runs}"
    )


if __name__ == "__main__":
    sys.exit(main())
