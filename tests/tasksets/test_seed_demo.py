from __future__ import annotations

import io
import re

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from apps.experiments.models import Experiment
from apps.tasksets.management.commands.seed_demo import BUILT_INS, demo_csv
from apps.tasksets.models import TaskSet, TaskSetVersion
from apps.teams.models import Membership, Role, Team

pytestmark = pytest.mark.django_db


def seed() -> str:
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def test_seed_demo_creates_everything_once(monkeypatch):
    monkeypatch.delenv("METAWEB_DEMO_PASSWORD", raising=False)
    first = seed()
    password = re.search(r"password '([^']+)'", first).group(1)
    user = get_user_model().objects.get(username="demo")
    assert user.check_password(password)
    team = Team.objects.get(slug="demo")
    assert Membership.objects.get(team=team, user=user).role == Role.ADMIN
    names = sorted(TaskSet.objects.filter(team=team).values_list("name", flat=True))
    assert names == sorted(spec.name for spec in BUILT_INS)
    table = TaskSetVersion.objects.get(taskset__team=team, taskset__family="table")
    assert table.data_summary["tasks"] == 12 and table.data_sha256
    # A first experiment, so that the launch form works straight away.
    assert list(Experiment.objects.filter(team=team).values_list("name", flat=True)) == ["Getting started"]

    second = seed()
    assert Experiment.objects.filter(team=team).count() == 1
    assert password not in second and "password unchanged" in second
    assert TaskSet.objects.count() == len(BUILT_INS)
    assert TaskSetVersion.objects.count() == len(BUILT_INS)
    assert Team.objects.filter(slug="demo").count() == 1
    assert Membership.objects.filter(team=team).count() == 1
    user.refresh_from_db()
    assert user.check_password(password)


def test_seed_demo_password_from_the_environment(monkeypatch):
    monkeypatch.setenv("METAWEB_DEMO_PASSWORD", "correct horse battery")
    out = seed()
    assert "password from METAWEB_DEMO_PASSWORD" in out and "correct horse" not in out
    assert get_user_model().objects.get(username="demo").check_password("correct horse battery")
    monkeypatch.setenv("METAWEB_DEMO_PASSWORD", "another one")
    seed()
    assert get_user_model().objects.get(username="demo").check_password("another one")


def test_seed_demo_restores_the_admin_role():
    seed()
    Membership.objects.filter(user__username="demo").update(role=Role.VIEWER)
    seed()
    assert Membership.objects.get(user__username="demo").role == Role.ADMIN


def test_demo_csv_is_deterministic():
    assert demo_csv() == demo_csv()
    assert demo_csv().splitlines()[0] == b"task,target,x1,x2"
