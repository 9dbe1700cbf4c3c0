"""The launch form in a browser: switching the algorithm or the task set swaps the
settings shown (htmx), keeps what was typed, and the run launches with them."""

from __future__ import annotations

import pytest

from tests.e2e.ui import await_launch_fields, log_in

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def _visible(page, name: str) -> bool:
    return page.locator(f'#launch-fields [data-field="{name}"]').count() == 1


def test_switching_algorithm_and_task_set_swaps_the_settings(live_stack, e2e_page, e2e_user):
    from apps.experiments.models import Run
    from tests.factories import ExperimentFactory, TaskSetVersionFactory

    page, shots = e2e_page, e2e_page.shots
    user, team = e2e_user
    experiment = ExperimentFactory(team=team, created_by=user, name="Swap study")
    sines = TaskSetVersionFactory(taskset__team=team, taskset__created_by=user, taskset__name="Sines")
    digits = TaskSetVersionFactory(
        taskset__team=team, taskset__created_by=user, taskset__name="Digits", taskset__family="digits"
    )
    log_in(page, live_stack.base_url, user.username)
    page.goto(f"{live_stack.base_url}/t/{team.slug}/runs/new/?taskset={sines.taskset_id}")
    assert page.input_value("#id_taskset") == str(sines.taskset_id)
    assert _visible(page, "inner_steps") and not _visible(page, "ways") and not _visible(page, "mnn_hidden")
    page.fill("#id_shots", "3")
    page.fill("#id_inner_steps", "4")
    shots.take(page, "maml-sines")

    page.select_option("#id_algorithm", "mnn")
    await_launch_fields(page)
    assert _visible(page, "mnn_hidden") and not _visible(page, "inner_steps")
    assert page.input_value("#id_shots") == "3"  # typed values survive the swap
    shots.take(page, "mnn-sines")

    page.select_option("#id_taskset", str(digits.taskset_id))
    page.select_option("#id_algorithm", "protonet")
    await_launch_fields(page)
    assert _visible(page, "ways") and not _visible(page, "mnn_hidden") and not _visible(page, "inner_lr")
    shots.take(page, "protonet-digits")

    page.select_option("#id_algorithm", "maml")
    await_launch_fields(page)
    assert page.input_value("#id_inner_steps") == "4"  # carried while hidden
    page.fill("#id_ways", "3")
    page.fill("#id_query", "2")
    page.fill("#id_iterations", "5")
    page.select_option("#id_device", "cpu")
    page.click("#submit-run")
    page.wait_for_url("**/runs/*/")
    run = Run.objects.get(experiment=experiment)
    assert (run.algorithm, run.taskset_version_id) == ("maml", digits.pk)
    assert (run.config["shots"], run.config["inner_steps"], run.config["ways"]) == (3, 4, 3)
