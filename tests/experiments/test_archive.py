"""Archiving runs: members archive ended runs (all or none, each an event naming
who), lists and searches leave them out unless asked, and a restore brings them
back as they were. Run on PostgreSQL and on SQLite."""

from __future__ import annotations

import html
import re

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from django.urls import reverse

from apps.experiments import selectors
from apps.experiments.compare_selectors import compare_search_runs
from apps.experiments.listing.selectors import ARCHIVED_ONLY, ARCHIVED_TOO, run_page_for_team
from apps.experiments.models import Run, RunEvent, RunStatus
from apps.experiments.services import MAX_ARCHIVE_RUNS, runs_archive, runs_restore
from tests.factories import (
    ExperimentFactory,
    RunFactory,
    TaskSetVersionFactory,
    metric_points,
    metric_points_add,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def history(team_roles):
    """Four ended runs and a running one in one experiment, and another team's run."""
    team, users = team_roles
    experiment = ExperimentFactory(team=team, created_by=users["member"], name="Tidy")
    version = TaskSetVersionFactory(taskset__team=team)
    runs = [
        RunFactory(experiment=experiment, taskset_version=version, status=status)
        for status in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.SUCCEEDED)
    ]
    running = RunFactory(experiment=experiment, taskset_version=version, status=RunStatus.RUNNING)
    other = RunFactory(status=RunStatus.SUCCEEDED)
    return team, users, runs, running, other


def _ids(page) -> list[int]:
    return sorted(run.pk for run in page.runs)


def _events(run) -> list[tuple[str, str]]:
    return list(RunEvent.objects.filter(run=run).values_list("kind", "message"))


# -- the service ---------------------------------------------------------------------


def test_archive_hides_ended_runs_and_restore_brings_them_back(history):
    team, users, runs, running, _other = history
    metric_points_add(runs[0], [("loss", 1, 0.5)])
    changed = runs_archive(team=team, run_ids=[runs[1].pk, runs[0].pk], actor=users["member"])
    assert [run.pk for run in changed] == [runs[0].pk, runs[1].pk]
    assert all(run.archived_at is not None for run in Run.objects.filter(pk__in=[runs[0].pk, runs[1].pk]))
    assert _events(runs[0]) == [("archived", "Archived by member.")]
    listed = run_page_for_team(team=team, filters={"kind": "all"})
    assert _ids(listed) == sorted([runs[2].pk, runs[3].pk, running.pk]) and listed.count == 3
    only = run_page_for_team(team=team, filters={"kind": "all", "archived": ARCHIVED_ONLY})
    assert _ids(only) == [runs[0].pk, runs[1].pk]
    every = run_page_for_team(team=team, filters={"kind": "all", "archived": ARCHIVED_TOO})
    assert len(every.runs) == 5

    runs_restore(team=team, run_ids=[runs[0].pk], actor=users["admin"])
    restored = Run.objects.get(pk=runs[0].pk)
    assert restored.archived_at is None and restored.status == RunStatus.SUCCEEDED
    assert _events(runs[0])[-1] == ("restored", "Restored by admin.")
    assert metric_points(runs[0], "loss") == {1: 0.5}  # kept as it was


def test_a_repeated_request_changes_nothing(history):
    team, users, runs, _running, _other = history
    runs_archive(team=team, run_ids=[runs[0].pk], actor=users["member"])
    stamp = Run.objects.get(pk=runs[0].pk).archived_at
    runs_archive(team=team, run_ids=[runs[0].pk, runs[0].pk], actor=users["member"])
    assert Run.objects.get(pk=runs[0].pk).archived_at == stamp
    assert [kind for kind, _ in _events(runs[0])] == ["archived"]
    runs_restore(team=team, run_ids=[runs[1].pk], actor=users["member"])  # never archived
    assert _events(runs[1]) == []


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        (lambda runs, running, other: [runs[0].pk, running.pk], "#{running} is running"),
        (lambda runs, running, other: [runs[0].pk, other.pk], "Not runs of this team: #{other}."),
        (lambda runs, running, other: [], "Tick the runs to archive."),
        (lambda runs, running, other: list(range(1, MAX_ARCHIVE_RUNS + 2)), "At most 200 runs at a time"),
    ],
)
def test_a_refused_request_names_ids_and_changes_nothing(history, ids, message):
    team, users, runs, running, other = history
    with pytest.raises(ValidationError) as refused:
        runs_archive(team=team, run_ids=ids(runs, running, other), actor=users["member"])
    assert message.format(running=running.pk, other=other.pk) in refused.value.message_dict["ids"][0]
    assert not Run.objects.filter(archived_at__isnull=False).exists()
    assert not RunEvent.objects.exists()


def test_viewers_and_outsiders_cannot_archive(history):
    team, users, runs, _running, _other = history
    with pytest.raises(PermissionDenied):
        runs_archive(team=team, run_ids=[runs[0].pk], actor=users["viewer"])
    with pytest.raises(Http404):
        runs_archive(team=team, run_ids=[runs[0].pk], actor=users["outsider"])
    assert not Run.objects.filter(archived_at__isnull=False).exists()


def test_the_compare_search_and_the_experiment_list_leave_archived_runs_out(history):
    team, users, runs, _running, _other = history
    runs_archive(team=team, run_ids=[runs[0].pk, runs[1].pk], actor=users["member"])
    found = {run.pk for run in compare_search_runs(team=team, query="status:succeeded OR status:failed")}
    assert found == {runs[3].pk}
    (experiment,) = selectors.experiment_list_for_team(team=team)
    assert experiment.run_count == 3


# -- the pages ------------------------------------------------------------------------


def _get(client, user, url, **query) -> str:
    client.force_login(user)
    response = client.get(url, query)
    assert response.status_code == 200
    return html.unescape(response.content.decode())


