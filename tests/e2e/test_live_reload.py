"""A reload in the middle of a run leaves no hole in the live chart.

The page's socket joins the run's group, then reads the database (``run.state``),
then merges by step; the worker sends a point only once it is stored. So after a
reload, the chart's points up to its newest step are exactly the database's, while
the run is still running (before the final resync could paper over a hole).
"""

from __future__ import annotations

import pytest

from tests.e2e.test_runs import SHORT_RUN, SHORT_RUN_ADVANCED
from tests.e2e.ui import create_experiment, create_taskset, expect_status, launch_run, log_in

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

RELOADS = 3
#: Long enough to be running through every reload; stored at every step (under 10,000).
ITERATIONS = 9_000

_READ_CHART = """() => {
  const chart = document.getElementById("chart-loss").metaChart;
  return {
    status: document.getElementById("run-status").dataset.status,
    steps: Array.from(chart.shown[0]),
    values: Array.from(chart.shown[1]),
  };
}"""


def _stored(run_id: int, up_to: int) -> list[tuple[int, float]]:
    from tests.factories import metric_points

    return [(step, value) for step, value in sorted(metric_points(run_id, "loss").items()) if step <= up_to]


def test_reload_mid_run_shows_every_stored_point(live_stack, e2e_page, e2e_user):
    from apps.experiments.models import Run

    page, shots = e2e_page, e2e_page.shots
    base = live_stack.base_url
    user, team = e2e_user
    log_in(page, base, user.username)
    create_taskset(page, base, team.slug, name="Sine waves")
    create_experiment(page, base, team.slug, name="Reload test")
    run_id = launch_run(
        page,
        base,
        team.slug,
        experiment="Reload test",
        taskset="Sine waves",
        fields={**SHORT_RUN, "iterations": ITERATIONS},
        advanced=SHORT_RUN_ADVANCED,
    )
    for reload in range(RELOADS):
        # Reload while points stream in, then wait until the socket brought newer ones.
        page.wait_for_function(
            "n => Number(document.getElementById('chart-loss').dataset.points) > n",
            arg=50 * (reload + 1),
            timeout=90_000,
        )
        before = Run.objects.get(pk=run_id).step
        page.reload()
        page.wait_for_function(
            "n => { const c = document.getElementById('chart-loss').metaChart;"
            " return c && c.shown[0].length && c.shown[0][c.shown[0].length - 1] > n; }",
            arg=before + 1,
            timeout=60_000,
        )
        chart = page.evaluate(_READ_CHART)
        assert chart["status"] == "running", f"the run ended before reload {reload}; make it longer"
        newest = chart["steps"][-1]
        stored = _stored(run_id, newest)
        assert list(zip(chart["steps"], chart["values"], strict=True)) == stored, (
            f"reload {reload}: the chart's points differ from the database's up to step {newest}: "
            f"missing {sorted({s for s, _ in stored} - set(chart['steps']))[:20]}"
        )
        assert chart["steps"] == list(range(1, newest + 1))
        shots.take(page, f"reloaded-{reload}")

    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#cancel-run")
    expect_status(page, "cancelled", timeout_s=30)
