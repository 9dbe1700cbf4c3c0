"""Dispatch latency: from the launch form's POST returning to the run being ``running``.

Starts the real stack (daphne serving ``metaweb.asgi.application``, one idle solo
Celery worker process on ``gpu,cpu``, Redis, PostgreSQL), logs in over HTTP like
a browser, listens on the team's websocket (``/ws/teams/<slug>/``, connected
before the first launch, so no ``run.status`` is missed even when the worker is
faster than the redirect), then POSTs the launch form sequentially: a tiny CPU
run each time, waiting for it to finish before the next. The figure per launch
is the time from the POST's response (the redirect to the run page) to the
arrival of that run's ``run.status`` = ``running`` on the socket: the on-commit
``send_task``, the broker, the worker's claim, and the event back to the page.

One warm-up launch (the worker's first task imports the engine's modules) is
not counted. Loopback only, bounded: every wait has a timeout.

    .venv/bin/python benchmarks/dispatch_latency.py [--launches 20]

Last line: ``RESULT dispatch_p50_ms=<x>``. Uses its own database
(``metaweb_bench_<pid>``, dropped at the end) and a Redis db of its own
(the first free of 10, 14, 15).
"""

from __future__ import annotations

import argparse
import asyncio
import http.cookiejar
import json
import re
import statistics
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import _stack  # noqa: E402

PASSWORD = "pw-for-tests-1"  # noqa: S105 - tests.factories.UserFactory's, on a throwaway database
TEAM_SLUG = "bench"
#: A tiny run: it finishes in well under a second once the worker is warm.
TINY = {
    "iterations": 5,
    "meta_batch": 2,
    "eval_interval": 5,
    "eval_tasks": 5,
    "checkpoint_interval": 5,
    "device": "cpu",
    "queue": "cpu",
    "algorithm": "maml",
}
RUN_TIMEOUT_S = 60


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D102
        return None


