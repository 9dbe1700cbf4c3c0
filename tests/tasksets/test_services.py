"""taskset_create / taskset_version_create against PostgreSQL and the real engine."""

from __future__ import annotations

import hashlib

import pytest
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import DatabaseError
from django.http import Http404

from apps.tasksets.models import TaskSet, TaskSetVersion
from apps.tasksets.services import taskset_create, taskset_version_create
from tests.factories import RunFactory
from tests.tasksets.data import (
    TABLE_PARAMS,
    csv_missing_column,
    csv_non_numeric,
    good_csv,
    image_zip,
    stored_files,
    upload,
)

pytestmark = pytest.mark.django_db

SINUSOID_DEFAULTS = {
    "amplitude_min": 0.1,
    "amplitude_max": 5.0,
    "phase_min": 0.0,
    "phase_max": 3.141592653589793,
    "x_min": -5.0,
    "x_max": 5.0,
}


def create(team, user, **overrides):
    kwargs = {"name": "Sines", "family": "sinusoid", "description": "d", "params": {}}
    kwargs.update(overrides)
    return taskset_create(team=team, actor=user, **kwargs)


def errors_of(excinfo) -> dict[str, list[str]]:
    return excinfo.value.message_dict


def assert_nothing_written(count_before: int = 0) -> None:
    assert TaskSet.objects.count() == count_before
    assert TaskSetVersion.objects.count() == count_before
    assert stored_files(settings.MEDIA_ROOT) == []


# -- create ------------------------------------------------------------------------------------------


def test_create_stores_version_one_with_full_params(team_roles):
    team, users = team_roles
    taskset = create(team, users["member"], params={"amplitude_max": 2.5}, description="  small amps ")
    version = taskset.versions.get()
    assert (taskset.team, taskset.family, taskset.name, taskset.created_by) == (
        team,
        "sinusoid",
        "Sines",
        users["member"],
    )
    assert version.number == 1
    assert version.description == "small amps"
    assert version.params == {**SINUSOID_DEFAULTS, "amplitude_max": 2.5}
    assert version.created_by == users["member"]
    assert not version.data_file and version.data_sha256 == ""


@pytest.mark.parametrize(("who", "error"), [("viewer", PermissionDenied), ("outsider", Http404)])
def test_create_needs_member_role(team_roles, who, error):
    team, users = team_roles
    with pytest.raises(error):
        create(team, users[who])
    assert_nothing_written()


def test_admin_may_create(team_roles):
    team, users = team_roles
    assert create(team, users["admin"]).versions.count() == 1


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"amplitude_min": -1}, "params.amplitude_min", "Input should be greater than or equal to 0"),
        (
            {"amplitude_min": 3, "amplitude_max": 2},
            "params.amplitude_max",
            "must be greater than amplitude_min",
        ),
        ({"bogus": 1}, "params.bogus", "Extra inputs are not permitted"),
        ({"x_min": "wide"}, "params.x_min", "Input should be a valid number"),
    ],
)
def test_create_bad_params_name_the_field(team_roles, params, field, message):
    team, users = team_roles
    with pytest.raises(ValidationError) as excinfo:
        create(team, users["member"], params=params)
    assert field in errors_of(excinfo)
    assert message in errors_of(excinfo)[field][0]
    assert_nothing_written()


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"name": "   "}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"family": "omniglot"}, "family"),
        ({"description": "x" * 5001}, "description"),
        ({"params": ["not", "a", "dict"]}, "params"),
    ],
)
def test_create_bad_input(team_roles, overrides, field):
    team, users = team_roles
    with pytest.raises(ValidationError) as excinfo:
        create(team, users["member"], **overrides)
    assert list(errors_of(excinfo)) == [field]
    assert_nothing_written()


def test_create_duplicate_name_in_team_is_refused_case_insensitively(team_roles):
    team, users = team_roles
    create(team, users["member"], name="Sines")
    with pytest.raises(ValidationError) as excinfo:
        create(team, users["member"], name="sines")
    assert errors_of(excinfo) == {"name": ["This team already has a task set called 'sines'."]}
    assert TaskSet.objects.count() == 1


def test_same_name_in_another_team_is_fine(team_roles):
    team, users = team_roles
    create(team, users["member"], name="Sines")
    beta = users["outsider"].teams.get()
    create(beta, users["outsider"], name="Sines")
    assert TaskSet.objects.filter(name="Sines").count() == 2


def test_non_table_family_refuses_a_file(team_roles):
    team, users = team_roles
    with pytest.raises(ValidationError) as excinfo:
        create(team, users["member"], data_file=upload(good_csv()))
    assert errors_of(excinfo) == {"data_file": ["The sinusoid family takes no data file."]}
    assert_nothing_written()


