"""A member tidies the team's history in the browser: ticks two ended runs and a
running one, "Archive (3)" is refused naming the running run, unticks it, archives
the two (a second tab open on the list drops them without a reload), finds them
under "Show them", and restores one from the run's page."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.ui import log_in

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def test_a_member_archives_and_restores_runs(live_stack, e2e_page, e2e_user):
    from apps.experiments.models import Run, RunStatus
    from tests.factories import ExperimentFactory, RunFactory, TaskSetVersionFactory

    page, shots, base = e2e_page, e2e_page.shots, live_stack.base_url
    user, team = e2e_user
    version = TaskSetVersionFactory(taskset__team=team, taskset__created_by=user, taskset__name="Sines")
    experiment = ExperimentFactory(team=team, created_by=user, name="Sine study")

    def run(status):
        return RunFactory(experiment=experiment, taskset_version=version, launched_by=user, status=status)

    failed, done, going, kept = (
        run(RunStatus.FAILED),
        run(RunStatus.SUCCEEDED),
        run(RunStatus.RUNNING),
        run(RunStatus.SUCCEEDED),
    )

    log_in(page, base, user.username)
    page.goto(f"{base}/t/{team.slug}/runs/")
    button = page.locator('[data-archive-form="archive"] button')
    expect(button).to_be_disabled()
    for target in (failed, done, going):
        page.check(f'input[data-select-run="{target.pk}"]')
    expect(button).to_have_text("Archive (3)")
    button.click()
    expect(page.locator(".messages .msg-error")).to_contain_text(
        f"#{going.pk} is running. Cancel or untick it first."
    )
    assert not Run.objects.filter(archived_at__isnull=False).exists()

    watcher = page.context.new_page()  # another dashboard on the list, live
    watcher.goto(f"{base}/t/{team.slug}/runs/")
    expect(watcher.locator("body[data-socket=open]")).to_have_count(1)
    expect(watcher.locator("tr[data-run-id]")).to_have_count(4)

    for target in (failed, done):
        page.check(f'input[data-select-run="{target.pk}"]')
    expect(button).to_have_text("Archive (2)")
    button.click()
    expect(page.locator(".messages .msg-success")).to_contain_text(
        f"Archived 2 runs: #{failed.pk}, #{done.pk}."
    )
    expect(page.locator("tr[data-run-id]")).to_have_count(2)
    expect(page.locator("#archived-hidden")).to_contain_text("2 archived runs not shown.")
    shots.take(page, "archived-hidden")
    expect(watcher.locator("tr[data-run-id]")).to_have_count(2)
    expect(watcher.locator("#archived-hidden")).to_contain_text("2 archived runs not shown.")
    shots.take(watcher, "archived-live-in-another-tab")
    watcher.close()

    page.click("#show-archived")
    page.wait_for_url(re.compile(r"archived=only"))
    expect(page.locator("tr[data-run-id]")).to_have_count(2)
    expect(page.locator(f'[data-archived="{done.pk}"]')).to_be_visible()
    shots.take(page, "archived-only")

    page.goto(f"{base}/runs/{done.pk}/")
    expect(page.locator("#run-archived")).to_contain_text("Archived on")
    page.click("#archive-run")
    expect(page.locator(".messages .msg-success")).to_contain_text(f"Restored 1 run: #{done.pk}.")
    expect(page.locator("#archive-run")).to_have_text("Archive")
    page.goto(f"{base}/t/{team.slug}/runs/")
    expect(page.locator("tr[data-run-id]")).to_have_count(3)
    assert {r.pk for r in Run.objects.filter(archived_at__isnull=True)} == {done.pk, going.pk, kept.pk}
