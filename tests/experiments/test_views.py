"""Pages, partials and downloads: the permission matrix for every URL, full pages and
htmx partials, launching (errors on fields, nothing written), cancel, clone, CSV and
checkpoint downloads."""

from __future__ import annotations

import html
import json
import re

import pytest
from django.urls import reverse

from apps.experiments.models import Experiment, Run, RunEvent, RunStatus
from tests.factories import (
    ExperimentFactory,
    RunFactory,
    TaskSetVersionFactory,
    launch_form_data,
    metric_points_add,
)
from tests.pages import field_error

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def world(team_roles, settings):
    team, users = team_roles
    experiment = ExperimentFactory(team=team, created_by=users["member"], name="Sine study")
    version = TaskSetVersionFactory(taskset__team=team, taskset__name="Sines", params={})
    queued = RunFactory(experiment=experiment, taskset_version=version, status=RunStatus.QUEUED)
    finished = RunFactory(experiment=experiment, taskset_version=version, status=RunStatus.SUCCEEDED, step=20)
    metric_points_add(finished, [("loss", 10, 0.5)])
    folder = settings.RUNS_DIR / str(finished.pk) / "checkpoints" / "step-000020"
    folder.mkdir(parents=True)
    (folder / "params.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    (folder / "checkpoint.json").write_text("{}")
    (folder.parent / "latest").write_text("step-000020\n")
    return {
        "team": team,
        "users": users,
        "experiment": experiment,
        "version": version,
        "queued": queued,
        "finished": finished,
    }


def login(client, user):
    if user is not None:
        client.force_login(user)
    return client


def launch_post(world, **changes):
    return launch_form_data(world["experiment"], world["version"], **changes)


# -- the permission matrix ----------------------------------------------------------------------

READ = {"viewer": 200, "member": 200, "admin": 200, "outsider": 404}
WRITE_PAGE = {"viewer": 403, "member": 200, "admin": 200, "outsider": 404}

# (name, method, kwargs builder, expected status by user)
MATRIX = [
    ("experiments:run-list", "get", lambda w: {"team_slug": "alpha"}, READ),
    ("experiments:experiment-list", "get", lambda w: {"team_slug": "alpha"}, READ),
    ("experiments:experiment-create", "get", lambda w: {"team_slug": "alpha"}, WRITE_PAGE),
    ("experiments:experiment-detail", "get", lambda w: {"experiment_id": w["experiment"].pk}, READ),
    ("experiments:experiment-edit", "get", lambda w: {"experiment_id": w["experiment"].pk}, WRITE_PAGE),
    ("experiments:run-launch", "get", lambda w: {"team_slug": "alpha"}, WRITE_PAGE),
    ("experiments:run-detail", "get", lambda w: {"run_id": w["queued"].pk}, READ),
    ("experiments:run-clone", "get", lambda w: {"run_id": w["finished"].pk}, WRITE_PAGE),
    ("experiments:run-metrics-csv", "get", lambda w: {"run_id": w["finished"].pk}, READ),
    ("experiments:run-checkpoint", "get", lambda w: {"run_id": w["finished"].pk}, READ),
    # Writes: success redirects.
    (
        "experiments:run-cancel",
        "post",
        lambda w: {"run_id": w["queued"].pk},
        {"viewer": 403, "member": 302, "admin": 302, "outsider": 404},
    ),
    (
        "experiments:run-launch",
        "post",
        lambda w: {"team_slug": "alpha"},
        {"viewer": 403, "member": 302, "admin": 302, "outsider": 404},
    ),
    (
        "experiments:experiment-create",
        "post",
        lambda w: {"team_slug": "alpha"},
        {"viewer": 403, "member": 302, "admin": 302, "outsider": 404},
    ),
    (
        "experiments:experiment-edit",
        "post",
        lambda w: {"experiment_id": w["experiment"].pk},
        {"viewer": 403, "member": 302, "admin": 302, "outsider": 404},
    ),
]


def post_data(name, world, who):
    if name == "experiments:run-launch":
        return launch_post(world)
    if name in ("experiments:experiment-create", "experiments:experiment-edit"):
        return {"name": f"made by {who}", "description": ""}
    return {}


@pytest.mark.parametrize("who", ["anonymous", "outsider", "viewer", "member", "admin"])
@pytest.mark.parametrize(
    ("name", "method", "kwargs", "expected"), MATRIX, ids=[f"{m[1]} {m[0]}" for m in MATRIX]
)
def test_permission_matrix(client, world, sent, who, name, method, kwargs, expected):
    user = None if who == "anonymous" else world["users"][who]
    login(client, user)
    url = reverse(name, kwargs=kwargs(world))
    runs_before = Run.objects.count()
    if method == "get":
        response = client.get(url)
    else:
        response = client.post(url, post_data(name, world, who))
    if who == "anonymous":
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login") + "?next=")
        assert Run.objects.count() == runs_before
        return
    assert response.status_code == expected[who], response.content[:500]
    if name == "experiments:run-launch" and method == "post":
        assert Run.objects.count() == runs_before + (1 if expected[who] == 302 else 0)
    if name == "experiments:run-cancel":
        world["queued"].refresh_from_db()
        assert world["queued"].status == ("cancelled" if expected[who] == 302 else "queued")


@pytest.mark.parametrize(
    "name",
    ["experiments:run-cancel"],
)
def test_writes_refuse_get(client, world, name):
    login(client, world["users"]["member"])
    assert client.get(reverse(name, kwargs={"run_id": world["queued"].pk})).status_code == 405


def test_unknown_team_is_404(client, world):
    login(client, world["users"]["member"])
    assert client.get(reverse("experiments:run-list", kwargs={"team_slug": "nope"})).status_code == 404


# -- full pages and partials ----------------------------------------------------------------------


PAGES = [
    ("experiments:run-list", lambda w: {"team_slug": "alpha"}, 'id="run-table"'),
    ("experiments:experiment-list", lambda w: {"team_slug": "alpha"}, 'id="experiment-table"'),
    ("experiments:experiment-create", lambda w: {"team_slug": "alpha"}, 'id="experiment-form"'),
    (
        "experiments:experiment-detail",
        lambda w: {"experiment_id": w["experiment"].pk},
        'id="experiment-runs"',
    ),
    ("experiments:run-launch", lambda w: {"team_slug": "alpha"}, 'id="launch-form"'),
    ("experiments:run-detail", lambda w: {"run_id": w["queued"].pk}, 'id="run-live"'),
    ("experiments:run-clone", lambda w: {"run_id": w["finished"].pk}, 'id="launch-form"'),
]


@pytest.mark.parametrize(("name", "kwargs", "marker"), PAGES, ids=[p[0] for p in PAGES])
def test_pages_full_and_partial(client, world, name, kwargs, marker):
    login(client, world["users"]["member"])
    url = reverse(name, kwargs=kwargs(world))
    full = client.get(url)
    assert full.status_code == 200
    html = full.content.decode()
    assert "<html" in html and marker in html
    assert 'hx-headers=\'{"X-CSRFToken"' in html  # base.html
    assert 'href="/t/alpha/runs/"' in html  # the team's navigation

    partial = client.get(url, **HTMX)
    assert partial.status_code == 200
    fragment = partial.content.decode()
    assert "<html" not in fragment and "<nav" not in fragment.split(marker)[0]
    assert fragment.lstrip().startswith("<") and marker in fragment
    assert "HX-Request" in partial["Vary"]


def test_history_restore_gets_the_full_page(client, world):
    login(client, world["users"]["viewer"])
    response = client.get(
        reverse("experiments:run-list", kwargs={"team_slug": "alpha"}),
        HTTP_HX_REQUEST="true",
        HTTP_HX_HISTORY_RESTORE_REQUEST="true",
    )
    assert "<html" in response.content.decode()


# -- run list ----------------------------------------------------------------------


def test_run_list_filters_and_paginates_over_htmx(client, world):
    login(client, world["users"]["viewer"])
    for _ in range(26):
        RunFactory(experiment=world["experiment"], taskset_version=world["version"], status=RunStatus.FAILED)
    url = reverse("experiments:run-list", kwargs={"team_slug": "alpha"})

    page = client.get(url, {"status": "failed"}, **HTMX).content.decode()
    assert f'id="run-row-{world["queued"].pk}"' not in page
    assert page.count('data-run-id="') == 25
    assert "25 of 26 runs" in page
    next_link = re.search(r'href="\?([^"]*cursor=[^"]*)" *\n? *hx-get="[^"]*"[^>]*rel="next"', page)
    assert next_link and "status=failed" in next_link.group(1)  # pagination keeps the filters

    second = client.get(f"{url}?{html.unescape(next_link.group(1))}", **HTMX).content.decode()
    assert second.count('data-run-id="') == 1 and 'rel="prev"' in second and 'rel="next"' not in second

    queued = client.get(url, {"status": "queued"}).content.decode()
    assert f'id="run-row-{world["queued"].pk}"' in queued
    assert f'data-run-badge="{world["queued"].pk}"' in queued
    assert 'data-team-live="alpha"' in queued and "js/run_live.js" in queued
    assert 'hx-push-url="true"' in queued


def test_viewers_see_no_launch_button(client, world):
    url = reverse("experiments:run-list", kwargs={"team_slug": "alpha"})
    login(client, world["users"]["viewer"])
    assert 'id="launch-run"' not in client.get(url).content.decode()
    login(client, world["users"]["member"])
    assert 'id="launch-run"' in client.get(url).content.decode()


def test_user_text_is_escaped(client, world):
    world["experiment"].name = "<script>alert(1)</script>"
    world["experiment"].save()
    login(client, world["users"]["viewer"])
    for url in (
        reverse("experiments:run-list", kwargs={"team_slug": "alpha"}),
        reverse("experiments:experiment-list", kwargs={"team_slug": "alpha"}),
        reverse("experiments:run-detail", kwargs={"run_id": world["queued"].pk}),
    ):
        html = client.get(url).content.decode()
        assert "<script>alert(1)</script>" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


# -- experiments ----------------------------------------------------------------------


def test_experiment_create_htmx_errors_and_redirect(client, world):
    login(client, world["users"]["member"])
    url = reverse("experiments:experiment-create", kwargs={"team_slug": "alpha"})
    response = client.post(url, {"name": "Sine study"}, **HTMX)  # exists already
    assert response.status_code == 200
    assert "already" in response.content.decode() and "<html" not in response.content.decode()

    response = client.post(url, {"name": "Ways sweep", "description": "5 vs 20"}, **HTMX)
    experiment = world["team"].experiments.get(name="Ways sweep")
    assert response.status_code == 200
    assert response["HX-Redirect"] == reverse("experiments:experiment-detail", args=[experiment.pk])


def test_an_experiment_is_renamed_and_its_runs_follow(client, world):
    experiment = world["experiment"]
    ExperimentFactory(team=world["team"], name="Taken")
    login(client, world["users"]["member"])
    url = reverse("experiments:experiment-edit", args=[experiment.pk])
    page = client.get(url).content.decode()
    assert 'value="Sine study"' in page and 'id="save-experiment"' in page
    response = client.post(url, {"name": "taken", "description": "x"}, **HTMX)  # any case
    error = html.unescape(field_error(response.content.decode(), "name"))
    assert "The team has an experiment called 'taken' already." in error
    response = client.post(url, {"name": "  ", "description": ""}, **HTMX)
    assert "This field is required." in field_error(response.content.decode(), "name")
    response = client.post(url, {"name": "Sine study, 5-shot", "description": "Now with 5 shots."}, **HTMX)
    assert response["HX-Redirect"] == reverse("experiments:experiment-detail", args=[experiment.pk])
    experiment.refresh_from_db()
    assert (experiment.name, experiment.description) == ("Sine study, 5-shot", "Now with 5 shots.")
    response = client.post(url, {"name": "sine study, 5-SHOT", "description": ""}, **HTMX)  # its own name
    assert response.status_code == 200 and response["HX-Redirect"]
    assert Run.objects.get(pk=world["finished"].pk).experiment.name == "sine study, 5-SHOT"
    detail = client.get(reverse("experiments:experiment-detail", args=[experiment.pk])).content.decode()
    assert 'id="edit-experiment"' in detail
    login(client, world["users"]["viewer"])
    detail = client.get(reverse("experiments:experiment-detail", args=[experiment.pk])).content.decode()
    assert 'id="edit-experiment"' not in detail


def test_an_experiments_runs_open_in_the_run_list_and_in_parallel_coordinates(client, world):
    """The links search for the experiment's exact name, quoted: a name with quotes and
    a backslash, and another experiment whose name starts the same, are told apart."""
    experiment = world["experiment"]
    experiment.name = 'Sine "v2" \\ study'
    experiment.save(update_fields=["name"])
    ExperimentFactory(team=experiment.team, created_by=world["users"]["member"], name='Sine "v2"')
    other = RunFactory(experiment=Experiment.objects.get(name='Sine "v2"'), taskset_version=world["version"])
    login(client, world["users"]["viewer"])
    detail = client.get(reverse("experiments:experiment-detail", args=[experiment.pk])).content.decode()
    links = {
        name: html.unescape(re.search(rf'id="{name}" href="([^"]+)"', detail).group(1))
        for name in ("experiment-run-list", "experiment-parallel")
    }
    assert links["experiment-run-list"] == (
        "/t/alpha/runs/?q=experiment%3D%22Sine%20%5C%22v2%5C%22%20%5C%5C%20study%22&kind=all"
    )
    listed = client.get(links["experiment-run-list"]).content.decode()
    shown = {int(pk) for pk in re.findall(r'data-select-run="(\d+)"', listed)}
    assert shown == {world["queued"].pk, world["finished"].pk} and other.pk not in shown
    page = client.get(links["experiment-parallel"]).content.decode()
    data = json.loads(re.search(r'id="compare-parallel-data"[^>]*>(.*?)</script>', page, re.S).group(1))
    assert {row["id"] for row in data["rows"]} == {world["queued"].pk, world["finished"].pk}
    empty = ExperimentFactory(team=experiment.team, created_by=world["users"]["member"], name="Empty")
    page = client.get(reverse("experiments:experiment-detail", args=[empty.pk])).content.decode()
    assert 'id="experiment-run-list"' not in page and 'id="experiment-parallel"' not in page


# -- launch ----------------------------------------------------------------------


def test_launch_success_redirects_and_dispatches(client, world, sent, django_capture_on_commit_callbacks):
    login(client, world["users"]["member"])
    url = reverse("experiments:run-launch", kwargs={"team_slug": "alpha"})
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, launch_post(world, seed="42", iterations="30", queue="gpu"), **HTMX)
    run = Run.objects.latest("pk")
    assert response.status_code == 200
    assert response["HX-Redirect"] == reverse("experiments:run-detail", args=[run.pk])
    assert (run.seed, run.total_steps, run.queue, run.launched_by) == (
        42,
        30,
        "gpu",
        world["users"]["member"],
    )
    assert sent == [("workers.tasks.train_run", [run.pk], "gpu")]

    with django_capture_on_commit_callbacks(execute=True):
        plain = client.post(url, launch_post(world))
    assert plain.status_code == 302 and plain["Location"] == reverse(
        "experiments:run-detail", args=[Run.objects.latest("pk").pk]
    )


