"""Browser-side run services on PostgreSQL: create, launch (validation, dispatch on
commit, events), cancel, clone."""

from __future__ import annotations

import asyncio
import subprocess

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404

from apps.experiments import services
from apps.experiments.events import team_group
from apps.experiments.models import Experiment, Run, RunEvent, RunStatus
from apps.experiments.services import runs as runs_module
from tests.factories import SMALL_CONFIG, ExperimentFactory, RunFactory, TaskSetVersionFactory
from workers.metalearn.config import config_to_dict, parse_config

pytestmark = pytest.mark.django_db


@pytest.fixture
def alpha(team_roles):
    team, users = team_roles
    experiment = ExperimentFactory(team=team, created_by=users["member"], name="Sine study")
    version = TaskSetVersionFactory(
        taskset__team=team, taskset__family="sinusoid", taskset__created_by=users["member"], params={}
    )
    return team, users, experiment, version


def launch_config(**changes):
    config = {k: v for k, v in SMALL_CONFIG.items() if k != "family"}
    config.update(changes)
    return config


# -- experiment_create -----------------------------------------------------------------


def test_experiment_create_by_member(team_roles):
    team, users = team_roles
    experiment = services.experiment_create(
        team=team, actor=users["member"], name="  Inner steps  ", description="Does 5 beat 1?"
    )
    experiment.refresh_from_db()
    assert (experiment.name, experiment.description, experiment.team, experiment.created_by) == (
        "Inner steps",
        "Does 5 beat 1?",
        team,
        users["member"],
    )


@pytest.mark.parametrize("name", ["", "   ", "x" * 121])
def test_experiment_create_rejects_bad_names(team_roles, name):
    team, users = team_roles
    with pytest.raises(ValidationError) as exc:
        services.experiment_create(team=team, actor=users["member"], name=name)
    assert "name" in exc.value.message_dict
    assert not Experiment.objects.exists()


def test_experiment_create_rejects_duplicate_names_case_insensitively(team_roles):
    team, users = team_roles
    services.experiment_create(team=team, actor=users["member"], name="Sweep")
    with pytest.raises(ValidationError) as exc:
        services.experiment_create(team=team, actor=users["admin"], name="sweep")
    assert "already" in exc.value.message_dict["name"][0]
    assert Experiment.objects.count() == 1


def test_experiment_create_permissions(team_roles):
    team, users = team_roles
    with pytest.raises(PermissionDenied):
        services.experiment_create(team=team, actor=users["viewer"], name="No")
    with pytest.raises(Http404):
        services.experiment_create(team=team, actor=users["outsider"], name="No")
    assert not Experiment.objects.exists()


def test_experiment_update_keeps_what_is_left_out_and_checks_permissions(team_roles):
    team, users = team_roles
    experiment = services.experiment_create(team=team, actor=users["member"], name="Sweep", description="old")
    updated = services.experiment_update(experiment=experiment, actor=users["admin"], description="new")
    assert (updated.name, updated.description) == ("Sweep", "new")
    with pytest.raises(PermissionDenied):
        services.experiment_update(experiment=experiment, actor=users["viewer"], name="Mine")
    with pytest.raises(Http404):
        services.experiment_update(experiment=experiment, actor=users["outsider"], name="Mine")
    assert Experiment.objects.get(pk=experiment.pk).name == "Sweep"


def test_a_name_lost_to_a_concurrent_write_is_refused_on_name(team_roles, monkeypatch):
    """The check passed, then another request took the name: the database's unique
    constraint refuses the write, and the caller gets the check's message."""
    team, users = team_roles
    ExperimentFactory(team=team, name="Taken")
    experiment = ExperimentFactory(team=team, name="Mine")
    monkeypatch.setattr(runs_module, "_experiment_name", lambda team, name, other_than=None: name)
    with pytest.raises(ValidationError) as exc:
        services.experiment_update(experiment=experiment, actor=users["member"], name="Taken")
    assert exc.value.message_dict["name"] == ["The team has an experiment called 'Taken' already."]
    with pytest.raises(ValidationError):
        services.experiment_create(team=team, actor=users["member"], name="Taken")
    assert Experiment.objects.get(pk=experiment.pk).name == "Mine"
    assert Experiment.objects.filter(name="Taken").count() == 1


# -- run_create ------------------------------------------------------------------------------


