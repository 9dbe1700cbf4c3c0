"""Live progress latency: from the worker-side publish to a logged-in browser socket.

Starts the real stack (daphne serving ``metaweb.asgi.application``, the Redis
channel layer, PostgreSQL), logs N websocket clients in on ``/ws/runs/<id>/``
with a session cookie, then publishes ``run.progress`` events from a SEPARATE
process the way the worker does (``workers.reporting.group_send_nowait``: one
persistent event loop, channels-redis ``group_send``), about 10 a second, each
with its send time in ``sent_at``. Every client notes the receive time of every
event; latency = receive - sent_at (same machine, same clock).

Measured with 1 client, then with 50. Targets: p50 < 50 ms, p99 < 250 ms with 50.
Loopback only, bounded: a fixed number of events, every wait has a timeout.

    .venv/bin/python benchmarks/live_latency.py [--events 100] [--rate 10]

Last line: ``RESULT live_p50_ms=<x> live_p99_ms=<x> clients=50``.
Uses its own database (``metaweb_bench_<pid>``, dropped at the end) and a Redis db of its own
(the first free of 10, 14, 15).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import _stack  # noqa: E402

WARMUP_EVENTS = 5
_SENT_AT_ATTR = re.compile(r'data-sent-at="([0-9.]+)"')


# -- the publisher (a separate process, like a worker) ---------------------------------


def publish(run_id: int, events: int, rate: float) -> None:
    """Publish ``WARMUP_EVENTS + events`` progress events at ``rate`` per second.
    Steps 1..WARMUP_EVENTS are warm-up (connection set-up), not measured."""
    from apps.experiments.events import RunProgressEvent, event_message, run_group

    try:
        from workers.reporting import group_send_nowait  # the worker's own publisher
    except ImportError:  # pragma: no cover - before the reporter existed
        group_send_nowait = _fallback_sender()

    group = run_group(run_id)
    total = WARMUP_EVENTS + events
    interval = 1.0 / rate
    start = time.monotonic()
    for step in range(1, total + 1):
        target = start + (step - 1) * interval
        delay = target - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        event = RunProgressEvent(
            run_id=run_id,
            step=step,
            total_steps=total,
            loss=1.0 / step,
            points={"loss": [[step, 1.0 / step]]},
            sent_at=time.time(),
        )
        future = group_send_nowait(group, event_message(event))
        if future is not None:
            future.result(timeout=5)
    print(f"PUBLISHED {total}", flush=True)


def _fallback_sender():
    import asyncio as _asyncio
    import threading

    from channels.layers import get_channel_layer

    loop = _asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    layer = get_channel_layer()
    return lambda group, message: _asyncio.run_coroutine_threadsafe(layer.group_send(group, message), loop)


# -- the clients -------------------------------------------------------------------------


def _progress_sent_at(raw: str | bytes) -> tuple[int, float] | None:
    """(step, sent_at) of a run.progress message, whatever the consumer's framing:
    JSON (the event's fields at the top level or under "event"/"data"), or HTML
    carrying ``data-sent-at``."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    try:
        data = json.loads(text)
    except ValueError:
        match = _SENT_AT_ATTR.search(text)
        step = re.search(r'data-step="(\d+)"', text)
        return (int(step.group(1)) if step else -1, float(match.group(1))) if match else None
    if not isinstance(data, dict):
        return None
    for candidate in (data, data.get("event"), data.get("data"), data.get("progress")):
        if isinstance(candidate, dict) and candidate.get("sent_at") is not None:
            return int(candidate.get("step") or -1), float(candidate["sent_at"])
    return None


async def measure(ws_url: str, origin: str, cookie: str, *, clients: int, run_id: int, env: dict,
                  events: int, rate: float) -> tuple[list[float], int]:
    """Connect ``clients`` sockets, run one publisher process, return the latencies (ms)
    of the measured events on every socket, and how many (socket, event) pairs were lost."""
    import websockets

    total = WARMUP_EVENTS + events
    latencies: list[float] = []
    received = [set() for _ in range(clients)]
    done = asyncio.Event()

    sockets = []
    for _ in range(clients):
        sock = await websockets.connect(
            ws_url, origin=origin, additional_headers={"Cookie": cookie}, open_timeout=10, max_size=2**22
        )
        sockets.append(sock)
    # Each socket first gets the run's current state; wait for it, so that every
    # consumer has joined the group before anything is published.
    for sock in sockets:
        await asyncio.wait_for(sock.recv(), timeout=10)

    async def reader(index: int, sock) -> None:
        try:
            async for raw in sock:
                now = time.time()
                parsed = _progress_sent_at(raw)
                if parsed is None:
                    continue
                step, sent_at = parsed
                if step > WARMUP_EVENTS:
                    latencies.append((now - sent_at) * 1000.0)
                received[index].add(step)
                if all(len(r) and max(r) >= total for r in received):
                    done.set()
        except websockets.ConnectionClosed:
            return

    readers = [asyncio.create_task(reader(i, s)) for i, s in enumerate(sockets)]
    publisher = await asyncio.create_subprocess_exec(
        sys.executable, str(Path(__file__).resolve()), "--publish", str(run_id),
        "--events", str(events), "--rate", str(rate),
        env=env, cwd=str(ROOT), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    budget = 30 + total / rate
    try:
        output, _ = await asyncio.wait_for(publisher.communicate(), timeout=budget)
    except TimeoutError:
        publisher.kill()
        raise
    if publisher.returncode != 0:
        raise RuntimeError(f"publisher failed:\n{output.decode(errors='replace')[-3000:]}")
    try:
        await asyncio.wait_for(done.wait(), timeout=5)
    except TimeoutError:
        pass
    for sock in sockets:
        await sock.close()
    for task in readers:
        task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    lost = sum(len({s for s in range(WARMUP_EVENTS + 1, total + 1)} - r) for r in received)
    return latencies, lost


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100, help="measured events per phase (after warm-up)")
    parser.add_argument("--rate", type=float, default=10.0, help="events per second")
    parser.add_argument("--clients", default="1,50", help="client counts; RESULT's is the last")
    parser.add_argument("--publish", type=int, metavar="RUN_ID", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.publish is not None:  # the publisher subprocess: settings come from its env
        import django

        django.setup()
        publish(args.publish, args.events, args.rate)
        return 0

    counts = [int(c) for c in args.clients.split(",") if c.strip()]
    with _stack.bench_stack("live-latency") as stack:
        daphne, base_url = _stack.start_daphne(env=stack.env, log_dir=stack.work / "logs")
        stack.procs.append(daphne)
        _stack.setup_django(stack.env, migrate=True)
        run_id, cookie = _fixtures()
        _stack.wait_http_ready(daphne, base_url)
        ws_url = base_url.replace("http://", "ws://") + f"/ws/runs/{run_id}/"
        print(f"stack: daphne {base_url}, channel layer redis {stack.redis_url}, run {run_id}; "
              f"{args.events} events per phase at {args.rate:g}/s (+{WARMUP_EVENTS} warm-up)")
        results = {}
        for clients in counts:
            latencies, lost = asyncio.run(
                measure(ws_url, base_url, cookie, clients=clients, run_id=run_id, env=stack.env,
                        events=args.events, rate=args.rate)
            )
            p50, p99 = _stack.percentile(latencies, 50), _stack.percentile(latencies, 99)
            results[clients] = (p50, p99)
            print(f"clients={clients:3d} samples={len(latencies):5d} lost={lost} "
                  f"p50={p50:.1f} ms p90={_stack.percentile(latencies, 90):.1f} ms p99={p99:.1f} ms "
                  f"max={max(latencies, default=float('nan')):.1f} ms", flush=True)
        p50, p99 = results[counts[-1]]
        verdict = "ok" if p50 < 50 and p99 < 250 else "ABOVE TARGET"
        print(f"target p50 < 50 ms, p99 < 250 ms: {verdict}")
        stack.ok = True
        print(f"RESULT live_p50_ms={p50:.1f} live_p99_ms={p99:.1f} clients={counts[-1]}")
        return 0


def _fixtures() -> tuple[int, str]:
    """A team member and one running run of theirs; the member's session cookie."""
    from apps.experiments.models import RunStatus
    from tests.factories import RunFactory

    team, user = _stack.bench_member("bench")
    run = RunFactory(experiment__team=team, experiment__created_by=user, status=RunStatus.RUNNING,
                     total_steps=1000)
    name, value = _stack.session_cookie(user)
    return run.pk, f"{name}={value}"


if __name__ == "__main__":
    sys.exit(main())
