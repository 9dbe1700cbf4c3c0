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

    .venv/bin/python benchmarks/api_ingest.py [--repeats 20] [--batches 40] [--batch 500]

Last line: ``RESULT api_list_p50_ms=<x> api_list_cursor_p50_ms=<y> api_ingest_pts_s=<z>``.
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


def _run(args: argparse.Namespace) -> bool:
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
    print(
        f"RESULT api_list_p50_ms={statistics.median(first):.1f} "
        f"api_list_cursor_p50_ms={statistics.median(cursor):.1f} api_ingest_pts_s={pts_s:.0f}"
    )
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--runs", type=int, default=RUNS)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--batch", type=int, default=500)
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
        ok = _run(args)
    finally:
        _stack.teardown(work, ok=ok)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
