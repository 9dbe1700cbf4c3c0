"""Per-team quotas: runs queued or running, and stored bytes. Refused with the same
words on the launch form, the sweep form, the upload forms and the API; set by a
team's admins within the site's limits; shown on the team page."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from apps.experiments import services
from apps.experiments.models import Run, RunStatus, Sweep
from apps.experiments.storage import run_dir
from apps.tasksets.models import TaskSet
from apps.tasksets.services import taskset_create
from apps.teams.models import Team
from apps.teams.quotas import team_quota, team_storage_refresh
from tests.api.conftest import bearer, issue
from tests.factories import (
    SMALL_CONFIG,
    ExperimentFactory,
    RunFactory,
    TaskSetVersionFactory,
    launch_form_data,
)
from tests.pages import field_error
from tests.tasksets.test_views import TABLE_POST

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
RUNS_FULL = "Your team has 2 runs queued or running and a quota of 2"


@pytest.fixture
def world(team_roles, sent):
    team, users = team_roles
    experiment = ExperimentFactory(team=team, created_by=users["member"])
    version = TaskSetVersionFactory(taskset__team=team, taskset__name="Sines", params={})
    return {"team": team, "users": users, "experiment": experiment, "version": version}


def _config():
    return {k: v for k, v in SMALL_CONFIG.items() if k != "family"}


def _launch(world):
    return services.run_create(
        experiment=world["experiment"], actor=world["users"]["member"], taskset_version=world["version"],
        config=_config(), queue="cpu",
    )  # fmt: skip


def _fill(world, count: int) -> None:
    for status in [RunStatus.RUNNING, RunStatus.QUEUED][:count]:
        RunFactory(experiment=world["experiment"], taskset_version=world["version"], status=status)


def _form_data(world, **changes):
    return launch_form_data(world["experiment"], world["version"], hidden="8", **changes)


# -- runs queued or running --------------------------------------------------------------------


def test_a_launch_past_the_teams_run_quota_is_refused(world, settings):
    settings.TEAM_MAX_ACTIVE_RUNS = 5
    Team.objects.filter(pk=world["team"].pk).update(max_active_runs=2)
    _fill(world, 1)
    _launch(world)  # the second fits
    before = Run.objects.count()
    with pytest.raises(ValidationError) as error:
        _launch(world)
    assert RUNS_FULL in error.value.message_dict["queue"][0]
    assert Run.objects.count() == before
    # External runs have no worker and do not count; another team's runs neither.
    RunFactory(
        experiment=world["experiment"], taskset_version=world["version"], kind="external", status="running"
    )
    RunFactory(status=RunStatus.QUEUED)
    with pytest.raises(ValidationError):
        _launch(world)


def test_the_site_limit_caps_a_teams_own_quota(world, settings):
    settings.TEAM_MAX_ACTIVE_RUNS = 1
    Team.objects.filter(pk=world["team"].pk).update(max_active_runs=10)
    _fill(world, 1)
    with pytest.raises(ValidationError) as error:
        _launch(world)
    assert "quota of 1" in error.value.message_dict["queue"][0]


def test_the_launch_form_shows_the_quota_on_the_queue_field(client, world):
    Team.objects.filter(pk=world["team"].pk).update(max_active_runs=2)
    _fill(world, 2)
    client.force_login(world["users"]["member"])
    url = reverse("experiments:run-launch", kwargs={"team_slug": "alpha"})
    for headers in ({}, HTMX):
        response = client.post(url, _form_data(world), **headers)
        assert response.status_code == 200
        assert RUNS_FULL in field_error(response.content.decode(), "queue")
    assert Run.objects.count() == 2


def test_a_sweep_that_would_pass_the_quota_is_refused_whole(client, world):
    Team.objects.filter(pk=world["team"].pk).update(max_active_runs=3)
    _fill(world, 1)
    client.force_login(world["users"]["member"])
    url = reverse("experiments:run-launch", kwargs={"team_slug": "alpha"})
    data = _form_data(
        world, sweep_strategy="grid", sweep_metric="val_loss", sweep_max_concurrent=3, dim_inner_steps="1,2,3"
    )
    html = client.post(url, data, **HTMX).content.decode()
    assert "Your team has 1 runs queued or running and a quota of 3; these 3 runs would pass it." in html
    assert not Sweep.objects.exists() and Run.objects.count() == 1
    data["sweep_max_concurrent"] = 2  # two at once fit: the sweep starts, the third waits in it
    assert client.post(url, data, **HTMX).status_code == 200
    assert Sweep.objects.count() == 1 and Run.objects.count() == 3


def test_the_api_answers_422_with_the_same_words(world, client):
    Team.objects.filter(pk=world["team"].pk).update(max_active_runs=2)
    _fill(world, 2)
    auth = bearer(issue(world["users"]["member"], world["team"]))
    body = {
        "experiment_id": world["experiment"].pk,
        "taskset_id": world["version"].taskset_id,
        "config": _config(),
    }
    response = client.post("/api/v1/teams/alpha/runs", body, content_type="application/json", **auth)
    assert response.status_code == 422
    [detail] = response.json()["detail"]
    assert detail["loc"] == ["body", "queue"] and RUNS_FULL in detail["msg"]


# -- stored bytes ---------------------------------------------------------------------------------


def _stored_run(world, size: int) -> Run:
    run = RunFactory(
        experiment=world["experiment"], taskset_version=world["version"], status=RunStatus.SUCCEEDED
    )
    folder = run_dir(run.pk) / "checkpoints" / "step-000010"
    folder.mkdir(parents=True)
    (folder / "params.safetensors").write_bytes(b"\0" * size)
    return run


def test_stored_bytes_are_measured_from_the_teams_files(world):
    _stored_run(world, 3000)
    RunFactory(status=RunStatus.SUCCEEDED)  # another team's
    assert team_storage_refresh(team_id=world["team"].pk) == 3000
    world["team"].refresh_from_db()
    assert world["team"].stored_bytes == 3000 and world["team"].stored_bytes_at is not None


def test_runs_and_uploads_are_refused_past_the_storage_quota(world, settings):
    Team.objects.filter(pk=world["team"].pk).update(max_stored_bytes=2000)
    _stored_run(world, 3000)
    with pytest.raises(ValidationError) as error:
        _launch(world)
    assert "Your team stores 2.9 KB of its 2.0 KB storage quota." in error.value.message_dict["queue"][0]
    upload = SimpleUploadedFile("tasks.csv", b"task,x,y\n" + b"0,1,2\n" * 10)
    with pytest.raises(ValidationError) as error:
        taskset_create(
            team=world["team"], actor=world["users"]["member"], name="Table", family="table", data_file=upload
        )
    assert "and this adds 69 bytes" in error.value.message_dict["data_file"][0]
    assert not TaskSet.objects.filter(name="Table").exists()


def test_an_upload_that_would_pass_the_quota_is_refused_on_its_field(client, world):
    Team.objects.filter(pk=world["team"].pk).update(max_stored_bytes=50)
    client.force_login(world["users"]["member"])
    url = reverse("tasksets:taskset-create", kwargs={"team_slug": "alpha"})
    upload = SimpleUploadedFile("tasks.csv", b"task,x,y\n" + b"0,1,2\n" * 10)
    post = TABLE_POST | {"name": "Table", "data_file": upload}
    html = client.post(url, post, **HTMX).content.decode()
    assert "storage quota and this adds 69 bytes" in html
    assert not TaskSet.objects.filter(name="Table").exists()


def test_a_run_ending_measures_its_teams_storage_again(world, django_capture_on_commit_callbacks):
    run = RunFactory(experiment=world["experiment"], taskset_version=world["version"])
    claim = services.run_claim(run_id=run.pk, worker="w", device="cpu")
    (run_dir(run.pk) / "checkpoints").mkdir(parents=True)
    (run_dir(run.pk) / "checkpoints" / "notes.bin").write_bytes(b"\0" * 700)
    with django_capture_on_commit_callbacks(execute=True):
        services.run_fail(run_id=run.pk, token=claim.token, error="boom")
    world["team"].refresh_from_db()
    assert world["team"].stored_bytes == 700


# -- who sets them, and the team page -------------------------------------------------------------


@pytest.mark.parametrize(("role", "status"), [("viewer", 403), ("member", 403), ("outsider", 404)])
def test_only_admins_set_quotas(client, world, role, status):
    client.force_login(world["users"][role])
    url = reverse("teams:team-quotas", kwargs={"team_slug": "alpha"})
    response = client.post(url, {"max_active_runs": "1"})
    assert response.status_code == status
    world["team"].refresh_from_db()
    assert world["team"].max_active_runs is None


@pytest.mark.parametrize("headers", [{}, HTMX])
def test_an_admin_sets_quotas_within_the_site_limits(client, world, settings, headers):
    settings.TEAM_MAX_ACTIVE_RUNS = 10
    settings.TEAM_MAX_STORED_BYTES = 2 * 1024**3
    client.force_login(world["users"]["admin"])
    url = reverse("teams:team-quotas", kwargs={"team_slug": "alpha"})
    response = client.post(url, {"max_active_runs": "11", "max_stored_gib": "3"}, **headers)
    html = response.content.decode()
    assert response.status_code == 200
    assert "Choose between 1 and 10, the site&#x27;s limit." in html and "Choose at most 2.0 GB" in html
    world["team"].refresh_from_db()
    assert world["team"].max_active_runs is None and world["team"].max_stored_bytes is None
    response = client.post(url, {"max_active_runs": "4", "max_stored_gib": "0.5"}, **headers)
    assert response.status_code == (200 if headers else 302)
    world["team"].refresh_from_db()
    assert world["team"].max_active_runs == 4 and world["team"].max_stored_bytes == 512 * 1024**2
    quota = team_quota(team=world["team"])
    assert (quota.active_runs, quota.stored_bytes) == (4, 512 * 1024**2)


@pytest.mark.parametrize("role", ["viewer", "admin"])
def test_the_team_page_shows_usage(client, world, role):
    _stored_run(world, 2048)
    _fill(world, 1)
    client.force_login(world["users"][role])
    html = client.get(reverse("teams:team-detail", kwargs={"team_slug": "alpha"})).content.decode()
    assert 'data-quota-used="runs">1<' in html and 'data-quota-used="bytes">2.0\xa0KB<' in html
    assert ('id="quota-form"' in html) == (role == "admin")


def test_a_model_upload_past_the_storage_quota_is_refused_on_its_field(world):
    from apps.registry.models import MetaModel
    from apps.registry.services.uploads import metamodel_upload

    Team.objects.filter(pk=world["team"].pk).update(max_stored_bytes=100)
    with pytest.raises(ValidationError) as error:
        metamodel_upload(
            team=world["team"], actor=world["users"]["member"], experiment=world["experiment"],
            taskset_version=world["version"], name="sine", config={"algorithm": "maml"},
            weights_file=SimpleUploadedFile("w.safetensors", b"\0" * 500),
        )  # fmt: skip
    assert "storage quota and this adds 500 bytes" in error.value.message_dict["weights_file"][0]
    assert not MetaModel.objects.exists()
