"""``make run``'s exact configuration, end to end in Chromium.

The server is started as ``make run`` starts it: ``manage.py migrate``, ``manage.py
seed_demo`` and ``manage.py serve`` with ``metaweb.settings.dev``, no DATABASE_URL
(a SQLite file in a fresh ``METAWEB_DATA_DIR``) and no REDIS_URL (Celery's in-memory
broker, the in-memory channel layer and the worker that ``serve`` embeds; how it
embeds it is ``serve``'s business). Nothing here touches its database: the browser
does everything, as the demo user.

* The journey of a new user: launch a short sinusoid MAML run, watch it live until it
  succeeds, adapt it to a meta-test task, train a second model, evaluate both on the
  600 test tasks from the compare page, compare them, open the task set's leaderboard.
* A failing htmx request shows the server's message in the alert region, which can
  be dismissed; so does a request that never reaches the server.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from benchmarks._stack import ROOT, Proc, free_port, spawn, stack_env, stop_all, wait_http_ready
from tests.e2e.ui import (
    PASSWORD,
    expect_adapted_status,
    fill_adapt_form,
    launch_run,
    log_in,
    pick_for_compare,
    submit_adapt,
    watch_run,
)

pytestmark = [pytest.mark.e2e]

DEMO_USER, DEMO_TEAM = "demo", "demo"  # apps/tasksets/management/commands/seed_demo.py
EXPERIMENT, TASKSET = "Getting started", "Sinusoid regression"
TRAIN = {"meta_batch": 4, "eval_interval": 250, "queue": "cpu", "device": "cpu"}
TRAIN_ADVANCED = {"eval_tasks": 20, "checkpoint_interval": 500}
#: Long enough to be seen running on the page, short enough for a few seconds of work.
MAML_ITERATIONS, REPTILE_ITERATIONS = 1000, 500


def _make_run_env(data_dir: Path) -> dict[str, str]:
    """``make run``'s environment: dev settings, no DATABASE_URL, no REDIS_URL."""
    env = stack_env(database_url="", redis_url="", data_dir=data_dir)
    for name in ("DATABASE_URL", "REDIS_URL"):
        env.pop(name)
    env["DJANGO_SETTINGS_MODULE"] = "metaweb.settings.dev"
    env["METAWEB_DEMO_PASSWORD"] = PASSWORD
    return env


@pytest.fixture(scope="module")
def make_run_server() -> Iterator[str]:
    """migrate, seed_demo, then ``manage.py serve`` on a free port; yields its base URL.
    The logs are kept in ``artifacts/e2e/make_run/``."""
    log_dir = ROOT / "artifacts" / "e2e" / "make_run"
    log_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="metaweb-make-run-") as data:
        env = _make_run_env(Path(data))
        manage = [sys.executable, "manage.py"]
        for step in (["migrate", "--noinput"], ["seed_demo"]):
            done = subprocess.run(
                manage + step, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
            )
            (log_dir / f"{step[0]}.log").write_text(done.stdout + done.stderr)
            assert done.returncode == 0, f"manage.py {step[0]} failed:\n{done.stdout}{done.stderr}"
        assert Path(data, "db.sqlite3").exists(), "make run's database is a SQLite file in the data folder"
        port = free_port()
        server: Proc = spawn(
            "serve", manage + ["serve", "--host", "127.0.0.1", "--port", str(port)], env=env, log_dir=log_dir
        )
        try:
            base_url = f"http://127.0.0.1:{port}"
            wait_http_ready(server, base_url, timeout=120)
            yield base_url
        finally:
            stop_all([server], grace=10)


def _train(page, base: str, *, algorithm: str, iterations: int) -> tuple[int, list]:
    run_id = launch_run(
        page,
        base,
        DEMO_TEAM,
        experiment=EXPERIMENT,
        taskset=TASKSET,
        fields={**TRAIN, "algorithm": algorithm, "iterations": iterations},
        advanced=TRAIN_ADVANCED,
    )
    seen = watch_run(page, until={"succeeded", "failed", "cancelled"}, timeout=240)
    assert seen[-1].status == "succeeded", (seen[-1], page.inner_text("main")[:2000])
    return run_id, seen


def _unevaluated_ids(page) -> list[int]:
    buttons = page.locator('[data-testid^="evaluate-"]')
    return [int(buttons.nth(i).get_attribute("data-testid").split("-")[1]) for i in range(buttons.count())]