def test_run_create_records_everything_and_dispatches_after_commit(
    alpha, sent, django_capture_on_commit_callbacks
):
    team, users, experiment, version = alpha
    version.params = {"amplitude_min": 0.5, "amplitude_max": 2.0}
    version.save()
    config = launch_config(seed=7, iterations=33, inner_lr=0.05)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        run = services.run_create(
            experiment=experiment, actor=users["member"], taskset_version=version, config=config, queue="gpu"
        )
    assert sent == [], "nothing may be sent before the transaction commits"
    assert len(callbacks) == 2  # dispatch, then the status event

    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED
    assert run.launched_by == users["member"]
    assert run.team == team and run.experiment == experiment and run.taskset_version == version
    assert (run.seed, run.total_steps, run.queue, run.algorithm) == (7, 33, "gpu", "maml")
    expected = dict(config, family={"name": "sinusoid", "version": 1, "params": version.params})
    assert run.config == config_to_dict(parse_config(expected))
    assert run.config["family"]["params"] == {"amplitude_min": 0.5, "amplitude_max": 2.0}
    assert run.config["inner_lr"] == 0.05
    assert run.code_version == runs_module.code_version()
    assert run.cloned_from is None
    event = RunEvent.objects.get(run=run)
    assert event.kind == "queued" and "member" in event.message

    with django_capture_on_commit_callbacks(execute=True):
        callbacks[0]()  # the fair dispatcher: the gpu queue has a free slot, it sends on commit
    assert sent == [("workers.tasks.train_run", [run.pk], "gpu")]


def test_run_create_publishes_the_status_to_the_team_group(alpha, sent, django_capture_on_commit_callbacks):
    team, users, experiment, version = alpha
    group = team_group(team.pk)

    def create():
        with django_capture_on_commit_callbacks(execute=True):
            return services.run_create(
                experiment=experiment,
                actor=users["member"],
                taskset_version=version,
                config=launch_config(),
                queue="cpu",
            )

    async def listen():
        # One loop holds the channel, as a consumer does (the pub/sub layer needs it).
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(group, channel)
        try:
            created = await sync_to_async(create)()
            return created, await asyncio.wait_for(layer.receive(channel), 5)
        finally:
            await layer.group_discard(group, channel)

    run, message = async_to_sync(listen)()
    assert message["type"] == "run.status"
    assert (message["run_id"], message["status"], message["total_steps"]) == (run.pk, "queued", 20)
    assert len(sent) == 1


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"inner_lr": -0.01}, "inner_lr"),
        ({"meta_lr": 0}, "meta_lr"),
        ({"shots": 0}, "shots"),
        ({"query": 0}, "query"),
        ({"iterations": 0}, "iterations"),
        ({"meta_batch": 5000}, "meta_batch"),
        ({"inner_steps": 0}, "inner_steps"),
        ({"hidden": [40, 0]}, "hidden"),
        ({"algorithm": "gradient-descent"}, "algorithm"),
        ({"bogus": 1}, "bogus"),
        ({"device": "cuda"}, "device"),  # a CUDA run on the CPU queue
        ({"algorithm": "protonet"}, "algorithm"),  # classification only; sinusoid regresses
        ({"algorithm": "seed-mnn"}, None),  # sinusoid has descriptions: valid
    ],
)
def test_run_create_maps_bad_values_to_fields(
    alpha, sent, django_capture_on_commit_callbacks, changes, field
):
    _, users, experiment, version = alpha
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        if field is None:
            services.run_create(
                experiment=experiment,
                actor=users["member"],
                taskset_version=version,
                config=launch_config(**changes),
                queue="cpu",
            )
            assert Run.objects.count() == 1
            return
        with pytest.raises(ValidationError) as exc:
            services.run_create(
                experiment=experiment,
                actor=users["member"],
                taskset_version=version,
                config=launch_config(**changes),
                queue="cpu",
            )
    assert list(exc.value.message_dict) == [field]
    assert exc.value.message_dict[field][0]
    assert not Run.objects.exists() and not RunEvent.objects.exists()
    assert callbacks == [] and sent == []


