"""Meta-model pages, partials and downloads: the permission matrix for every URL,
full pages and htmx partials, uploads through the form, alias moves and verdicts
through their partials, model cards, and the verdict badges in the run and
experiment lists."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from safetensors.numpy import save as save_numpy

from apps.experiments.models import RunStatus
from apps.registry import storage
from apps.registry.models import AliasMove, MetaModel, ModelAlias
from apps.reviews.models import Review
from tests.factories import (
    AdaptedModelFactory,
    ExperimentFactory,
    MetaModelFactory,
    ReviewFactory,
    RunFactory,
    TaskSetVersionFactory,
    UserFactory,
)
from workers.metalearn.config import parse_config
from workers.metalearn.specs import expected_shapes

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
ROLES = ("anonymous", "outsider", "viewer", "member", "admin")
SINE_INFO = {"name": "sinusoid", "kind": "regression", "input_shape": [1], "desc_dim": 2, "ways": 1}
UPLOAD_CONFIG = {"algorithm": "maml", "hidden": [8, 8]}


def _write(folder, data: bytes) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / storage.WEIGHTS_FILE).write_bytes(data)
    (folder / storage.CHECKPOINT_JSON).write_text("{}")
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def world(team_roles):
    team, users = team_roles
    version = TaskSetVersionFactory(taskset__team=team, taskset__name="Sine waves", number=3)
    experiment = ExperimentFactory(team=team, name="Sine study", created_by=users["member"])
    run = RunFactory(experiment=experiment, taskset_version=version, status=RunStatus.SUCCEEDED)
    v1 = MetaModelFactory(
        experiment=experiment,
        taskset_version=version,
        training_run=run,
        name="sine-waves-maml",
        version=1,
        metrics={"loss": 0.25, "val_loss": 0.5},
        code_version="abc1234",
    )
    v1.weights_sha256 = _write(storage.meta_model_dir(v1.pk), b"weights of v1")
    v1.save(update_fields=["weights_sha256"])
    v2 = MetaModelFactory(experiment=experiment, taskset_version=version, name="sine-waves-maml", version=2)
    _write(storage.meta_model_dir(v2.pk), b"weights of v2")
    single = AdaptedModelFactory(
        adaptation__meta_model=v1, adaptation__target="custom", before=2.0, after=0.5
    )
    _write(storage.adapted_model_dir(single.pk), b"adapted weights")
    batch = AdaptedModelFactory(adaptation__meta_model=v1, n_tasks=600, after=0.7, ci95=0.05)
    return {
        "team": team,
        "users": users,
        "version": version,
        "experiment": experiment,
        "run": run,
        "v1": v1,
        "v2": v2,
        "single": single,
        "batch": batch,
    }


def client_for(client, world, role):
    if role != "anonymous":
        client.force_login(world["users"][role])
    return client


def _status(client, world, role, method, url, data=None, **extra):
    c = client_for(client, world, role)
    response = c.post(url, data or {}, **extra) if method == "post" else c.get(url, **extra)
    c.logout()
    return response


def _urls(world):
    v1, single = world["v1"], world["single"]
    return {
        "list": reverse("registry:metamodel-list", kwargs={"team_slug": "alpha"}),
        "upload": reverse("registry:metamodel-upload", kwargs={"team_slug": "alpha"}),
        "detail": reverse("registry:metamodel-detail", args=[v1.pk]),
        "weights": reverse("registry:metamodel-weights", args=[v1.pk]),
        "card": reverse("registry:metamodel-card", args=[v1.pk]),
        "adapted-weights": reverse("adaptations:adapted-weights", args=[single.adaptation.run_id]),
        "adapted-card": reverse("adaptations:adapted-card", args=[single.adaptation.run_id]),
        "reviews": reverse("reviews:review-create", kwargs={"meta_model_id": v1.pk}),
        "adapted-reviews": reverse("reviews:review-create", kwargs={"run_id": single.adaptation.run_id}),
        "alias": reverse("registry:alias-move", args=[v1.pk]),
    }


# -- the permission matrix ----------------------------------------------------------------------

READS = ["list", "detail", "weights", "card", "adapted-weights", "adapted-card"]


@pytest.mark.parametrize("name", READS)
@pytest.mark.parametrize("role", ROLES)
def test_reads_need_membership(client, world, name, role):
    url = _urls(world)[name]
    response = _status(client, world, role, "get", url)
    if role == "anonymous":
        assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    elif role == "outsider":
        assert response.status_code == 404
    else:
        assert response.status_code == 200


@pytest.mark.parametrize("name", ["reviews", "adapted-reviews"])
@pytest.mark.parametrize("role", ROLES)
def test_review_panels_need_membership(client, world, name, role):
    response = _status(client, world, role, "get", _urls(world)[name], **HTMX)
    expected = {"anonymous": 302, "outsider": 404}.get(role, 200)
    assert response.status_code == expected


WRITES = {
    "upload": {},
    "alias": {"alias": "candidate"},
    "reviews": {"verdict": "approve", "comment": "ok"},
    "adapted-reviews": {"verdict": "approve", "comment": "ok"},
}


@pytest.mark.parametrize("name", sorted(WRITES))
@pytest.mark.parametrize("role", ROLES)
def test_writes_need_the_member_role(client, world, name, role):
    response = _status(client, world, role, "post", _urls(world)[name], WRITES[name], **HTMX)
    expected = {"anonymous": 302, "outsider": 404, "viewer": 403}.get(role, 200)
    assert response.status_code == expected
    if role in ("anonymous", "outsider", "viewer"):
        assert not Review.objects.exists() and not ModelAlias.objects.exists()


@pytest.mark.parametrize("role", ROLES)
def test_the_upload_page_is_for_members(client, world, role):
    response = _status(client, world, role, "get", _urls(world)["upload"])
    assert response.status_code == {"anonymous": 302, "outsider": 404, "viewer": 403}.get(role, 200)


def test_unknown_ids_are_404(client, world):
    client.force_login(world["users"]["admin"])
    for name in ("registry:metamodel-detail", "registry:metamodel-card", "adaptations:adapted-card"):
        assert client.get(reverse(name, args=[999999])).status_code == 404


# -- the model list ---------------------------------------------------------------------------


def test_model_list_groups_versions_with_aliases_and_verdicts(client, world):
    v1, v2 = world["v1"], world["v2"]
    ReviewFactory(meta_model=v1, verdict="needs_work")
    ReviewFactory(meta_model=v1, verdict="approve")
    ModelAlias.objects.create(team=world["team"], model_name=v1.name, alias="production", meta_model=v1)
    reptile = MetaModelFactory(experiment=world["experiment"], name="digits-reptile", algorithm="reptile")
    MetaModelFactory(name="secret-model")  # another team's
    client.force_login(world["users"]["viewer"])
    url = reverse("registry:metamodel-list", kwargs={"team_slug": "alpha"})
    with CaptureQueriesContext(connection) as queries:
        page = client.get(url)
    html = page.content.decode()
    assert page.status_code == 200 and "<html" in html and 'id="nav-models"' in html
    assert 'data-model="sine-waves-maml"' in html and 'data-model="digits-reptile"' in html
    assert "secret-model" not in html
    assert html.index(f"/models/{v2.pk}/") < html.index(f"/models/{v1.pk}/")
    assert 'data-verdict="approve"' in html and "production → v1" in html
    assert 'data-alias="production"' in html
    assert len(queries) <= 12  # no query per version

    partial = client.get(url, {"algorithm": "reptile"}, **HTMX)
    body = partial.content.decode()
    assert partial.status_code == 200 and "<html" not in body and 'id="metamodel-table"' in body
    assert 'data-model="digits-reptile"' in body and "sine-waves-maml" not in body
    assert "HX-Request" in partial["Vary"]
    by_taskset = client.get(url, {"taskset": reptile.taskset_version.taskset_id}, **HTMX).content.decode()
    assert "digits-reptile" in by_taskset and "sine-waves-maml" not in by_taskset
    empty = client.get(url, {"algorithm": "anil"}, **HTMX).content.decode()
    assert "No meta-model matches these filters" in empty


def test_model_list_queries_do_not_grow_with_versions(client, world):
    client.force_login(world["users"]["viewer"])
    url = reverse("registry:metamodel-list", kwargs={"team_slug": "alpha"})
    with CaptureQueriesContext(connection) as few:
        client.get(url, **HTMX)
    for number in range(3, 13):
        MetaModelFactory(experiment=world["experiment"], name="sine-waves-maml", version=number)
    with CaptureQueriesContext(connection) as many:
        client.get(url, **HTMX)
    assert len(many) == len(few)


# -- one meta-model ---------------------------------------------------------------------------


def test_detail_page_shows_lineage_both_ways(client, world):
    v1, run, single, batch = world["v1"], world["run"], world["single"], world["batch"]
    ReviewFactory(
        meta_model=None,
        adapted_model=single,
        team=world["team"],
        author=world["users"]["admin"],
        verdict="reject",
        comment="<b>no</b>",
    )
    client.force_login(world["users"]["member"])
    page = client.get(reverse("registry:metamodel-detail", args=[v1.pk]))
    html = page.content.decode()
    assert page.status_code == 200
    assert reverse("tasksets:taskset-detail", args=[world["version"].taskset_id]) in html
    assert reverse("experiments:run-detail", args=[run.pk]) in html
    assert reverse("experiments:experiment-detail", args=[world["experiment"].pk]) in html
    assert reverse("adaptations:adapted-detail", args=[single.adaptation.run_id]) in html
    assert reverse("adaptations:adapted-detail", args=[batch.adaptation.run_id]) in html
    assert 'data-verdict="reject"' in html and "<b>no</b>" not in html  # badge only, comments escaped
    assert reverse("registry:metamodel-weights", args=[v1.pk]) in html
    assert reverse("registry:metamodel-card", args=[v1.pk]) in html
    assert reverse("adaptations:adapt-new", args=[v1.pk]) in html
    assert reverse("reviews:compare", kwargs={"team_slug": "alpha"}) + f"?m={v1.pk}" in html
    assert 'id="alias-form"' in html and 'data-testid="record-verdict"' in html
    assert "val_loss" in html and "abc1234" in html

    partial = client.get(reverse("registry:metamodel-detail", args=[v1.pk]), **HTMX).content.decode()
    assert "<html" not in partial and 'id="lineage-adaptations"' in partial


def test_viewers_see_no_forms(client, world):
    client.force_login(world["users"]["viewer"])
    html = client.get(reverse("registry:metamodel-detail", args=[world["v1"].pk])).content.decode()
    assert 'id="alias-form"' not in html and 'data-testid="record-verdict"' not in html
    assert 'id="adapt-button"' not in html and 'id="download-weights"' in html


# -- aliases ----------------------------------------------------------------------------------


def test_moving_an_alias_with_htmx_returns_the_alias_partial(client, world):
    v1, v2 = world["v1"], world["v2"]
    client.force_login(world["users"]["member"])
    response = client.post(reverse("registry:alias-move", args=[v1.pk]), {"alias": "candidate"}, **HTMX)
    html = response.content.decode()
    assert response.status_code == 200 and "<html" not in html and 'id="aliases"' in html
    assert 'data-alias="candidate"' in html and "(this version)" in html
    client.post(reverse("registry:alias-move", args=[v2.pk]), {"alias": "candidate"}, **HTMX)
    html = client.get(reverse("registry:metamodel-detail", args=[v2.pk])).content.decode()
    assert "v1 → v2" in html and "set to v1" in html and "member" in html
    assert AliasMove.objects.count() == 2


def test_production_without_approval_shows_the_error_on_the_form(client, world):
    client.force_login(world["users"]["member"])
    url = reverse("registry:alias-move", args=[world["v1"].pk])
    html = client.post(url, {"alias": "production"}, **HTMX).content.decode()
    assert "Production needs an approve verdict" in html and 'id="alias-form"' in html
    assert not ModelAlias.objects.exists()
    # Without htmx: the whole page with the error.
    page = client.post(url, {"alias": "production"})
    assert page.status_code == 200 and "<html" in page.content.decode()
    assert "Production needs an approve verdict" in page.content.decode()


def test_moving_an_alias_without_htmx_redirects_with_a_message(client, world):
    ReviewFactory(meta_model=world["v1"], verdict="approve")
    client.force_login(world["users"]["member"])
    url = reverse("registry:alias-move", args=[world["v1"].pk])
    response = client.post(url, {"alias": "production"}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("registry:metamodel-detail", args=[world["v1"].pk])
    assert "sine-waves-maml@production now points at v1" in response.content.decode()
    assert ModelAlias.objects.get(alias="production").meta_model == world["v1"]


# -- uploads ----------------------------------------------------------------------------------


def _upload_post(world, data: bytes, **changes):
    post = {
        "name": "Sine MAML",
        "experiment": world["experiment"].pk,
        "taskset_version": world["version"].pk,
        "config": json.dumps(UPLOAD_CONFIG),
        "description": "",
        "weights_file": SimpleUploadedFile("model.safetensors", data),
    }
    post.update(changes)
    return post


def _good_weights() -> bytes:
    shapes = expected_shapes(parse_config(UPLOAD_CONFIG), SINE_INFO)
    return save_numpy({k: np.zeros(v, dtype=np.float32) for k, v in shapes.items()})


def test_upload_through_the_form_redirects_to_the_new_model(client, world):
    client.force_login(world["users"]["member"])
    url = reverse("registry:metamodel-upload", kwargs={"team_slug": "alpha"})
    response = client.post(url, _upload_post(world, _good_weights()))
    meta_model = MetaModel.objects.get(name="sine-maml")
    assert response.status_code == 302
    assert response["Location"] == reverse("registry:metamodel-detail", args=[meta_model.pk])
    with_htmx = client.post(url, _upload_post(world, _good_weights()), **HTMX)
    assert with_htmx.status_code == 200 and with_htmx["HX-Redirect"].startswith("/models/")
    assert MetaModel.objects.filter(name="sine-maml").count() == 2


@pytest.mark.parametrize(
    ("data", "changes", "field", "message"),
    [
        (b"\x80\x04\x95garbage", {}, "weights_file", "pickle"),
        (b"PK\x03\x04rest", {}, "weights_file", "zip"),
        (None, {"config": "{not json"}, "config", "not valid JSON"),
        (None, {"config": json.dumps({"algorithm": "maml", "hidden": [8, 9]})}, "weights_file", "expected"),
        (None, {"config": json.dumps({"algorithm": "protonet"})}, "config", "classification"),
    ],
)
def test_upload_errors_are_shown_on_their_fields(client, world, data, changes, field, message):
    client.force_login(world["users"]["member"])
    url = reverse("registry:metamodel-upload", kwargs={"team_slug": "alpha"})
    post = _upload_post(world, _good_weights() if data is None else data, **changes)
    response = client.post(url, post, **HTMX)
    html = response.content.decode()
    assert response.status_code == 200 and "<html" not in html and 'id="upload-form"' in html
    assert f'data-field="{field}"' in html and message in html
    assert not MetaModel.objects.filter(name="sine-maml").exists()
    assert sorted(p.name for p in (storage.registry_root() / "meta").iterdir()) == sorted(
        [str(world["v1"].pk), str(world["v2"].pk)]
    )
    full = client.post(url, _upload_post(world, _good_weights() if data is None else data, **changes))
    assert full.status_code == 200 and "<html" in full.content.decode() and message in full.content.decode()


def _header_only(header: bytes) -> bytes:
    return len(header).to_bytes(8, "little") + header


@pytest.mark.parametrize(
    ("data", "message"),
    [
        # 200,000 levels: json.loads would raise RecursionError (a 500 before).
        (_header_only(b"[" * 200_000 + b"]" * 200_000), "nests deeper than 8 levels"),
        (_header_only(b'{"a":' * 100_000 + b"1" + b"}" * 100_000), "nests deeper than 8 levels"),
        (_header_only(b"[" * 200_000), "brackets do not pair up"),
        (_header_only(b'{"x": "' + b" " * (2 * 1024 * 1024) + b'"}'), "at most 1,048,576 are accepted"),
    ],
)
def test_hostile_safetensors_headers_are_field_errors(client, world, data, message):
    client.force_login(world["users"]["member"])
    url = reverse("registry:metamodel-upload", kwargs={"team_slug": "alpha"})
    response = client.post(url, _upload_post(world, data), **HTMX)
    html = response.content.decode()
    assert response.status_code == 200 and 'data-field="weights_file"' in html and message in html
    assert not MetaModel.objects.filter(name="sine-maml").exists()
    assert sorted(p.name for p in (storage.registry_root() / "meta").iterdir()) == sorted(
        [str(world["v1"].pk), str(world["v2"].pk)]
    )


def test_upload_page_full_and_partial(client, world):
    client.force_login(world["users"]["member"])
    url = reverse("registry:metamodel-upload", kwargs={"team_slug": "alpha"})
    assert "<html" in client.get(url).content.decode()
    partial = client.get(url, **HTMX).content.decode()
    assert "<html" not in partial and 'enctype="multipart/form-data"' in partial


# -- downloads --------------------------------------------------------------------------------


def test_weights_download_is_the_stored_file(client, world):
    client.force_login(world["users"]["viewer"])
    response = client.get(reverse("registry:metamodel-weights", args=[world["v1"].pk]))
    body = b"".join(response.streaming_content)
    assert body == b"weights of v1" and hashlib.sha256(body).hexdigest() == world["v1"].weights_sha256
    assert 'filename="sine-waves-maml-v1.safetensors"' in response["Content-Disposition"]
    adapted = client.get(reverse("adaptations:adapted-weights", args=[world["single"].adaptation.run_id]))
    assert b"".join(adapted.streaming_content) == b"adapted weights"


@pytest.mark.django_db(transaction=True)
def test_weights_stream_under_asgi_without_a_copy_in_memory(world):
    """Under the served stack (ASGI) the download is an async stream, read a chunk at
    a time, not a list Django builds first (``metaweb/streaming.py``)."""
    from asgiref.sync import async_to_sync
    from django.test import AsyncClient

    async def download():
        client = AsyncClient()
        await client.aforce_login(world["users"]["viewer"])
        response = await client.get(reverse("registry:metamodel-weights", args=[world["v1"].pk]))
        return response, b"".join([chunk async for chunk in response.streaming_content])

    response, body = async_to_sync(download)()
    assert response.status_code == 200 and response.is_async
    assert body == b"weights of v1"


def test_missing_weights_are_404(client, world):
    client.force_login(world["users"]["admin"])
    assert (
        client.get(
            reverse("adaptations:adapted-weights", args=[world["batch"].adaptation.run_id])
        ).status_code
        == 404
    )
    (storage.meta_model_dir(world["v2"].pk) / storage.WEIGHTS_FILE).unlink()
    assert client.get(reverse("registry:metamodel-weights", args=[world["v2"].pk])).status_code == 404


def test_model_card_has_lineage_metrics_aliases_and_reviews(client, world):
    v1 = world["v1"]
    ModelAlias.objects.create(team=world["team"], model_name=v1.name, alias="candidate", meta_model=v1)
    ReviewFactory(meta_model=v1, verdict="approve", comment="solid", author=world["users"]["admin"])
    client.force_login(world["users"]["viewer"])
    response = client.get(reverse("registry:metamodel-card", args=[v1.pk]))
    card = json.loads(response.content)
    assert response["Content-Type"] == "application/json"
    assert (card["name"], card["version"], card["algorithm"]) == ("sine-waves-maml", 1, "maml")
    assert card["config"] == v1.config and card["metrics"] == {"loss": 0.25, "val_loss": 0.5}
    assert card["weights"]["sha256"] == v1.weights_sha256 and card["code_version"] == "abc1234"
    assert card["lineage"]["taskset"]["name"] == "Sine waves"
    assert card["lineage"]["taskset_version"]["number"] == 3
    assert card["lineage"]["training_run"]["id"] == world["run"].pk
    assert card["lineage"]["experiment"] == {"id": world["experiment"].pk, "name": "Sine study"}
    assert card["aliases"] == ["candidate"]
    assert [(r["verdict"], r["author"], r["comment"]) for r in card["reviews"]] == [
        ("approve", "admin", "solid")
    ]


def test_adapted_card_points_back_to_its_meta_model_and_target(client, world):
    single, batch, v1 = world["single"], world["batch"], world["v1"]
    client.force_login(world["users"]["viewer"])
    card = json.loads(
        client.get(reverse("adaptations:adapted-card", args=[single.adaptation.run_id])).content
    )
    assert card["lineage"]["meta_model"] == {
        "id": v1.pk,
        "name": "sine-waves-maml",
        "version": 1,
        "algorithm": "maml",
        "sha256": v1.weights_sha256,
    }
    assert card["lineage"]["adaptation"]["target"] == "custom"
    assert card["lineage"]["adaptation"]["run"] == single.adaptation.run_id
    assert card["lineage"]["training_run"]["id"] == world["run"].pk
    assert card["metrics"]["before"] == 2.0 and card["metrics"]["after"] == 0.5
    assert card["weights"]["format"] == "safetensors"
    batch_card = json.loads(
        client.get(reverse("adaptations:adapted-card", args=[batch.adaptation.run_id])).content
    )
    assert batch_card["weights"] is None and batch_card["metrics"]["tasks"] == 600
    assert batch_card["metrics"]["ci95"] == 0.05


# -- verdict badges in the experiments pages ---------------------------------------------------


def test_run_and_experiment_lists_show_verdict_badges_without_n_plus_one(client, world):
    ReviewFactory(meta_model=world["v1"], verdict="needs_work")
    ReviewFactory(meta_model=world["v1"], verdict="approve")
    client.force_login(world["users"]["viewer"])
    runs_url = reverse("experiments:run-list", kwargs={"team_slug": "alpha"})
    html = client.get(runs_url).content.decode()
    row = html[html.index(f'id="run-row-{world["run"].pk}"') :]
    row = row[: row.index("</tr>")]
    assert 'data-verdict="approve"' in row and f"/models/{world['v1'].pk}/" in row
    assert "sine-waves-maml v1" in row

    with CaptureQueriesContext(connection) as few:
        client.get(runs_url, **HTMX)
    for _ in range(5):
        # Finished, like the first: a queued run adds the (one) queue-position query.
        run = RunFactory(experiment=world["experiment"], taskset_version=world["version"], status="succeeded")
        ReviewFactory(meta_model=MetaModelFactory(experiment=world["experiment"], training_run=run))
    with CaptureQueriesContext(connection) as many:
        client.get(runs_url, **HTMX)
    assert len(many) == len(few)

    experiments = client.get(reverse("experiments:experiment-list", kwargs={"team_slug": "alpha"}))
    row = experiments.content.decode()
    assert 'data-testid="experiment-verdict"><a href="/models/' in row and 'data-verdict="approve"' in row


def test_run_page_links_to_its_meta_model(client, world):
    client.force_login(world["users"]["viewer"])
    html = client.get(reverse("experiments:run-detail", args=[world["run"].pk])).content.decode()
    assert reverse("registry:metamodel-detail", args=[world["v1"].pk]) in html
    other = RunFactory(experiment=world["experiment"], taskset_version=world["version"])
    assert (
        'id="run-meta-model"'
        not in client.get(reverse("experiments:run-detail", args=[other.pk])).content.decode()
    )


def test_admin_pages_render_read_only(client, world):
    client.force_login(UserFactory(username="boss", is_staff=True, is_superuser=True))
    for model in (
        "registry_metamodel",
        "registry_modelalias",
        "adaptations_adaptation",
        "adaptations_adaptedmodel",
        "reviews_review",
    ):
        assert client.get(reverse(f"admin:{model}_changelist")).status_code == 200, model
    ModelAlias.objects.create(
        team=world["team"], model_name="sine-waves-maml", alias="x", meta_model=world["v1"]
    )
    for model, pk in [
        ("registry_metamodel", world["v1"].pk),
        ("adaptations_adaptedmodel", world["single"].pk),
        ("registry_modelalias", ModelAlias.objects.get().pk),
    ]:
        assert client.get(reverse(f"admin:{model}_change", args=[pk])).status_code == 200, model
    assert client.get(reverse("admin:registry_metamodel_add")).status_code == 403
    client.post(reverse("admin:registry_metamodel_change", args=[world["v1"].pk]), {"name": "renamed"})
    assert MetaModel.objects.get(pk=world["v1"].pk).name == "sine-waves-maml"


def test_the_registry_web_side_never_imports_torch():
    """Uploads are checked from the safetensors header and the torch-free shapes."""
    import subprocess
    import sys

    code = (
        "import django, sys; django.setup(); "
        "import metaweb.urls, apps.registry.views, apps.registry.forms, apps.registry.services, "
        "apps.registry.selectors, apps.registry.admin, apps.registry.weights, apps.reviews.views, "
        "workers.metalearn.shapes, workers.metalearn.specs; "
        "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith(('torch.', "
        "'workers.metalearn.api', 'workers.metalearn.loop', 'workers.metalearn.algorithms'))); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


# -- what an MNN is conditioned on -----------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "family", "shown"),
    [
        ({"algorithm": "mnn", "mnn_condition": "support"}, "sinusoid", "support"),
        ({"algorithm": "mnn", "mnn_condition": "description"}, "sinusoid", "description"),
        ({"algorithm": "mnn"}, "sinusoid", "description"),  # stored before the setting: the default
        ({"algorithm": "mnn"}, "digits", "support"),
        ({"algorithm": "maml"}, "sinusoid", ""),
    ],
)
def test_the_model_page_and_card_say_what_an_mnn_reads(client, world, config, family, shown):
    version = TaskSetVersionFactory(taskset__team=world["team"], taskset__family=family)
    model = MetaModelFactory(
        experiment=world["experiment"], taskset_version=version, algorithm=config["algorithm"], config=config
    )
    client.force_login(world["users"]["viewer"])
    html = client.get(reverse("registry:metamodel-detail", args=[model.pk])).content.decode()
    card = client.get(reverse("registry:metamodel-card", args=[model.pk])).json()
    assert card["mnn_condition"] == (shown or None)
    if shown:
        assert f'id="metamodel-condition" data-mnn-condition="{shown}"' in html
    else:
        assert 'id="metamodel-condition"' not in html


def test_the_run_list_shows_what_each_mnn_run_reads(client, world, django_assert_max_num_queries):
    digits = TaskSetVersionFactory(taskset__team=world["team"], taskset__family="digits")
    runs = {
        "support": RunFactory(
            experiment=world["experiment"], algorithm="mnn", config={"mnn_condition": "support"}
        ),
        "described": RunFactory(experiment=world["experiment"], algorithm="mnn", config={}),
        "digits": RunFactory(
            experiment=world["experiment"], algorithm="mnn", taskset_version=digits, config={}
        ),
    }
    client.force_login(world["users"]["viewer"])
    html = client.get(
        reverse("experiments:run-list", kwargs={"team_slug": "alpha"}) + "?kind=all"
    ).content.decode()

    def badge(run):
        row = html.split(f'id="run-row-{run.pk}"', 1)[1].split("</tr>", 1)[0]
        found = __import__("re").search(r'data-mnn-condition="(\w+)"', row)
        return found and found.group(1)

    assert badge(runs["support"]) == "support"
    assert badge(runs["described"]) == "description"
    assert badge(runs["digits"]) == "support"
    assert badge(world["run"]) is None  # maml


# -- the task-space explorer ------------------------------------------------------------------

TINY_MNN = {
    "algorithm": "mnn", "family": {"name": "sinusoid"}, "iterations": 20, "meta_batch": 4, "meta_lr": 3e-3,
    "hidden": [8], "mnn_hidden": 8, "shots": 5, "query": 5, "eval_interval": 20, "eval_tasks": 5,
    "checkpoint_interval": 20,
}  # fmt: skip


@pytest.fixture
def mnn_models(world):
    from tests.adaptations.test_services import register_trained

    kwargs = {"experiment": world["experiment"], "version": world["version"]}
    return {
        "description": register_trained(config=TINY_MNN, **kwargs),
        "support": register_trained(config={**TINY_MNN, "mnn_condition": "support"}, **kwargs),
    }


@pytest.mark.parametrize("role", ROLES)
def test_the_explorer_export_needs_membership(client, world, mnn_models, role):
    url = reverse("registry:metamodel-explorer", args=[mnn_models["description"].pk])
    response = _status(client, world, role, "get", url)
    if role == "anonymous":
        assert response.status_code == 302
    elif role == "outsider":
        assert response.status_code == 404
    else:
        assert response.status_code == 200 and response.json()["format"] == 1


def test_the_explorer_exports_what_the_engine_computes(client, world, mnn_models):
    """The export, evaluated by the numpy reference, gives the engine's own predictions."""
    import torch

    from workers.metalearn.api import restore
    from workers.metalearn.explorer import explorer_predict

    model = mnn_models["description"]
    client.force_login(world["users"]["viewer"])
    exported = client.get(reverse("registry:metamodel-explorer", args=[model.pk])).json()
    assert [d["name"] for d in exported["desc"]] == ["amplitude", "phase"]
    _, algorithm, meta = restore(storage.meta_model_dir(model.pk), device="cpu")
    x = np.linspace(-5, 5, 50)
    desc = torch.tensor([1.7, 0.4])
    fast, ctx = algorithm.start(meta, torch.zeros(1, 1), torch.zeros(1, 1), desc)
    engine = algorithm.forward(meta, fast, ctx, torch.tensor(x, dtype=torch.float32)[:, None])[:, 0]
    assert np.allclose(explorer_predict(exported, desc.numpy(), x), engine.detach().numpy(), atol=1e-5)

    html = client.get(reverse("registry:metamodel-detail", args=[model.pk])).content.decode()
    assert 'id="task-explorer" data-model-url="' in html and "js/task_explorer.js" in html
    assert "<script>" not in html  # CSP: no inline script


def test_models_without_a_task_space_say_why(client, world, mnn_models):
    client.force_login(world["users"]["viewer"])
    support = mnn_models["support"]
    response = client.get(reverse("registry:metamodel-explorer", args=[support.pk]))
    assert response.status_code == 404 and "support set" in response.json()["error"]
    html = client.get(reverse("registry:metamodel-detail", args=[support.pk])).content.decode()
    assert 'id="task-explorer-reason"' in html and "task_explorer.js" not in html
    maml = client.get(reverse("registry:metamodel-detail", args=[world["v1"].pk])).content.decode()
    assert "task-explorer" not in maml  # not an MNN: no section at all
    missing = client.get(reverse("registry:metamodel-explorer", args=[world["v1"].pk]))
    assert missing.status_code == 404 and "Only MNN" in missing.json()["error"]
