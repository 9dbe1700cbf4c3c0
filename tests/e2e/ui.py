"""What a person does in the browser, as small helpers over Playwright's sync API.

Selectors are the templates' own ids (``templates/experiments/run_detail.html``:
``#run-status`` with ``data-status``, ``#run-progress`` with ``aria-valuenow``,
``#chart-loss`` and ``#chart-val`` with ``data-points`` set by ``static/js/charts.js``).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from playwright.sync_api import Page, expect

PASSWORD = "pw-for-tests-1"  # tests.factories.UserFactory's

#: One read of the run page: what a person sees.
_READ_RUN_PAGE = """() => {
  const badge = document.getElementById("run-status");
  const bar = document.getElementById("run-progress");
  const loss = document.getElementById("chart-loss");
  const val = document.getElementById("chart-val");
  const fill = bar && bar.firstElementChild;
  return {
    status: badge ? badge.dataset.status : null,
    step: bar ? Number(bar.getAttribute("aria-valuenow")) : null,
    total: bar ? Number(bar.getAttribute("aria-valuemax")) : null,
    width: fill ? parseFloat(fill.style.width || "0") : null,
    loss_points: loss && loss.dataset.points ? Number(loss.dataset.points) : 0,
    val_points: val && val.dataset.points ? Number(val.dataset.points) : 0,
    loss_canvas: !!(loss && loss.querySelector("canvas")),
  };
}"""


@dataclass(frozen=True)
class RunView:
    status: str | None
    step: int | None
    total: int | None
    width: float | None
    loss_points: int
    val_points: int
    loss_canvas: bool


def read_run_page(page: Page) -> RunView:
    return RunView(**page.evaluate(_READ_RUN_PAGE))


def log_in(page: Page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("form button[type=submit]")
    page.wait_for_url(lambda url: "/accounts/login/" not in url)


def create_taskset(page: Page, base_url: str, team_slug: str, *, name: str, family: str = "sinusoid") -> int:
    page.goto(f"{base_url}/t/{team_slug}/tasksets/new/")
    if page.input_value("#id_family") != family:
        with page.expect_response(re.compile(r"/tasksets/new/fields/")):
            page.select_option("#id_family", family)
    page.fill("#id_name", name)
    page.fill("#id_description", "Sinusoid regression, created by the browser test.")
    page.click("#taskset-form button[type=submit]")
    page.wait_for_url(re.compile(r"/tasksets/\d+/$"))
    return int(re.search(r"/tasksets/(\d+)/$", page.url).group(1))


def create_experiment(page: Page, base_url: str, team_slug: str, *, name: str) -> int:
    page.goto(f"{base_url}/t/{team_slug}/experiments/new/")
    page.fill("#id_name", name)
    page.click("#create-experiment")
    page.wait_for_url(re.compile(r"/experiments/\d+/$"))
    return int(re.search(r"/experiments/(\d+)/$", page.url).group(1))


def launch_run(
    page: Page,
    base_url: str,
    team_slug: str,
    *,
    experiment: str,
    taskset: str,
    fields: dict[str, Any],
    advanced: dict[str, Any] | None = None,
) -> int:
    """Fill the launch form (fields by name, as the form calls them) and submit it;
    returns the new run's id once the browser is on its page."""
    page.goto(f"{base_url}/t/{team_slug}/runs/new/")
    page.select_option("#id_experiment", label=experiment)
    page.select_option("#id_taskset", label=taskset)
    await_launch_fields(page)
    _fill(page, fields)
    if advanced:
        page.click("#advanced-settings > summary")
        _fill(page, advanced)
    page.click("#submit-run")
    page.wait_for_url(re.compile(r"/runs/\d+/$"))
    return int(re.search(r"/runs/(\d+)/$", page.url).group(1))


def await_launch_fields(page: Page) -> None:
    """Wait until the launch form's settings belong to its chosen algorithm and task
    set: the htmx swap that follows a change has landed (no-op on other pages)."""
    page.wait_for_function(
        """() => {
            const fields = document.querySelector('#launch-fields');
            if (!fields) return true;
            return !document.querySelector('.htmx-request')
                && fields.dataset.algorithm === document.querySelector('#id_algorithm').value
                && fields.dataset.taskset === document.querySelector('#id_taskset').value;
        }"""
    )


def _fill(page: Page, values: dict[str, Any]) -> None:
    for name, value in values.items():
        field = page.locator(f"#id_{name}")
        tag = field.evaluate("el => el.tagName.toLowerCase()")
        if tag == "select":
            field.select_option(str(value))
            await_launch_fields(page)
        elif field.get_attribute("type") == "checkbox":
            field.set_checked(bool(value))
        else:
            field.fill(str(value))


