"""The run page of a run with 20,000 loss points, in the browser: the page carries at
most 2,000 of them (min-max downsampled, a one-step 100x spike drawn), dragging
across the chart asks the metrics API for that range's every point, and a loss spike's
step in the status panel zooms the chart around it."""

from __future__ import annotations

import pytest

from tests.e2e.ui import log_in

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

POINTS = 20_000
SPIKE = 12_345


def test_a_long_run_is_drawn_downsampled_and_a_zoom_reads_the_finer_points(live_stack, e2e_page, e2e_user):
    from apps.experiments.models import RunStatus
    from tests.factories import ExperimentFactory, RunFactory, TaskSetVersionFactory, metric_points_add

    page = e2e_page
    base = live_stack.base_url
    user, team = e2e_user
    version = TaskSetVersionFactory(taskset__team=team, taskset__created_by=user, taskset__name="Sines")
    experiment = ExperimentFactory(team=team, created_by=user, name="Long run")
    run = RunFactory(
        experiment=experiment,
        taskset_version=version,
        status=RunStatus.SUCCEEDED,
        step=POINTS,
        total_steps=POINTS,
    )
    metric_points_add(
        run, [("loss", s, 100.0 if s == SPIKE else 1.0 + (s % 7) / 10) for s in range(1, POINTS + 1)]
    )

    log_in(page, base, user.username)
    page.goto(f"{base}/runs/{run.pk}/")
    page.wait_for_selector("#chart-loss canvas")
    drawn = page.eval_on_selector(
        "#chart-loss", "el => [Array.from(el.metaChart.shown[0]), Array.from(el.metaChart.shown[1])]"
    )
    assert 1000 <= len(drawn[0]) <= 2000, len(drawn[0])
    assert drawn[1][drawn[0].index(SPIKE)] == 100.0  # the spike survives downsampling

    # Drag across about a tenth of the plot: the chart loads that range's every point.
    over = page.locator("#chart-loss .u-over")
    over.scroll_into_view_if_needed()
    box = over.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.45, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, y, steps=5)
    page.mouse.up()
    page.wait_for_function(
        "() => /^\\d+-\\d+$/.test(document.getElementById('chart-loss').dataset.zoom || '')"
    )
    lo, hi = map(int, page.get_attribute("#chart-loss", "data-zoom").split("-"))
    steps = page.eval_on_selector("#chart-loss", "el => Array.from(el.metaChart.shown[0])")
    assert 0 < hi - lo < POINTS // 2
    assert steps == list(
        range(max(lo - 1, 1), hi + 2)
    )  # every stored point of the range, and one past each end
    view = page.eval_on_selector(
        "#chart-loss", "el => [el.metaChart.plot.scales.x.min, el.metaChart.plot.scales.x.max]"
    )
    assert view == [lo, hi]  # the axis is the range dragged: the points past the ends only carry the line

    # A double click goes back to the whole run, downsampled.
    page.dblclick("#chart-loss .u-over")
    page.wait_for_function(
        f"() => Number(document.getElementById('chart-loss').dataset.points) === {len(drawn[0])}"
    )

    # "log scale" redraws the same points on a log y axis; values at or below zero become
    # gaps, and the note above the chart counts them.
    page.check('[data-testid="chart-loss-log"]')
    page.wait_for_function("() => document.getElementById('chart-loss').dataset.scale === 'log'")
    chart = "el => [el.metaChart.plot.scales.y.distr, el.metaChart.plot.data[1].length]"
    assert page.eval_on_selector("#chart-loss", chart) == [3, len(drawn[0])]
    page.eval_on_selector("#chart-loss", "el => el.metaChart.draw({loss: [[1, 0.5], [2, -1], [3, 0]]})")
    plotted = "el => Array.from(el.metaChart.plot.data[1])"
    assert page.eval_on_selector("#chart-loss", plotted) == [0.5, None, None]
    page.get_by_text("2 values at or below 0 are hidden on the log scale.").wait_for()
    page.uncheck('[data-testid="chart-loss-log"]')
    assert page.eval_on_selector("#chart-loss", plotted) == [0.5, -1, 0]
    assert page.get_by_text("hidden on the log scale").count() == 0

    # A loss spike told in the run's history: its step zooms the loss chart around it.
    from apps.experiments.models import RunEvent

    RunEvent.objects.create(run=run, kind="spike", step=SPIKE, message=f"Loss spike at step {SPIKE:,}.")
    page.reload()
    page.wait_for_selector("#chart-loss canvas")
    page.click(f'#run-spikes [data-zoom-lo="{SPIKE - 100}"]')
    page.wait_for_function(
        f"() => document.getElementById('chart-loss').dataset.zoom === '{SPIKE - 100}-{SPIKE + 100}'"
    )
    shown = page.eval_on_selector(
        "#chart-loss", "el => [Array.from(el.metaChart.shown[0]), Array.from(el.metaChart.shown[1])]"
    )
    assert shown[0] == list(range(SPIKE - 101, SPIKE + 102))  # and one past each end
    assert shown[1][shown[0].index(SPIKE)] == 100.0
