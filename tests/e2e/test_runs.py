"""A person meta-trains from the browser, on the real stack (see conftest.py).

Sizes: on a 2-core machine a tiny sinusoid MAML run (meta-batch 4) does a few
hundred iterations a second once warm (and under a tenth of that when the
machine is busy), so the run that is watched live has 1,000 iterations (a few
seconds or more), and the runs that are cancelled or killed
are long enough never to finish first.
"""

from __future__ import annotations

import re
import time

import pytest

from tests.e2e.conftest import ARTIFACTS
from tests.e2e.ui import (
    create_experiment,
    create_taskset,
    expect_status,
    launch_run,
    log_in,
    read_run_page,
    watch_run,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

FINISHED = {"succeeded", "failed", "cancelled"}
#: The launch form's fields for a short run on the CPU queue.
SHORT_RUN = {
    "algorithm": "maml",
    "meta_batch": 4,
    "iterations": 1000,
    "eval_interval": 100,
    "queue": "cpu",
    "device": "cpu",
}
SHORT_RUN_ADVANCED = {"eval_tasks": 20, "checkpoint_interval": 250}


def _metric_rows(run_id: int) -> tuple[int, int]:
    """(points, distinct (name, step) pairs) of a run's metrics, from the database."""
    from tests.factories import metric_rows

    rows = metric_rows(run_id)
    return len(rows), len(set(rows))


def test_train_watch_reload_and_cancel(live_stack, e2e_page, e2e_user):
    from apps.experiments.models import Run
    from tests.factories import metric_count, metric_rows

    page, shots = e2e_page, e2e_page.shots
    base = live_stack.base_url
    user, team = e2e_user

    log_in(page, base, user.username)
    shots.take(page, "logged-in")

    create_taskset(page, base, team.slug, name="Sine waves")
    shots.take(page, "taskset-created")
    create_experiment(page, base, team.slug, name="Browser test")
    shots.take(page, "experiment-created")

    run_id = launch_run(
        page,
        base,
        team.slug,
        experiment="Browser test",
        taskset="Sine waves",
        fields=SHORT_RUN,
        advanced=SHORT_RUN_ADVANCED,
    )
    shots.take(page, "run-launched")

    # While it runs, the chart and the progress bar move (websocket progress events).
    seen = watch_run(page, until=FINISHED, timeout=120)
    running = [v for v in seen if v.status == "running" and v.step and v.total and v.step < v.total]
    assert running, f"never saw the run running mid-way; reads: {seen[:3]} ... {seen[-3:]}"
    steps = sorted({v.step for v in running})
    widths = sorted({v.width for v in running if v.width})
    points = sorted({v.loss_points for v in running if v.loss_points})
    assert len(steps) >= 2 and len(widths) >= 2, f"the progress bar did not move while running: {steps}"
    assert len(points) >= 2, f"the loss chart did not grow while running: {points}"
    final = seen[-1]
    assert final.status == "succeeded", final
    shots.take(page, "run-succeeded")

    # The live curve is the stored curve: the same points after a reload.
    run = Run.objects.get(pk=run_id)
    stored_loss = metric_count(run, "loss")
    stored_val = len({step for name, step in metric_rows(run) if name.startswith("val_")})
    expect_status(page, "succeeded", timeout_s=10)
    page.wait_for_function(
        "n => Number(document.getElementById('chart-loss').dataset.points) === n",
        arg=stored_loss,
        timeout=10_000,
    )
    live = read_run_page(page)
    assert live.loss_points == stored_loss == run.total_steps == SHORT_RUN["iterations"]
    page.reload()
    page.wait_for_function("() => document.getElementById('chart-loss').dataset.points !== undefined")
    page.wait_for_selector("#chart-loss canvas")
    page.wait_for_selector("#chart-val canvas")
    reloaded = read_run_page(page)
    assert reloaded.status == "succeeded"
    assert reloaded.step == reloaded.total == SHORT_RUN["iterations"]
    assert (reloaded.loss_points, reloaded.val_points) == (live.loss_points, live.val_points)
    assert reloaded.val_points == stored_val > 0
    rows, distinct = _metric_rows(run_id)
    assert rows == distinct
    page.wait_for_timeout(300)  # let uPlot settle before the pictures
    shots.take(page, "run-reloaded")
    _picture_of_run_page(page)

    # A second run, cancelled while it runs.
    run2_id = launch_run(
        page,
        base,
        team.slug,
        experiment="Browser test",
        taskset="Sine waves",
        fields={**SHORT_RUN, "iterations": 200_000},
        # compile off: auto would compile a run this long first, and this is about cancelling mid-run.
        advanced={**SHORT_RUN_ADVANCED, "compile": "off"},
    )
    page.wait_for_function(
        "() => document.getElementById('run-status').dataset.status === 'running'"
        " && Number(document.getElementById('run-progress').getAttribute('aria-valuenow')) > 0",
        timeout=60_000,
    )
    shots.take(page, "second-run-running")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#cancel-run")
    expect_status(page, "cancelled", timeout_s=30)
    shots.take(page, "second-run-cancelled")
    run2 = Run.objects.get(pk=run2_id)
    assert run2.status == "cancelled"
    assert 0 < run2.step < 200_000
    assert run2.events.filter(kind="cancelled").exists()
    _assert_no_page_errors(page)


def test_worker_killed_mid_run_resumes_from_checkpoint(live_stack, e2e_page, e2e_user):
    from apps.experiments.models import Run
    from tests.factories import ExperimentFactory, TaskSetVersionFactory, metric_rows

    page, shots = e2e_page, e2e_page.shots
    base = live_stack.base_url
    user, team = e2e_user
    version = TaskSetVersionFactory(
        taskset__team=team, taskset__created_by=user, taskset__name="Sines", number=1
    )
    ExperimentFactory(team=team, created_by=user, name="Crash test")
    live_stack.start_beat()  # the watchdog that requeues runs whose heartbeat stopped

    iterations = 2000
    log_in(page, base, user.username)
    run_id = launch_run(
        page,
        base,
        team.slug,
        experiment="Crash test",
        taskset=version.taskset.name,
        fields={**SHORT_RUN, "iterations": iterations, "eval_interval": 1000},
        advanced={"eval_tasks": 20, "checkpoint_interval": 200},
    )
    shots.take(page, "run-launched")

    # Wait for a checkpoint, then crash the worker: no cleanup, no acknowledgement.
    deadline = time.monotonic() + 90
    while True:
        run = Run.objects.get(pk=run_id)
        if run.status == "running" and (run.checkpoint_step or 0) > 0:
            break
        assert run.status in {"queued", "running"}, run.status
        assert time.monotonic() < deadline, f"no checkpoint in 90 s: {run.status} step {run.step}"
        time.sleep(0.1)
    live_stack.kill_worker()
    killed = Run.objects.get(pk=run_id)
    assert killed.status == "running" and killed.attempt == 1
    assert 0 < killed.checkpoint_step < iterations, killed.checkpoint_step
    assert killed.step < iterations, "the run ended before the kill; make it longer"
    checkpoint_step = killed.checkpoint_step
    shots.take(page, "worker-killed")

    # A new worker: the watchdog (run by it) requeues the silent run, which resumes.
    live_stack.start_worker()
    expect_status(page, "succeeded", timeout_s=120)
    shots.take(page, "resumed-run-succeeded")

    run = Run.objects.get(pk=run_id)
    assert run.status == "succeeded", (run.status, run.error)
    assert run.attempt == 2
    assert run.step == iterations
    kinds = list(run.events.values_list("kind", flat=True))
    assert any("heartbeat" in kind for kind in kinds), kinds  # requeued after the lost heartbeat
    claimed = run.events.filter(kind="claimed", attempt=2).get()
    resumed_from = int(re.search(r"checkpoint at step (\d+)", claimed.message).group(1))
    assert resumed_from >= checkpoint_step > 0, (claimed.message, checkpoint_step)

    rows, distinct = _metric_rows(run_id)
    assert rows == distinct, f"{rows - distinct} duplicated metric rows"
    loss_steps = {step for name, step in metric_rows(run) if name == "loss"}
    assert len(loss_steps) == iterations and max(loss_steps) == iterations

    page.reload()
    page.wait_for_selector("#chart-loss canvas")
    view = read_run_page(page)
    assert view.status == "succeeded" and view.loss_points == iterations
    assert page.inner_text("#run-attempt").strip() == "2"
    shots.take(page, "resumed-run-page")
    _assert_no_page_errors(page)


def _assert_no_page_errors(page) -> None:
    errors = [line for line in page.console_log if "PAGEERROR" in line]
    assert not errors, errors


def _picture_of_run_page(page) -> None:
    """artifacts/e2e/run_page.png: the finished run's status and charts, for the README."""
    bottom = page.evaluate(
        "() => document.getElementById('chart-val').closest('section').getBoundingClientRect().bottom"
        " + window.scrollY"
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(
        path=str(ARTIFACTS / "run_page.png"),
        full_page=True,
        clip={"x": 0, "y": 0, "width": page.viewport_size["width"], "height": bottom + 24},
    )