class Browser:
    """Just enough of a browser: cookies, CSRF, forms, no redirects followed."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect())

    def cookie(self, name: str) -> str:
        for cookie in self.jar:
            if cookie.name == name:
                return cookie.value
        raise KeyError(name)

    def cookie_header(self) -> str:
        return "; ".join(f"{c.name}={c.value}" for c in self.jar)

    def get(self, path: str) -> tuple[int, str]:
        return self._open(urllib.request.Request(self.base_url + path))

    def post(self, path: str, data: dict[str, str]) -> tuple[int, dict[str, str]]:
        body = urllib.parse.urlencode({**data, "csrfmiddlewaretoken": self.cookie("csrftoken")}).encode()
        request = urllib.request.Request(self.base_url + path, data=body, method="POST")
        request.add_header("Referer", self.base_url + path)
        try:
            with self.opener.open(request, timeout=30) as response:
                return response.status, dict(response.headers)
        except urllib.error.HTTPError as exc:  # 3xx without a handler lands here
            return exc.code, dict(exc.headers)

    def _open(self, request: urllib.request.Request) -> tuple[int, str]:
        try:
            with self.opener.open(request, timeout=30) as response:
                return response.status, response.read().decode(errors="replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")


def launch_form_data(experiment_id: int, taskset_id: int) -> dict[str, str]:
    """What a browser submits when it keeps every default but the tiny-run fields."""
    from apps.experiments.forms import RunLaunchForm

    data: dict[str, str] = {}
    for name, field in RunLaunchForm.base_fields.items():
        initial = field.initial
        if initial is None or initial is False:
            continue
        data[name] = "on" if initial is True else str(initial)
    data.update({key: str(value) for key, value in TINY.items()})
    data["experiment"] = str(experiment_id)
    data["taskset"] = str(taskset_id)
    return data


async def bench(base_url: str, browser: Browser, form: dict[str, str], launches: int) -> list[float]:
    import websockets

    ws_url = base_url.replace("http://", "ws://") + f"/ws/teams/{TEAM_SLUG}/"
    # run id -> {status: first receive time}
    seen: dict[int, dict[str, float]] = {}
    changed = asyncio.Event()

    async with websockets.connect(
        ws_url, origin=base_url, additional_headers={"Cookie": browser.cookie_header()}, open_timeout=10
    ) as sock:
        first = json.loads(await asyncio.wait_for(sock.recv(), timeout=10))
        assert first.get("type") == "team.state", first

        async def reader() -> None:
            async for raw in sock:
                now = time.perf_counter()
                event = json.loads(raw)
                if event.get("type") == "run.status":
                    seen.setdefault(int(event["run_id"]), {}).setdefault(event["status"], now)
                    changed.set()

        task = asyncio.create_task(reader())
        latencies: list[float] = []
        try:
            for index in range(launches + 1):
                t_post = time.perf_counter()
                status, headers = await asyncio.to_thread(browser.post, f"/t/{TEAM_SLUG}/runs/new/", form)
                t_returned = time.perf_counter()
                location = headers.get("Location", "")
                match = re.search(r"/runs/(\d+)/", location)
                if status != 302 or not match:
                    raise RuntimeError(f"launch POST answered {status} {location!r}; form errors?")
                run_id = int(match.group(1))
                await _wait_for(seen, changed, run_id, {"running"})
                final = await _wait_for(seen, changed, run_id, {"succeeded", "failed", "cancelled"})
                if final != "succeeded":
                    raise RuntimeError(f"run {run_id} ended {final}")
                running_at = seen[run_id]["running"]
                label = "warm-up" if index == 0 else f"{index:2d}"
                after, took = 1000 * (running_at - t_returned), 1000 * (t_returned - t_post)
                print(
                    f"launch {label}: run {run_id} running {after:7.1f} ms after the POST returned "
                    f"(POST took {took:6.1f} ms)",
                    flush=True,
                )
                if index > 0:
                    latencies.append(1000 * (running_at - t_returned))
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    return latencies


async def _wait_for(
    seen: dict[int, dict[str, float]], changed: asyncio.Event, run_id: int, statuses: set[str]
) -> str:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while True:
        hit = statuses & seen.get(run_id, {}).keys()
        if hit:
            return hit.pop()
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"run {run_id}: no {sorted(statuses)} within {RUN_TIMEOUT_S} s")
        changed.clear()
        try:
            await asyncio.wait_for(changed.wait(), timeout=min(left, 1.0))
        except TimeoutError:
            pass


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--launches", type=int, default=20, help="measured launches (after one warm-up)")
    args = parser.parse_args()

    with _stack.bench_stack("dispatch-latency") as stack:
        _stack.setup_django(stack.env, migrate=True)  # before the worker, which needs the tables
        experiment_id, taskset_id = _fixtures()
        daphne, base_url = _stack.start_daphne(env=stack.env, log_dir=stack.work / "logs")
        worker = _stack.start_worker(env=stack.env, log_dir=stack.work / "logs")
        stack.procs += [daphne, worker]
        _stack.wait_http_ready(daphne, base_url)
        _stack.wait_worker_ready(worker)

        browser = Browser(base_url)
        browser.get("/accounts/login/")
        status, headers = browser.post("/accounts/login/", {"username": "bench", "password": PASSWORD})
        if status != 302:
            raise RuntimeError(f"login answered {status}")
        form = launch_form_data(experiment_id, taskset_id)
        print(
            f"stack: daphne {base_url}, 1 solo worker, redis {stack.redis_url}; "
            f"{args.launches} launches of {TINY}"
        )
        latencies = asyncio.run(bench(base_url, browser, form, args.launches))
        p50 = statistics.median(latencies)
        p90 = _stack.percentile(latencies, 90)
        print(
            f"dispatch (POST returned -> run.status running on the socket), {len(latencies)} launches: "
            f"min {min(latencies):.1f} ms, p50 {p50:.1f} ms, p90 {p90:.1f} ms, max {max(latencies):.1f} ms"
        )
        stack.ok = True
        print(f"RESULT dispatch_p50_ms={p50:.1f}")
        return 0


def _fixtures() -> tuple[int, int]:
    """A team member, a sinusoid task set with a version, an experiment."""
    from tests.factories import ExperimentFactory, TaskSetVersionFactory

    team, user = _stack.bench_member(TEAM_SLUG)
    version = TaskSetVersionFactory(taskset__team=team, taskset__created_by=user, number=1)
    experiment = ExperimentFactory(team=team, created_by=user, name="Dispatch latency")
    return experiment.pk, version.taskset_id


if __name__ == "__main__":
    sys.exit(main())
