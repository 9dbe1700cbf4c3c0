"""``make run``'s configuration for ``live_latency.py --embedded``.

``manage.py serve`` on SQLite with the in-memory broker and channel layer (no
``DATABASE_URL``, no ``REDIS_URL``, ``metaweb.settings.dev``), so the embedded
worker trains a real MAML run in the web process while N websocket clients
watch it. Measured per client count: the latency of ``run.progress`` events
(receive - ``sent_at``), and the time from opening a socket to its first message
(``run.state``), with the clients opening one after another while the others
already watch (a team arriving at a wall display).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from benchmarks import _stack

#: A MAML run (sinusoid, meta-batch 25) stored at every step (10,000 at most: see
#: workers/reporting.py), so that the state sent on connect grows as a real run's does;
#: about 150 steps a second here, long enough to outlast both phases.
RUN_CONFIG = {
    "algorithm": "maml",
    "family": {"name": "sinusoid"},
    "inner_lr": 0.01,
    "inner_steps": 1,
    "meta_lr": 0.001,
    "meta_batch": 25,
    "shots": 5,
    "query": 10,
    "iterations": 10_000,
    "eval_interval": 1000,
    "eval_tasks": 20,
    "checkpoint_interval": 1000,
}


@dataclass
class Embedded:
    base_url: str
    ws_url: str
    cookie: str
    run_id: int
    serve: _stack.Proc


def _env(work: Path) -> dict[str, str]:
    env = dict(os.environ)
    for key in ("DATABASE_URL", "REDIS_URL", "DJANGO_DEBUG", "DJANGO_ALLOW_ASYNC_UNSAFE"):
        env.pop(key, None)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "metaweb.settings.dev",
            "METAWEB_DATA_DIR": str(work),
            "METAWEB_DEV": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def _fixtures() -> tuple[int, str]:
    """A member, and a queued MAML run that the server's recovery dispatches at start."""
    from tests.factories import RunFactory

    team, user = _stack.bench_member("bench")
    run = RunFactory(
        experiment__team=team,
        experiment__created_by=user,
        config=dict(RUN_CONFIG),
        total_steps=RUN_CONFIG["iterations"],
    )
    name, value = _stack.session_cookie(user)
    return run.pk, f"{name}={value}"


#: Points the run has stored before the first phase: a state worth reading on connect.
WARM_POINTS = 2000


def _wait_running(run_id: int, timeout: float = 120.0) -> None:
    from apps.experiments.metric_store import points_count
    from apps.experiments.models import Run

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = Run.objects.get(pk=run_id)
        if run.status not in {"queued", "running"}:
            raise RuntimeError(f"run {run_id} ended: {run.status} {run.error}")
        if run.status == "running" and points_count(run_id=run_id) >= WARM_POINTS:
            return
        time.sleep(0.2)
    raise TimeoutError(f"run {run_id} has not stored {WARM_POINTS} points in {timeout:.0f} s")


def stored_points(run_id: int) -> int:
    """How many metric points the run has stored: what ``run.state`` sends on connect."""
    from apps.experiments.metric_store import points_count

    return points_count(run_id=run_id)


@contextmanager
def embedded_stack() -> Iterator[Embedded]:
    """A fresh SQLite database in a work folder, ``manage.py serve`` on it, a run training."""
    work = Path(tempfile.mkdtemp(prefix="metaweb-live-embedded-"))
    env = _env(work)
    for key in ("DJANGO_SETTINGS_MODULE", "METAWEB_DATA_DIR", "METAWEB_DEV"):
        os.environ[key] = env[key]
    for key in ("DATABASE_URL", "REDIS_URL"):
        os.environ.pop(key, None)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)
    run_id, cookie = _fixtures()
    port = _stack.free_port()
    serve = _stack.spawn(
        "serve", [sys.executable, "manage.py", "serve", "--port", str(port)], env=env, log_dir=work / "logs"
    )
    ok = False
    try:
        base_url = f"http://127.0.0.1:{port}"
        _stack.wait_http_ready(serve, base_url)
        _wait_running(run_id)
        yield Embedded(
            base_url, base_url.replace("http://", "ws://") + f"/ws/runs/{run_id}/", cookie, run_id, serve
        )
        ok = True
    finally:
        serve.stop()
        from django.db import connections

        connections.close_all()
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"logs kept in {work / 'logs'}", file=sys.stderr)


async def measure(stack: Embedded, *, clients: int, seconds: float, parse) -> dict[str, list[float]]:
    """Open ``clients`` sockets one after another (each timed to its first message),
    then collect progress latencies on all of them for ``seconds``."""
    import websockets

    first: list[float] = []
    latencies: list[float] = []
    measuring = False
    sockets = []

    async def reader(sock) -> None:
        try:
            async for raw in sock:
                now = time.time()
                parsed = parse(raw)
                if parsed is not None and measuring:
                    latencies.append((now - parsed[1]) * 1000.0)
        except websockets.ConnectionClosed:
            return

    readers = []
    for _ in range(clients):
        opened = time.monotonic()
        sock = await websockets.connect(
            stack.ws_url,
            origin=stack.base_url,
            additional_headers={"Cookie": stack.cookie},
            open_timeout=30,
            max_size=2**24,
        )
        await asyncio.wait_for(sock.recv(), timeout=30)
        first.append((time.monotonic() - opened) * 1000.0)
        sockets.append(sock)
        readers.append(asyncio.create_task(reader(sock)))
    measuring = True
    await asyncio.sleep(seconds)
    measuring = False
    for sock in sockets:
        await sock.close()
    for task in readers:
        task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    return {"latency": latencies, "first": first}