def test_table_needs_a_file(team_roles):
    team, users = team_roles
    with pytest.raises(ValidationError) as excinfo:
        create(team, users["member"], family="table", params=TABLE_PARAMS)
    assert errors_of(excinfo) == {"data_file": ["This family needs a data file."]}
    assert_nothing_written()


def test_table_csv_is_stored_with_digest_and_summary(team_roles):
    team, users = team_roles
    content = good_csv()
    taskset = create(
        team, users["member"], family="table", params=TABLE_PARAMS, data_file=upload(content, "my.CSV")
    )
    version = taskset.versions.get()
    assert version.data_file.name.startswith(f"tasksets/{taskset.pk}/")
    assert version.data_file.name.endswith(".csv")
    assert "my" not in version.data_file.name  # the user's file name is not part of the path
    assert version.data_sha256 == hashlib.sha256(content).hexdigest()
    with version.data_file.open("rb") as handle:
        assert handle.read() == content
    assert version.data_summary["format"] == "csv"
    assert version.data_summary["rows"] == 48
    assert version.data_summary["tasks"] == 4
    assert version.data_summary["upload"] == {"name": "my.CSV", "bytes": len(content)}
    assert stored_files(settings.MEDIA_ROOT) == [settings.MEDIA_ROOT / version.data_file.name]


def test_table_zip_of_images_is_accepted(team_roles):
    team, users = team_roles
    taskset = create(
        team, users["member"], family="table", params=TABLE_PARAMS, data_file=upload(image_zip(), "x.zip")
    )
    version = taskset.versions.get()
    assert version.data_file.name.endswith(".zip")
    assert version.data_summary["format"] == "images"
    assert version.data_summary["input_shape"] == [1, 8, 8]


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (b"", "data.csv", "The file is empty."),
        (good_csv(), "data.txt", "Upload a .csv file, or a .zip of class folders of PNG images."),
        (
            csv_missing_column(),
            "data.csv",
            "column 'target': no such column; the file has 'task', 'label', 'x1'",
        ),
        (csv_non_numeric(), "data.csv", "row 3, column 'x1': 'abc' is not a number"),
        (
            image_zip({"c": (10, 10)}),
            "data.zip",
            "c/0.png: is 10x10 pixels but a/0.png is 8x8; all images must share one size",
        ),
        (b"not a zip", "data.zip", "The file is not a valid zip file"),
        (b"\xff\xfe\x00\x01", "data.csv", "The file is not UTF-8 text (near row 1)"),
    ],
)
def test_bad_uploads_are_refused_on_the_file_field(team_roles, content, name, message):
    team, users = team_roles
    with pytest.raises(ValidationError) as excinfo:
        create(team, users["member"], family="table", params=TABLE_PARAMS, data_file=upload(content, name))
    assert errors_of(excinfo) == {"data_file": [message]}
    assert_nothing_written()


def test_oversized_upload_is_refused_before_reading(team_roles, settings):
    team, users = team_roles
    settings.TASKSET_UPLOAD_MAX_BYTES = 100

    class Unreadable:
        name = "big.csv"
        size = 101

        def chunks(self, *_):
            raise AssertionError("read despite its size")

        def seek(self, *_):
            raise AssertionError("read despite its size")

    with pytest.raises(ValidationError) as excinfo:
        create(team, users["member"], family="table", params=TABLE_PARAMS, data_file=Unreadable())
    assert errors_of(excinfo) == {"data_file": ["The file is 101 bytes; the limit is 100 bytes."]}
    assert_nothing_written()


def test_table_params_errors_from_the_engine_name_the_parameter(team_roles):
    team, users = team_roles
    with pytest.raises(ValidationError) as excinfo:
        create(
            team,
            users["member"],
            family="table",
            params={**TABLE_PARAMS, "val_fraction": 0.6, "test_fraction": 0.5},
            data_file=upload(good_csv()),
        )
    assert list(errors_of(excinfo)) == ["params.test_fraction"]
    assert_nothing_written()


def test_failed_insert_leaves_no_file(team_roles, monkeypatch):
    team, users = team_roles

    def broken_save(self, *args, **kwargs):
        raise DatabaseError("disk full")

    monkeypatch.setattr(TaskSetVersion, "save", broken_save)
    with pytest.raises(DatabaseError):
        create(team, users["member"], family="table", params=TABLE_PARAMS, data_file=upload(good_csv()))
    monkeypatch.undo()
    assert_nothing_written()


# -- new versions ------------------------------------------------------------------------------------


