"""Refreshing stored summaries of uploads made before a fact existed (``episode_room``):
the service reads the stored file again and keeps the upload's name and size; the
command refreshes only what lacks the fact unless ``--all``, reports a file it cannot
read and goes on."""

from __future__ import annotations

import io

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from apps.tasksets.models import TaskSetVersion
from apps.tasksets.services import taskset_version_summary_refresh
from tests.factories import TaskSetVersionFactory
from tests.tasksets.data import table_taskset

pytestmark = pytest.mark.django_db


def _as_before(version: TaskSetVersion) -> dict:
    """The version's summary as an upload of an older release stored it."""
    fresh = dict(version.data_summary)
    old = {k: v for k, v in fresh.items() if k != "episode_room"}
    TaskSetVersion.objects.filter(pk=version.pk).update(data_summary=old)
    return fresh


def test_the_summary_is_made_again_from_the_stored_file(team_roles):
    team, users = team_roles
    version = table_taskset(team, users["member"]).versions.get()
    fresh = _as_before(version)
    version.refresh_from_db()
    assert "episode_room" not in version.data_summary
    assert taskset_version_summary_refresh(version=version) is True
    version.refresh_from_db()
    assert version.data_summary == fresh  # the upload's name and size kept
    assert fresh["episode_room"] == {"ways": 2, "examples": 6} and fresh["upload"]["name"] == "data.csv"


def test_a_generated_family_has_no_file_and_a_missing_file_names_the_field(team_roles, settings):
    team, users = team_roles
    assert taskset_version_summary_refresh(version=TaskSetVersionFactory(taskset__team=team)) is False
    version = table_taskset(team, users["member"]).versions.get()
    (settings.MEDIA_ROOT / version.data_file.name).unlink()
    with pytest.raises(ValidationError) as caught:
        taskset_version_summary_refresh(version=version)
    assert caught.value.message_dict == {
        "data_file": ["The current data file is missing from storage; upload it again."]
    }


def test_the_command_refreshes_old_summaries_reports_failures_and_goes_on(team_roles, settings):
    team, users = team_roles
    first = table_taskset(team, users["member"]).versions.get()
    fresh = _as_before(first)
    out = io.StringIO()
    call_command("taskset_summaries", stdout=out)
    assert out.getvalue().splitlines() == [
        f"task set 'T' v1 (#{first.taskset_id}): refreshed.",
        "1 refreshed, 0 not.",
    ]
    first.refresh_from_db()
    assert first.data_summary == fresh
    out = io.StringIO()
    call_command("taskset_summaries", stdout=out)  # nothing old is left
    assert out.getvalue().strip() == "0 refreshed, 0 not."
    (settings.MEDIA_ROOT / first.data_file.name).unlink()
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError, match="1 version"):
        call_command("taskset_summaries", "--all", stdout=out, stderr=err)
    assert "missing from storage" in err.getvalue() and out.getvalue().strip() == "0 refreshed, 1 not."
    first.refresh_from_db()
    assert first.data_summary == fresh  # left as it was