def _list_url(team) -> str:
    return reverse("experiments:run-list", kwargs={"team_slug": team.slug})


def _post(client, user, team, **data):
    client.force_login(user)
    url = reverse("experiments:runs-archive", kwargs={"team_slug": team.slug})
    return client.post(url, data, follow=True)


def test_ticked_runs_are_archived_from_the_list_and_go_back_there(client, history):
    team, users, runs, _running, _other = history
    back = f"{_list_url(team)}?kind=all&sort=id"
    ids = f"{runs[0].pk},{runs[2].pk}"
    response = _post(client, users["member"], team, ids=ids, action="archive", next=back)
    body = html.unescape(response.content.decode())
    assert response.redirect_chain == [(back, 302)]
    assert f"Archived 2 runs: #{runs[0].pk}, #{runs[2].pk}." in body
    assert f'data-run-id="{runs[0].pk}"' not in body and f'data-run-id="{runs[1].pk}"' in body
    note = re.search(r'<p class="muted" id="archived-hidden">(.*?)</p>', body, re.S).group(1)
    assert "2 archived runs not shown." in note and "archived=only" in note

    shown = _get(client, users["viewer"], _list_url(team), kind="all", archived="only")
    assert re.findall(r'data-run-id="(\d+)"', shown) == [str(runs[2].pk), str(runs[0].pk)]
    assert f'data-archived="{runs[0].pk}"' in shown
    assert 'data-archive-form="restore"' not in shown  # viewers get no buttons


def test_the_list_offers_restore_on_archived_runs_and_archive_elsewhere(client, history):
    team, users, runs, _running, _other = history
    runs_archive(team=team, run_ids=[runs[0].pk], actor=users["member"])
    plain = _get(client, users["member"], _list_url(team))
    assert 'data-archive-form="archive"' in plain and 'data-archive-form="restore"' not in plain
    only = _get(client, users["member"], _list_url(team), archived="only")
    assert 'data-archive-form="restore"' in only and 'data-archive-form="archive"' not in only
    both = _get(client, users["member"], _list_url(team), archived="include")
    assert 'data-archive-form="restore"' in both and 'data-archive-form="archive"' in both


def test_an_empty_list_with_archived_runs_says_so_instead_of_the_launch_guide(client, team_roles):
    team, users = team_roles
    run = RunFactory(experiment__team=team, status=RunStatus.SUCCEEDED)
    runs_archive(team=team, run_ids=[run.pk], actor=users["member"])
    body = _get(client, users["member"], _list_url(team))
    assert 'id="launch-guide"' not in body
    assert "1 archived run not shown." in body and ">Show it</a>" in body


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"ids": "12,x", "action": "archive"}, "ids: Give run numbers separated by commas"),
        ({"ids": "", "action": "archive"}, "ids: This field is required."),
        ({"ids": "1", "action": "delete"}, "action: Select a valid choice."),
    ],
)
def test_a_bad_post_shows_a_message_naming_the_field(client, history, data, message):
    team, users, _runs, _running, _other = history
    response = _post(client, users["member"], team, **data)
    assert response.redirect_chain == [(_list_url(team), 302)]
    assert message in html.unescape(response.content.decode())


def test_a_refused_archive_shows_why_and_an_offsite_next_is_ignored(client, history):
    team, users, runs, running, _other = history
    response = _post(
        client,
        users["member"],
        team,
        ids=f"{runs[0].pk},{running.pk}",
        action="archive",
        next="https://evil.example/",
    )
    assert response.redirect_chain == [(_list_url(team), 302)]
    assert f"#{running.pk} is running. Cancel or untick it first." in html.unescape(response.content.decode())
    assert Run.objects.get(pk=runs[0].pk).archived_at is None


def test_viewers_get_403_and_get_is_refused(client, history):
    team, users, runs, _running, _other = history
    client.force_login(users["viewer"])
    url = reverse("experiments:runs-archive", kwargs={"team_slug": team.slug})
    assert client.post(url, {"ids": str(runs[0].pk), "action": "archive"}).status_code == 403
    assert client.get(url).status_code == 405
    assert Run.objects.get(pk=runs[0].pk).archived_at is None


def test_the_run_page_archives_and_restores(client, history):
    team, users, runs, running, _other = history
    page = reverse("experiments:run-detail", args=[runs[0].pk])
    body = _get(client, users["member"], page)
    assert '<button type="submit" id="archive-run">Archive</button>' in body
    assert 'id="run-archived"' not in body
    going = reverse("experiments:run-detail", args=[running.pk])
    assert 'id="archive-run"' not in _get(client, users["member"], going)
    assert 'id="archive-run"' not in _get(client, users["viewer"], page)
    response = _post(client, users["member"], team, ids=str(runs[0].pk), action="archive", next=page)
    body = html.unescape(response.content.decode())
    assert response.redirect_chain == [(page, 302)]
    assert 'id="run-archived"' in body and '<button type="submit" id="archive-run">Restore</button>' in body
    _post(client, users["member"], team, ids=str(runs[0].pk), action="restore", next=page)
    assert Run.objects.get(pk=runs[0].pk).archived_at is None


def test_the_experiment_page_hides_archived_runs_until_asked(client, history):
    team, users, runs, _running, _other = history
    runs_archive(team=team, run_ids=[runs[0].pk], actor=users["member"])
    url = reverse("experiments:experiment-detail", args=[runs[0].experiment_id])
    body = _get(client, users["viewer"], url)
    assert f'data-run-id="{runs[0].pk}"' not in body and "1 archived run not shown." in body
    shown = _get(client, users["viewer"], url, archived="include")
    assert f'data-run-id="{runs[0].pk}"' in shown and 'id="hide-archived"' in shown