def test_edit_makes_increasing_versions_and_runs_keep_theirs(team_roles):
    team, users = team_roles
    taskset = create(team, users["member"])
    v1 = taskset.versions.get()
    run = RunFactory(experiment__team=team, taskset_version=v1)
    v2 = taskset_version_create(
        taskset=taskset, actor=users["admin"], description="wider", params={"x_max": 7}
    )
    v3 = taskset_version_create(taskset=taskset, actor=users["member"], description="", params={})
    assert [v.number for v in taskset.versions.order_by("number")] == [1, 2, 3]
    assert (v2.number, v2.params["x_max"], v2.created_by) == (2, 7.0, users["admin"])
    assert v3.params == SINUSOID_DEFAULTS
    v1.refresh_from_db()
    assert v1.params == SINUSOID_DEFAULTS  # old versions never change
    run.refresh_from_db()
    assert run.taskset_version_id == v1.pk


@pytest.mark.parametrize(("who", "error"), [("viewer", PermissionDenied), ("outsider", Http404)])
def test_edit_needs_member_role(team_roles, who, error):
    team, users = team_roles
    taskset = create(team, users["member"])
    with pytest.raises(error):
        taskset_version_create(taskset=taskset, actor=users[who], description="", params={})
    assert taskset.versions.count() == 1


def test_edit_with_bad_params_writes_nothing(team_roles):
    team, users = team_roles
    taskset = create(team, users["member"])
    with pytest.raises(ValidationError) as excinfo:
        taskset_version_create(taskset=taskset, actor=users["member"], params={"x_min": 9, "x_max": 1})
    assert list(errors_of(excinfo)) == ["params.x_max"]
    assert taskset.versions.count() == 1


def test_table_edit_without_file_keeps_the_file(team_roles):
    team, users = team_roles
    taskset = create(team, users["member"], family="table", params=TABLE_PARAMS, data_file=upload(good_csv()))
    v1 = taskset.versions.get()
    v2 = taskset_version_create(
        taskset=taskset, actor=users["member"], params={**TABLE_PARAMS, "val_fraction": 0.3}
    )
    assert v2.number == 2
    assert v2.data_file.name == v1.data_file.name
    assert v2.data_sha256 == v1.data_sha256
    assert v2.data_summary["upload"] == v1.data_summary["upload"]
    assert len(stored_files(settings.MEDIA_ROOT)) == 1


def test_table_edit_rechecks_the_kept_file_against_new_params(team_roles):
    team, users = team_roles
    taskset = create(team, users["member"], family="table", params=TABLE_PARAMS, data_file=upload(good_csv()))
    with pytest.raises(ValidationError) as excinfo:
        taskset_version_create(
            taskset=taskset, actor=users["member"], params={**TABLE_PARAMS, "target_column": "label"}
        )
    assert errors_of(excinfo)["data_file"][0].startswith("column 'label': no such column")
    assert taskset.versions.count() == 1


def test_table_edit_with_a_new_file(team_roles):
    team, users = team_roles
    taskset = create(team, users["member"], family="table", params=TABLE_PARAMS, data_file=upload(good_csv()))
    new_content = good_csv(tasks=5)
    v2 = taskset_version_create(
        taskset=taskset, actor=users["member"], params=TABLE_PARAMS, data_file=upload(new_content)
    )
    v1 = taskset.versions.get(number=1)
    assert v2.data_file.name != v1.data_file.name
    assert v2.data_sha256 == hashlib.sha256(new_content).hexdigest()
    assert v2.data_summary["tasks"] == 5
    assert len(stored_files(settings.MEDIA_ROOT)) == 2


def test_table_edit_with_a_bad_file_keeps_everything(team_roles):
    team, users = team_roles
    taskset = create(team, users["member"], family="table", params=TABLE_PARAMS, data_file=upload(good_csv()))
    with pytest.raises(ValidationError) as excinfo:
        taskset_version_create(
            taskset=taskset, actor=users["member"], params=TABLE_PARAMS, data_file=upload(csv_non_numeric())
        )
    assert errors_of(excinfo) == {"data_file": ["row 3, column 'x1': 'abc' is not a number"]}
    assert taskset.versions.count() == 1
    assert len(stored_files(settings.MEDIA_ROOT)) == 1


def test_edit_non_table_refuses_a_file(team_roles):
    team, users = team_roles
    taskset = create(team, users["member"])
    with pytest.raises(ValidationError) as excinfo:
        taskset_version_create(
            taskset=taskset, actor=users["member"], params={}, data_file=upload(good_csv())
        )
    assert list(errors_of(excinfo)) == ["data_file"]
    assert taskset.versions.count() == 1
