"""Task-set pages: the permission matrix, htmx partials and full pages, uploads."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

from apps.tasksets.models import TaskSet, TaskSetVersion
from apps.tasksets.services import taskset_create
from tests.pages import text
from tests.tasksets.data import (
    TABLE_PARAMS,
    csv_missing_column,
    csv_non_numeric,
    good_csv,
    image_zip,
    stored_files,
    table_taskset,
    upload,
)

pytestmark = pytest.mark.django_db

HX = {"HTTP_HX_REQUEST": "true"}
SINUSOID_POST = {
    "family": "sinusoid",
    "name": "Sines",
    "description": "Finn et al.",
    "params-amplitude_min": "0.1",
    "params-amplitude_max": "5",
    "params-phase_min": "0",
    "params-phase_max": "3.14",
    "params-x_min": "-5",
    "params-x_max": "5",
}
TABLE_POST = {
    "family": "table",
    "name": "My table",
    "description": "",
    "params-kind": "classification",
    "params-task_column": "task",
    "params-target_column": "target",
    "params-feature_columns": "",
    "params-max_bytes": "20000000",
    "params-val_fraction": "0.2",
    "params-test_fraction": "0.2",
}


def client_for(user=None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


@pytest.fixture
def sines(team_roles):
    team, users = team_roles
    return taskset_create(
        team=team, actor=users["member"], name="Sines", family="sinusoid", description="first", params={}
    )


def urls_for(taskset) -> dict[str, str]:
    return {
        "list": reverse("tasksets:taskset-list", kwargs={"team_slug": "alpha"}),
        "create": reverse("tasksets:taskset-create", kwargs={"team_slug": "alpha"}),
        "fields": reverse("tasksets:taskset-family-fields", kwargs={"team_slug": "alpha"}) + "?family=digits",
        "detail": reverse("tasksets:taskset-detail", kwargs={"taskset_id": taskset.pk}),
        "edit": reverse("tasksets:taskset-edit", kwargs={"taskset_id": taskset.pk}),
        "preview": reverse("tasksets:taskset-preview", kwargs={"taskset_id": taskset.pk, "number": 1}),
    }


# -- permission matrix ------------------------------------------------------------------------------

READ = {None: 302, "outsider": 404, "viewer": 200, "member": 200, "admin": 200}
WRITE = {None: 302, "outsider": 404, "viewer": 403, "member": 200, "admin": 200}
MATRIX = [
    ("list", READ),
    ("detail", READ),
    ("preview", READ),
    ("create", WRITE),
    ("fields", WRITE),
    ("edit", WRITE),
]


@pytest.mark.parametrize("who", [None, "outsider", "viewer", "member", "admin"])
@pytest.mark.parametrize(("page", "expected"), MATRIX, ids=[m[0] for m in MATRIX])
def test_get_matrix(team_roles, sines, page, expected, who):
    _team, users = team_roles
    response = client_for(users.get(who)).get(urls_for(sines)[page])
    assert response.status_code == expected[who]
    if who is None:
        assert response["Location"].startswith(reverse("login"))


POST_WRITE = {None: 302, "outsider": 404, "viewer": 403, "member": 302, "admin": 302}


@pytest.mark.parametrize("who", [None, "outsider", "viewer", "member", "admin"])
def test_create_post_matrix(team_roles, who):
    _team, users = team_roles
    response = client_for(users.get(who)).post(
        reverse("tasksets:taskset-create", kwargs={"team_slug": "alpha"}), SINUSOID_POST
    )
    assert response.status_code == POST_WRITE[who]
    created = TaskSet.objects.filter(name="Sines").first()
    assert (created is not None) is (who in ("member", "admin"))
    if created is not None:
        assert response["Location"] == reverse("tasksets:taskset-detail", kwargs={"taskset_id": created.pk})


@pytest.mark.parametrize("who", [None, "outsider", "viewer", "member", "admin"])
def test_edit_post_matrix(team_roles, sines, who):
    _team, users = team_roles
    data = {k: v for k, v in SINUSOID_POST.items() if k.startswith("params-")} | {"description": "v2"}
    response = client_for(users.get(who)).post(urls_for(sines)["edit"], data)
    assert response.status_code == POST_WRITE[who]
    assert sines.versions.count() == (2 if who in ("member", "admin") else 1)


# -- list -------------------------------------------------------------------------------------------


def test_list_page_and_partial(team_roles, sines):
    _team, users = team_roles
    client = client_for(users["viewer"])
    url = urls_for(sines)["list"]
    page = text(client.get(url))
    assert "<html" in page and "Sines" in page and "v1" in page
    assert "New task set" not in page  # viewers cannot create
    partial = text(client.get(url + "?family=digits", **HX))
    assert "<html" not in partial and 'id="taskset-table"' in partial
    assert "Sines" not in partial and "No task sets of the digits family yet." in partial
    assert "New task set" in text(client_for(users["member"]).get(url))


def test_names_are_escaped(team_roles):
    team, users = team_roles
    ts = taskset_create(
        team=team,
        actor=users["member"],
        name="<script>x</script>",
        family="sinusoid",
        description="<img src=x onerror=alert(1)>",
        params={},
    )
    for url in (urls_for(ts)["list"], urls_for(ts)["detail"]):
        body = client_for(users["viewer"]).get(url).content.decode()
        assert "<script>x</script>" not in body
        assert "&lt;script&gt;x&lt;/script&gt;" in body
        assert "<img src=x" not in body


# -- create -----------------------------------------------------------------------------------------


def test_create_page_defaults_to_first_family_and_shows_its_fields(team_roles):
    _team, users = team_roles
    body = text(
        client_for(users["member"]).get(reverse("tasksets:taskset-create", kwargs={"team_slug": "alpha"}))
    )
    assert "<html" in body
    assert "Parameters of the sinusoid family" in body
    assert 'name="params-amplitude_min"' in body and "Smallest amplitude." in body and "Default: 0.1." in body
    assert 'name="data_file"' not in body


def test_create_page_for_a_chosen_family(team_roles):
    _team, users = team_roles
    url = reverse("tasksets:taskset-create", kwargs={"team_slug": "alpha"}) + "?family=table"
    body = text(client_for(users["member"]).get(url))
    assert "Parameters of the table family" in body and 'name="data_file"' in body
    partial = text(client_for(users["member"]).get(url, **HX))
    assert "<html" not in partial and partial.lstrip().startswith('<form id="taskset-form"')


def test_family_fields_partial_switches_family(team_roles):
    _team, users = team_roles
    base = reverse("tasksets:taskset-family-fields", kwargs={"team_slug": "alpha"})
    client = client_for(users["member"])
    digits = text(client.get(base + "?family=digits", **HX))
    assert digits.lstrip().startswith('<fieldset id="family-params"')
    assert 'name="params-val_fraction"' in digits and "params-amplitude_min" not in digits
    table = text(client.get(base + "?family=table", **HX))
    assert 'name="data_file"' in table and 'name="params-target_column"' in table
    assert client.get(base + "?family=omniglot", **HX).status_code == 400


def test_create_with_htmx_redirects_client_side(team_roles):
    _team, users = team_roles
    response = client_for(users["member"]).post(
        reverse("tasksets:taskset-create", kwargs={"team_slug": "alpha"}), SINUSOID_POST, **HX
    )
    created = TaskSet.objects.get(name="Sines")
    assert response.status_code == 200
    assert response["HX-Redirect"] == reverse("tasksets:taskset-detail", kwargs={"taskset_id": created.pk})
    assert created.versions.get().params["phase_max"] == 3.14


@pytest.mark.parametrize("headers", [HX, {}], ids=["htmx", "plain"])
def test_create_errors_show_on_fields(team_roles, sines, headers):
    _team, users = team_roles
    data = SINUSOID_POST | {"params-amplitude_min": "4", "params-amplitude_max": "2"}
    response = client_for(users["member"]).post(
        reverse("tasksets:taskset-create", kwargs={"team_slug": "alpha"}), data, **headers
    )
    body = text(response)
    assert response.status_code == 200
    assert ("<html" in body) is (not headers)
    assert "must be greater than amplitude_min (4.0)" in body
    assert TaskSet.objects.count() == 1

    # Valid fields, but the service refuses the name: the error goes on the name field.
    response = client_for(users["member"]).post(
        reverse("tasksets:taskset-create", kwargs={"team_slug": "alpha"}), SINUSOID_POST, **headers
    )
    body = text(response)
    name_block = body[body.index('name="name"') : body.index('name="description"')]
    assert "<li>This team already has a task set called 'Sines'.</li>" in name_block
    assert TaskSet.objects.count() == 1


def test_create_table_upload(team_roles):
    _team, users = team_roles
    response = client_for(users["member"]).post(
        reverse("tasksets:taskset-create", kwargs={"team_slug": "alpha"}),
        TABLE_POST | {"data_file": upload(good_csv(), "cells.csv")},
    )
    assert response.status_code == 302
    version = TaskSetVersion.objects.get(taskset__name="My table")
    assert version.data_summary["tasks"] == 4
    assert stored_files(settings.MEDIA_ROOT) == [settings.MEDIA_ROOT / version.data_file.name]
    detail = text(client_for(users["viewer"]).get(response["Location"]))
    assert "cells.csv" in detail and version.data_sha256[:16] in detail


BAD_UPLOADS = [
    pytest.param(b"", "a.csv", "The submitted file is empty.", id="empty"),
    pytest.param(
        csv_missing_column(),
        "a.csv",
        "column 'target': no such column; the file has 'task', 'label', 'x1'",
        id="missing-column",
    ),
    pytest.param(csv_non_numeric(), "a.csv", "row 3, column 'x1': 'abc' is not a number", id="non-numeric"),
    pytest.param(
        image_zip({"b": (12, 8)}),
        "a.zip",
        "b/0.png: is 12x8 pixels but a/0.png is 8x8; all images must share one size",
        id="zip-mismatched-sizes",
    ),
    pytest.param(
        good_csv(), "a.exe", "Upload a .csv file, or a .zip of class folders of PNG images.", id="suffix"
    ),
]


@pytest.mark.parametrize("headers", [HX, {}], ids=["htmx", "plain"])
@pytest.mark.parametrize(("content", "name", "message"), BAD_UPLOADS)
def test_bad_uploads_show_the_error_on_the_file_field(team_roles, content, name, message, headers):
    _team, users = team_roles
    response = client_for(users["member"]).post(
        reverse("tasksets:taskset-create", kwargs={"team_slug": "alpha"}),
        TABLE_POST | {"data_file": upload(content, name)},
        **headers,
    )
    assert response.status_code == 200
    body = text(response)
    # The message sits in the error list right after the file input's help.
    field_block = body[body.index('name="data_file"') :]
    assert f"<li>{message}</li>" in field_block
    assert TaskSet.objects.count() == 0 and TaskSetVersion.objects.count() == 0
    assert stored_files(settings.MEDIA_ROOT) == []


def test_oversized_upload_is_dropped_while_streaming(team_roles, settings):
    _team, users = team_roles
    settings.TASKSET_UPLOAD_MAX_BYTES = 200
    response = client_for(users["member"]).post(
        reverse("tasksets:taskset-create", kwargs={"team_slug": "alpha"}),
        TABLE_POST | {"data_file": upload(good_csv(), "big.csv")},
        **HX,
    )
    body = text(response)
    assert response.status_code == 200
    # The limit handler dropped the file before the form saw it: its own message.
    assert "<li>The file is larger than the limit of 200 bytes.</li>" in body
    assert 'value="My table"' in body  # the other fields still arrived
    assert TaskSet.objects.count() == 0
    assert stored_files(settings.MEDIA_ROOT) == []


def test_upload_view_still_enforces_csrf(team_roles):
    _team, users = team_roles
    client = Client(enforce_csrf_checks=True)
    client.force_login(users["member"])
    url = reverse("tasksets:taskset-create", kwargs={"team_slug": "alpha"})
    assert client.post(url, SINUSOID_POST).status_code == 403
    assert TaskSet.objects.count() == 0
    page = client.get(url)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode()).group(1)
    assert client.post(url, SINUSOID_POST | {"csrfmiddlewaretoken": token}).status_code == 302
    assert TaskSet.objects.count() == 1


# -- detail, edit -----------------------------------------------------------------------------------


def test_an_uploads_summary_reads_as_sentences(team_roles):
    team, users = team_roles
    version = table_taskset(team, users["member"]).versions.get()  # 4 tasks, 2 classes of 6 rows
    page = text(client_for(users["member"]).get(urls_for(version.taskset)["detail"]))
    data = page[page.index("<h3>Data</h3>") :]
    for line in (
        "<dt>format</dt><dd>CSV</dd>",
        "<dt>rows</dt><dd>48</dd>",
        "<dt>columns</dt><dd>task, target, x1, x2</dd>",
        "<dt>classes per task</dt><dd>2</dd>",
        "<dt>largest episode</dt><dd>up to 2-way, shots + query up to 6</dd>",
    ):
        assert line in data
    assert re.search(r"<dt>splits</dt><dd>train: \d+ rows, \d tasks?, 2 classes; val: ", data)
    assert "{" not in data[: data.index("</dl>")] and "[" not in data[: data.index("</dl>")]


def test_summary_lines_show_images_ranges_and_unknown_keys():
    from apps.tasksets.display import summary_lines

    lines = dict(
        summary_lines(
            {
                "format": "images",
                "input_shape": [1, 28, 28],
                "classes_per_task": {"min": 2, "max": 4},
                "episode_room": {"ways": None, "examples": 7},
                "splits": {"train": {"rows": 1200, "classes": 30}, "test": {"rows": 40, "classes": 1}},
                "upload": {"name": "a.zip", "bytes": 9},
                "later": 3,
            }
        )
    )
    assert lines == {
        "format": "image folders",
        "classes per task": "2 to 4",
        "input shape": "1 × 28 × 28",
        "splits": "train: 1,200 rows, 30 classes; test: 40 rows, 1 class",
        "largest episode": "shots + query up to 7",
        "later": "3",
    }
    assert summary_lines(None) == []


def test_detail_lists_versions_with_params(team_roles, sines):
    _team, users = team_roles
    client = client_for(users["member"])
    client.post(
        urls_for(sines)["edit"],
        {k: v for k, v in SINUSOID_POST.items() if k.startswith("params-")}
        | {"params-x_max": "8", "description": "wider"},
    )
    page = text(client.get(urls_for(sines)["detail"]))
    assert "<html" in page
    assert page.index("Version 2") < page.index("Version 1")
    # Parameters in the family model's order, not the database's.
    assert (
        page.index("<dt>amplitude_min</dt>")
        < page.index("<dt>amplitude_max</dt>")
        < page.index("<dt>x_max</dt>")
    )
    assert "wider" in page and "<dt>x_max</dt><dd>8.0</dd>" in page and "<dt>x_max</dt><dd>5.0</dd>" in page
    assert "Edit (new version)" in page
    # The latest version previews its tasks as the page loads; older ones on request.
    assert page.count('hx-trigger="load, click"') == 1
    assert page.index('hx-trigger="load, click"') < page.index("Version 1")
    partial = text(client.get(urls_for(sines)["detail"], **HX))
    assert "<html" not in partial and partial.lstrip().startswith('<div id="versions">')
    assert "Edit (new version)" not in text(client_for(users["viewer"]).get(urls_for(sines)["detail"]))


def test_edit_form_is_prefilled_from_the_latest_version(team_roles, sines):
    _team, users = team_roles
    body = text(client_for(users["member"]).get(urls_for(sines)["edit"]))
    assert "Save as a new version" in body
    assert 'name="params-amplitude_max"' in body and 'value="5.0"' in body
    assert ">\nfirst</textarea>" in body
    assert 'name="name"' not in body and 'name="family"' not in body


@pytest.mark.parametrize("headers", [HX, {}], ids=["htmx", "plain"])
def test_edit_errors_and_success(team_roles, sines, headers):
    _team, users = team_roles
    client = client_for(users["member"])
    bad = client.post(urls_for(sines)["edit"], {"params-x_min": "9", "params-x_max": "1"}, **headers)
    assert bad.status_code == 200
    assert ("<html" in text(bad)) is (not headers)
    assert "must be greater than x_min (9.0)" in text(bad)
    assert sines.versions.count() == 1
    good = client.post(urls_for(sines)["edit"], {"params-x_max": "6", "description": "v2"}, **headers)
    detail = reverse("tasksets:taskset-detail", kwargs={"taskset_id": sines.pk})
    if headers:
        assert good.status_code == 200 and good["HX-Redirect"] == detail
    else:
        assert good.status_code == 302 and good["Location"] == detail
    assert sines.versions.get(number=2).params["x_max"] == 6.0


def test_table_edit_keeps_the_file_or_takes_a_new_one(team_roles):
    team, users = team_roles
    ts = table_taskset(team, users["member"])
    client = client_for(users["member"])
    params = {k: v for k, v in TABLE_POST.items() if k.startswith("params-")}
    assert client.post(urls_for(ts)["edit"], params).status_code == 302
    bad = client.post(urls_for(ts)["edit"], params | {"data_file": upload(csv_non_numeric())}, **HX)
    assert "row 3, column &#x27;x1&#x27;: &#x27;abc&#x27; is not a number" in bad.content.decode()
    v1, v2 = ts.versions.order_by("number")
    assert ts.versions.count() == 2 and v2.data_file.name == v1.data_file.name
    assert len(stored_files(settings.MEDIA_ROOT)) == 1


# -- preview ----------------------------------------------------------------------------------------


def test_preview_regression_chart_data(team_roles, sines):
    _team, users = team_roles
    client = client_for(users["viewer"])
    partial = client.get(urls_for(sines)["preview"], **HX).content.decode()
    assert "<html" not in partial
    scripts = re.findall(
        r'<script id="(preview-data-[^"]+)" type="application/json">(.*?)</script>', partial, re.S
    )
    assert len(scripts) == 3
    dom_id, raw = scripts[0]
    assert f'data-preview-chart="{dom_id}"' in partial
    chart = json.loads(raw)
    labels = [s["label"] for s in chart["series"]]
    assert labels == ["support", "query", "true function"]
    assert chart["x"] == sorted(chart["x"])
    assert all(len(s["values"]) == len(chart["x"]) for s in chart["series"])
    assert sum(v is not None for v in chart["series"][0]["values"]) == 5
    assert sum(v is not None for v in chart["series"][1]["values"]) == 20
    assert "Task 0 · amplitude" in partial and "Next tasks" in partial

    nxt = client.get(urls_for(sines)["preview"] + "?start=3", **HX).content.decode()
    assert "Task 3" in nxt and "Task 0 " not in nxt and "Previous tasks" in nxt
    page = client.get(urls_for(sines)["preview"]).content.decode()
    assert "<html" in page and "taskset_preview.js" in page and "preview-data-" in page
    assert client.get(urls_for(sines)["preview"] + "?start=oops").status_code == 200


def test_preview_of_a_missing_version_is_404(team_roles, sines):
    _team, users = team_roles
    url = reverse("tasksets:taskset-preview", kwargs={"taskset_id": sines.pk, "number": 2})
    assert client_for(users["viewer"]).get(url).status_code == 404


def test_preview_images_for_an_image_zip(team_roles):
    team, users = team_roles
    ts = taskset_create(
        team=team,
        actor=users["member"],
        name="Pics",
        family="table",
        description="",
        params=TABLE_PARAMS,
        data_file=upload(image_zip_many(), "pics.zip"),
    )
    partial = client_for(users["viewer"]).get(urls_for(ts)["preview"], **HX).content.decode()
    images = re.findall(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]+"', partial)
    # 4 images per class: the preview falls back from 5 shots to 3 (+ 1 query).
    assert len(images) == 3 * 2 * 3  # tasks x ways (val has 2 classes) x shots
    assert "Class 2" in partial and "2-way, 3 shots" in partial


def test_preview_table_rows_for_a_csv(team_roles):
    team, users = team_roles
    ts = table_taskset(team, users["member"])
    partial = text(client_for(users["viewer"]).get(urls_for(ts)["preview"], **HX))
    assert "<th>x1</th><th>x2</th>" in partial
    assert partial.count("<td>class 1</td>") == 3 * 5


def test_web_process_stays_torch_free():
    code = (
        "import os, sys, django;"
        "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'metaweb.settings.test');"
        "django.setup();"
        "import apps.tasksets.views, apps.tasksets.previews, apps.tasksets.services, apps.teams.views;"
        "import apps.tasksets.management.commands.seed_demo;"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "False"


def image_zip_many() -> bytes:
    """10 classes of four 8x8 images: the val split gets 2 classes."""
    import io
    import zipfile

    from tests.tasksets.data import png

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for c in range(10):
            for i in range(4):
                archive.writestr(f"class{c}/{i}.png", png((8, 8), value=20 * c + i))
    return buffer.getvalue()