def test_launch_get_prefills_the_experiment(client, world):
    login(client, world["users"]["member"])
    url = reverse("experiments:run-launch", kwargs={"team_slug": "alpha"})
    html = client.get(url, {"experiment": world["experiment"].pk}).content.decode()
    assert re.search(rf'<option value="{world["experiment"].pk}" selected>', html)


@pytest.mark.parametrize(
    ("changes", "field", "needle"),
    [
        ({"inner_lr": "-0.5"}, "inner_lr", "greater than 0"),
        ({"shots": "0"}, "shots", "greater than or equal to 1"),
        ({"meta_lr": "0"}, "meta_lr", "greater than 0"),
        ({"hidden": "4" * 5000}, "hidden", "at most 100 characters"),  # oversized input
        ({"device": "cuda"}, "device", "GPU queue"),
    ],
)
def test_launch_errors_show_on_fields_and_write_nothing(
    client, world, sent, django_capture_on_commit_callbacks, changes, field, needle
):
    login(client, world["users"]["member"])
    url = reverse("experiments:run-launch", kwargs={"team_slug": "alpha"})
    runs_before, events_before = Run.objects.count(), RunEvent.objects.count()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client.post(url, launch_post(world, **changes), **HTMX)
    html = response.content.decode()
    assert response.status_code == 200 and "<html" not in html
    assert needle in field_error(html, field)
    assert Run.objects.count() == runs_before and RunEvent.objects.count() == events_before
    assert callbacks == [] and sent == []


