"""The run list as a team's search page, in the browser, on the seeded demo team
with 30 finished runs: typing a search swaps the list and the URL; a syntax error
shows under the box; the val_loss column is there unasked, a config column is
picked, and the list is sorted by the metric; Next pages by cursor;
a view is saved and comes back as a chip; ticking two runs enables "Compare (2)",
which opens the compare URL with their ids."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.ui import PASSWORD

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def _seed() -> list[int]:
    from django.core.management import call_command

    from apps.experiments.models import Experiment, Run, RunStatus
    from apps.tasksets.models import TaskSet
    from apps.teams.models import Team
    from tests.factories import RunFactory, TaskSetVersionFactory

    call_command("seed_demo")
    team = Team.objects.get(slug="demo")
    experiment = Experiment.objects.get(team=team)
    version = TaskSet.objects.filter(team=team).first().versions.first() or TaskSetVersionFactory(
        taskset__team=team
    )
    ids = []
    for i in range(30):
        loss = None if i % 7 == 6 else round(0.05 * (i % 10) + 0.1, 2)
        summary = {"val": {"val_loss": loss}, "metrics": {"loss": 0.5}} if loss is not None else {}
        run = RunFactory(
            experiment=experiment,
            taskset_version=version,
            status=RunStatus.SUCCEEDED if loss is not None else RunStatus.FAILED,
            algorithm=("maml", "reptile", "protonet")[i % 3],
            config={"inner_lr": [0.01, 0.1, 0.4][i % 3], "inner_steps": 1 + i % 5},
            summary=summary,
            step=20,
        )
        ids.append(run.pk)
    assert Run.objects.filter(team=team).count() == 30
    return ids


def test_search_columns_pages_views_and_compare(live_stack, e2e_page, monkeypatch):
    monkeypatch.setenv("METAWEB_DEMO_PASSWORD", PASSWORD)
    _seed()
    page, shots, base = e2e_page, e2e_page.shots, live_stack.base_url
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_username", "demo")
    page.fill("#id_password", PASSWORD)
    page.click("form button[type=submit]")
    page.wait_for_url(lambda url: "/accounts/login/" not in url)

    page.goto(f"{base}/t/demo/runs/")
    expect(page.locator("#run-count")).to_contain_text("30 training runs")
    expect(page.locator("tr[data-run-id]")).to_have_count(25)
    shots.take(page, "run-list")

    page.fill("#run-search", "algorithm:maml metric.val_loss<0.3")
    expect(page.locator("#run-count")).to_contain_text("matching this search")
    expect(page).to_have_url(re.compile(r"q=algorithm%3Amaml"))
    assert page.locator("tr[data-run-id]").count() < 10

    page.fill("#run-search", "algorithm:maml metric.val_loss<")
    expect(page.locator("#search-error")).to_contain_text("position")
    shots.take(page, "search-error", full_page=False)

    page.fill("#run-search", "")
    expect(page.locator("#search-error")).to_have_count(0)
    expect(page.locator('th[data-column="metric.val_loss"]')).to_be_visible()  # shown unasked
    page.click("#column-picker summary")
    with page.expect_response(re.compile(r"/t/demo/runs/")):
        page.check('#column-picker input[value="config.inner_lr"]')
    expect(page.locator('th[data-column="config.inner_lr"]')).to_be_visible()
    page.click('a[data-sort="metric.val_loss"]')  # descending first
    page.wait_for_url(re.compile(r"sort=-metric.val_loss"))
    losses = page.locator('td[data-column="metric.val_loss"]')
    cells = losses.all_inner_texts()
    numbers = [float(c) for c in cells if c]
    assert numbers == sorted(numbers, reverse=True) and cells[0] == "0.55"
    shots.take(page, "sorted-by-metric")

    page.click("#run-pagination a[rel=next]")
    expect(page.locator("tr[data-run-id]")).to_have_count(5)
    expect(losses.last).to_have_text("")  # runs without the metric come last
    page.click("#run-pagination a[rel=prev]")
    expect(page.locator("tr[data-run-id]")).to_have_count(25)

    page.fill("#id_name", "Best losses")
    page.click("#saved-view-form button[type=submit]")
    expect(page.locator("#saved-views")).to_contain_text("Best losses")
    shots.take(page, "saved-view-chip", full_page=False)

    boxes = page.locator("input[data-select-run]")
    button = page.locator("[data-compare-button]")
    expect(button).to_be_disabled()
    first, second = (boxes.nth(i).get_attribute("data-select-run") for i in (0, 1))
    boxes.nth(0).check()
    expect(button).to_be_disabled()
    boxes.nth(1).check()
    expect(button).to_be_enabled()
    expect(button).to_have_text("Compare (2)")
    shots.take(page, "compare-selected", full_page=False)
    button.click()
    page.wait_for_url(re.compile(rf"/t/demo/runs/compare/\?ids={first},{second}$"))
