"""Workers on other machines: a run resumes on another node from the stored
checkpoint, and what storing checkpoints in an object store costs a run.

The real stack's back end (PostgreSQL, Redis, solo Celery worker processes, Celery
beat for the watchdog) and an S3-protocol server (moto_server); each worker has a
``METAWEB_DATA_DIR`` of its own, so the store is the only shared place.

1. **Overhead.** MAML on sinusoid (the engine's defaults: meta-batch 25, 100 eval
   tasks every 100 steps), 3,000 steps, a checkpoint every 100, on a worker whose run
   files are on its local disk (the baseline, no ``METAWEB_STORAGE_URL``) and on one
   that stores them in the object store (uploads on a background thread). The two
   run side by side, started together, so that both see the same load on a shared
   machine (run one after the other, the same run's time moved by 30% with the
   machine's load); ``--pairs`` such pairs, after one warm-up run per worker. A run's
   time is its wall time from the claim to the success, from the run's own record.
   ``checkpoint_overhead_pct`` = (store / local - 1) x 100, the median over the pairs.
   The S3 server runs on the same machine, so its own CPU is counted against both.
2. **Resume on another node.** The same run on worker A; once a checkpoint is stored,
   A is SIGKILLed; worker B (an empty data folder) is started, the watchdog requeues
   the run, B resumes it. ``resume_other_node=1`` when B finished it as attempt 2,
   resuming from a stored checkpoint step > 0, with every loss point exactly once.

    .venv/bin/python benchmarks/remote_worker.py [--pairs 3]

Last line: ``RESULT resume_other_node=<1|0> checkpoint_overhead_pct=<x>``. Targets: 1
and < 5. Uses its own database (``metaweb_bench_<pid>``, dropped at the end) and a
Redis db of its own (the first free of 10, 14, 15).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import _s3, _stack  # noqa: E402

CONFIG = {
    "algorithm": "maml",
    "family": {"name": "sinusoid"},
    "iterations": 3000,
    "checkpoint_interval": 100,
    "seed": 0,
    "device": "cpu",
}
WARM_UP = {**CONFIG, "iterations": 50, "checkpoint_interval": 25, "eval_interval": 25, "eval_tasks": 10}
HEARTBEAT_TIMEOUT_S = 5
RUN_TIMEOUT_S = 600


def _new_run(config: dict, owner) -> int:
    from tests.factories import RunFactory

    _team, user, version, experiment = owner
    run = RunFactory(
        experiment=experiment,
        taskset_version=version,
        launched_by=user,
        config=dict(config),
        algorithm=config["algorithm"],
        total_steps=config["iterations"],
        queue="cpu",
    )
    return run.pk


def _send(run_id: int, queue: str) -> None:
    from metaweb.celery import app

    app.send_task("workers.tasks.train_run", args=[run_id], queue=queue)


def _wait(run_id: int, *, done, timeout: float = RUN_TIMEOUT_S):
    from apps.experiments.models import Run

    deadline = time.monotonic() + timeout
    while True:
        run = Run.objects.get(pk=run_id)
        if done(run):
            return run
        if run.status in {"failed", "cancelled"}:
            raise RuntimeError(f"run {run_id} {run.status}: {run.error}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id}: {run.status} at step {run.step} after {timeout:.0f} s")
        time.sleep(0.1)


def _send_new(config: dict, owner, queue: str) -> int:
    run_id = _new_run(config, owner)
    _send(run_id, queue)
    return run_id


def _worker(stack, name: str, *, queues: str, data_dir: Path, store: dict | None):
    env = {**stack.env, "METAWEB_DATA_DIR": str(data_dir)}
    if store is None:
        env.pop("METAWEB_STORAGE_URL", None)
    else:
        env.update(store)
    worker = _stack.start_worker(env=env, log_dir=stack.work / "logs", name=name, queues=queues)
    stack.procs.append(worker)
    _stack.wait_worker_ready(worker)
    return worker


def _run_seconds(run_id: int) -> float:
    run = _wait(run_id, done=lambda r: r.status == "succeeded")
    return (run.finished_at - run.started_at).total_seconds()


def measure_overhead(stack, owner, store_env: dict, pairs: int) -> list[tuple[float, float]]:
    """(local seconds, store seconds) of each pair of runs started together."""
    _worker(stack, "worker-local", queues="bench-local", data_dir=stack.work / "local", store=None)
    _worker(stack, "worker-store", queues="bench-store", data_dir=stack.work / "store", store=store_env)
    for queue in ("bench-local", "bench-store"):  # imports torch and the engine
        _run_seconds(_send_new(WARM_UP, owner, queue))
    results = []
    for pair in range(pairs):
        modes = ("local", "store") if pair % 2 == 0 else ("store", "local")
        ids = {mode: _new_run(CONFIG, owner) for mode in modes}
        for mode in modes:
            _send(ids[mode], f"bench-{mode}")
        seconds = {mode: _run_seconds(ids[mode]) for mode in modes}
        results.append((seconds["local"], seconds["store"]))
        ratio = (seconds["store"] / seconds["local"] - 1) * 100
        local, stored = seconds["local"], seconds["store"]
        print(f"  pair {pair + 1}: local {local:.2f} s, store {stored:.2f} s ({ratio:+.1f}%)", flush=True)
    return results


def resume_on_other_node(stack, owner, store_env: dict) -> int:
    from apps.experiments.metric_store import run_chunks
    from apps.runfiles.checkpoints import stored_latest

    worker_a = _worker(stack, "worker-a", queues="cpu", data_dir=stack.work / "node-a", store=store_env)
    run_id = _send_new(CONFIG, owner, "cpu")
    killed = _wait(run_id, done=lambda r: r.status == "running" and (r.checkpoint_step or 0) > 0)
    worker_a.kill()
    # The watchdog (beat, run by a worker on the cpu queue) requeues the silent run.
    beat = _stack.start_beat(env=stack.env, log_dir=stack.work / "logs", schedule_dir=stack.work / "beat")
    stack.procs.append(beat)
    stored = stored_latest(run_id)
    print(f"  node a killed after checkpoint step {killed.checkpoint_step}; stored: {stored}", flush=True)
    node_b = stack.work / "node-b"
    _worker(stack, "worker-b", queues="cpu", data_dir=node_b, store=store_env)
    run = _wait(run_id, done=lambda r: r.status == "succeeded")
    claimed = run.events.filter(kind="claimed", attempt=2).first()
    found = re.search(r"checkpoint at step (\d+)", claimed.message if claimed else "")
    resumed_from = int(found.group(1)) if found else 0
    losses = [int(s) for name, steps, _ in run_chunks(run_id=run_id) if name == "loss" for s in steps]
    once = len(losses) == len(set(losses)) == CONFIG["iterations"]
    print(
        f"  node b ({run.worker}) finished attempt {run.attempt}, resumed from step {resumed_from}; "
        f"loss points once each: {once}",
        flush=True,
    )
    ok = run.attempt == 2 and run.worker.startswith("worker-b@") and resumed_from > 0 and once
    return int(ok)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3, help="pairs of runs side by side (default 3)")
    args = parser.parse_args()
    with _stack.bench_stack("remote-worker") as stack:
        s3 = _s3.start_s3_server(log_dir=stack.work / "logs")
        try:
            store_env = s3.env("bench")
            stack.env.update(
                {
                    "METAWEB_HEARTBEAT_SECONDS": "1",
                    "METAWEB_HEARTBEAT_TIMEOUT_SECONDS": str(HEARTBEAT_TIMEOUT_S),
                    "METAWEB_WATCHDOG_INTERVAL_SECONDS": "1",
                    "OMP_NUM_THREADS": "1",
                }
            )
            os.environ.update(store_env)  # this process reads the store too
            _stack.setup_django({**stack.env, "METAWEB_DATA_DIR": str(stack.work / "bench")}, migrate=True)
            team, user = _stack.bench_member()
            owner = (team, user, *_stack.bench_experiment(team=team, user=user))
            pairs = measure_overhead(stack, owner, store_env, args.pairs)
            overhead = statistics.median((store / local - 1) * 100 for local, store in pairs)
            print(f"3,000 MAML steps, checkpoint every 100: median overhead {overhead:+.2f}%", flush=True)
            resumed = resume_on_other_node(stack, owner, store_env)
            stack.ok = True
        finally:
            s3.stop()
    print(f"RESULT resume_other_node={resumed} checkpoint_overhead_pct={overhead:.2f}", flush=True)


if __name__ == "__main__":
    main()
