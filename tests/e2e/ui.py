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
    _fill(page, fields)
    if advanced:
        page.click("#advanced-settings > summary")
        _fill(page, advanced)
    page.click("#submit-run")
    page.wait_for_url(re.compile(r"/runs/\d+/$"))
    return int(re.search(r"/runs/(\d+)/$", page.url).group(1))


def _fill(page: Page, values: dict[str, Any]) -> None:
    for name, value in values.items():
        field = page.locator(f"#id_{name}")
        tag = field.evaluate("el => el.tagName.toLowerCase()")
        if tag == "select":
            field.select_option(str(value))
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
