"""Hostile task-set uploads (issue 10): each is refused on the file field, from the
zip directory, the image headers or the streaming CSV, with the Python-heap peak
of the whole service call under 50 MB, and with no task set, no version and no
stored file left behind."""

from __future__ import annotations

import tracemalloc
from typing import Any

import pytest
from django.core.exceptions import ValidationError

from apps.tasksets.services import taskset_create
from tests.tasksets.data import TABLE_PARAMS, upload
from tests.tasksets.test_services import assert_nothing_written
from tests.workers.metalearn.test_uploads import PEAK_BOUND, many_big_pngs, png, write_zip


def refused(team_roles: Any, content: bytes, name: str) -> tuple[list[str], int]:
    """The data_file errors of creating a table task set from ``content``, and the peak."""
    team, users = team_roles
    tracemalloc.start()
    try:
        with pytest.raises(ValidationError) as excinfo:
            taskset_create(
                team=team,
                actor=users["member"],
                name="Hostile",
                family="table",
                description="",
                params=TABLE_PARAMS,
                data_file=upload(content, name),
            )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert list(excinfo.value.message_dict) == ["data_file"]
    return excinfo.value.message_dict["data_file"], peak


def test_a_zip_of_6000_big_pngs(team_roles, tmp_path):
    content = many_big_pngs(tmp_path / "many.zip").read_bytes()
    errors, peak = refused(team_roles, content, "many.zip")
    assert errors == [
        "The file holds 6,000 images of 256x256 pixels, 393,216,000 pixels in all; the limit is 33,554,432"
    ]
    assert peak - len(content) < PEAK_BOUND  # the upload's own in-memory copy aside
    assert_nothing_written()


def test_a_zip_bomb(team_roles, tmp_path):
    files = {f"c{k}/{i}.png": png(value=k) for k in range(3) for i in range(2)}
    content = write_zip(tmp_path / "bomb.zip", {**files, "c0/pad.png": bytes(2_000_000)}).read_bytes()
    errors, peak = refused(team_roles, content, "bomb.zip")
    assert len(errors) == 1 and errors[0].startswith("The file is compressed ")
    assert errors[0].endswith("times; the limit is 100")
    assert peak < PEAK_BOUND
    assert_nothing_written()


def test_a_csv_with_a_2000_character_cell(team_roles):
    lines = ["task,target,x1"] + [f"t{i % 7},c{i % 2},{i % 13}.25" for i in range(125_000)]
    content = ("\n".join([*lines, "t1,c0," + "9" * 2000]) + "\n").encode()
    assert len(content) > 1_400_000
    errors, peak = refused(team_roles, content, "wide.csv")
    assert errors == ["row 125002, column 'x1': the cell has 2,000 characters; the limit is 100"]
    assert peak - len(content) < PEAK_BOUND
    assert_nothing_written()


def test_too_many_columns(team_roles):
    content = (",".join(["task", "target", *(f"x{i}" for i in range(2000))]) + "\n").encode()
    errors, peak = refused(team_roles, content, "wide.csv")
    assert errors == ["row 1: has 2,002 columns; the limit is 2,000"]
    assert peak < PEAK_BOUND
    assert_nothing_written()
