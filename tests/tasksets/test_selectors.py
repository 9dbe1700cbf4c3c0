from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser
from django.http import Http404

from apps.tasksets.selectors import (
    taskset_get_visible,
    taskset_list_for_team,
    taskset_version_get_visible,
    taskset_version_latest,
    taskset_version_latest_for_team,
    taskset_version_list,
)
from tests.factories import RunFactory, TaskSetFactory, TaskSetVersionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def sets(team_roles):
    team, users = team_roles
    beta = users["outsider"].teams.get()
    sines = TaskSetFactory(team=team, name="Sines")
    for n in (1, 2, 3):
        TaskSetVersionFactory(taskset=sines, number=n)
    digits = TaskSetFactory(team=team, name="Digits", family="digits")
    TaskSetVersionFactory(taskset=digits, number=1)
    foreign = TaskSetFactory(team=beta, name="Foreign")
    TaskSetVersionFactory(taskset=foreign, number=1)
    return team, users, sines, digits, foreign


def test_list_for_team_annotates_versions(sets):
    team, _users, sines, digits, _foreign = sets
    rows = list(taskset_list_for_team(team=team))
    assert [(t.name, t.latest_number, t.version_count) for t in rows] == [("Digits", 1, 1), ("Sines", 3, 3)]
    assert [t.name for t in taskset_list_for_team(team=team, family="digits")] == ["Digits"]


@pytest.mark.parametrize("who", ["viewer", "member", "admin"])
def test_get_visible_for_members(sets, who):
    _team, users, sines, _digits, _foreign = sets
    assert taskset_get_visible(user=users[who], taskset_id=sines.pk) == sines


def test_get_visible_hides_other_teams_and_anonymous(sets):
    _team, users, sines, _digits, foreign = sets
    with pytest.raises(Http404):
        taskset_get_visible(user=users["viewer"], taskset_id=foreign.pk)
    with pytest.raises(Http404):
        taskset_get_visible(user=users["outsider"], taskset_id=sines.pk)
    with pytest.raises(Http404):
        taskset_get_visible(user=AnonymousUser(), taskset_id=sines.pk)
    with pytest.raises(Http404):
        taskset_get_visible(user=users["viewer"], taskset_id=999_999)


def test_version_get_visible_by_number_and_by_id(sets):
    _team, users, sines, _digits, foreign = sets
    v2 = taskset_version_get_visible(user=users["viewer"], taskset_id=sines.pk, number=2)
    assert (v2.taskset, v2.number) == (sines, 2)
    assert taskset_version_get_visible(user=users["viewer"], version_id=v2.pk) == v2
    with pytest.raises(Http404):
        taskset_version_get_visible(user=users["viewer"], taskset_id=sines.pk, number=9)
    with pytest.raises(Http404):
        taskset_version_get_visible(user=users["outsider"], version_id=v2.pk)
    with pytest.raises(Http404):
        taskset_version_get_visible(user=users["viewer"], version_id=foreign.versions.get().pk)
    with pytest.raises(TypeError):
        taskset_version_get_visible(user=users["viewer"], taskset_id=sines.pk)


def test_latest_and_version_list(sets):
    team, _users, sines, digits, _foreign = sets
    v1 = sines.versions.get(number=1)
    RunFactory(experiment__team=team, taskset_version=v1)
    RunFactory(experiment__team=team, taskset_version=v1)
    assert taskset_version_latest(taskset=sines).number == 3
    assert [(v.number, v.run_count) for v in taskset_version_list(taskset=sines)] == [(3, 0), (2, 0), (1, 2)]
    latest = list(taskset_version_latest_for_team(team=team))
    assert [(v.taskset.name, v.number) for v in latest] == [("Digits", 1), ("Sines", 3)]
