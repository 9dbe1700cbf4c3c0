"""The preview builder: fixed val tasks, drawn the same way every time, torch-free."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from apps.tasksets.models import TaskSetVersion
from apps.tasksets.previews import MAX_START, clamp_start, png_data_uri, taskset_version_preview
from apps.tasksets.services import taskset_create
from tests.tasksets.data import table_taskset

pytestmark = pytest.mark.django_db


def decode(uri: str) -> Image.Image:
    assert uri.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))


def test_png_data_uri_grey_and_colour():
    grey = np.zeros((1, 4, 6), dtype=np.float32)
    grey[0, 1, 2] = 1.0  # ink
    image = decode(png_data_uri(grey))
    assert (image.mode, image.size) == ("L", (6, 4))
    pixels = np.asarray(image)
    assert pixels[1, 2] == 0 and pixels[0, 0] == 255  # dark ink on a light ground

    colour = decode(png_data_uri(np.full((3, 2, 2), 5.0, dtype=np.float32)))
    assert colour.mode == "RGB"


def test_clamp_start():
    assert [clamp_start(v) for v in (None, "x", "-4", "3", str(10**9))] == [0, 0, 0, 3, MAX_START]


def test_regression_preview_is_deterministic_and_matches_the_truth(team_roles):
    team, users = team_roles
    ts = taskset_create(
        team=team, actor=users["member"], name="S", family="sinusoid", description="", params={}
    )
    version = ts.versions.get()
    first = taskset_version_preview(version=version, start=0)
    assert first.kind == "regression-chart"
    assert [t.task_id for t in first.tasks] == [0, 1, 2]
    assert first.episode == {"shots": 5, "query": 20, "ways": 1}
    chart = first.tasks[0].chart
    support = [(x, y) for x, y in zip(chart["x"], chart["series"][0]["values"], strict=True) if y is not None]
    # The support points lie on the true curve: y = A sin(x + phase), A and phase from the title.
    amplitude = float(first.tasks[0].title.split("amplitude ")[1].split(",")[0])
    assert max(abs(y) for _x, y in support) <= amplitude + 0.01
    again = taskset_version_preview(version=version, start=0)
    assert again.tasks[0].chart == chart
    assert taskset_version_preview(version=version, start=3).tasks[0].task_id == 3


def test_digits_preview_draws_support_images_per_class(team_roles):
    team, users = team_roles
    ts = taskset_create(
        team=team, actor=users["member"], name="D", family="digits", description="", params={}
    )
    preview = taskset_version_preview(version=ts.versions.get())
    assert preview.kind == "images"
    assert preview.episode == {"shots": 5, "query": 1, "ways": 5}
    task = preview.tasks[0]
    assert [c["label"] for c in task.classes] == ["Class 1", "Class 2", "Class 3", "Class 4", "Class 5"]
    assert all(len(c["images"]) == 5 for c in task.classes)
    assert decode(task.classes[0]["images"][0]).size == (8, 8)


def test_missing_data_file_is_reported_not_raised(team_roles):
    team, users = team_roles
    ts = table_taskset(team, users["member"])
    version = ts.versions.get()
    version.data_file.storage.delete(version.data_file.name)
    preview = taskset_version_preview(version=version)
    assert (preview.kind, preview.error, preview.tasks) == (
        "error",
        "The data file is missing from storage.",
        [],
    )


def test_a_new_version_with_a_reused_id_gets_its_own_preview(team_roles):
    """SQLite reuses a deleted row's id: the cached preview is not the old version's."""
    team, users = team_roles
    old = taskset_create(
        team=team, actor=users["member"], name="Old", family="sinusoid", description="", params={}
    )
    old_version = old.versions.get()
    assert taskset_version_preview(version=old_version, start=0).kind == "regression-chart"
    reused_id = old_version.pk
    old.delete()
    new = taskset_create(
        team=team, actor=users["member"], name="New", family="digits", description="", params={}
    )
    TaskSetVersion.objects.filter(pk=new.versions.get().pk).update(id=reused_id)
    version = TaskSetVersion.objects.get(pk=reused_id)
    assert taskset_version_preview(version=version, start=0).kind == "images"
