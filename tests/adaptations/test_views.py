"""The adaptation form and the adapted-model page: the permission matrix for both URLs
(and the run socket of an adaptation), pages and htmx partials, launching (success
redirects; every bad input is an error on the form, with nothing written and nothing
queued), and what the review page shows for a single regression task, a batch and a
classification task."""

from __future__ import annotations

import io
import json
import re
import shutil
import zipfile

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from apps.adaptations.models import Adaptation
from apps.experiments.models import Run, RunKind, RunStatus
from apps.registry import storage
from apps.registry.models import MetaModel
from tests.adaptations.test_services import register_trained, write_checkpoint_json
from tests.factories import AdaptedModelFactory, MetaModelFactory, TaskSetVersionFactory

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def world(team_roles, sent):
    team, users = team_roles
    meta_model = register_trained(team=team, launched_by=users["member"])
    from apps.adaptations.services import adaptation_start

    queued = adaptation_start(
        actor=users["member"], meta_model=meta_model, target="test_task", task_index=1, steps=10, lr=0.01
    )
    sent.clear()
    return {"team": team, "users": users, "meta_model": meta_model, "queued": queued}


def login(client, user):
    if user is not None:
        client.force_login(user)
    return client


def adapt_url(meta_model) -> str:
    return reverse("adaptations:adapt-new", kwargs={"meta_model_id": meta_model.pk})


def detail_url(run) -> str:
    return reverse("adaptations:adapted-detail", kwargs={"run_id": run.pk})


def form_data(**changes) -> dict:
    data = {"target": "test_task", "task_index": "4", "steps": "10", "lr": "0.01", "queue": "cpu"}
    data.update(changes)
    return data


def adapt_runs() -> int:
    return Run.objects.filter(kind=RunKind.ADAPT).count()


# -- permissions ------------------------------------------------------------------------


@pytest.mark.parametrize("htmx", [False, True], ids=["page", "htmx"])
@pytest.mark.parametrize(
    ("who", "expected"),
    [("anonymous", "login"), ("outsider", 404), ("viewer", 403), ("member", 200), ("admin", 200)],
)
def test_permission_matrix_adapt_form_get(client, world, who, expected, htmx):
    login(client, world["users"].get(who))
    response = client.get(adapt_url(world["meta_model"]), **(HTMX if htmx else {}))
    if expected == "login":
        assert response.status_code == 302 and response["Location"].startswith(reverse("login") + "?next=")
    else:
        assert response.status_code == expected


@pytest.mark.parametrize("htmx", [False, True], ids=["page", "htmx"])
@pytest.mark.parametrize(
    ("who", "expected"),
    [("anonymous", "login"), ("outsider", 404), ("viewer", 403), ("member", "ok"), ("admin", "ok")],
)
def test_permission_matrix_adapt_form_post(
    client, world, sent, who, expected, htmx, django_capture_on_commit_callbacks, settings
):
    # The world's queued adaptation is in flight already; the new one finds a free slot.
    settings.RUN_DISPATCH_SLOTS = {"cpu": 10, "gpu": 10}
    Run.objects.filter(status=RunStatus.QUEUED).update(dispatched_at=timezone.now())
    login(client, world["users"].get(who))
    before = adapt_runs()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(adapt_url(world["meta_model"]), form_data(), **(HTMX if htmx else {}))
    if expected == "login":
        assert response.status_code == 302 and response["Location"].startswith(reverse("login") + "?next=")
    elif expected == "ok":
        run = Run.objects.filter(kind=RunKind.ADAPT).latest("pk")
        if htmx:
            assert response.status_code == 200 and response["HX-Redirect"] == detail_url(run)
        else:
            assert response.status_code == 302 and response["Location"] == detail_url(run)
        assert sent == [("workers.tasks.adapt_run", [run.pk], "cpu")]
        return
    else:
        assert response.status_code == expected
    assert adapt_runs() == before and sent == []


@pytest.mark.parametrize("htmx", [False, True], ids=["page", "htmx"])
@pytest.mark.parametrize(
    ("who", "expected"),
    [("anonymous", "login"), ("outsider", 404), ("viewer", 200), ("member", 200), ("admin", 200)],
)
def test_permission_matrix_adapted_page(client, world, who, expected, htmx):
    login(client, world["users"].get(who))
    response = client.get(detail_url(world["queued"]), **(HTMX if htmx else {}))
    if expected == "login":
        assert response.status_code == 302 and response["Location"].startswith(reverse("login") + "?next=")
        return
    assert response.status_code == expected
    if expected == 200:
        content = response.content.decode()
        assert 'id="adapted-live"' in content
        assert ("<html" in content) is not htmx
        assert response["Vary"] and "HX-Request" in response["Vary"]


def test_unknown_ids_are_404(client, world):
    login(client, world["users"]["member"])
    assert client.get(reverse("adaptations:adapt-new", kwargs={"meta_model_id": 987654})).status_code == 404
    assert client.get(reverse("adaptations:adapted-detail", kwargs={"run_id": 987654})).status_code == 404
    training_run = world["meta_model"].training_run
    assert client.get(detail_url(training_run)).status_code == 404  # not an adaptation