def test_launch_digits_ways_above_the_classes(client, world, sent, django_capture_on_commit_callbacks):
    digits = TaskSetVersionFactory(taskset__team=world["team"], taskset__family="digits", params={})
    login(client, world["users"]["member"])
    url = reverse("experiments:run-launch", kwargs={"team_slug": "alpha"})
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client.post(
            url, launch_post(world, taskset=digits.taskset_id, ways="8", shots="1", query="2")
        )
    html = response.content.decode()
    assert response.status_code == 200 and "<html" in html  # no htmx: the whole page again
    assert re.search(r'id="id_ways_error">.*8-way episodes need 8 classes.*has 5', html, re.S)
    assert not Run.objects.filter(taskset_version=digits).exists() and callbacks == [] and sent == []


def test_launch_uses_the_latest_version_of_the_task_set(client, world, sent):
    newer = TaskSetVersionFactory(taskset=world["version"].taskset, number=world["version"].number + 1)
    login(client, world["users"]["member"])
    client.post(reverse("experiments:run-launch", kwargs={"team_slug": "alpha"}), launch_post(world))
    assert Run.objects.latest("pk").taskset_version == newer


# -- run page ----------------------------------------------------------------------


def run_state_json(html):
    match = re.search(r'<script id="run-state" type="application/json">(.*?)</script>', html, re.S)
    assert match
    return json.loads(match.group(1))


