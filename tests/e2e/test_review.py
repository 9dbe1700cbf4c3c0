"""The model review, end to end in Chromium on the real stack (see conftest.py).

A person meta-trains a short sinusoid MAML from the browser, opens the meta-model its
success registered, adapts it to a new task typed on the page and watches the curve
grow, runs the 600-task evaluation, does the same for a short Reptile run, compares
the two side by side, records an approve verdict and moves ``production``.

Sizes: the training runs are a few hundred iterations (seconds on a warm worker);
the typed adaptation (the form's maximum of 100 inner steps, well under a second)
is queued behind the Reptile run on the single worker, so that its page is open
and connected before the first inner step; the curve's growth is recorded in the
page by a MutationObserver installed before any of its scripts. Each 600-task
evaluation takes a few seconds.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import time

import pytest

from tests.e2e.conftest import ROOT
from tests.e2e.ui import (
    create_experiment,
    create_taskset,
    expect_adapted_status,
    expect_status,
    fill_adapt_form,
    launch_run,
    log_in,
    open_compare,
    pick_for_compare,
    read_curve,
    submit_adapt,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

DOCS_SHOTS = ROOT / "docs" / "screenshots"
TRAIN = {"meta_batch": 4, "iterations": 1500, "eval_interval": 500, "queue": "cpu", "device": "cpu"}
TRAIN_ADVANCED = {"eval_tasks": 20, "checkpoint_interval": 500}
#: The typed task: a sinusoid the model has not seen, 5 support and 5 query points.
AMPLITUDE, PHASE = 2.5, 0.8
SUPPORT = [(x, AMPLITUDE * math.sin(x - PHASE)) for x in (-4.0, -2.2, -0.5, 1.3, 3.6)]
QUERY = [(x, AMPLITUDE * math.sin(x - PHASE)) for x in (-3.1, -1.4, 0.4, 2.2, 4.4)]
LIVE_STEPS = 100
#: Long enough (about 3x the time from its launch to the typed adaptation's submission
#: on a 2-core machine) that the adaptation always waits in the queue behind it.
REPTILE_ITERATIONS = 4000

#: Installed in every document before its scripts: logs each new last inner step drawn
#: by the adapted page's curve (data-last-step on #adapt-curve; -1: no point yet) into
#: window.__curveLog.
CURVE_RECORDER = """
window.__curveLog = [];
new MutationObserver(records => {
  for (const r of records) {
    if (r.target.id === "adapt-curve" && r.attributeName === "data-last-step") {
      const step = r.target.dataset.lastStep === "" ? -1 : Number(r.target.dataset.lastStep);
      const log = window.__curveLog;
      if (!log.length || log[log.length - 1] !== step) log.push(step);
    }
  }
}).observe(document, {subtree: true, attributes: true, attributeFilter: ["data-last-step"]});
"""


def _meta_model_of(run_id: int, timeout: float = 30.0):
    """The meta-model registered on the run's success (on commit, by the worker)."""
    from apps.registry.models import MetaModel

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        meta = MetaModel.objects.filter(training_run_id=run_id).first()
        if meta is not None:
            return meta
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} succeeded but no meta-model was registered in {timeout:.0f} s")


def _launch(page, base, team, *, algorithm: str, iterations: int | None = None) -> int:
    return launch_run(
        page,
        base,
        team.slug,
        experiment="Review test",
        taskset="Sine waves",
        fields={**TRAIN, "algorithm": algorithm, "iterations": iterations or TRAIN["iterations"]},
        advanced=TRAIN_ADVANCED,
    )


def _train(page, base, team, *, algorithm: str) -> int:
    run_id = _launch(page, base, team, algorithm=algorithm)
    expect_status(page, "succeeded", timeout_s=90)
    return run_id


def _open_meta_model(page, base, team, meta) -> None:
    """From the team's model list to the meta-model's page, as a person would."""
    page.goto(f"{base}/t/{team.slug}/models/")
    page.click(f'#model-{meta.name} [data-version="{meta.version}"] a')
    page.wait_for_url(re.compile(rf"/models/{meta.pk}/$"))


def _evaluate_600(page, base, meta) -> int:
    """Run the 600-task evaluation from the adapt page; returns the adapted model's id."""
    fill_adapt_form(page, base, meta.pk, target="batch")
    submit_adapt(page)
    expect_adapted_status(page, "succeeded", timeout_s=90)
    assert page.locator("#adapt-after").inner_text().strip()
    return int(page.get_attribute("#adapted-live", "data-adapted-id"))