def test_run_create_checks_ways_against_the_digits_classes(alpha, sent, django_capture_on_commit_callbacks):
    team, users, experiment, _ = alpha
    digits = TaskSetVersionFactory(taskset__team=team, taskset__family="digits", params={})
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(ValidationError) as exc:
            services.run_create(
                experiment=experiment,
                actor=users["member"],
                taskset_version=digits,
                config=launch_config(ways=6, shots=1, query=2),
                queue="cpu",
            )
    assert list(exc.value.message_dict) == ["ways"]
    assert "5" in exc.value.message_dict["ways"][0]  # the train split has digits 0-4
    assert not Run.objects.exists() and callbacks == [] and sent == []

    run = services.run_create(
        experiment=experiment,
        actor=users["member"],
        taskset_version=digits,
        config=launch_config(ways=5, shots=1, query=2, algorithm="protonet"),
        queue="cpu",
    )
    assert run.config["family"]["name"] == "digits" and run.config["ways"] == 5


def test_run_create_reports_bad_family_params_on_the_taskset(alpha, sent):
    _, users, experiment, version = alpha
    version.params = {"amplitude_min": 3.0, "amplitude_max": 1.0}
    version.save()
    with pytest.raises(ValidationError) as exc:
        services.run_create(
            experiment=experiment, actor=users["member"], taskset_version=version, config=launch_config()
        )
    assert list(exc.value.message_dict) == ["taskset"]
    assert "amplitude_max" in exc.value.message_dict["taskset"][0]
    assert not Run.objects.exists()


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        (launch_config(hidden=[40] * 10_000), "limit"),
        ({"notes": "x" * 20_000}, "limit"),
        (launch_config(inner_lr=float("nan")), "plain JSON"),
        (["not", "an", "object"], "JSON object"),
    ],
)
def test_run_create_rejects_oversized_or_non_json_configs(
    alpha, sent, django_capture_on_commit_callbacks, config, needle
):
    _, users, experiment, version = alpha
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(ValidationError) as exc:
            services.run_create(
                experiment=experiment, actor=users["member"], taskset_version=version, config=config
            )
    assert list(exc.value.message_dict) == ["config"]
    assert needle in exc.value.message_dict["config"][0]
    assert not Run.objects.exists() and callbacks == [] and sent == []


def test_run_create_rejects_a_bad_queue_and_another_teams_taskset(alpha, sent):
    _, users, experiment, version = alpha
    with pytest.raises(ValidationError) as exc:
        services.run_create(
            experiment=experiment,
            actor=users["member"],
            taskset_version=version,
            config=launch_config(),
            queue="tpu",
        )
    assert list(exc.value.message_dict) == ["queue"]
    foreign = TaskSetVersionFactory()  # another team's task set
    with pytest.raises(ValidationError) as exc:
        services.run_create(
            experiment=experiment, actor=users["member"], taskset_version=foreign, config=launch_config()
        )
    assert list(exc.value.message_dict) == ["taskset"]
    assert not Run.objects.exists() and sent == []


def test_run_create_permissions(alpha, sent):
    _, users, experiment, version = alpha
    with pytest.raises(PermissionDenied):
        services.run_create(
            experiment=experiment, actor=users["viewer"], taskset_version=version, config=launch_config()
        )
    with pytest.raises(Http404):
        services.run_create(
            experiment=experiment, actor=users["outsider"], taskset_version=version, config=launch_config()
        )
    run = services.run_create(
        experiment=experiment, actor=users["admin"], taskset_version=version, config=launch_config()
    )
    assert Run.objects.get().pk == run.pk and run.launched_by == users["admin"]


def test_code_version_is_empty_without_git(monkeypatch):
    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    runs_module.code_version.cache_clear()
    monkeypatch.setattr(subprocess, "run", no_git)
    try:
        assert runs_module.code_version() == ""
    finally:
        runs_module.code_version.cache_clear()


def test_code_version_is_computed_once(monkeypatch):
    calls = []

    def fake_run(*args, **kwargs):
        calls.append(args)
        return subprocess.CompletedProcess(args, 0, stdout="abc1234-dirty\n", stderr="")

    runs_module.code_version.cache_clear()
    monkeypatch.setattr(subprocess, "run", fake_run)
    try:
        assert runs_module.code_version() == "abc1234-dirty"
        assert runs_module.code_version() == "abc1234-dirty"
        assert len(calls) == 1
    finally:
        runs_module.code_version.cache_clear()


# -- run_cancel -------------------------------------------------------------------------------


