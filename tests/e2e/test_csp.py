"""Every page keeps working under the Content-Security-Policy: a person logs in, creates
a task set (htmx swap of the family's fields), an experiment, launches a short run
from the launch form (htmx swaps), watches it finish with its charts, then visits each
page of the navigation, the task set, the compares and the model pages. Chromium
reports no CSP violation (``securitypolicyviolation`` events, recorded by an init
script into the console) and no page error."""

from __future__ import annotations

import re
import time

import pytest

from tests.e2e.ui import create_experiment, create_taskset, launch_run, log_in

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

#: Marks each violation in the console, where the page's console listener keeps it.
RECORD_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (e) => {
  console.error("CSP-VIOLATION " + e.violatedDirective + " blocked=" + e.blockedURI
                + " at " + e.sourceFile + ":" + e.lineNumber + " sample=" + e.sample);
});
"""


def _problems(console: list[str]) -> list[str]:
    markers = ("CSP-VIOLATION", "Content Security Policy", "PAGEERROR", "returned no matches")
    return [line for line in console if any(marker in line for marker in markers)]


def _wait_succeeded(run_id: int, timeout_s: float = 120) -> None:
    from apps.experiments.models import Run

    deadline = time.monotonic() + timeout_s
    while (status := Run.objects.get(pk=run_id).status) != "succeeded":
        assert status not in {"failed", "cancelled"}, status
        assert time.monotonic() < deadline, f"run {run_id} still {status}"
        time.sleep(0.2)


def _visit(page, url: str) -> None:
    response = page.goto(url)
    assert response is not None and response.status == 200, f"{url}: {response and response.status}"
    policy = response.headers.get("content-security-policy", "")
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy, url
    page.wait_for_load_state("networkidle")


def test_every_page_works_without_csp_violations(live_stack, e2e_page, e2e_user):
    page = e2e_page
    page.add_init_script(RECORD_VIOLATIONS)
    base = live_stack.base_url
    user, team = e2e_user

    log_in(page, base, user.username)
    taskset_id = create_taskset(page, base, team.slug, name="Sine waves")
    experiment_id = create_experiment(page, base, team.slug, name="CSP check")
    run_id = launch_run(
        page, base, team.slug, experiment="CSP check", taskset="Sine waves",
        fields={"algorithm": "maml", "meta_batch": 2, "iterations": 20, "eval_interval": 10,
                "queue": "cpu", "device": "cpu"},
        advanced={"eval_tasks": 5, "checkpoint_interval": 20},
    )  # fmt: skip
    _wait_succeeded(run_id)
    page.wait_for_function("() => document.getElementById('run-status').dataset.status === 'succeeded'")
    page.wait_for_function("() => !!document.querySelector('#chart-loss canvas')")
    # The bar's width comes from data-width through the CSSOM (no style attribute).
    page.wait_for_function("() => document.querySelector('#run-progress > div').style.width === '100%'")

    pages = [
        f"/t/{team.slug}/runs/",
        f"/t/{team.slug}/experiments/",
        f"/experiments/{experiment_id}/",
        f"/t/{team.slug}/tasksets/",
        f"/tasksets/{taskset_id}/",
        f"/t/{team.slug}/team/",
        "/teams/",
        f"/runs/{run_id}/",
        f"/t/{team.slug}/runs/compare/?ids={run_id}",
        f"/t/{team.slug}/models/",
        f"/t/{team.slug}/models/upload/",
        f"/t/{team.slug}/compare/",
    ]
    from apps.registry.models import MetaModel

    model = MetaModel.objects.filter(team=team).first()
    if model is not None:
        pages += [f"/models/{model.pk}/", f"/models/{model.pk}/adapt/"]
    for path in pages:
        _visit(page, base + path)
    # The launch form's htmx swap, once more under the policy.
    _visit(page, f"{base}/t/{team.slug}/runs/new/")
    with page.expect_response(re.compile(r"/runs/new/")):
        page.select_option("#id_algorithm", "protonet")
    page.wait_for_load_state("networkidle")
    # A refused launch swaps the form back with its errors: htmx settles no style
    # attribute, and the nested settings request does not inherit hx-disabled-elt.
    page.fill("#id_iterations", "0")
    with page.expect_response(lambda r: r.request.method == "POST" and "/runs/new/" in r.url):
        page.click("#launch-form button[type=submit]")
    page.wait_for_load_state("networkidle")
    assert "greater than or equal to" in page.inner_text("#launch-form")

    assert _problems(page.console_log) == []
