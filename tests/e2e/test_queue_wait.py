"""Queued runs say why they wait, and the text follows the queue live: a person
watches the run list and a queued run's page while the run ahead is cancelled.

Three long runs go to the CPU queue of the stack's one solo worker: A runs, B and
C wait. Cancelling A (from A's page, in another tab) starts B; the list and C's
page then show C next, behind B, without a reload.
"""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

from tests.e2e.test_runs import SHORT_RUN, SHORT_RUN_ADVANCED
from tests.e2e.ui import launch_run, log_in

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

LONG_RUN = {**SHORT_RUN, "iterations": 200_000}


def _wait_running(run_id: int, timeout_s: float = 90) -> None:
    from apps.experiments.models import Run

    deadline = time.monotonic() + timeout_s
    while Run.objects.get(pk=run_id).status != "running":
        assert time.monotonic() < deadline, f"run {run_id} never started"
        time.sleep(0.1)


def _tab(page):
    """Another tab of the same browser context, its page errors logged with the first tab's."""
    tab = page.context.new_page()
    tab.on("pageerror", lambda exc: page.console_log.append(f"{tab.url} PAGEERROR: {exc}"))
    return tab


def test_queue_positions_follow_the_queue_live(live_stack, e2e_page, e2e_user):
    from tests.factories import ExperimentFactory, TaskSetVersionFactory

    page, shots = e2e_page, e2e_page.shots
    base = live_stack.base_url
    user, team = e2e_user
    version = TaskSetVersionFactory(taskset__team=team, taskset__created_by=user, taskset__name="Sines")
    ExperimentFactory(team=team, created_by=user, name="Queue test")

    log_in(page, base, user.username)
    a, b, c = (
        launch_run(
            page,
            base,
            team.slug,
            experiment="Queue test",
            taskset=version.taskset.name,
            fields=LONG_RUN,
            advanced=SHORT_RUN_ADVANCED,
        )
        for _ in range(3)
    )
    _wait_running(a)

    page.goto(f"{base}/t/{team.slug}/runs/")
    wait_b = page.locator(f'[data-queue-wait="{b}"]')
    wait_c = page.locator(f'[data-queue-wait="{c}"]')
    expect(wait_b).to_have_text(f"Waiting behind run #{a} (running) on the CPU queue · position 1, 1 running")
    expect(wait_c).to_have_text(f"Waiting behind run #{b} on the CPU queue · position 2, 1 running")
    shots.take(page, "run-list-queued")

    run_c = _tab(page)
    run_c.goto(f"{base}/runs/{c}/")
    expect(run_c.locator("#run-wait")).to_have_text(
        f"Waiting behind run #{b} on the CPU queue · position 2, 1 running"
    )
    shots.take(run_c, "run-page-queued")

    run_a = _tab(page)
    run_a.goto(f"{base}/runs/{a}/")
    run_a.once("dialog", lambda dialog: dialog.accept())
    run_a.click("#cancel-run")
    expect(run_a.locator("#run-status")).to_have_attribute("data-status", "cancelled", timeout=30_000)

    # No reload: the team socket's run.status events refresh the waiting texts.
    moved = f"Waiting behind run #{b} (running) on the CPU queue · position 1, 1 running"
    expect(wait_c).to_have_text(moved, timeout=60_000)
    expect(wait_b).to_have_count(0)
    expect(run_c.locator("#run-wait")).to_have_text(moved, timeout=30_000)
    shots.take(page, "run-list-moved-up")
    shots.take(run_c, "run-page-moved-up")
    errors = [line for line in page.console_log if "PAGEERROR" in line]
    assert not errors, errors
