"""Live progress latency: from the worker-side publish to a logged-in browser socket.

Starts the real stack (daphne serving ``metaweb.asgi.application``, the Redis
channel layer, PostgreSQL), logs N websocket clients in on ``/ws/runs/<id>/``
with a session cookie, then publishes ``run.progress`` events from a SEPARATE
process the way the worker does (``apps.experiments.events.group_send_nowait``: one
persistent event loop, channels-redis ``group_send``), about 10 a second, each
with its send time in ``sent_at``. Every client notes the receive time of every
event; latency = receive - sent_at (same machine, same clock).

Measured with 1, 50 and 200 clients (``--clients``), with the product's pub/sub
channel layer and, as the baseline in the same run, the list-based
``RedisChannelLayer`` it replaced (``--layers pubsub,list``). Targets at 200
clients: p50 < 30 ms, p99 < 150 ms. Loopback only, bounded: a fixed number of
events, every wait has a timeout.

``--embedded`` measures ``make run``'s configuration instead (``_live_embedded.py``):
``manage.py serve`` on SQLite with the in-memory layers, a real MAML run training in
the embedded worker, and the time to each socket's first message. Targets at 200
clients: p50 < 60 ms, p99 < 500 ms, first message < 500 ms.

    .venv/bin/python benchmarks/live_latency.py [--clients 1,50,200] [--events 100] [--rate 10]
    .venv/bin/python benchmarks/live_latency.py --embedded [--clients 50,200] [--seconds 15]

Last line: ``RESULT live_p50_ms=<x> live_p99_ms=<x> clients=<last count> ...``.
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
#: Settings module per channel layer of the real stack: the product's (pub/sub), and the
#: list-based layer it replaced, measured in the same run as the baseline.
LAYER_SETTINGS = {"pubsub": _stack.SETTINGS_MODULE, "list": "benchmarks.settings_list_layer"}
_SENT_AT_ATTR = re.compile(r'data-sent-at="([0-9.]+)"')


# -- the publisher (a separate process, like a worker) ---------------------------------


def publish(run_id: int, events: int, rate: float) -> None:
    """Publish ``WARMUP_EVENTS + events`` progress events at ``rate`` per second.
    Steps 1..WARMUP_EVENTS are warm-up (connection set-up), not measured."""
    from apps.experiments.events import RunProgressEvent, event_message, run_group

    try:
        from apps.experiments.events import group_send_nowait  # the one send path
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


async def measure(
    ws_url: str, origin: str, cookie: str, *, clients: int, run_id: int, env: dict, events: int, rate: float
) -> tuple[list[float], int]:
    """Connect ``clients`` sockets, run one publisher process, return the latencies (ms)
    of the measured events on every socket, and how many (socket, event) pairs were lost."""
    import websockets

    total = WARMUP_EVENTS + events
    latencies: list[float] = []
    received = [set() for _ in range(clients)]
    finished: set[int] = set()
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
                if step >= total:  # this socket has the last event (an O(1) check per message)
                    finished.add(index)
                    if len(finished) == clients:
                        done.set()
        except websockets.ConnectionClosed:
            return

    readers = [asyncio.create_task(reader(i, s)) for i, s in enumerate(sockets)]
    publisher = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__).resolve()),
        "--publish",
        str(run_id),
        "--events",
        str(events),
        "--rate",
        str(rate),
        env=env,
        cwd=str(ROOT),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
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


def _report(label: str, clients: int, latencies: list[float], extra: str = "") -> tuple[float, float]:
    p50, p99 = _stack.percentile(latencies, 50), _stack.percentile(latencies, 99)
    print(
        f"{label:>14} clients={clients:3d} samples={len(latencies):5d} {extra}"
        f"p50={p50:.1f} ms p90={_stack.percentile(latencies, 90):.1f} ms p99={p99:.1f} ms "
        f"max={max(latencies, default=float('nan')):.1f} ms",
        flush=True,
    )
    return p50, p99


def real_stack(args, counts: list[int]) -> tuple[float, float]:
    """Each layer in ``args.layers`` (the first is the product's), every client count."""
    results = {}
    with _stack.bench_stack("live-latency") as stack:
        _stack.setup_django(stack.env, migrate=True)
        run_id, cookie = _fixtures()
        for layer in args.layers.split(","):
            env = {**stack.env, "DJANGO_SETTINGS_MODULE": LAYER_SETTINGS[layer]}
            logs = stack.work / "logs"
            daphne, base_url = _stack.start_daphne(env=env, log_dir=logs, name=f"daphne-{layer}")
            stack.procs.append(daphne)
            _stack.wait_http_ready(daphne, base_url)
            ws_url = base_url.replace("http://", "ws://") + f"/ws/runs/{run_id}/"
            print(
                f"real stack: daphne {base_url}, channel layer {layer} on {stack.redis_url}, run {run_id}; "
                f"{args.events} events per phase at {args.rate:g}/s (+{WARMUP_EVENTS} warm-up)"
            )
            for clients in counts:
                latencies, lost = asyncio.run(
                    measure(
                        ws_url,
                        base_url,
                        cookie,
                        clients=clients,
                        run_id=run_id,
                        env=env,
                        events=args.events,
                        rate=args.rate,
                    )
                )
                results[layer, clients] = _report(layer, clients, latencies, f"lost={lost} ")
            daphne.stop()
        stack.ok = True
    return results[args.layers.split(",")[0], counts[-1]]


def embedded(args, counts: list[int]) -> tuple[float, float, float]:
    """``make run``: serve on SQLite with the in-memory layers, a real MAML run."""
    from benchmarks import _live_embedded

    with _live_embedded.embedded_stack() as stack:
        print(
            f"embedded: manage.py serve {stack.base_url} (SQLite, in-memory broker and layer), "
            f"MAML run {stack.run_id} training; {args.seconds:g} s per phase"
        )
        for clients in counts:
            got = asyncio.run(
                _live_embedded.measure(stack, clients=clients, seconds=args.seconds, parse=_progress_sent_at)
            )
            first = _stack.percentile(got["first"], 50)
            points = _live_embedded.stored_points(stack.run_id)
            p50, p99 = _report(
                "embedded", clients, got["latency"], f"run points={points} first-message p50={first:.0f} ms "
            )
    return p50, p99, first


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100, help="measured events per phase (after warm-up)")
    parser.add_argument("--rate", type=float, default=10.0, help="events per second")
    parser.add_argument("--clients", default="1,50,200", help="client counts; RESULT's is the last")
    parser.add_argument(
        "--layers",
        default="pubsub,list",
        help="real stack: channel layers to measure, the product's (pubsub) first",
    )
    parser.add_argument(
        "--embedded",
        action="store_true",
        help="measure make run's configuration (serve, SQLite, in-memory layers, a real run)",
    )
    parser.add_argument("--seconds", type=float, default=15.0, help="embedded: seconds measured per phase")
    parser.add_argument("--publish", type=int, metavar="RUN_ID", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.publish is not None:  # the publisher subprocess: settings come from its env
        import django

        django.setup()
        publish(args.publish, args.events, args.rate)
        return 0

    counts = [int(c) for c in args.clients.split(",") if c.strip()]
    if args.embedded:
        p50, p99, first = embedded(args, counts)
        verdict = "ok" if p50 < 60 and p99 < 500 and first < 500 else "ABOVE TARGET"
        print(f"target (make run) p50 < 60 ms, p99 < 500 ms, first message < 500 ms: {verdict}")
        print(
            f"RESULT live_p50_ms={p50:.1f} live_p99_ms={p99:.1f} clients={counts[-1]} "
            f"first_message_ms={first:.0f} stack=embedded"
        )
        return 0
    p50, p99 = real_stack(args, counts)
    verdict = "ok" if p50 < 30 and p99 < 150 else "ABOVE TARGET"
    print(f"target (real stack) p50 < 30 ms, p99 < 150 ms: {verdict}")
    print(f"RESULT live_p50_ms={p50:.1f} live_p99_ms={p99:.1f} clients={counts[-1]} stack=real")
    return 0


def _fixtures() -> tuple[int, str]:
    """A team member and one running run of theirs; the member's session cookie."""
    from apps.experiments.models import RunStatus
    from tests.factories import RunFactory

    team, user = _stack.bench_member("bench")
    run = RunFactory(
        experiment__team=team, experiment__created_by=user, status=RunStatus.RUNNING, total_steps=1000
    )
    name, value = _stack.session_cookie(user)
    return run.pk, f"{name}={value}"


if __name__ == "__main__":
    sys.exit(main())
