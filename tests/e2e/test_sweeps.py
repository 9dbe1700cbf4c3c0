"""The issue's sweep journey, on the real stack (see conftest.py): search the run
list, select three runs, compare them and see the config diff; then launch a 6-run
random sweep with ASHA from the launch form, watch its leaderboard fill in over the
socket as runs evaluate, stop it, and clone the best run."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.ui import await_launch_fields, create_experiment, create_taskset, log_in

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def _seed_finished_runs(team, experiment_id: int) -> None:
    """Three finished runs to search and compare (the sweep's runs train for real)."""
    from apps.experiments.models import Experiment, RunStatus
    from apps.tasksets.models import TaskSetVersion
    from tests.factories import SMALL_CONFIG, RunFactory

    experiment = Experiment.objects.get(pk=experiment_id)
    version = TaskSetVersion.objects.filter(taskset__team=team).first()
    for inner_lr in (0.01, 0.01, 0.05):
        RunFactory(
            experiment=experiment,
            taskset_version=version,
            status=RunStatus.SUCCEEDED,
            config={**SMALL_CONFIG, "inner_lr": inner_lr},
            summary={"val": {"val_loss": inner_lr}},
            step=20,
        )


def test_compare_then_sweep_with_asha_stop_and_clone_best(live_stack, e2e_page, e2e_user):
    page, shots, base = e2e_page, e2e_page.shots, live_stack.base_url
    user, team = e2e_user
    log_in(page, base, user.username)
    create_taskset(page, base, team.slug, name="Sine waves")
    experiment_id = create_experiment(page, base, team.slug, name="Sweep test")
    _seed_finished_runs(team, experiment_id)

    # Search, select three, compare, see the config diff.
    page.goto(f"{base}/t/{team.slug}/runs/")
    page.fill("#run-search", "algorithm:maml")
    expect(page).to_have_url(re.compile(r"q=algorithm%3Amaml"))
    boxes = page.locator("input[data-select-run]")
    expect(boxes).to_have_count(3)
    for i in range(3):
        boxes.nth(i).check()
    page.locator("[data-compare-button]").click()
    page.wait_for_url(re.compile(r"/runs/compare/\?ids="))
    first = page.locator("#compare-config-table tbody tr").first
    assert first.get_attribute("data-key") == "inner_lr"
    assert "config-differs" in (first.get_attribute("class") or "")
    shots.take(page, "compare-config-diff")

    # Launch a 6-run random sweep with ASHA over the inner learning rate.
    page.goto(f"{base}/t/{team.slug}/runs/new/")
    page.select_option("#id_experiment", label="Sweep test")
    page.select_option("#id_taskset", label="Sine waves")
    await_launch_fields(page)
    for name, value in {"meta_batch": 2, "iterations": 600, "eval_interval": 50, "device": "cpu"}.items():
        locator = page.locator(f"#id_{name}")
        if locator.evaluate("el => el.tagName") == "SELECT":
            locator.select_option(str(value))
        else:
            locator.fill(str(value))
    expect(page.locator("#sweep-settings")).not_to_have_attribute("open", "")
    page.click("#sweep-settings > summary")
    page.select_option("#id_sweep_strategy", "asha")
    page.fill("#id_sweep_samples", "6")
    page.fill("#id_sweep_max_concurrent", "2")
    page.fill("#id_dim_inner_lr", "0.0001..0.5 log")
    shots.take(page, "sweep-section")
    page.click("#submit-run")
    page.wait_for_url(re.compile(r"/sweeps/\d+/$"))
    sweep_id = int(re.search(r"/sweeps/(\d+)/$", page.url).group(1))

    # The leaderboard fills in as runs evaluate, with no reload.
    page.evaluate("() => { window.__sameDocument = true; }")
    ranked = "#sweep-leaderboard tr[data-rank]:not([data-rank=''])"
    page.wait_for_function(f'() => document.querySelectorAll("{ranked}").length >= 2', timeout=120_000)
    assert page.evaluate("() => window.__sameDocument === true")
    ranks = page.eval_on_selector_all(
        "#sweep-leaderboard tr[data-run-id]", "rows => rows.map(r => r.dataset.rank)"
    )
    assert ranks[:2] == ["1", "2"], ranks
    assert page.locator("#parallel-chart").get_attribute("data-lines") not in (None, "0")
    shots.take(page, "sweep-leaderboard")

    # Stop it: nothing is left queued or running, and no run starts afterwards.
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#stop-sweep")
    expect(page.locator("#sweep-status")).to_have_attribute("data-status", "stopped")
    from apps.experiments.models import Run, Sweep

    sweep = Sweep.objects.get(pk=sweep_id)
    assert sweep.status == "stopped"
    assert not Run.objects.filter(sweep=sweep, status="queued").exists()
    shots.take(page, "sweep-stopped")
    page.click("#nav-sweeps")
    expect(page.locator(f"#sweep-row-{sweep_id} [data-status]")).to_have_attribute("data-status", "stopped")
    shots.take(page, "sweep-list")
    page.goto(f"{base}/t/{team.slug}/sweeps/{sweep_id}/")

    # Clone the best: the launch form, prefilled from the top-ranked run.
    best = page.locator("#sweep-leaderboard tr[data-rank='1']").get_attribute("data-run-id")
    page.click("#clone-best")
    page.wait_for_url(re.compile(rf"/runs/{best}/clone/$"))
    best_lr = Run.objects.get(pk=int(best)).config["inner_lr"]
    assert float(page.input_value("#id_inner_lr")) == pytest.approx(best_lr)
    shots.take(page, "clone-best")
    errors = [line for line in page.console_log if "PAGEERROR" in line]
    assert not errors, errors
