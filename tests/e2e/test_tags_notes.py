"""A member tags a run and writes its note in the browser: the chips and the
rendered note swap in place (htmx, no reload), a bad tag name is shown on its
field, hostile Markdown stays inert, and a tag chip links to the ``tag:`` search."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.ui import log_in

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

NOTE = """# Findings

Second-order MAML beats the first-order run on **5-shot** sines.

- inner lr `0.01`, 5 steps
- see [the MAML paper](https://arxiv.org/abs/1703.03400)

```python
loss = meta_loss(params, batch)
```

<img src=x onerror="window.__xss = 1"> [click](javascript:window.__xss=1)
"""


def test_a_member_tags_a_run_and_writes_its_note(live_stack, e2e_page, e2e_user):
    from apps.experiments.models import RunStatus
    from tests.factories import ExperimentFactory, RunFactory, TaskSetVersionFactory

    page, shots, base = e2e_page, e2e_page.shots, live_stack.base_url
    user, team = e2e_user
    version = TaskSetVersionFactory(taskset__team=team, taskset__created_by=user, taskset__name="Sines")
    experiment = ExperimentFactory(team=team, created_by=user, name="Sine study")
    run = RunFactory(
        experiment=experiment, taskset_version=version, launched_by=user, status=RunStatus.SUCCEEDED
    )
    other = RunFactory(experiment=experiment, taskset_version=version, launched_by=user)

    log_in(page, base, user.username)
    page.goto(f"{base}/runs/{run.pk}/")
    page.evaluate("window.__sameDocument = true")

    page.fill("#tag-name", "Baseline")
    page.click("#tag-add")
    expect(page.locator('#tag-list [data-tag="baseline"]')).to_be_visible()
    page.fill("#tag-name", "two words")
    page.click("#tag-add")
    expect(page.locator("#tag-name-error")).to_contain_text("without spaces")
    expect(page.locator("#tag-name")).to_have_value("two words")
    page.fill("#tag-name", "paper-v2")
    page.click("#tag-add")
    expect(page.locator('#tag-list [data-tag="paper-v2"]')).to_be_visible()
    expect(page.locator("#tag-name-error")).to_have_count(0)

    page.click("#note-edit summary")
    page.fill("#note-text", NOTE)
    page.click("#note-save")
    body = page.locator("#note-body")
    expect(body.locator("h1")).to_have_text("Findings")
    expect(body.locator("li")).to_have_count(2)
    expect(body.locator('a[href="https://arxiv.org/abs/1703.03400"]')).to_have_attribute(
        "rel", "noopener noreferrer"
    )
    expect(body.locator("pre code")).to_contain_text("loss = meta_loss(params, batch)")
    assert body.locator("img, script, a[href^='javascript' i]").count() == 0
    expect(page.locator("#note-updated")).to_contain_text(f"Edited by {user.username}")
    assert page.evaluate("window.__sameDocument === true && window.__xss === undefined")
    shots.take(page, "run-tags-and-note")

    page.reload()  # what was saved is what the page shows
    expect(page.locator("#note-body h1")).to_have_text("Findings")
    assert page.evaluate("window.__xss === undefined")

    page.locator('#tag-list [data-tag="paper-v2"] button').click()
    expect(page.locator('#tag-list [data-tag="paper-v2"]')).to_have_count(0)

    page.goto(f"{base}/runs/{other.pk}/")  # the team's tags are suggested
    expect(page.locator('#team-tags option[value="baseline"]')).to_have_count(1)
    expect(page.locator('#team-tags option[value="paper-v2"]')).to_have_count(1)

    page.goto(f"{base}/experiments/{experiment.pk}/")
    page.fill("#tag-name", "sines")
    page.click("#tag-add")
    expect(page.locator('#tag-list [data-tag="sines"]')).to_be_visible()
    chip = page.locator(f'#run-row-{run.pk} [data-tag="baseline"]')
    expect(chip).to_be_visible()
    shots.take(page, "experiment-run-rows")

    page.goto(f"{base}/t/{team.slug}/experiments/")
    page.locator(f'#experiment-row-{experiment.pk} [data-tag="sines"]').click()
    expect(page.locator("#tag-filter")).to_contain_text("Experiments tagged sines")
    expect(page.locator(f"#experiment-row-{experiment.pk}")).to_be_visible()
    shots.take(page, "experiments-tagged")

    page.goto(f"{base}/experiments/{experiment.pk}/")
    page.locator(f'#run-row-{run.pk} [data-tag="baseline"]').click()
    page.wait_for_url(f"{base}/t/{team.slug}/runs/?q=tag%3Abaseline")


def test_a_viewer_reads_tags_and_note_without_controls(live_stack, e2e_page, e2e_user):
    from apps.experiments import services
    from apps.teams.models import Role
    from tests.factories import (
        ExperimentFactory,
        MembershipFactory,
        RunFactory,
        TaskSetVersionFactory,
        UserFactory,
    )

    page, base = e2e_page, live_stack.base_url
    admin, team = e2e_user
    viewer = MembershipFactory(team=team, role=Role.VIEWER, user=UserFactory(username="vera")).user
    version = TaskSetVersionFactory(taskset__team=team, taskset__created_by=admin)
    run = RunFactory(experiment=ExperimentFactory(team=team, created_by=admin), taskset_version=version)
    services.tag_add(target=run, actor=admin, name="baseline")
    services.note_update(target=run, actor=admin, text="## Read me\n\n- one point")

    log_in(page, base, viewer.username)
    page.goto(f"{base}/runs/{run.pk}/")
    expect(page.locator('#tag-list [data-tag="baseline"] a')).to_be_visible()
    expect(page.locator("#note-body h2")).to_have_text("Read me")
    for control in ("#tag-name", "#tag-add", "#note-edit", "#tag-list button"):
        expect(page.locator(control)).to_have_count(0)
    page.shots.take(page, "viewer-run-page")