def test_run_page_shows_state_config_and_controls(client, world):
    run = world["queued"]
    Run.objects.filter(pk=run.pk).update(
        status=RunStatus.RUNNING, step=10, worker="gpu-1", device="cuda:0", attempt=1
    )
    metric_points_add(run, [("loss", s, 1 / s) for s in (1, 2)])
    RunEvent.objects.create(run=run, kind="claimed", message="Attempt 1 on gpu-1.", attempt=1)

    login(client, world["users"]["member"])
    html = client.get(reverse("experiments:run-detail", args=[run.pk])).content.decode()
    state = run_state_json(html)
    assert state["type"] == "run.state" and state["run"]["status"] == "running"
    assert state["metrics"] == {"loss": [[1, 1.0], [2, 0.5]]}
    assert 'id="run-status"' in html and ">Running<" in html
    assert 'aria-valuenow="10"' in html and 'data-width="50.0"' in html
    assert 'id="cancel-run"' in html and 'id="clone-run"' in html
    assert "gpu-1" in html and "cuda:0" in html and "Attempt 1 on gpu-1." in html
    assert 'id="chart-loss"' in html and 'id="chart-val"' in html and "js/charts.js" in html
    assert "&quot;inner_lr&quot;: 0.01" in html  # the exact config, pretty-printed and escaped
    assert reverse("tasksets:taskset-detail", kwargs={"taskset_id": run.taskset_version.taskset_id}) in html

    login(client, world["users"]["viewer"])
    html = client.get(reverse("experiments:run-detail", args=[run.pk])).content.decode()
    assert 'id="cancel-run"' not in html and 'id="clone-run"' not in html


