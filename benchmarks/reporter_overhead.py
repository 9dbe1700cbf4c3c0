"""What reporting costs the training loop: steps/s of the same small MAML run with the
engine's NullReporter and with the worker's RunReporter.

The run: second-order MAML on sinusoid (MLP 1-40-40-1, K=5, 10 query points, one
inner step, meta-batch 25), CPU, one torch thread, with the engine's default
evaluation (100 val tasks) and checkpoint every 100 steps, each repetition in a
fresh checkpoint folder. The reporter waits for its writes before each checkpoint,
so these belong in the measurement. steps/s are
taken from the first step's report to the end of the last step's report (both
sides are wrapped alike), so set-up and the final evaluation do not dilute them. The
RunReporter side is the real thing: a claimed run in PostgreSQL, batched metric
INSERTs, ``should_stop`` polls, the system metrics, the heartbeat thread, and progress events through
the channels-redis layer to a channel subscribed to ``run-<id>`` (drained and
counted after each repetition), sent from the reporter's persistent loop thread.

Null and RunReporter repetitions alternate (in pairs, each pair in the other
order than the previous one), after a warm-up. On a shared machine other
processes' load moves single repetitions by tens of percent, so the overhead is
the median over pairs of ``1 - rate(RunReporter) / rate(Null)`` (robust to a few
disturbed pairs). Two cross-checks are printed: the same between the best
repetition of each side, and the share of the RunReporter runs' wall time spent
inside reporter calls (on the training thread). Target: under 5 %.

    .venv/bin/python benchmarks/reporter_overhead.py [--iterations 1000] [--pairs 12]

Uses its own database (``metaweb_reporter_bench``, created and dropped) and a Redis
db (default 11); override with METAWEB_REPORTER_BENCH_DATABASE_URL and
METAWEB_REPORTER_BENCH_REDIS_URL. Last line: ``RESULT reporter_overhead_pct=<x>``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import _stack  # noqa: E402

DB_URL = os.environ.get(
    "METAWEB_REPORTER_BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/metaweb_reporter_bench"
)
REDIS_URL = os.environ.get("METAWEB_REPORTER_BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")

CONFIG = {
    "algorithm": "maml",
    "family": {"name": "sinusoid"},
    "inner_lr": 0.01,
    "inner_steps": 1,
    "meta_lr": 0.001,
    "meta_batch": 25,
    "shots": 5,
    "query": 10,
    "eval_interval": 100,
    "eval_tasks": 100,
    "checkpoint_interval": 100,
    "seed": 0,
    "device": "cpu",
}


def _config(iterations: int) -> dict:
    return {**CONFIG, "iterations": iterations}


class _Timed:
    """Forwards to a reporter, sums the time spent in its calls, and notes when the
    first step was reported and when the reporting of the last one ended: the steady
    state, without model set-up, the final evaluation and the final checkpoint."""

    def __init__(self, reporter, last_step: int) -> None:
        self.reporter = reporter
        self.last_step = last_step
        self.seconds = 0.0
        self.first_at = self.last_at = 0.0

    def on_step(self, step, metrics) -> None:
        started = time.perf_counter()
        if step == 1:
            self.first_at = started
        self.reporter.on_step(step, metrics)
        ended = time.perf_counter()
        self.seconds += ended - started
        if step == self.last_step:
            self.last_at = ended

    @property
    def rate(self) -> float:
        """Steps per second from the first report to the end of the last one."""
        return (self.last_step - 1) / (self.last_at - self.first_at)

    def on_eval(self, step, metrics) -> None:
        started = time.perf_counter()
        self.reporter.on_eval(step, metrics)
        self.seconds += time.perf_counter() - started

    def should_stop(self) -> bool:
        started = time.perf_counter()
        stop = self.reporter.should_stop()
        self.seconds += time.perf_counter() - started
        return stop

    def before_checkpoint(self, step) -> None:
        started = time.perf_counter()
        self.reporter.before_checkpoint(step)
        self.seconds += time.perf_counter() - started

    def on_checkpoint(self, step) -> None:
        started = time.perf_counter()
        self.reporter.on_checkpoint(step)
        self.seconds += time.perf_counter() - started


def _train(config, family, timed: _Timed, work: Path) -> None:
    """One complete meta_train from scratch, in a fresh checkpoint folder."""
    from workers.metalearn import meta_train

    checkpoint_dir = Path(tempfile.mkdtemp(prefix="ckpt-", dir=work))
    result = meta_train(config, family, timed, checkpoint_dir)
    assert result.status == "completed" and result.step == config.iterations, result


def _null_run(config, family, work: Path) -> float:
    from workers.metalearn.types import NullReporter

    timed = _Timed(NullReporter(), config.iterations)
    _train(config, family, timed, work)
    return timed.rate


async def _drain(layer, channel: str) -> int:
    received = 0
    while True:
        try:
            message = await asyncio.wait_for(layer.receive(channel), 0.5)
        except TimeoutError:
            return received
        received += message["type"] == "run.progress"


def _reporter_run(config, family, work: Path, fixtures: dict) -> tuple[float, float, dict]:
    """steps/s, share of wall time inside reporter calls, and counts."""
    from channels.layers import get_channel_layer
    from django.conf import settings

    from apps.experiments.metric_store import points_count
    from apps.experiments.services import run_claim
    from tests.factories import RunFactory
    from workers.reporting import Heartbeat, RunReporter
    from workers.system_metrics import SystemSampler

    run = RunFactory(
        experiment=fixtures["experiment"],
        taskset_version=fixtures["version"],
        config=config.model_dump(mode="json"),
        total_steps=config.iterations,
    )
    layer = get_channel_layer()
    # A listener on one loop of its own, as a consumer (the pub/sub layer needs the
    # channel's loop to keep running while the worker publishes).
    loop = asyncio.new_event_loop()
    listener = threading.Thread(target=loop.run_forever, name="bench-listener", daemon=True)
    listener.start()

    def on(coro):
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=30)

    channel = on(layer.new_channel())
    on(layer.group_add(f"run-{run.pk}", channel))
    claim = run_claim(run_id=run.pk, worker="bench", device="cpu")
    reporter = RunReporter(
        run_id=run.pk,
        token=claim.token,
        total_steps=config.iterations,
        system=SystemSampler(),  # as the worker runs it (workers/tasks.py)
    )
    timed = _Timed(reporter, config.iterations)
    with Heartbeat(run_id=run.pk, token=claim.token, reporter=reporter, interval=settings.HEARTBEAT_SECONDS):
        _train(config, family, timed, work)
        reporter.close()
    counts = {
        "events": reporter.events_sent,
        "received": on(_drain(layer, channel)),
        "points": points_count(run_id=run.pk),
    }
    on(layer.group_discard(f"run-{run.pk}", channel))
    on(layer.flush())
    loop.call_soon_threadsafe(loop.stop)
    listener.join(timeout=5)
    loop.close()
    return timed.rate, timed.seconds / (timed.last_at - timed.first_at) * 100, counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--pairs", type=int, default=12)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="metaweb-reporter-overhead-"))
    env = _stack.stack_env(database_url=DB_URL, redis_url=REDIS_URL, data_dir=work)
    env["DJANGO_SETTINGS_MODULE"] = "metaweb.settings.test"
    _stack.recreate_database(DB_URL)
    ok = False
    try:
        _stack.setup_django(env, migrate=True)
        import torch

        from tests.factories import ExperimentFactory, TaskSetVersionFactory, TeamFactory
        from workers.metalearn.config import parse_config
        from workers.metalearn.families import make_family

        torch.set_num_threads(1)
        team = TeamFactory(name="Bench", slug="bench")
        fixtures = {
            "experiment": ExperimentFactory(team=team),
            "version": TaskSetVersionFactory(taskset__team=team),
        }
        config = parse_config(_config(args.iterations))
        family = make_family(config.family)
        print(
            f"sinusoid MAML, meta-batch {config.meta_batch}, {config.inner_steps} inner step, "
            f"{config.iterations} iterations per repetition, CPU, 1 torch thread, "
            f"load {os.getloadavg()[0]:.1f}; "
            f"database {DB_URL.rsplit('/', 1)[-1]}, channel layer {REDIS_URL}"
        )
        _null_run(parse_config(_config(50)), family, work)  # warm-up
        nulls, reporters, shares, pairs = [], [], [], []
        for pair in range(1, args.pairs + 1):
            if pair % 2:  # alternate the order, so that neither side always goes first
                null = _null_run(config, family, work)
                rate, share, counts = _reporter_run(config, family, work, fixtures)
            else:
                rate, share, counts = _reporter_run(config, family, work, fixtures)
                null = _null_run(config, family, work)
            nulls.append(null)
            reporters.append(rate)
            shares.append(share)
            pairs.append((1 - rate / null) * 100)
            print(
                f"pair {pair}: null {null:6.1f} steps/s, "
                f"RunReporter {rate:6.1f} steps/s ({pairs[-1]:+6.2f} %), "
                f"{share:.2f} % of its time in reporter calls; {counts['events']} progress events sent, "
                f"{counts['received']} received via Redis, {counts['points']} points stored",
                flush=True,
            )
        result = statistics.median(pairs)
        best = (1 - max(reporters) / max(nulls)) * 100
        print(
            f"median of pairs {result:.2f} %; best null {max(nulls):.1f} steps/s, "
            f"best RunReporter {max(reporters):.1f} steps/s: {best:.2f} %; "
            f"in reporter calls {statistics.median(shares):.2f} %; "
            f"target < 5 %: {'ok' if result < 5 else 'ABOVE TARGET'} (load now {os.getloadavg()[0]:.1f})"
        )
        ok = True
        print(f"RESULT reporter_overhead_pct={result:.2f}")
        return 0
    finally:
        _stack.teardown(work, ok=ok, database_url=DB_URL)


if __name__ == "__main__":
    raise SystemExit(main())