def test_put_is_not_allowed(client, world):
    login(client, world["users"]["member"])
    assert client.put(adapt_url(world["meta_model"])).status_code == 405
    assert client.post(detail_url(world["queued"])).status_code == 405


# -- the form ---------------------------------------------------------------------------


def test_form_page_and_partial(client, world):
    login(client, world["users"]["member"])
    page = client.get(adapt_url(world["meta_model"])).content.decode()
    assert "<html" in page and 'id="adapt-form"' in page and 'data-random-task="600"' in page
    assert (
        'name="support_text"' in page
        and 'name="support_file"' in page
        and 'name="support_images"' not in page
    )
    assert 'name="lr" value="0.01"' in page and 'name="steps" value="10"' in page
    assert 'name="desc"' not in page  # sinusoid tasks have descriptions, but MAML does not read them
    assert "csrfmiddlewaretoken" in page
    partial = client.get(adapt_url(world["meta_model"]), **HTMX).content.decode()
    assert "<html" not in partial and partial.lstrip().startswith("<form") and 'id="adapt-form"' in partial


def test_custom_typed_points_are_adapted(client, world, sent, django_capture_on_commit_callbacks):
    login(client, world["users"]["member"])
    data = form_data(
        target="custom",
        support_text="x, y\n-2, 1.5\n0 0.3\n1.25; -0.7\n\n# a comment\n3,2",
        query_text="0.5, 1",
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(adapt_url(world["meta_model"]), data, **HTMX)
    run = Run.objects.filter(kind=RunKind.ADAPT).latest("pk")
    assert response["HX-Redirect"] == detail_url(run)
    assert run.adaptation.support == {"x": [[-2.0], [0.0], [1.25], [3.0]], "y": [1.5, 0.3, -0.7, 2.0]}
    assert run.adaptation.query == {"x": [[0.5]], "y": [1.0]}
    assert len(sent) == 1


def test_custom_csv_upload_is_adapted(client, world, sent):
    login(client, world["users"]["member"])
    csv = SimpleUploadedFile("support.csv", b"x,y\r\n-1,0.5\r\n2,1.5\r\n", content_type="text/csv")
    response = client.post(adapt_url(world["meta_model"]), form_data(target="custom", support_file=csv))
    assert response.status_code == 302
    run = Run.objects.filter(kind=RunKind.ADAPT).latest("pk")
    assert run.adaptation.support == {"x": [[-1.0], [2.0]], "y": [0.5, 1.5]}


BAD_POSTS = [
    (
        {"target": "custom", "support_text": "1, 2\n3, 4, 5"},
        "support_text",
        "row 2: has 3 values; expected 2 (1 input, then the target).",
    ),
    (
        {"target": "custom", "support_text": "1, 2\n3, nan"},
        "support_text",
        "row 2, column 2: NaN values are not allowed.",
    ),
    (
        {"target": "custom", "support_text": "1, 2\n3, inf"},
        "support_text",
        "row 2, column 2: infinite values are not allowed.",
    ),
    (
        {"target": "custom", "support_text": "1, 2\nabc, 4"},
        "support_text",
        "row 2, column 1: &#x27;abc&#x27; is not a number.",
    ),
    ({"target": "custom", "support_text": ""}, "support_text", "Give at least 1 point"),
    ({"target": "custom", "support_text": "x, y\n"}, "support_text", "Holds no examples; give at least 1"),
    (
        {"target": "custom", "support_text": "1, 2", "query_text": "1, 2\n2"},
        "query_text",
        "row 2: has 1 value; expected 2",
    ),
    ({"task_index": "600"}, "task_index", "less than or equal to 599"),
    ({"task_index": ""}, "task_index", "Pick a meta-test task."),
    ({"target": "batch", "shots": "0"}, "shots", "greater than or equal to 1"),
    ({"target": "batch", "shots": "101"}, "shots", "less than or equal to 100"),
    ({"steps": "101"}, "steps", "less than or equal to 100"),
    ({"lr": "0"}, "lr", "above 0"),
    ({"lr": "nan"}, "lr", ""),
    ({"target": "nope"}, "target", "Select a valid choice"),
]


@pytest.mark.parametrize(("changes", "field", "message"), BAD_POSTS)
def test_bad_input_is_an_error_on_the_form_and_nothing_is_queued(
    client, world, sent, changes, field, message, django_capture_on_commit_callbacks
):
    login(client, world["users"]["member"])
    before, adaptations = adapt_runs(), Adaptation.objects.count()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(adapt_url(world["meta_model"]), form_data(**changes), **HTMX)
    assert response.status_code == 200
    content = response.content.decode()
    assert "<html" not in content
    block = re.search(rf'data-field="{field}".*?(?=data-field=|</form>)', content, re.S)
    assert block and "errorlist" in block.group(0), content
    assert message in block.group(0)
    assert adapt_runs() == before and Adaptation.objects.count() == adaptations and sent == []


def test_csv_errors_name_the_line(client, world, sent):
    login(client, world["users"]["member"])
    csv = SimpleUploadedFile("s.csv", b"x,y\n1,2\n2,inf\n", content_type="text/csv")
    response = client.post(
        adapt_url(world["meta_model"]), form_data(target="custom", support_file=csv), **HTMX
    )
    assert "row 3, column &#x27;y&#x27;: infinite values are not allowed." in response.content.decode()
    both = SimpleUploadedFile("s.csv", b"1,2\n", content_type="text/csv")
    response = client.post(
        adapt_url(world["meta_model"]),
        form_data(target="custom", support_text="1, 2", support_file=both),
        **HTMX,
    )
    assert "either typed or as a file, not both" in response.content.decode()
    binary = SimpleUploadedFile("s.csv", b"\xff\xfe\x00bad", content_type="text/csv")
    response = client.post(
        adapt_url(world["meta_model"]), form_data(target="custom", support_file=binary), **HTMX
    )
    assert "s.csv: is not UTF-8 text" in response.content.decode()
    assert adapt_runs() == 1 and sent == []


def test_a_backbone_that_does_not_fit_is_a_form_error(client, world, sent):
    digits = TaskSetVersionFactory(taskset__team=world["team"], taskset__family="digits")
    MetaModel.objects.filter(pk=world["meta_model"].pk).update(taskset_version=digits)
    login(client, world["users"]["member"])
    response = client.post(adapt_url(world["meta_model"]), form_data(), **HTMX)
    content = response.content.decode()
    assert 'id="adapt-errors"' in content and "does not fit its task set" in content
    assert adapt_runs() == 1 and sent == []


def test_missing_checkpoint_disables_the_form(client, world, sent):
    shutil.rmtree(storage.meta_model_dir(world["meta_model"].pk))
    login(client, world["users"]["member"])
    page = client.get(adapt_url(world["meta_model"])).content.decode()
    assert 'id="no-checkpoint"' in page and re.search(r'id="adapt-submit"[^>]*disabled', page)
    response = client.post(adapt_url(world["meta_model"]), form_data(), **HTMX)
    assert "checkpoint is missing" in response.content.decode()
    assert adapt_runs() == 1 and sent == []


# -- models that read the task description ---------------------------------------------


@pytest.fixture
def described_model(team_roles, sent):
    """An MNN meta-model of a family with 2-value task descriptions."""
    team, users = team_roles
    version = TaskSetVersionFactory(taskset__team=team, taskset__family="sinusoid")
    meta_model = MetaModelFactory(experiment__team=team, taskset_version=version, algorithm="mnn")
    write_checkpoint_json(
        meta_model, family="sinusoid", kind="regression", input_shape=[1], ways=1, algorithm="mnn"
    )
    path = storage.meta_model_dir(meta_model.pk) / storage.CHECKPOINT_JSON
    meta = json.loads(path.read_text())
    meta["family_info"]["desc_dim"] = 2
    path.write_text(json.dumps(meta))
    return {"users": users, "meta_model": meta_model}


@pytest.mark.parametrize(
    ("desc", "message"), [("1, 2, 3", "Give 2 finite numbers."), ("1, x", "is not a number"), ("", "needs")]
)
def test_description_field_only_for_models_that_read_it(client, described_model, desc, message):
    login(client, described_model["users"]["member"])
    url = adapt_url(described_model["meta_model"])
    assert 'name="desc"' in client.get(url).content.decode()
    data = form_data(target="custom", support_text="1, 2", desc=desc)
    content = client.post(url, data, **HTMX).content.decode()
    block = re.search(r'data-field="desc".*?(?=data-field=|</form>)', content, re.S)
    assert block and "errorlist" in block.group(0) and message in block.group(0), content


# -- image models --------------------------------------------------------------------------


@pytest.fixture
def digits_model(team_roles, sent):
    team, users = team_roles
    version = TaskSetVersionFactory(taskset__team=team, taskset__family="digits")
    meta_model = MetaModelFactory(experiment__team=team, taskset_version=version, algorithm="protonet")
    write_checkpoint_json(
        meta_model, family="digits", kind="classification", input_shape=[64], ways=3, algorithm="protonet"
    )
    return {"users": users, "meta_model": meta_model}


def png(width: int = 8, height: int = 8, value: int = 128) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((height, width), value, dtype=np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def zipped(files: dict[str, bytes], name: str = "support.zip") -> SimpleUploadedFile:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return SimpleUploadedFile(name, buffer.getvalue(), content_type="application/zip")


def test_image_model_form_asks_for_images(client, digits_model):
    login(client, digits_model["users"]["member"])
    page = client.get(adapt_url(digits_model["meta_model"])).content.decode()
    assert 'name="support_images"' in page and "multiple" in page and 'name="support_text"' not in page
    assert "takes 8x8 images" in page and 'name="desc"' not in page


def test_images_in_a_zip_are_adapted(client, digits_model, sent):
    login(client, digits_model["users"]["member"])
    support = zipped(
        {
            "set/a/1.png": png(),
            "set/b/1.png": png(value=10),
            "set/c/1.png": png(value=250),
            "set/c/2.png": png(),
        }
    )
    query = zipped({"a/9.png": png(), "c/9.png": png()}, name="query.zip")
    data = form_data(target="custom", support_images=support, query_images=query)
    response = client.post(adapt_url(digits_model["meta_model"]), data)
    assert response.status_code == 302, response.content.decode()
    adaptation = Run.objects.filter(kind=RunKind.ADAPT).latest("pk").adaptation
    assert adaptation.support["classes"] == ["a", "b", "c"] and adaptation.support["y"] == [0, 1, 2, 2]
    assert len(adaptation.support["x"][0]) == 64 and adaptation.support["x"][1][0] == pytest.approx(10 / 255)
    assert adaptation.query["y"] == [0, 2] and adaptation.shots == 1


def test_images_as_several_files(client, digits_model, sent):
    login(client, digits_model["users"]["member"])
    files = [SimpleUploadedFile(f"{c}_1.png", png(), content_type="image/png") for c in ("x", "y", "z")]
    response = client.post(
        adapt_url(digits_model["meta_model"]), form_data(target="custom", support_images=files)
    )
    assert response.status_code == 302


@pytest.mark.parametrize(
    ("support", "message"),
    [
        (
            {"a/1.png": png(), "b/1.png": png(7, 7), "c/1.png": png()},
            "b/1.png: is 7x7 pixels but a/1.png is 8x8; all images must share one size.",
        ),
        (
            {"a/1.png": png(28, 28), "b/1.png": png(28, 28), "c/1.png": png(28, 28)},
            "a/1.png: is 28x28 pixels; this model takes 8x8 images.",
        ),
        ({"a/1.png": png(), "b/1.png": png()}, "Found 2 classes (a, b); this model tells 3 classes apart"),
        ({"a/1.png": png(), "b/1.png": png(), "c/1.png": png(), "d/1.png": png()}, "Found 4 classes"),
        ({"a/1.png": png(), "b/1.png": b"not a png", "c/1.png": png()}, "b/1.png: is not a readable image."),
        ({"a/1.png": png(), "b/1.txt": b"hi", "c/1.png": png()}, "b/1.txt: is not an image"),
        (
            {"1.png": png(), "b/1.png": png(), "c/1.png": png()},
            "1.png: images must sit directly in a folder named after their class",
        ),
        (
            {"../a/1.png": png(), "b/1.png": png(), "c/1.png": png()},
            "../a/1.png: entries must stay inside the zip (no '..', no leading '/')",
        ),
    ],
)
def test_bad_images_are_errors_naming_the_file(client, digits_model, sent, support, message):
    login(client, digits_model["users"]["member"])
    response = client.post(
        adapt_url(digits_model["meta_model"]),
        form_data(target="custom", support_images=zipped(support)),
        **HTMX,
    )
    content = response.content.decode().replace("&#x27;", "'")
    block = re.search(r'data-field="support_images".*?(?=data-field=|</form>)', content, re.S)
    assert block and message in block.group(0), content
    assert adapt_runs() == 0 and not Adaptation.objects.exists() and sent == []


def test_images_errors_for_several_files_and_query(client, digits_model, sent):
    login(client, digits_model["users"]["member"])
    unnamed = [SimpleUploadedFile("photo.png", png(), content_type="image/png")]
    response = client.post(
        adapt_url(digits_model["meta_model"]), form_data(target="custom", support_images=unnamed), **HTMX
    )
    assert "photo.png: name each image after its class, as class_anything.png." in response.content.decode()
    support = zipped({"a/1.png": png(), "b/1.png": png(), "c/1.png": png()})
    query = zipped({"q/1.png": png()}, name="query.zip")
    response = client.post(
        adapt_url(digits_model["meta_model"]),
        form_data(target="custom", support_images=support, query_images=query),
        **HTMX,
    )
    content = response.content.decode().replace("&#x27;", "'")
    assert "class 'q' is not one of the support set's classes" in content
    response = client.post(adapt_url(digits_model["meta_model"]), form_data(target="custom"), **HTMX)
    assert "Give at least 1 image for each class." in response.content.decode()
    assert adapt_runs() == 0 and sent == []


# -- the adapted model's page ------------------------------------------------------------


def test_queued_page_waits_and_carries_the_live_state(client, world):
    login(client, world["users"]["viewer"])
    run = world["queued"]
    page = client.get(detail_url(run)).content.decode()
    assert 'id="adapt-waiting"' in page and 'id="adapt-progress"' in page and 'data-status="queued"' in page
    assert 'id="adapt-curve"' in page and 'data-curve="support_loss query_loss"' in page
    assert 'src="/static/js/adapt_live.js"' in page and 'data-live-url="' + detail_url(run) + '"' in page
    state = json.loads(
        re.search(r'<script id="run-state" type="application/json">(.*?)</script>', page, re.S).group(1)
    )
    assert state["type"] == "run.state" and state["run"]["id"] == run.pk and state["run"]["total_steps"] == 10
    assert "meta-test task 1" in page
    # Lineage: meta-model, its training run, the task-set version.
    meta_model = world["meta_model"]
    assert reverse("experiments:run-detail", kwargs={"run_id": meta_model.training_run_id}) in page
    assert (
        reverse("tasksets:taskset-detail", kwargs={"taskset_id": meta_model.taskset_version.taskset_id})
        in page
    )


def finish(run, **fields):
    Run.objects.filter(pk=run.pk).update(status=RunStatus.SUCCEEDED, step=run.total_steps)
    run.refresh_from_db()
    return AdaptedModelFactory(adaptation=run.adaptation, **fields)


def test_single_regression_result(client, world):
    run = world["queued"]
    adapted = finish(
        run,
        metric="mse",
        before=4.5,
        after=0.25,
        n_steps=2,
        weights_sha256="ab" * 32,
        curve=[{"step": i, "support_loss": 3.0 - i, "query_loss": 4.5 - 2 * i} for i in range(3)],
        predictions={
            "kind": "regression",
            "has_truth": True,
            "support": {"x": [[0.5]], "y": [1.0]},
            "query": {"x": [[1.5]], "y": [2.0], "before": [0.1], "after": [1.9]},
            "grid": {
                "x": [0.0, 1.0, 2.0],
                "truth": [0.0, 1.0, 2.0],
                "before": [0.0, 0.0, 0.0],
                "after": [0.1, 1.1, 2.1],
            },
        },
    )
    login(client, world["users"]["viewer"])
    page = client.get(detail_url(run)).content.decode()
    assert 'id="adapt-result"' in page and 'id="adapt-waiting"' not in page
    assert re.search(r'id="adapt-before">4\.5000<', page) and re.search(r'id="adapt-after">0\.2500<', page)
    chart = json.loads(
        re.search(
            r'<script id="adapt-regression-data" type="application/json">(.*?)</script>', page, re.S
        ).group(1)
    )
    assert chart["x"] == [0.0, 0.5, 1.0, 1.5, 2.0]
    series = {s["label"]: s for s in chart["series"]}
    assert set(series) == {"true function", "before adaptation", "after adaptation", "support", "query"}
    assert (
        series["support"]["values"] == [None, 1.0, None, None, None] and series["support"]["kind"] == "points"
    )
    assert series["after adaptation"]["values"] == [0.1, None, 1.1, None, 2.1]
    assert reverse("adaptations:adapted-weights", kwargs={"run_id": adapted.adaptation.run_id}) in page
    assert reverse("adaptations:adapted-card", kwargs={"run_id": adapted.adaptation.run_id}) in page
    partial = client.get(detail_url(run), **HTMX).content.decode()
    assert (
        "<html" not in partial
        and 'id="adapt-regression-data"' in partial
        and 'id="adapt-curve"' not in partial
    )


def test_batch_result(client, world):
    run = world["queued"]
    Adaptation.objects.filter(pk=run.adaptation.pk).update(target="batch")
    rng = np.random.default_rng(0)
    losses = rng.gamma(2.0, 1.0, size=(50, 4)).astype("<f4")
    scores = losses[:, -1]
    finish(
        run,
        metric="mse",
        before=float(losses[:, 0].mean()),
        after=float(scores.mean()),
        ci95=0.123,
        n_tasks=50,
        n_steps=3,
        curve=[{"step": i, "query_loss": float(losses[:, i].mean())} for i in range(4)],
        losses=losses.tobytes(),
        scores=scores.tobytes(),
        task_ids=np.arange(50, dtype="<i8").tobytes(),
        predictions={"kind": "batch", "metric": "mse"},
    )
    login(client, world["users"]["member"])
    page = client.get(detail_url(run)).content.decode()
    assert "50 meta-test tasks, 3 inner steps" in page and "± 0.1230" in page
    histogram = json.loads(
        re.search(
            r'<script id="adapt-histogram-data" type="application/json">(.*?)</script>', page, re.S
        ).group(1)
    )
    assert sum(histogram["counts"][:-1]) == 50 and len(histogram["x"]) == len(histogram["counts"]) == 31
    curve = json.loads(
        re.search(
            r'<script id="adapt-mean-curve-data" type="application/json">(.*?)</script>', page, re.S
        ).group(1)
    )
    assert [p[0] for p in curve["series"]["query_loss"]] == [0, 1, 2, 3]
    assert 'id="adapt-curve"' not in page  # no per-step live curve for a batch
    # A batch keeps scores, not weights: its card downloads, its weights link is not offered.
    assert 'id="download-adapted-weights"' not in page
    assert reverse("adaptations:adapted-card", kwargs={"run_id": run.pk}) in page


@pytest.mark.parametrize("stored", ["pixels", "src"])
def test_classification_result_escapes_class_names(client, digits_model, stored):
    """Images are stored as pixel values and drawn when the page is asked for; rows
    stored before that (a PNG data URI drawn by the worker) still show."""
    from apps.adaptations.services import adaptation_start

    meta_model = digits_model["meta_model"]
    image = [0.5] * 64
    run = adaptation_start(
        actor=digits_model["users"]["member"],
        meta_model=meta_model,
        target="custom",
        support={"x": [image] * 3, "y": [0, 1, 2], "classes": ["<b>a</b>", "b", "c"]},
        query={"x": [image] * 3, "y": [0, 1, 2]},
        steps=0,
        lr=0.1,
    )
    from apps.tasksets.previews import png_data_uri

    src = png_data_uri(np.full((1, 8, 8), 0.5, dtype=np.float32))
    good = {"src": src} if stored == "src" else {"x": image}
    finish(
        run,
        metric="accuracy",
        before=1 / 3,
        after=2 / 3,
        predictions={
            "kind": "classification",
            "ways": 3,
            "classes": ["<b>a</b>", "b", "c"],
            "query": {"y": [0, 1, 2], "before": [0, 0, 0], "after": [0, 1, 1]},
            "confusion": [[1, 0, 0], [0, 1, 0], [0, 1, 0]],
            "image_shape": [8, 8],
            "support_images": [{**good, "label": c} for c in range(3)],
            "query_images": [
                {**good, "label": 2, "pred": 1, "pred_before": 0},
                {"src": "javascript:alert(1)", "label": 0, "pred": 0},
                {"x": [0.5] * 10, "label": 0, "pred": 0},  # not 8x8: not drawn
            ],
        },
    )
    login(client, digits_model["users"]["viewer"])
    page = client.get(detail_url(run)).content.decode()
    assert 'id="adapt-confusion"' in page and "&lt;b&gt;a&lt;/b&gt;" in page and "<b>a</b>" not in page
    assert page.count('class="preview-img"') == 4  # 3 support, 1 query (the bad ones are dropped)
    assert page.count(f'src="{src}"') == 4  # drawn now, as the worker used to draw them
    assert "javascript:" not in page
    assert 'data-correct="0"' in page and 'id="adapt-accuracy"' in page


def test_failed_run_shows_its_error(client, world):
    run = world["queued"]
    Run.objects.filter(pk=run.pk).update(status=RunStatus.FAILED, error="Problem with the <task> data")
    login(client, world["users"]["viewer"])
    page = client.get(detail_url(run)).content.decode()
    assert 'id="adapt-error"' in page and "Problem with the &lt;task&gt; data" in page


def test_run_page_and_run_list_link_to_the_adapted_page(client, world):
    login(client, world["users"]["viewer"])
    run = world["queued"]
    page = client.get(reverse("experiments:run-detail", kwargs={"run_id": run.pk})).content.decode()
    assert f'id="adapted-link" data-testid="adapted-link" href="{detail_url(run)}"' in page
    assert 'id="clone-run"' not in page
    runs_url = reverse("experiments:run-list", kwargs={"team_slug": world["team"].slug})
    for kind in ("adapt", "all"):
        listing = client.get(runs_url, {"kind": kind}).content.decode()
        assert f'data-run-kind="adapt" href="{detail_url(run)}"' in listing
    # The run list shows training runs unless asked otherwise.
    assert f'id="run-row-{run.pk}"' not in client.get(runs_url).content.decode()


# -- the run socket of an adaptation -----------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_run_socket_of_an_adaptation_obeys_the_roles(world):
    from asgiref.sync import async_to_sync
    from channels.routing import URLRouter
    from channels.testing import WebsocketCommunicator
    from django.contrib.auth.models import AnonymousUser

    from metaweb.routing import websocket_urlpatterns

    router = URLRouter(websocket_urlpatterns)
    run = world["queued"]

    async def connect(user):
        communicator = WebsocketCommunicator(router, f"/ws/runs/{run.pk}/")
        communicator.scope["user"] = user
        connected, code = await communicator.connect()
        state = await communicator.receive_json_from(timeout=5) if connected else None
        await communicator.disconnect()
        return connected, code, state

    assert async_to_sync(connect)(AnonymousUser())[:2] == (False, 4403)
    assert async_to_sync(connect)(world["users"]["outsider"])[:2] == (False, 4404)
    connected, _code, state = async_to_sync(connect)(world["users"]["viewer"])
    assert connected and state["type"] == "run.state" and state["run"]["id"] == run.pk


def test_the_adaptation_web_side_never_imports_torch():
    """The form, service, selectors, views and the worker module (imported by Celery's
    autodiscovery in the web process) stay torch-free until a task runs."""
    import subprocess
    import sys

    code = (
        "import django, sys; django.setup(); "
        "import metaweb.urls, apps.adaptations.views, apps.adaptations.forms, "
        "apps.adaptations.services, apps.adaptations.selectors, workers.tasks; "
        "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith(('torch.', "
        "'workers.metalearn.api', 'workers.metalearn.loop', 'workers.metalearn.algorithms'))); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


# -- parsing typed rows (no database) -----------------------------------------------------


def facts_for(**changes):
    from apps.adaptations.selectors import ModelFacts

    base = {
        "family": "table",
        "kind": "regression",
        "input_shape": (2,),
        "desc_dim": None,
        "ways": 1,
        "algorithm": "maml",
        "shots": 5,
        "query": 5,
        "inner_lr": 0.01,
        "family_params": {},
    }
    return ModelFacts(**(base | changes))


def test_parse_rows_with_several_inputs_and_a_header():
    from django.core.exceptions import ValidationError

    from apps.adaptations.uploads import parse_rows

    parsed = parse_rows("a,b,target\n1,2,3\n4\t5\t6\n", facts=facts_for())
    assert parsed == {"x": [[1.0, 2.0], [4.0, 5.0]], "y": [3.0, 6.0]}
    with pytest.raises(ValidationError) as info:
        parse_rows("1,2,3\n4,5\n", facts=facts_for())
    assert "row 2: has 2 values; expected 3 (2 inputs, then the target)." in str(info.value)


def test_parse_rows_maps_class_labels_in_order():
    from django.core.exceptions import ValidationError

    from apps.adaptations.uploads import parse_rows

    facts = facts_for(kind="classification", ways=3)
    parsed = parse_rows("1,2,10\n3,4,2\n5,6,7\n7,8,2\n", facts=facts)
    assert parsed["classes"] == ["2", "7", "10"] and parsed["y"] == [2, 0, 1, 0]  # numeric order
    named = parse_rows("1,2,cat\n3,4,dog\n5,6,ant\n", facts=facts)
    assert named["classes"] == ["ant", "cat", "dog"] and named["y"] == [1, 2, 0]
    query = parse_rows("1,1,dog\n", facts=facts, classes=named["classes"])
    assert query["y"] == [2]
    with pytest.raises(ValidationError) as info:
        parse_rows("1,1,emu\n", facts=facts, classes=named["classes"])
    assert "row 1: class 'emu' is not one of the support set's classes." in info.value.messages[0]
    with pytest.raises(ValidationError) as info:
        parse_rows("1,2,cat\n3,4,dog\n", facts=facts)
    assert "Found 2 classes (cat, dog); this model tells 3 classes apart" in info.value.messages[0]


def test_the_verdict_panel_of_the_adapted_model(client, world):
    from apps.reviews.models import Review

    run = world["queued"]
    login(client, world["users"]["viewer"])
    assert 'data-testid="reviews"' not in client.get(detail_url(run)).content.decode()  # nothing to judge yet
    adapted = finish(run, metric="mse", before=2.0, after=1.0, predictions={"kind": "regression"})
    url = reverse("reviews:review-create", kwargs={"run_id": adapted.adaptation.run_id})
    page = client.get(detail_url(run)).content.decode()
    assert f'id="reviews-adapted-{adapted.pk}"' in page and 'data-testid="no-verdicts"' in page
    assert f'hx-post="{url}"' not in page  # viewers read only
    login(client, world["users"]["member"])
    partial = client.get(detail_url(run), **HTMX).content.decode()
    assert f'hx-post="{url}"' in partial and "<html" not in partial
    response = client.post(url, {"verdict": "approve", "comment": "Fits the <truth>."}, **HTMX)
    assert response.status_code == 200
    review = Review.objects.get(adapted_model=adapted)
    assert review.verdict == "approve" and review.author == world["users"]["member"]
    page = client.get(detail_url(run)).content.decode()
    assert f'data-review-id="{review.pk}"' in page and "Fits the &lt;truth&gt;." in page


def test_meta_test_tasks_take_a_number_of_shots(client, world, sent):
    """The shots field serves the meta-test targets; empty means the training K."""
    login(client, world["users"]["member"])
    page = client.get(adapt_url(world["meta_model"])).content.decode()
    assert 'data-target-section="test_task batch"' in page and 'name="shots"' in page
    assert "Empty: the 5 the model was meta-trained with" in page
    response = client.post(adapt_url(world["meta_model"]), form_data(target="batch", shots="2"), **HTMX)
    assert response.status_code == 200 and response.headers.get("HX-Redirect")
    assert Adaptation.objects.latest("pk").shots == 2
    client.post(adapt_url(world["meta_model"]), form_data(target="test_task", task_index="4"), **HTMX)
    latest = Adaptation.objects.latest("pk")
    assert (latest.task_index, latest.shots) == (4, 5)


# -- Meta-SGD and ANIL: the trained number of steps, and a warning past it ----------------


@pytest.fixture
def bounded_models(team_roles, sent):
    """Meta-SGD and ANIL meta-models trained with 2 inner steps, and a MAML one."""
    team, users = team_roles
    version = TaskSetVersionFactory(taskset__team=team, taskset__family="sinusoid")
    models = {}
    for algorithm in ("metasgd", "anil", "maml"):
        model = MetaModelFactory(experiment__team=team, taskset_version=version, algorithm=algorithm)
        write_checkpoint_json(
            model, family="sinusoid", kind="regression", input_shape=[1], ways=1, algorithm=algorithm
        )
        path = storage.meta_model_dir(model.pk) / storage.CHECKPOINT_JSON
        meta = json.loads(path.read_text())
        meta["config"]["inner_steps"] = 2
        meta["family_info"]["desc_dim"] = 2
        path.write_text(json.dumps(meta))
        models[algorithm] = model
    return {"users": users, **models}


def steps_value(html: str) -> str:
    return re.search(r'<input type="number" name="steps" value="(\d+)"', html).group(1)


@pytest.mark.parametrize("algorithm", ["metasgd", "anil"])
def test_bounded_models_default_to_their_trained_steps_and_warn_past_them(client, bounded_models, algorithm):
    login(client, bounded_models["users"]["member"])
    url = adapt_url(bounded_models[algorithm])
    html = client.get(url).content.decode()
    assert steps_value(html) == "2"
    warning = re.search(r'<p class="field-warning" id="steps-warning"[^>]*>(.*?)</p>', html, re.S)
    assert warning and 'data-trained-steps="2"' in warning.group(0) and " hidden" in warning.group(0)
    assert "meta-trained for 2 inner steps" in warning.group(1)  # static/js/adapt_live.js shows it past 2

    # A form sent back with an error and more steps than trained: the warning is shown.
    shown = client.post(url, form_data(steps="5", task_index="", lr="0.01"), **HTMX).content.decode()
    assert re.search(r'id="steps-warning"[^>]*data-trained-steps="2">', shown), shown

    # Launched anyway: the adapted page carries the warning once, and the run's history keeps it.
    response = client.post(url, form_data(steps="5"), **HTMX)
    assert response.status_code == 200 and response["HX-Redirect"]
    run = Run.objects.filter(kind=RunKind.ADAPT).latest("pk")
    assert run.events.filter(kind="warning", message__contains="can diverge").count() == 1
    page = client.get(response["HX-Redirect"]).content.decode()
    assert "meta-trained for 2 inner steps; adapting with more can diverge" in page


def test_at_the_trained_steps_there_is_no_warning(client, bounded_models):
    login(client, bounded_models["users"]["member"])
    response = client.post(adapt_url(bounded_models["anil"]), form_data(steps="2"), **HTMX)
    run = Run.objects.filter(kind=RunKind.ADAPT).latest("pk")
    assert not run.events.filter(kind="warning").exists()
    assert "can diverge" not in client.get(response["HX-Redirect"]).content.decode()


def test_other_models_keep_the_usual_default(client, bounded_models):
    login(client, bounded_models["users"]["member"])
    html = client.get(adapt_url(bounded_models["maml"])).content.decode()
    assert steps_value(html) == "10" and 'id="steps-warning"' not in html


def test_an_mnn_on_the_support_set_asks_no_description(client, described_model):
    path = storage.meta_model_dir(described_model["meta_model"].pk) / storage.CHECKPOINT_JSON
    meta = json.loads(path.read_text())
    meta["config"]["mnn_condition"] = "support"
    path.write_text(json.dumps(meta))
    login(client, described_model["users"]["member"])
    assert 'name="desc"' not in client.get(adapt_url(described_model["meta_model"])).content.decode()


@pytest.mark.parametrize(
    ("changes", "example"),
    [
        ({"input_shape": (1,)}, "-2.5, 1.2\n0.3, -0.8\n1.9, 2.1"),
        ({"kind": "classification", "ways": 3}, "-2.5, 1.2, a\n-0.8, 1.9, b\n0.7, -1.4, c"),
        ({"input_shape": (3,)}, "-2.5, 1.2, 0.3, -0.8\n1.9, 2.1, 0.7, -1.4\n1.1, -0.2, 2.4, 0.5"),
    ],
)
def test_the_support_sets_example_is_in_the_models_columns(changes, example):
    """The text box's placeholder is input that the reader takes for this model."""
    from apps.adaptations.forms import AdaptForm
    from apps.adaptations.uploads import parse_rows

    facts = facts_for(**changes)
    assert AdaptForm(facts=facts).fields["support_text"].widget.attrs["placeholder"] == example
    parsed = parse_rows(example, facts=facts)
    assert len(parsed["x"]) == 3 and all(len(x) == facts.input_size for x in parsed["x"])
    if facts.classification:  # one example of each class the model tells apart
        assert len(parsed["classes"]) == facts.ways
    wide = AdaptForm(facts=facts_for(input_shape=(64,)))
    assert wide.fields["support_text"].widget.attrs["placeholder"] == "x1, x2, …, x64, y"
