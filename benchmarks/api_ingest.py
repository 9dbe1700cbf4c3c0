"""The JSON API at a team's scale: the runs list over 1,000 runs, and external-run
ingest through the API in batches, on PostgreSQL.

In a database of its own (created, migrated, dropped at the end) it bulk-creates
one team's 1,000 runs, issues a member's write token, and with Django's test
``Client`` sending ``Authorization: Bearer ...``:

- times ``GET /api/v1/teams/bench/runs`` (the first page of 50, the default
  order) and a page reached by its cursor, each the median of ``--repeats``
  after warm-up requests;
- opens an external run and posts ``--batches`` batches of ``--batch`` points
  (two metrics per step), then replays the first batch (it must store nothing),
  and reports the points stored per second over the whole ingest.

Then it starts daphne on the same database (the real HTTP stack, channel layer on
Redis) and, with the Python client (``metaweb.client``) over HTTP:

- ``client_log_pts_s``: one ``client.track`` logging ``--track-steps`` steps of two
  metrics as fast as a loop can: points per second from the first ``log()`` until
  the run is finished with every point stored (checked in the database), so the
  figure is end to end, not the buffer's speed (that is ``client_log_call_pts_s``);
- the baseline in the same run: the same points posted synchronously one step per
  request (two points), the way a per-step ``log_metrics`` call works, over
  ``--sync-steps`` steps (``sync_step_pts_s``); the ratio of the two;
- ``client_list_p50_ms``: the runs list's first page through the client (HTTP).

For reference (not measured here): MLflow 3.17's ``log_batch`` gave 2,587 points/s
from one client on this kind of machine.

    .venv/bin/python benchmarks/api_ingest.py [--repeats 20] [--batches 40] [--batch 500] \
        [--track-steps 100000] [--sync-steps 500]

Last line: ``RESULT client_log_pts_s=<a> api_list_p50_ms=<x> api_list_cursor_p50_ms=<y>
api_ingest_pts_s=<z> client_log_call_pts_s=<b> sync_step_pts_s=<c> client_vs_sync=<a/c>
client_list_p50_ms=<d>``.
"""

from __future__ import annotations

import argparse
import json
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

RUNS = 1_000
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")


def populate(runs: int) -> dict:
    from apps.experiments.models import Experiment, Run, RunStatus
    from apps.teams.models import Role
    from tests.factories import (
        SMALL_CONFIG,
        MembershipFactory,
        TaskSetVersionFactory,
        TeamFactory,
        UserFactory,
    )

    team = TeamFactory(name="Bench", slug="bench")
    user = UserFactory(username="member")
    MembershipFactory(team=team, user=user, role=Role.MEMBER)
    version = TaskSetVersionFactory(taskset__team=team, taskset__name="Sines", created_by=user)
    experiment = Experiment.objects.create(team=team, name="Year", created_by=user)
    rows = [
        Run(
            experiment=experiment,
            team=team,
            algorithm=("maml", "reptile", "protonet")[i % 3],
            taskset_version=version,
            config={**SMALL_CONFIG, "seed": i},
            status=RunStatus.SUCCEEDED,
            launched_by=user,
            total_steps=20,
            step=20,
            summary={"metrics": {"loss": 1.0 / (i + 1)}},
        )
        for i in range(runs)
    ]
    Run.objects.bulk_create(rows, batch_size=1000)
    return {"team": team, "user": user, "experiment": experiment, "version": version}


