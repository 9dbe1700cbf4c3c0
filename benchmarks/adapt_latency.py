"""Adapt latency: from clicking Adapt to the final point of a 5-shot, 10-step sinusoid
adaptation being shown on the adapted model's page, on a warm CPU worker.

Starts the real stack (daphne serving ``metaweb.asgi.application`` plus static files,
one solo Celery worker on ``gpu,cpu``, Redis, PostgreSQL) in a database of its own
(``metaweb_bench_<pid>``, dropped at the end) and a Redis db of its own (the first
free of 10, 14, 15). A tiny sinusoid MAML is meta-trained through the worker; its
success registers the meta-model (the registry's on-commit hook). Then headless
Chromium, logged in as a team member, does what a person does, ``--repeats`` times
after ``--warmup`` unmeasured rounds (the worker's first adaptation imports and
compiles the engine's code):

* opens ``/models/<id>/adapt/``, picks "a new task", types 5 ``x, y`` points of a
  sinusoid the model never saw, sets 10 inner steps;
* clicks Adapt. The form posts (htmx), the service queues an ``adapt`` run and
  redirects the browser to ``/adapted/<run>/``, which connects to the run's
  websocket; the worker claims the run, adapts, reports each inner step;
* the clock stops at the first animation frame where the page's curve chart
  (``#adapt-curve``, ``static/js/adapt_live.js``) shows inner step 10.

Both ends are the page's own ``Date.now()``: the click is recorded by a listener on
the button (kept in ``sessionStorage`` across the navigation), the end by a
``requestAnimationFrame`` poll. The run's timestamps split each round into the
time to the worker's claim and the worker's run time.

    .venv/bin/python benchmarks/adapt_latency.py [--repeats 20]

Last line: ``RESULT adapt_p50_ms=<x>``.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import _stack  # noqa: E402

TEAM_SLUG = "bench"
STEPS = 10
SHOTS = 5
#: A tiny meta-training run: a few seconds on one CPU thread.
TRAIN_CONFIG = {
    "algorithm": "maml",
    "inner_lr": 0.01,
    "inner_steps": 1,
    "meta_lr": 0.001,
    "meta_batch": 4,
    "shots": SHOTS,
    "query": 10,
    "iterations": 200,
    "eval_interval": 100,
    "eval_tasks": 10,
    "checkpoint_interval": 100,
    "seed": 0,
    "device": "cpu",
}
TRAIN_TIMEOUT_S = 180
ROUND_TIMEOUT_S = 60
CLICK_MARK = """() => {
  const button = document.getElementById("adapt-submit");
  const mark = () => sessionStorage.setItem("adapt-click", String(Date.now()));
  button.addEventListener("click", mark, {once: true});
}"""


def support_points(round_index: int) -> list[tuple[float, float]]:
    """5 points of a sinusoid (amplitude and phase vary by round)."""
    amplitude = 1.0 + (round_index % 7) * 0.5
    phase = 0.3 * (round_index % 10)
    xs = [-4.0 + 2.0 * i + 0.1 * (round_index % 3) for i in range(SHOTS)]
    return [(x, amplitude * math.sin(x - phase)) for x in xs]


def _fixtures():
    from tests.factories import ExperimentFactory, TaskSetVersionFactory

    team, user = _stack.bench_member(TEAM_SLUG)
    version = TaskSetVersionFactory(taskset__team=team, taskset__name="Sines", created_by=user, params={})
    experiment = ExperimentFactory(team=team, name="Adapt latency", created_by=user)
    return user, version, experiment


def meta_train(user, version, experiment):
    """Train through the worker; returns the meta-model its success registered."""
    from apps.experiments.models import Run, RunStatus
    from apps.experiments.services import run_create
    from apps.registry.models import MetaModel

    run = run_create(experiment=experiment, actor=user, taskset_version=version, config=dict(TRAIN_CONFIG))
    deadline = time.monotonic() + TRAIN_TIMEOUT_S
    while time.monotonic() < deadline:
        run = Run.objects.get(pk=run.pk)
        if run.status in (RunStatus.FAILED, RunStatus.CANCELLED):
            raise RuntimeError(f"meta-training run {run.pk} {run.status}: {run.error}")
        meta = MetaModel.objects.filter(training_run=run).first()
        if meta is not None:
            return run, meta
        time.sleep(0.2)
    raise TimeoutError(f"run {run.pk} not registered as a meta-model in {TRAIN_TIMEOUT_S} s ({run.status})")


def finished_run(run_id: int):
    """The run once the worker has recorded its end (it may trail the last point shown)."""
    from apps.experiments.models import Run

    deadline = time.monotonic() + 30
    while True:
        run = Run.objects.get(pk=run_id)
        if run.finished_at is not None and run.started_at is not None:
            return run
        if time.monotonic() > deadline:
            raise TimeoutError(f"adaptation run {run_id} did not finish ({run.status})")
        time.sleep(0.05)


def one_round(page, base_url: str, meta_model_id: int, index: int) -> tuple[float, int]:
    from tests.e2e.ui import fill_adapt_form, submit_adapt, wait_curve_step

    fill_adapt_form(
        page, base_url, meta_model_id, target="custom", support=support_points(index), steps=STEPS
    )
    page.evaluate(CLICK_MARK)
    run_id = submit_adapt(page)
    shown_at = wait_curve_step(page, STEPS, timeout_s=ROUND_TIMEOUT_S)
    clicked_at = int(page.evaluate("() => Number(sessionStorage.getItem('adapt-click'))"))
    if not clicked_at:
        raise RuntimeError("the click was not recorded")
    return float(shown_at - clicked_at), run_id


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()

    with _stack.bench_stack("adapt-latency") as stack:
        _stack.setup_django(stack.env, migrate=True)  # before the worker, which needs the tables
        user, version, experiment = _fixtures()
        daphne, base_url = _stack.start_daphne(
            env=stack.env, log_dir=stack.work / "logs", app="tests.e2e.asgi_static:application"
        )
        worker = _stack.start_worker(env=stack.env, log_dir=stack.work / "logs")
        stack.procs += [daphne, worker]
        _stack.wait_http_ready(daphne, base_url)
        _stack.wait_worker_ready(worker)

        started = time.monotonic()
        train_run, meta = meta_train(user, version, experiment)
        print(
            f"stack: daphne {base_url}, 1 solo worker, redis {stack.redis_url}; meta-trained {meta} "
            f"(run {train_run.pk}, {TRAIN_CONFIG['iterations']} iterations) "
            f"in {time.monotonic() - started:.1f} s",
            flush=True,
        )

        from playwright.sync_api import sync_playwright

        cookie_name, cookie_value = _stack.session_cookie(user)
        # Playwright's sync API keeps an event loop in this thread; the ORM calls here
        # are plain synchronous code (see tests/e2e/conftest.py).
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
        latencies: list[float] = []
        claims: list[float] = []
        work_s: list[float] = []
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox"]
            )
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.add_cookies([{"name": cookie_name, "value": cookie_value, "url": base_url}])
            context.set_default_timeout(30_000)
            page = context.new_page()
            for index in range(args.warmup + args.repeats):
                latency, run_id = one_round(page, base_url, meta.pk, index)
                run = finished_run(run_id)
                claim_ms = (run.started_at - run.created_at).total_seconds() * 1000
                run_ms = (run.finished_at - run.started_at).total_seconds() * 1000
                measured = index >= args.warmup
                if measured:
                    latencies.append(latency)
                    claims.append(claim_ms)
                    work_s.append(run_ms)
                label = f"round {index + 1 - args.warmup}" if measured else f"warm-up {index + 1}"
                print(
                    f"{label}: {latency:7.1f} ms (run {run_id}: queued -> claimed {claim_ms:6.1f} ms, "
                    f"claimed -> finished {run_ms:6.1f} ms)",
                    flush=True,
                )
            browser.close()
        p50 = statistics.median(latencies)
        p90 = _stack.percentile(latencies, 90)
        print(
            f"click -> step {STEPS} shown, {len(latencies)} adaptations of {SHOTS} typed points: "
            f"min {min(latencies):.1f} ms, p50 {p50:.1f} ms, p90 {p90:.1f} ms, max {max(latencies):.1f} ms; "
            f"of which queued -> claimed p50 {statistics.median(claims):.1f} ms, "
            f"claimed -> finished p50 {statistics.median(work_s):.1f} ms (load now {os.getloadavg()[0]:.1f})"
        )
        stack.ok = True
        print(f"RESULT adapt_p50_ms={p50:.1f}")
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