def test_cancel_queued_run_cancels_at_once(alpha, django_capture_on_commit_callbacks):
    team, users, experiment, _ = alpha
    run = RunFactory(experiment=experiment, status=RunStatus.QUEUED)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        result = services.run_cancel(run=run, actor=users["member"])
    run.refresh_from_db()
    assert result.status == run.status == RunStatus.CANCELLED
    assert run.finished_at is not None
    assert list(run.events.values_list("kind", flat=True)) == ["cancelled"]
    assert len(callbacks) == 1  # the status event


def test_cancel_running_run_asks_the_worker(alpha, django_capture_on_commit_callbacks):
    _, users, experiment, _ = alpha
    run = RunFactory(experiment=experiment, status=RunStatus.RUNNING, step=5)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.run_cancel(run=run, actor=users["admin"])
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING
    assert run.cancel_requested_at is not None and run.finished_at is None
    assert len(callbacks) == 1
    first_request = run.cancel_requested_at

    services.run_cancel(run=run, actor=users["member"])  # asking twice changes nothing
    run.refresh_from_db()
    assert run.cancel_requested_at == first_request
    assert list(run.events.values_list("kind", flat=True)) == ["cancel_requested"]


@pytest.mark.parametrize("status", [RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED])
def test_cancel_finished_run_is_refused(alpha, status, django_capture_on_commit_callbacks):
    _, users, experiment, _ = alpha
    run = RunFactory(experiment=experiment, status=status)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        with pytest.raises(ValidationError) as exc:
            services.run_cancel(run=run, actor=users["member"])
    assert "already" in exc.value.message_dict["status"][0]
    run.refresh_from_db()
    assert run.status == status and run.cancel_requested_at is None
    assert callbacks == [] and not run.events.exists()


def test_cancel_permissions(alpha):
    _, users, experiment, _ = alpha
    run = RunFactory(experiment=experiment, status=RunStatus.QUEUED)
    with pytest.raises(PermissionDenied):
        services.run_cancel(run=run, actor=users["viewer"])
    with pytest.raises(Http404):
        services.run_cancel(run=run, actor=users["outsider"])
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED


# -- clone ----------------------------------------------------------------------


def test_clone_initial_reads_compile_stored_as_a_boolean(alpha, sent):
    """Runs stored before compile took auto/on/off keep their meaning when cloned."""
    _, users, experiment, version = alpha
    source = services.run_create(
        experiment=experiment,
        actor=users["member"],
        taskset_version=version,
        config=launch_config(),
        queue="cpu",
    )
    for stored, expected in ((False, "off"), (True, "on")):
        Run.objects.filter(pk=source.pk).update(config={**source.config, "compile": stored})
        source.refresh_from_db()
        assert services.run_clone_initial(run=source)["compile"] == expected


def test_clone_initial_prefills_the_launch_form_and_links_the_new_run(alpha, sent):
    _, users, experiment, version = alpha
    source = services.run_create(
        experiment=experiment,
        actor=users["member"],
        taskset_version=version,
        config=launch_config(
            inner_lr=0.2, shots=3, seed=11, first_order=True, hidden=[32, 16], grad_clip=1.5
        ),
        queue="cpu",
    )
    initial = services.run_clone_initial(run=source)
    assert initial["experiment"] == experiment.pk
    assert initial["taskset"] == version.taskset_id
    assert initial["queue"] == "cpu" and initial["cloned_from"] == source.pk
    assert (initial["inner_lr"], initial["shots"], initial["seed"]) == (0.2, 3, 11)
    assert initial["first_order"] is True and initial["grad_clip"] == 1.5
    assert initial["hidden"] == "32, 16"
    assert initial["algorithm"] == "maml"
    assert initial["compile"] == "auto"

    clone = services.run_create(
        experiment=experiment,
        actor=users["admin"],
        taskset_version=version,
        config={**source.config, "seed": 12},
        queue=initial["queue"],
        cloned_from=source,
    )
    assert clone.cloned_from == source and clone.seed == 12
    assert "cloned from run" in clone.events.get().message


def test_clone_across_teams_is_refused(alpha, sent):
    _, users, experiment, version = alpha
    foreign_run = RunFactory()
    with pytest.raises(ValidationError) as exc:
        services.run_create(
            experiment=experiment,
            actor=users["member"],
            taskset_version=version,
            config=launch_config(),
            cloned_from=foreign_run,
        )
    assert list(exc.value.message_dict) == ["cloned_from"]