@pytest.mark.timeout(600)
def test_a_new_users_first_hour_under_make_run(make_run_server, e2e_page):
    page, shots, base = e2e_page, e2e_page.shots, make_run_server
    log_in(page, base, DEMO_USER)

    # 1. Launch a short sinusoid MAML run and watch it live until it succeeds.
    _maml_run, seen = _train(page, base, algorithm="maml", iterations=MAML_ITERATIONS)
    last = seen[-1]
    assert last.step == last.total == MAML_ITERATIONS and last.loss_points > 0 and last.loss_canvas, last
    live = [view for view in seen if view.status == "running" and 0 < (view.step or 0) < MAML_ITERATIONS]
    assert live, f"the page never showed the run part-way: {seen[:3]} ... {seen[-3:]}"
    assert [view.step for view in live] == sorted(view.step for view in live)  # progress only grows
    shots.take(page, "maml-succeeded")

    # 2. The compare page lists the new model as not comparable yet; adapt it to a test task.
    page.goto(f"{base}/t/{DEMO_TEAM}/compare/")
    (maml_id,) = _unevaluated_ids(page)
    fill_adapt_form(page, base, maml_id, target="test_task", task_index=7, steps=10)
    submit_adapt(page)
    expect_adapted_status(page, "succeeded", timeout_s=120)
    assert page.locator("#adapt-after").inner_text().strip()
    shots.take(page, "adapted-to-task-7")

    # 3. A second model, then both evaluated on the 600 test tasks from the compare page.
    _train(page, base, algorithm="reptile", iterations=REPTILE_ITERATIONS)
    page.goto(f"{base}/t/{DEMO_TEAM}/compare/")
    ids = _unevaluated_ids(page)
    assert len(ids) == 2 and maml_id in ids, ids
    for meta_model_id in ids:
        page.click(f'[data-testid="evaluate-{meta_model_id}"]')
        page.wait_for_url(re.compile(rf"/t/{DEMO_TEAM}/compare/$"))
        expect(page.locator(".messages .msg-success")).to_contain_text("the 600-task evaluation is queued")
    shots.take(page, "evaluations-queued")
    # The page polls while they run, and reloads with both in the picker once they end.
    for meta_model_id in ids:
        page.locator(f'[data-testid="pick-m-{meta_model_id}"]').wait_for(timeout=240_000)
    assert page.locator('[data-testid^="unevaluated-"]').count() == 0

    # 4. Compare them: ticking two models shows the result, never a silent failure.
    pick_for_compare(page, meta_model_ids=ids, items=2)  # waits for the result and its charts
    assert page.locator('[data-testid="compare-row"]').count() == 2
    assert page.locator("#request-error").is_hidden()
    assert page.locator("#compare-curves canvas").count() == 1
    shots.take(page, "compared")

    # 5. The task set's leaderboard ranks both.
    page.click(".picker-group legend a")
    page.wait_for_url(re.compile(r"/tasksets/\d+/leaderboard/$"))
    rows = page.locator('[data-testid="leaderboard-row"]')
    ranked = [int(rows.nth(i).get_attribute("data-meta-model-id")) for i in range(rows.count())]
    assert sorted(ranked) == sorted(ids), ranked
    shots.take(page, "leaderboard")
    assert not [line for line in page.console_log if "PAGEERROR" in line], page.console_log


def test_a_failing_htmx_request_shows_a_dismissable_message(make_run_server, e2e_page):
    page, shots, base = e2e_page, e2e_page.shots, make_run_server
    log_in(page, base, DEMO_USER)
    page.goto(f"{base}/t/{DEMO_TEAM}/compare/")
    alert = page.locator("#request-error")
    assert alert.is_hidden()

    # A stale page: it offers two models that no longer exist. Ticking the second asks
    # the server for their comparison, which answers 404 with its message.
    page.evaluate(
        """() => document.getElementById("compare-picker").insertAdjacentHTML("beforeend",
             '<input type="hidden" name="m" value="987653">'
             + '<label><input type="checkbox" name="m" value="987654" id="stale-pick"> gone</label>')"""
    )
    with page.expect_response(re.compile(r"/compare/\?.*m=987654")) as answer:
        page.check("#stale-pick")
    assert answer.value.status == 404
    expect(alert).to_be_visible()
    expect(alert).to_contain_text("No such meta-model.")
    assert alert.get_attribute("role") == "alert"
    shots.take(page, "error-shown", full_page=False)
    page.click('[data-testid="request-error-dismiss"]')
    expect(alert).to_be_hidden()

    # A request that never reaches the server says so too.
    page.route(re.compile(r"/compare/\?"), lambda route: route.abort())
    page.uncheck("#stale-pick")
    expect(alert).to_be_visible()
    expect(alert).to_contain_text("Could not reach the server")
    page.click('[data-testid="request-error-dismiss"]')
    expect(alert).to_be_hidden()