def test_run_page_summarises_each_metric_headline_first(client, world):
    run = world["queued"]
    assert (
        'id="run-summary"'
        not in client.get(reverse("experiments:run-detail", args=[run.pk])).content.decode()
    )
    metric_points_add(
        run,
        [("loss", 1, 2.0), ("loss", 2, 0.25), ("loss", 3, 0.5), ("grad_norm", 3, 4.0)]
        + [("val_accuracy", 2, 0.875), ("val_accuracy", 3, 0.625), ("val_loss", 3, 0.75)],
    )
    login(client, world["users"]["viewer"])
    page = client.get(reverse("experiments:run-detail", args=[run.pk])).content.decode()
    table = re.search(r'<table class="list compact" id="run-summary">(.*?)</table>', page, re.S).group(1)
    rows = re.findall(r'data-metric="([^"]+)">.*?<td class="num">([^<]*)</td>.*?>([^<]*) <span', table, re.S)
    assert rows == [
        ("val_loss", "0.7500", "0.7500"),
        ("val_accuracy", "0.6250", "0.8750"),  # best is the highest
        ("grad_norm", "4.0000", "4.0000"),
        ("loss", "0.5000", "0.2500"),  # best is the lowest
    ]


def test_failed_run_page_shows_the_error_and_its_step(client, world):
    run = world["queued"]
    Run.objects.filter(pk=run.pk).update(
        status=RunStatus.FAILED, error="training diverged: loss is nan", error_step=12
    )
    login(client, world["users"]["member"])
    html = client.get(reverse("experiments:run-detail", args=[run.pk])).content.decode()
    assert 'id="run-error"' in html and 'id="run-error-step">12<' in html and "loss is nan" in html
    assert 'id="cancel-run"' not in html


