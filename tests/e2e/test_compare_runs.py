"""A person compares three finished runs in the browser, on the real stack (see
conftest.py): three short sinusoid MAML runs launched from the form, two with the
same inner learning rate and one with another. The compare page highlights that key,
draws every run on every chart, and redraws on the log scale and on zoom."""

from __future__ import annotations

import time

import pytest

from tests.e2e.ui import create_experiment, create_taskset, launch_run, log_in

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

RUN = {
    "algorithm": "maml",
    "meta_batch": 2,
    "iterations": 300,
    "eval_interval": 100,
    "queue": "cpu",
    "device": "cpu",
}
ADVANCED = {"eval_tasks": 10, "checkpoint_interval": 300}

#: The loss chart's series requests (every chart asks for its own metric).
LOSS = "metric=loss&"
#: Every chart drawn, every training metric's with each of the n runs (a system figure,
#: sampled every 10 s, has no point in a narrow zoomed range).
CHARTS_READY = """n => {
  const charts = [...document.querySelectorAll('[data-testid=compare-chart]')];
  const full = c => c.dataset.metric.startsWith('sys_') || Number(c.dataset.runs) === n;
  const drawn = c => c.dataset.state === 'ready' && c.querySelector('canvas');
  return charts.length > 0 && charts.every(c => drawn(c) && full(c));
}"""


def _wait_finished(run_ids: list[int], timeout_s: float = 150) -> None:
    from apps.experiments.models import Run

    deadline = time.monotonic() + timeout_s
    while True:
        statuses = dict(Run.objects.filter(pk__in=run_ids).values_list("pk", "status"))
        if all(status == "succeeded" for status in statuses.values()):
            return
        assert not {"failed", "cancelled"} & set(statuses.values()), statuses
        assert time.monotonic() < deadline, f"runs not finished in {timeout_s} s: {statuses}"
        time.sleep(0.2)


def test_compare_three_finished_runs(live_stack, e2e_page, e2e_user):
    page, shots = e2e_page, e2e_page.shots
    base = live_stack.base_url
    user, team = e2e_user

    log_in(page, base, user.username)
    create_taskset(page, base, team.slug, name="Sine waves")
    create_experiment(page, base, team.slug, name="Compare test")
    run_ids = [
        launch_run(
            page,
            base,
            team.slug,
            experiment="Compare test",
            taskset="Sine waves",
            fields={**RUN, "inner_lr": inner_lr},
            advanced=ADVANCED,
        )
        for inner_lr in (0.01, 0.01, 0.05)
    ]
    _wait_finished(run_ids)

    page.goto(f"{base}/t/{team.slug}/runs/compare/?ids={','.join(map(str, run_ids))}")
    page.wait_for_function(CHARTS_READY, arg=3, timeout=20_000)
    metrics = page.eval_on_selector_all("[data-testid=compare-chart]", "cs => cs.map(c => c.dataset.metric)")
    assert "loss" in metrics and any(name.startswith("val_") for name in metrics), metrics

    # The config diff: the differing key first, highlighted; the shared ones not.
    first = page.locator("#compare-config-table tbody tr").first
    assert first.get_attribute("data-key") == "inner_lr"
    assert "config-differs" in (first.get_attribute("class") or "")
    assert (
        page.locator('#compare-config-table tr[data-key="meta_batch"]').get_attribute("data-differs") == "0"
    )
    assert page.locator("#compare-summary-table tbody tr").count() == 3
    page.wait_for_timeout(300)  # let uPlot settle before the picture
    shots.take(page, "compare-page")

    # Log scale: every chart redraws on it, still with every run.
    page.check("[data-testid=log-scale]")
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=compare-chart]')]"
        ".every(c => c.dataset.log === '1')"
    )
    page.wait_for_function(CHARTS_READY, arg=3)
    shots.take(page, "compare-log-scale")

    # Zoom on the loss chart: the finer range comes from the server.
    loss = page.locator('[data-testid=compare-chart][data-metric="loss"] .u-over')
    box = loss.bounding_box()
    # Only the loss chart's answer is checked: another chart's series request can come first.
    with page.expect_response(
        lambda r: "/runs/compare/series/" in r.url and "from=" in r.url and LOSS in r.url
    ) as answer:
        page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + box["height"] / 2)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.4, box["y"] + box["height"] / 2, steps=5)
        page.mouse.up()
    zoomed = answer.value.json()
    assert all(run["x"] and max(run["x"]) - min(run["x"]) < 300 for run in zoomed["runs"]), zoomed
    page.wait_for_function(CHARTS_READY, arg=3)

    # Hovering shows every run's value.
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] / 2)
    hover = page.locator('[data-hover-for="loss"]').inner_text()
    assert all(f"#{run_id}" in hover for run_id in run_ids), hover
    shots.take(page, "compare-zoomed")

    # Wall time on x: the charts reload the full range in seconds since each start.
    with page.expect_response(
        lambda r: "/runs/compare/series/" in r.url and "x=time" in r.url and LOSS in r.url
    ) as answer:
        page.check("[data-testid=x-time]")
    timed = answer.value.json()
    assert timed["x"] == "time" and all(run["x"] for run in timed["runs"]), timed
    page.wait_for_function(CHARTS_READY, arg=3)

    # The parallel coordinates draw every run, with the varying key as an axis.
    chart = page.locator("[data-testid=parallel-chart]")
    assert chart.get_attribute("data-lines") == "3"
    assert page.locator('#parallel-chart g[data-axis="inner_lr"]').count() == 1

    # Which config keys go with the chosen metric: the table of that metric only.
    select = page.locator("#parallel-metric")
    shown = page.locator("[data-importance-metric]:visible")
    assert shown.count() == 1 and shown.get_attribute("data-importance-metric") == select.input_value()
    assert shown.locator('tr[data-setting="inner_lr"]').count() == 1
    other = next(
        v
        for v in select.locator("option").evaluate_all("os => os.map(o => o.value)")
        if v != select.input_value()
    )
    select.select_option(other)
    assert shown.count() == 1 and shown.get_attribute("data-importance-metric") == other
    # Its table, random forest included, is read from the server the first time it shows.
    loaded = page.locator(f'[data-importance-metric="{other}"][data-importance-loaded="1"]')
    loaded.wait_for()
    assert loaded.locator('tr[data-setting="inner_lr"]').count() == 1
    assert loaded.locator('[data-testid="importance-forest-fit"]').count() == 1
    assert loaded.locator(".msg-error").count() == 0

    # Brushing the bottom of the inner_lr axis keeps the two runs at 0.01, and offers
    # to compare just those.
    chart.scroll_into_view_if_needed()
    axis = page.locator('#parallel-chart g[data-axis="inner_lr"] line').bounding_box()
    x = axis["x"] + axis["width"] / 2
    page.mouse.move(x, axis["y"] + axis["height"] - 20)
    page.mouse.down()
    page.mouse.move(x, axis["y"] + axis["height"] + 5, steps=4)
    page.mouse.up()
    assert chart.get_attribute("data-kept") == "2"
    link = page.locator("#parallel-compare")
    assert link.is_visible()
    assert link.get_attribute("href").endswith("ids=" + "%2C".join(map(str, run_ids[:2])))
    shots.take(page, "compare-parallel-brushed")

    errors = [line for line in page.console_log if "PAGEERROR" in line]
    assert not errors, errors