def test_adapt_evaluate_compare_and_approve(live_stack, e2e_page, e2e_user):
    from apps.adaptations.models import AdaptedModel
    from apps.registry.models import ModelAlias

    page, shots = e2e_page, e2e_page.shots
    page.add_init_script(CURVE_RECORDER)
    base = live_stack.base_url
    user, team = e2e_user
    started = time.monotonic()

    log_in(page, base, user.username)
    create_taskset(page, base, team.slug, name="Sine waves")
    create_experiment(page, base, team.slug, name="Review test")

    # 1. Meta-train a short sinusoid MAML; its success registers a meta-model.
    maml_run = _train(page, base, team, algorithm="maml")
    shots.take(page, "maml-trained")
    maml = _meta_model_of(maml_run)
    # The Reptile run is launched now: while it trains, the single worker holds the
    # typed adaptation in the queue, so its page is open before the first inner step.
    reptile_run = _launch(page, base, team, algorithm="reptile", iterations=REPTILE_ITERATIONS)
    _open_meta_model(page, base, team, maml)
    assert page.inner_text("#metamodel-algorithm").strip() == "maml"
    assert page.get_attribute("#lineage-run", "href").endswith(f"/runs/{maml_run}/")
    shots.take(page, "maml-meta-model")

    # 2. Adapt it to a new task typed on the page, and watch the curve grow.
    page.click("#adapt-button")
    page.wait_for_url(re.compile(rf"/models/{maml.pk}/adapt/$"))
    fill_adapt_form(page, base, maml.pk, target="custom", support=SUPPORT, query=QUERY, steps=LIVE_STEPS)
    shots.take(page, "typed-task")
    submit_adapt(page)
    first_status = page.get_attribute("#adapted-live", "data-status")
    expect_adapted_status(page, "succeeded", timeout_s=90)
    page.wait_for_function(
        "n => Number(document.getElementById('adapt-curve').dataset.lastStep) === n", arg=LIVE_STEPS
    )
    grew = page.evaluate("() => window.__curveLog")
    live = read_curve(page)
    assert first_status == "queued", first_status
    assert live["last_step"] == LIVE_STEPS and live["canvas"], live
    # The page was open before the first step, so every point arrived live.
    assert live["points"] == LIVE_STEPS + 1, live
    assert {"support_loss", "query_loss"} <= set(live["series"]), live
    assert grew == sorted(grew) and grew[-1] == LIVE_STEPS, grew
    # Drawn from live events as they came: at least once before the last inner step.
    assert any(0 <= step < LIVE_STEPS for step in grew), f"the curve was never seen mid-way: {grew}"
    # After a reload the page draws what the database holds: every inner step.
    page.reload()
    page.wait_for_function(
        "n => Number(document.getElementById('adapt-curve').dataset.points) === n", arg=LIVE_STEPS + 1
    )
    typed = AdaptedModel.objects.get(pk=int(page.get_attribute("#adapted-live", "data-adapted-id")))
    assert typed.metric == "mse" and typed.after < typed.before, (typed.before, typed.after)
    page.wait_for_timeout(300)  # let uPlot settle before the picture
    adapted_shot = shots.take(page, "typed-task-adapted")

    # 3. The 600-task evaluation.
    maml_eval = _evaluate_600(page, base, maml)
    shots.take(page, "maml-600-tasks")

    # 4. The Reptile run (finished by now, or soon), evaluated the same way.
    page.goto(f"{base}/runs/{reptile_run}/")
    expect_status(page, "succeeded", timeout_s=90)
    reptile = _meta_model_of(reptile_run)
    reptile_eval = _evaluate_600(page, base, reptile)
    shots.take(page, "reptile-600-tasks")

    # 5. Side by side: curves, distributions, the paired test.
    open_compare(page, base, team.slug)
    pick_for_compare(page, meta_model_ids=[maml.pk, reptile.pk], items=2)
    assert re.search(rf"[?&]m={maml.pk}\b", page.url) and re.search(rf"[?&]m={reptile.pk}\b", page.url)
    rows = page.locator('[data-testid="compare-row"]')
    assert [int(rows.nth(i).get_attribute("data-adapted-id")) for i in range(2)] == [maml_eval, reptile_eval]
    assert rows.nth(1).get_attribute("data-outcome") in {"better", "worse", "not significant"}
    assert page.get_attribute("#compare-hist", "data-series") == "2"
    assert page.locator("#compare-hist canvas").count() == 1
    assert page.locator('[data-testid="boxplot"]').count() == 2
    page.reload()  # the pushed URL is the page
    page.wait_for_selector("#compare-curves canvas")
    assert page.locator('[data-testid="compare-row"]').count() == 2
    page.wait_for_timeout(300)
    compare_shot = shots.take(page, "side-by-side")

    # 6. production needs an approve verdict: refused first, then approve and move it.
    _open_meta_model(page, base, team, maml)
    page.fill("#alias-form input[name=alias]", "production")
    page.click("#move-alias")
    expect_refusal = page.locator("#aliases .errorlist, #aliases .field-error")
    expect_refusal.first.wait_for()
    assert "approve" in expect_refusal.first.inner_text().lower()
    assert not ModelAlias.objects.filter(alias="production").exists()
    panel = f"#reviews-meta-{maml.pk}"
    page.check(f"{panel} input[name=verdict][value=approve]")
    page.fill(f"{panel} textarea[name=comment]", "Adapts to a typed task; evaluated on the 600 tasks.")
    page.click('[data-testid="record-verdict"]')
    page.locator('[data-testid="review-history"] li[data-verdict="approve"]').wait_for()
    page.fill("#alias-form input[name=alias]", "production")
    page.click("#move-alias")
    page.locator("#alias-production").wait_for()
    alias = ModelAlias.objects.get(alias="production")
    assert alias.meta_model_id == maml.pk
    assert alias.moves.get().moved_by_id == user.pk
    shots.take(page, "approved-production")

    # The comparison shows the verdict now.
    page.goto(f"{base}/t/{team.slug}/compare/?m={maml.pk}&m={reptile.pk}")
    assert page.locator('[data-testid="compare-row"]').first.locator('[data-verdict="approve"]').count() == 1

    if os.environ.get("METAWEB_UPDATE_SCREENSHOTS") == "1":  # refresh the README's pictures on request
        DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(adapted_shot, DOCS_SHOTS / "review_adapted.png")
        shutil.copyfile(compare_shot, DOCS_SHOTS / "review_compare.png")
    elapsed = time.monotonic() - started
    print(f"review e2e: {elapsed:.1f} s in the browser; the page opened {first_status}, curve steps {grew}")