# -- cancel ----------------------------------------------------------------------


def test_cancel_over_htmx_swaps_the_panel(client, world):
    login(client, world["users"]["member"])
    run = world["queued"]
    response = client.post(reverse("experiments:run-cancel", args=[run.pk]), **HTMX)
    html = response.content.decode()
    assert response.status_code == 200 and "<html" not in html
    assert html.lstrip().startswith('<section class="card" id="run-live" data-status="cancelled"')
    assert 'id="cancel-run"' not in html
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED


def test_cancel_running_run_marks_it_cancelling(client, world):
    run = world["queued"]
    Run.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING)
    login(client, world["users"]["admin"])
    html = client.post(reverse("experiments:run-cancel", args=[run.pk]), **HTMX).content.decode()
    assert 'id="run-cancelling"' in html and re.search(r'id="cancel-run"[^>]*disabled', html)
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING and run.cancel_requested_at is not None


def test_cancel_finished_run_shows_an_error(client, world):
    login(client, world["users"]["member"])
    run = world["finished"]
    html = client.post(reverse("experiments:run-cancel", args=[run.pk]), **HTMX).content.decode()
    assert 'id="cancel-error"' in html and "succeeded already" in html
    response = client.post(reverse("experiments:run-cancel", args=[run.pk]), follow=True)
    assert "succeeded already" in response.content.decode()
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED


# -- clone ----------------------------------------------------------------------