def watch_run(page: Page, *, until: set[str], timeout: float, interval_ms: int = 100) -> list[RunView]:
    """Read the run page every ``interval_ms`` until its badge shows one of ``until``;
    returns every read (the last one shows the final status)."""
    seen: list[RunView] = []
    deadline = time.monotonic() + timeout
    while True:
        view = read_run_page(page)
        seen.append(view)
        if view.status in until:
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(f"the page never showed {sorted(until)} in {timeout:.0f} s; last: {view}")
        page.wait_for_timeout(interval_ms)


def expect_status(page: Page, status: str, *, timeout_s: float) -> None:
    expect(page.locator("#run-status")).to_have_attribute("data-status", status, timeout=timeout_s * 1000)


# -- registry: adapt, review, compare ---------------------------------------------------------
#
# Selectors are the registry templates' own: the adapt form (``templates/adaptations/adapt_new.html``:
# ``#adapt-form``, ``#adapt-submit``), the adapted model's page (``adapted_detail.html``:
# ``#adapted-live`` with ``data-status``, ``#adapt-curve`` with ``data-points`` and
# ``data-last-step`` set by ``static/js/adapt_live.js``) and the side-by-side page
# (``compare.html``: ``#compare-result`` with ``data-items``, ``#compare-curves`` and
# ``#compare-hist`` with ``data-series`` set by ``static/js/compare.js``).


def fill_adapt_form(
    page: Page,
    base_url: str,
    meta_model_id: int,
    *,
    target: str,
    support: list[tuple[float, float]] | None = None,
    query: list[tuple[float, float]] | None = None,
    task_index: int | None = None,
    steps: int | None = None,
) -> None:
    """Open a meta-model's adapt page and fill it (``target``: ``test_task``, ``custom``
    or ``batch``; typed points as ``(x, y)``), without submitting."""
    page.goto(f"{base_url}/models/{meta_model_id}/adapt/")
    page.check(f"#adapt-form input[name=target][value={target}]")
    if task_index is not None:
        page.fill("#id_task_index", str(task_index))
    if support is not None:
        page.fill("#id_support_text", "\n".join(f"{x:.4f}, {y:.4f}" for x, y in support))
    if query is not None:
        page.fill("#id_query_text", "\n".join(f"{x:.4f}, {y:.4f}" for x, y in query))
    if steps is not None:
        page.fill("#id_steps", str(steps))


def submit_adapt(page: Page) -> int:
    """Click Adapt; returns the adaptation run's id once the browser is on its page."""
    page.click("#adapt-submit")
    page.wait_for_url(re.compile(r"/adapted/\d+/$"), timeout=30_000)
    return int(re.search(r"/adapted/(\d+)/$", page.url).group(1))


#: Resolves, at the first animation frame where the adapted page's curve shows inner
#: step ``last``, with ``Date.now()`` then (polled with requestAnimationFrame).
CURVE_REACHED = """last => {
  const el = document.getElementById("adapt-curve");
  return el && Number(el.dataset.lastStep) === last ? Date.now() : false;
}"""


def wait_curve_step(page: Page, last: int, *, timeout_s: float) -> int:
    """Wait until the adapted page's curve shows step ``last``; returns the page's
    ``Date.now()`` at that frame."""
    handle = page.wait_for_function(CURVE_REACHED, arg=last, polling="raf", timeout=timeout_s * 1000)
    return int(handle.json_value())


def read_curve(page: Page) -> dict[str, Any]:
    """What the adapted page's curve chart shows: points, last step, series names."""
    return page.evaluate(
        """() => {
          const el = document.getElementById("adapt-curve");
          return {
            points: el && el.dataset.points ? Number(el.dataset.points) : 0,
            last_step: el && el.dataset.lastStep !== undefined && el.dataset.lastStep !== ""
              ? Number(el.dataset.lastStep) : null,
            series: el && el.dataset.series ? el.dataset.series.split(" ") : [],
            canvas: !!(el && el.querySelector("canvas")),
          };
        }"""
    )


def expect_adapted_status(page: Page, status: str, *, timeout_s: float) -> None:
    expect(page.locator("#adapted-live")).to_have_attribute("data-status", status, timeout=timeout_s * 1000)


def open_compare(page: Page, base_url: str, team_slug: str) -> None:
    page.goto(f"{base_url}/t/{team_slug}/compare/")


def pick_for_compare(page: Page, *, meta_model_ids: list[int], items: int) -> None:
    """Tick meta-models in the picker one by one (htmx re-renders the result each time)
    and wait until the result shows ``items`` models with their charts drawn."""
    for meta_model_id in meta_model_ids:
        page.check(f'[data-testid="pick-m-{meta_model_id}"]')
    page.wait_for_function(
        """n => {
          const result = document.getElementById("compare-result");
          const curves = document.getElementById("compare-curves");
          return result && Number(result.dataset.items) === n
            && curves && Number(curves.dataset.series) === n;
        }""",
        arg=items,
    )