def _timed(fn, *, repeats: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        fn()
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def _list_timings(client, auth: dict, repeats: int) -> tuple[list[float], list[float]]:
    url = "/api/v1/teams/bench/runs"
    first_page = client.get(url, **auth).json()
    assert first_page["count"] >= RUNS and len(first_page["results"]) == 50, first_page.get("count")
    cursor = first_page["next_cursor"]

    def first() -> None:
        assert client.get(url, **auth).status_code == 200

    def next_page() -> None:
        assert client.get(url, {"cursor": cursor}, **auth).status_code == 200

    return _timed(first, repeats=repeats), _timed(next_page, repeats=repeats)


def _ingest(client, auth: dict, world: dict, *, batches: int, batch: int) -> float:
    body = {
        "experiment_id": world["experiment"].pk,
        "taskset_id": world["version"].taskset_id,
        "algorithm": "maml",
    }
    created = client.post("/api/v1/teams/bench/external-runs", body, content_type="application/json", **auth)
    assert created.status_code == 201, created.content
    url = f"/api/v1/teams/bench/runs/{created.json()['id']}/points"
    steps = batch // 2
    payloads = [
        json.dumps(
            {
                "points": [
                    {"name": name, "step": b * steps + s, "value": 1.0 / (b * steps + s + 1)}
                    for s in range(steps)
                    for name in ("loss", "val_loss")
                ]
            }
        )
        for b in range(batches)
    ]
    stored = 0
    started = time.perf_counter()
    for payload in payloads:
        response = client.post(url, payload, content_type="application/json", **auth)
        assert response.status_code == 200, response.content
        stored += response.json()["stored"]
    elapsed = time.perf_counter() - started
    replay = client.post(url, payloads[0], content_type="application/json", **auth).json()
    assert stored == batches * steps * 2 and replay["stored"] == 0, (stored, replay)
    print(f"ingest: {stored} points in {batches} batches, {elapsed:.2f} s; replayed batch stored 0")
    return stored / elapsed


def _track(base_url: str, secret: str, steps: int) -> tuple[float, float, int]:
    """One ``client.track`` logging ``steps`` steps of two metrics: (end-to-end points/s,
    log() call points/s, run id). Every point must be stored, once."""
    from apps.experiments.metric_store import points_count
    from metaweb.client import Client

    client = Client(base_url, secret)
    started = time.perf_counter()
    with client.track(experiment="Year", taskset="Sines", total_steps=steps) as run:
        for step in range(steps):
            run.log({"loss": 1.0 / (step + 1), "acc": step / steps}, step=step)
        logged = time.perf_counter()
    elapsed = time.perf_counter() - started
    points = 2 * steps
    assert run.stored == points and run.dropped == 0 and run.lost == 0, (run.stored, run.dropped, run.lost)
    assert points_count(run_id=run.id) == points
    print(
        f"track: {points} points, loop done in {logged - started:.2f} s, all stored in {elapsed:.2f} s; "
        f"{run.retries} retries"
    )
    client.close()
    return points / elapsed, points / (logged - started), run.id


def _sync_steps(base_url: str, secret: str, steps: int) -> float:
    """The baseline: one synchronous request per step (two points), as a per-step
    ``log_metrics`` call does."""
    from metaweb.client import Client

    client = Client(base_url, secret)
    run = client.external_run_create(experiment="Year", taskset="Sines")
    path = f"/teams/bench/runs/{run['id']}/points"
    started = time.perf_counter()
    for step in range(steps):
        body = {
            "points": [
                {"name": "loss", "step": step, "value": 1.0},
                {"name": "acc", "step": step, "value": 0.5},
            ]
        }
        client.http.json("POST", path, body=body)
    elapsed = time.perf_counter() - started
    client.external_run_finish(run["id"], status="succeeded")
    client.close()
    return 2 * steps / elapsed


def _over_http(args: argparse.Namespace, env: dict, work: Path, secret: str) -> dict[str, float]:
    from metaweb.client import Client

    daphne, base_url = _stack.start_daphne(env=env, log_dir=work / "logs")
    try:
        _stack.wait_http_ready(daphne, base_url)
        client = Client(base_url, secret)
        listed = _timed(lambda: client.runs(), repeats=args.repeats)
        client.close()
        sync = _sync_steps(base_url, secret, args.sync_steps)
        end_to_end, calls, _ = _track(base_url, secret, args.track_steps)
    finally:
        daphne.stop()
    print(f"{'client list':<16} median {statistics.median(listed):7.1f} ms  min {min(listed):7.1f} ms")
    print(f"sync one step per request: {sync:,.0f} points/s; track end to end: {end_to_end:,.0f} points/s")
    return {"list": statistics.median(listed), "sync": sync, "track": end_to_end, "calls": calls}


def _run(args: argparse.Namespace, env: dict, work: Path) -> bool:
    from django.test import Client

    from apps.teams.token_services import api_token_create

    started = time.perf_counter()
    world = populate(args.runs)
    print(f"{args.runs} runs stored in {time.perf_counter() - started:.1f} s; load {os.getloadavg()[0]:.1f}")
    issued = api_token_create(
        user=world["user"], team=world["team"], name="bench", scope="write", expires_in_days=1
    )
    auth = {"HTTP_AUTHORIZATION": f"Bearer {issued.secret}"}
    client = Client(HTTP_HOST="127.0.0.1")
    first, cursor = _list_timings(client, auth, args.repeats)
    pts_s = _ingest(client, auth, world, batches=args.batches, batch=args.batch)
    for name, timings in (("list first page", first), ("list by cursor", cursor)):
        print(f"{name:<16} median {statistics.median(timings):7.1f} ms  min {min(timings):7.1f} ms")
    http = _over_http(args, env, work, issued.secret)
    print(
        f"RESULT client_log_pts_s={http['track']:.0f} api_list_p50_ms={statistics.median(first):.1f} "
        f"api_list_cursor_p50_ms={statistics.median(cursor):.1f} api_ingest_pts_s={pts_s:.0f} "
        f"client_log_call_pts_s={http['calls']:.0f} sync_step_pts_s={http['sync']:.0f} "
        f"client_vs_sync={http['track'] / http['sync']:.1f} client_list_p50_ms={http['list']:.1f}"
    )
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--runs", type=int, default=RUNS)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument(
        "--track-steps", type=int, default=100_000, help="client.track steps (two points each)"
    )
    parser.add_argument("--sync-steps", type=int, default=500, help="baseline: synchronous requests")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="metaweb-api-ingest-"))
    env = _stack.stack_env(
        database_url=_stack.BENCH_DB_URL,
        redis_url=REDIS_URL,
        data_dir=work,
        extra={"METAWEB_API_RATE_LIMIT": "1000000/min"},
    )
    _stack.recreate_database(_stack.BENCH_DB_URL)
    ok = False
    try:
        _stack.setup_django(env, migrate=True)
        ok = _run(args, env, work)
    finally:
        _stack.teardown(work, ok=ok)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