def test_clone_prefills_and_creates_a_linked_run(client, world, sent):
    source = world["finished"]
    source.config = {**source.config, "inner_lr": 0.07, "shots": 3, "seed": 9}
    source.save()
    login(client, world["users"]["member"])
    html = client.get(reverse("experiments:run-clone", args=[source.pk])).content.decode()
    assert 'name="inner_lr" value="0.07"' in html and 'name="shots" value="3"' in html
    assert f'name="cloned_from" value="{source.pk}"' in html and 'id="clone-note"' in html

    response = client.post(
        reverse("experiments:run-launch", kwargs={"team_slug": "alpha"}),
        launch_post(world, inner_lr="0.07", shots="3", seed="10", cloned_from=str(source.pk)),
    )
    clone = Run.objects.latest("pk")
    assert response.status_code == 302
    assert clone.cloned_from == source and clone.config["inner_lr"] == 0.07 and clone.seed == 10


def test_clone_of_another_teams_run_is_not_linked(client, world, sent):
    foreign = RunFactory()
    login(client, world["users"]["member"])
    client.post(
        reverse("experiments:run-launch", kwargs={"team_slug": "alpha"}),
        launch_post(world, cloned_from=str(foreign.pk)),
    )
    assert Run.objects.latest("pk").cloned_from is None


# -- downloads ----------------------------------------------------------------------


def test_metrics_csv_download(client, world):
    run = world["finished"]
    metric_points_add(run, [("val_loss", 10, 0.75)])
    login(client, world["users"]["viewer"])
    response = client.get(reverse("experiments:run-metrics-csv", args=[run.pk]))
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == f'attachment; filename="run-{run.pk}-metrics.csv"'
    body = b"".join(response.streaming_content).decode()
    assert body == "step,name,value\r\n10,loss,0.5\r\n10,val_loss,0.75\r\n"


def test_checkpoint_download(client, world):
    login(client, world["users"]["viewer"])
    response = client.get(reverse("experiments:run-checkpoint", args=[world["finished"].pk]))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/octet-stream"
    assert f'filename="run-{world["finished"].pk}-step-000020.safetensors"' in response["Content-Disposition"]
    assert b"".join(response.streaming_content) == b"\x08\x00\x00\x00\x00\x00\x00\x00{}      "

    html = client.get(reverse("experiments:run-detail", args=[world["finished"].pk])).content.decode()
    assert 'id="download-checkpoint"' in html

    missing = client.get(reverse("experiments:run-checkpoint", args=[world["queued"].pk]))
    assert missing.status_code == 404
    html = client.get(reverse("experiments:run-detail", args=[world["queued"].pk])).content.decode()
    assert 'id="no-checkpoint"' in html


def test_the_web_side_never_imports_torch():
    """Views, forms, services, selectors and urls validate with the engine's torch-free
    parts only; importing torch would cost the web process seconds and gigabytes."""
    import subprocess
    import sys

    code = (
        "import django, sys; django.setup(); "
        "import metaweb.urls, apps.experiments.views, apps.experiments.forms, apps.experiments.services, "
        "apps.experiments.selectors, apps.experiments.admin; "
        "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith(('torch.', "
        "'workers.metalearn.api', 'workers.metalearn.loop', 'workers.metalearn.algorithms'))); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_admin_pages_are_read_only(client, world):
    from tests.factories import UserFactory

    boss = UserFactory(username="boss", is_staff=True, is_superuser=True)
    login(client, boss)
    run = world["finished"]
    RunEvent.objects.create(run=run, kind="succeeded", message="Finished at step 20.")
    for name in ("run", "experiment", "metricseries", "runevent"):
        assert client.get(reverse(f"admin:experiments_{name}_changelist")).status_code == 200, name
    page = client.get(reverse("admin:experiments_run_change", args=[run.pk]))
    assert page.status_code == 200 and "Finished at step 20." in page.content.decode()
    assert client.get(reverse("admin:experiments_run_add")).status_code == 403
    client.post(reverse("admin:experiments_run_change", args=[run.pk]), {"status": "queued"})
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED
