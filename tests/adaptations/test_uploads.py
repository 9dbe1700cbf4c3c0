"""One upload reader behind three entry points: the adaptation form, the task-set
upload and the command line read the same file to the same result, or refuse it
with the same message. And the adaptation form's hostile zip (issue 10) is
refused from the image headers, under a stated memory bound, leaving nothing."""

from __future__ import annotations

import io
import tracemalloc
import zipfile

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.adaptations.models import Adaptation
from apps.tasksets.models import TaskSet, TaskSetVersion
from apps.tasksets.services import taskset_create
from tests.adaptations import test_views as views
from tests.adaptations.test_views import HTMX, adapt_runs, adapt_url, form_data, login
from tests.tasksets.data import TABLE_PARAMS, stored_files, upload
from tests.workers.metalearn.test_uploads import PEAK_BOUND, png
from workers.metalearn.__main__ import read_table
from workers.metalearn.episodes import FamilyInfo
from workers.metalearn.types import DataError

pytestmark = pytest.mark.django_db

# The adaptation view tests' fixtures, shared.
world, digits_model = views.world, views.digits_model

SINE = FamilyInfo(name="sinusoid", version=1, kind="regression", input_shape=(1,), desc_dim=None, ways=1)


def cli_read(tmp_path, content: bytes):
    path = tmp_path / "support.csv"
    path.write_bytes(content)
    return read_table(str(path), SINE, need_target=True, field="support")


def form_errors(client, world, content: bytes) -> str:
    csv = SimpleUploadedFile("support.csv", content, content_type="text/csv")
    response = client.post(
        adapt_url(world["meta_model"]), form_data(target="custom", support_file=csv), **HTMX
    )
    return response.content.decode().replace("&#x27;", "'")


@pytest.mark.parametrize(
    "content",
    [b"x,y\r\n-1,0.5\r\n2,1.5\r\n", b"y,x\n0.5,-1\n1.5,2\n", b"-1;0.5\n# a note\n2 1.5\n"],
    ids=["y-last", "y-first", "no-header"],
)
def test_the_cli_and_the_form_read_a_file_alike(client, world, sent, tmp_path, content):
    x, y, _ = cli_read(tmp_path, content)
    login(client, world["users"]["member"])
    csv = SimpleUploadedFile("support.csv", content, content_type="text/csv")
    response = client.post(adapt_url(world["meta_model"]), form_data(target="custom", support_file=csv))
    assert response.status_code == 302
    stored = Adaptation.objects.latest("pk").support
    assert stored == {"x": x.tolist(), "y": y.tolist()} == {"x": [[-1.0], [2.0]], "y": [0.5, 1.5]}


def test_the_cli_and_the_form_label_classes_alike(tmp_path):
    from apps.adaptations.uploads import parse_rows
    from tests.adaptations.test_views import facts_for

    content = "x1,label,x2\n1,dog,2\n3,cat,4\n5,10,6\n"
    path = tmp_path / "support.csv"
    path.write_text(content)
    info = FamilyInfo(name="table", version=1, kind="classification", input_shape=(2,), desc_dim=None, ways=3)
    x, labels, classes = read_table(str(path), info, need_target=True, field="support")
    parsed = parse_rows(content, facts=facts_for(kind="classification", ways=3))
    assert parsed == {"x": x.tolist(), "y": labels.tolist(), "classes": classes}
    assert parsed == {"x": [[1, 2], [3, 4], [5, 6]], "y": [2, 1, 0], "classes": ["10", "cat", "dog"]}


def test_the_cli_and_the_form_refuse_a_file_alike(client, world, sent, tmp_path):
    content = b"x,y\n1,2\n1,inf\n"
    with pytest.raises(DataError) as exc:
        cli_read(tmp_path, content)
    assert str(exc.value) == "support: row 3, column 'y': infinite values are not allowed"
    login(client, world["users"]["member"])
    assert "row 3, column 'y': infinite values are not allowed." in form_errors(client, world, content)
    assert sent == []


def test_all_three_entry_points_refuse_a_2000_character_cell_alike(client, world, sent, tmp_path, team_roles):
    content = b"x," + b"9" * 2000 + b"\n1,2\n"
    message = "row 1, column 2: the cell has 2,000 characters; the limit is 100"
    with pytest.raises(DataError) as exc:
        cli_read(tmp_path, content)
    assert str(exc.value) == f"support: {message}"
    login(client, world["users"]["member"])
    adaptations = Adaptation.objects.count()
    assert f"{message}." in form_errors(client, world, content)
    assert Adaptation.objects.count() == adaptations and sent == []
    team, users = team_roles
    before = (TaskSet.objects.count(), TaskSetVersion.objects.count(), stored_files(settings.MEDIA_ROOT))
    with pytest.raises(ValidationError) as refused:
        taskset_create(
            team=team,
            actor=users["member"],
            name="Wide",
            family="table",
            description="",
            params=TABLE_PARAMS,
            data_file=upload(content, "wide.csv"),
        )
    assert refused.value.message_dict == {"data_file": [message]}
    after = (TaskSet.objects.count(), TaskSetVersion.objects.count(), stored_files(settings.MEDIA_ROOT))
    assert after == before


def hostile_zip(count: int, size: tuple[int, int]) -> SimpleUploadedFile:
    one = png(size)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for i in range(count):
            archive.writestr(f"c{i % 3}/{i}.png", one)
    return SimpleUploadedFile("support.zip", buffer.getvalue(), content_type="application/zip")


@pytest.mark.parametrize(
    ("count", "size", "message"),
    [
        (
            600,
            (256, 256),
            "Holds 600 images of 256x256 pixels, 39,321,600 pixels in all; the limit is 500,000.",
        ),
        (601, (8, 8), "support.zip: holds 601 images; the limit is 600."),
    ],
)
def test_a_hostile_adaptation_zip_is_refused_before_decoding(
    client, digits_model, sent, count, size, message
):
    """600 images of 256x256 held 300 MiB as Python floats before; now the first
    header shows the set is over the service's 500,000 input values."""
    login(client, digits_model["users"]["member"])
    support = hostile_zip(count, size)
    tracemalloc.start()
    try:
        response = client.post(
            adapt_url(digits_model["meta_model"]), form_data(target="custom", support_images=support), **HTMX
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status_code == 200
    assert message in response.content.decode()
    assert peak < PEAK_BOUND
    assert adapt_runs() == 0 and not Adaptation.objects.exists() and sent == []
