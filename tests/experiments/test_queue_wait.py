"""Why a queued run waits: its place in its queue, read from the database
(``selectors.run_queue_waits``), on the run page and in the run lists."""

from __future__ import annotations

import html

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils.html import strip_tags

from apps.experiments import selectors
from apps.experiments.models import RunStatus
from tests.factories import ExperimentFactory, RunFactory, TaskSetVersionFactory, TeamFactory

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def queues(team_roles):
    """Oldest first. cpu: running, finished, another team's queued run, then two of ours.
    gpu: a queued run created before the run that is running there."""
    team, users = team_roles
    experiment = ExperimentFactory(team=team, created_by=users["member"])
    version = TaskSetVersionFactory(taskset__team=team)
    other = ExperimentFactory(team=TeamFactory(name="Other", slug="other"))

    def run(status, queue="cpu", experiment=experiment, **extra):
        if experiment.team_id == team.pk:
            extra.setdefault("taskset_version", version)
        return RunFactory(experiment=experiment, status=status, queue=queue, **extra)

    made = {
        "cpu_running": run(RunStatus.RUNNING),
        "cpu_done": run(RunStatus.SUCCEEDED),
        "cpu_theirs": run(RunStatus.QUEUED, experiment=other),
        "cpu_first": run(RunStatus.QUEUED),
        "cpu_second": run(RunStatus.QUEUED),
        "gpu_queued": run(RunStatus.QUEUED, queue="gpu"),
        "gpu_running": run(RunStatus.RUNNING, queue="gpu"),
    }
    return team, users, made


def test_positions_across_two_queues_with_running_and_finished_runs(queues, django_assert_num_queries):
    _team, _users, made = queues
    with django_assert_num_queries(2):  # the queues' runs, and the waiting teams' turns
        waits = selectors.run_queue_waits(runs=made.values())
    assert set(waits) == {made[k].pk for k in ("cpu_theirs", "cpu_first", "cpu_second", "gpu_queued")}

    theirs, first, second, gpu = (
        waits[made[k].pk] for k in ("cpu_theirs", "cpu_first", "cpu_second", "gpu_queued")
    )
    # Another team's running run is ahead of theirs: counted, not named.
    assert (theirs.position, theirs.ahead, theirs.running) == (1, 1, 1)
    assert theirs.ahead_run_id is None and theirs.ahead_is_running
    # Ours: behind another team's queued run (counted, not named), then behind our own.
    assert (first.position, first.ahead, first.running, first.ahead_run_id) == (2, 2, 1, None)
    assert (second.position, second.ahead, second.ahead_run_id) == (3, 3, made["cpu_first"].pk)
    assert not second.ahead_is_running and second.queue_label == "CPU"
    # Only the gpu queue's runs count on the gpu queue.
    assert (gpu.position, gpu.ahead, gpu.running) == (1, 1, 1)
    assert gpu.ahead_run_id == made["gpu_running"].pk and gpu.ahead_is_running
    assert gpu.queue_label == "GPU"


def test_no_query_when_nothing_is_queued(queues, django_assert_num_queries):
    _team, _users, made = queues
    with django_assert_num_queries(0):
        assert selectors.run_queue_waits(runs=[made["cpu_running"], made["cpu_done"]]) == {}


def test_positions_move_when_the_runs_ahead_start_or_finish(queues):
    _team, _users, made = queues
    made["cpu_running"].status = RunStatus.SUCCEEDED
    made["cpu_running"].save(update_fields=["status"])
    made["cpu_theirs"].status = RunStatus.RUNNING
    made["cpu_theirs"].save(update_fields=["status"])
    wait = selectors.run_queue_waits(runs=[made["cpu_second"]])[made["cpu_second"].pk]
    assert (wait.position, wait.ahead, wait.running, wait.ahead_run_id) == (2, 2, 1, made["cpu_first"].pk)


def _text(response) -> str:
    """The page's text as a reader sees it, with the markup kept where tests look for attributes."""
    raw = response.content.decode()
    return " ".join(html.unescape(raw + " " + strip_tags(raw)).split())


@pytest.mark.parametrize("headers", [{}, HTMX])
def test_run_page_says_why_a_queued_run_waits(client, queues, headers):
    _team, users, made = queues
    client.force_login(users["viewer"])
    run = made["cpu_second"]
    body = _text(client.get(reverse("experiments:run-detail", args=[run.pk]), **headers))
    first = made["cpu_first"].pk
    assert f"Waiting behind run #{first} on the CPU queue · position 3, 1 running" in body
    assert f'data-queue-wait="{run.pk}"' in body
    if not headers:
        # The page listens to the team's socket while the run is queued, to keep it current.
        assert 'data-team-live="alpha"' in body


def test_run_page_of_a_running_run_says_nothing_about_waiting(client, queues):
    _team, users, made = queues
    client.force_login(users["viewer"])
    body = _text(client.get(reverse("experiments:run-detail", args=[made["cpu_running"].pk])))
    assert "data-queue-wait" not in body and "data-team-live" not in body


def test_gpu_run_waits_behind_the_running_one(client, queues):
    _team, users, made = queues
    client.force_login(users["viewer"])
    body = _text(client.get(reverse("experiments:run-detail", args=[made["gpu_queued"].pk])))
    running = made["gpu_running"].pk
    assert f"Waiting behind run #{running} (running) on the GPU queue · position 1, 1 running" in body


def test_run_list_rows_say_why_they_wait_in_constant_queries(client, queues):
    team, users, made = queues
    client.force_login(users["viewer"])
    url = reverse("experiments:run-list", kwargs={"team_slug": team.slug})
    body = _text(client.get(url))
    assert "Waiting behind another team's run on the CPU queue · position 2, 1 running" in body
    assert f"Waiting behind run #{made['cpu_first'].pk} on the CPU queue · position 3, 1 running" in body

    with CaptureQueriesContext(connection) as few:
        client.get(url, **HTMX)
    for _ in range(6):
        RunFactory(experiment=made["cpu_first"].experiment, taskset_version=made["cpu_first"].taskset_version)
    with CaptureQueriesContext(connection) as many:
        response = client.get(url, **HTMX)
    assert len(many) == len(few)
    assert "position 9" in _text(response)


def test_experiment_page_rows_say_why_they_wait(client, queues):
    _team, users, made = queues
    client.force_login(users["viewer"])
    body = _text(client.get(reverse("experiments:experiment-detail", args=[made["cpu_first"].experiment_id])))
    assert f"Waiting behind run #{made['cpu_first'].pk} on the CPU queue · position 3" in body
