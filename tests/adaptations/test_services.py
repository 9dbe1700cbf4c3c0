"""adaptation_start against the real PostgreSQL: what a launch writes and queues, the
role checks, and every bad input (a field error, no run, no adaptation, nothing
queued); adaptation_complete: one adapted model per adaptation, weights written
atomically, a lost attempt writes nothing.

The meta-models carry a real checkpoint: a tiny sinusoid MAML meta-trained once per
module, registered from its training run with ``metamodel_register_from_run``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import shutil
import tempfile
from pathlib import Path

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404

from apps.adaptations.models import Adaptation, AdaptationTarget, AdaptedModel
from apps.adaptations.services import AdaptedResult, adaptation_complete, adaptation_start
from apps.experiments.models import Run, RunEvent, RunKind, RunStatus
from apps.experiments.services import run_claim
from apps.registry import storage
from apps.registry.models import MetaModel
from apps.registry.services.metamodels import metamodel_register_from_run
from tests.factories import ExperimentFactory, MetaModelFactory, RunFactory, TaskSetVersionFactory

pytestmark = pytest.mark.django_db

#: A tiny sinusoid MAML: 200 meta-iterations of 10 tasks, about a second on one CPU thread.
TINY_MAML = {
    "algorithm": "maml",
    "family": {"name": "sinusoid"},
    "iterations": 200,
    "meta_batch": 10,
    "meta_lr": 3e-3,
    "inner_lr": 0.01,
    "inner_steps": 1,
    "hidden": [40, 40],
    "shots": 5,
    "query": 10,
    "eval_interval": 200,
    "eval_tasks": 5,
    "checkpoint_interval": 200,
    "seed": 0,
    "device": "cpu",
}


@functools.cache
def trained_checkpoints(config_json: str = json.dumps(TINY_MAML)) -> Path:
    """Meta-train once per process; returns the run folder (``latest`` + step folder)."""
    import torch

    from workers.metalearn import meta_train
    from workers.metalearn.config import parse_config
    from workers.metalearn.families import make_family

    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = parse_config(json.loads(config_json))
    folder = Path(tempfile.mkdtemp(prefix="tiny-meta-"))
    meta_train(config, make_family(config.family), None, folder)
    return folder


def register_trained(
    *, team=None, experiment=None, version=None, config: dict | None = None, launched_by=None
) -> MetaModel:
    """A succeeded training run whose checkpoints are the tiny model's, registered as a
    meta-model (its files copied into the registry)."""
    config = dict(config or TINY_MAML)
    experiment = experiment or ExperimentFactory(**({"team": team} if team else {}))
    version = version or TaskSetVersionFactory(taskset__team=experiment.team, taskset__family="sinusoid")
    run = RunFactory(
        experiment=experiment,
        taskset_version=version,
        status=RunStatus.SUCCEEDED,
        config=config,
        algorithm=config["algorithm"],
        step=config["iterations"],
        total_steps=config["iterations"],
        **({"launched_by": launched_by} if launched_by else {}),
    )
    from django.conf import settings

    target = Path(settings.RUNS_DIR) / str(run.pk) / "checkpoints"
    shutil.copytree(trained_checkpoints(json.dumps(config)), target)
    return metamodel_register_from_run(run_id=run.pk)


@pytest.fixture
def world(team_roles):
    team, users = team_roles
    experiment = ExperimentFactory(team=team, created_by=users["member"])
    meta_model = register_trained(experiment=experiment, launched_by=users["member"])
    return {"team": team, "users": users, "meta_model": meta_model}


def start(world, *, user="member", **kwargs):
    defaults = {"target": AdaptationTarget.TEST_TASK, "task_index": 3, "steps": 10, "lr": 0.01}
    return adaptation_start(actor=world["users"][user], meta_model=world["meta_model"], **(defaults | kwargs))


def nothing_written(sent) -> bool:
    return (
        not Run.objects.filter(kind=RunKind.ADAPT).exists() and not Adaptation.objects.exists() and not sent
    )


# -- launching ------------------------------------------------------------------------


def test_registered_meta_model_has_the_engine_checkpoint(world):
    folder = storage.meta_model_dir(world["meta_model"].pk)
    assert (folder / storage.WEIGHTS_FILE).is_file() and (folder / storage.CHECKPOINT_JSON).is_file()


def test_test_task_adaptation_is_queued_and_dispatched_on_commit(
    world, sent, django_capture_on_commit_callbacks
):
    meta_model = world["meta_model"]
    with django_capture_on_commit_callbacks(execute=True):
        run = start(world, task_index=3, steps=7, lr=0.02)
        assert sent == []  # nothing leaves before the commit
    assert sent == [("workers.tasks.adapt_run", [run.pk], "cpu")]
    run.refresh_from_db()
    assert run.kind == RunKind.ADAPT and run.status == RunStatus.QUEUED
    assert run.experiment_id == meta_model.experiment_id and run.team_id == meta_model.team_id
    assert run.taskset_version_id == meta_model.taskset_version_id and run.algorithm == "maml"
    assert run.total_steps == 7 and run.launched_by == world["users"]["member"]
    assert run.config == {
        "kind": "adapt",
        "meta_model": meta_model.pk,
        "target": "test_task",
        "steps": 7,
        "lr": 0.02,
        "task_index": 3,
    }
    adaptation = run.adaptation
    assert adaptation.meta_model == meta_model and adaptation.target == "test_task"
    assert adaptation.task_index == 3 and adaptation.steps == 7 and adaptation.lr == 0.02
    assert adaptation.shots == 5 and adaptation.support is None
    event = RunEvent.objects.get(run=run)
    assert event.kind == "queued" and "meta-test task 3" in event.message and "member" in event.message


def test_batch_counts_tasks_from_the_setting(world, sent, settings, django_capture_on_commit_callbacks):
    settings.ADAPT_BATCH_TASKS = 40
    with django_capture_on_commit_callbacks(execute=True):
        run = start(world, target=AdaptationTarget.BATCH, task_index=None, queue="gpu")
    assert run.total_steps == 40 and run.config["tasks"] == 40 and run.queue == "gpu"
    assert sent == [("workers.tasks.adapt_run", [run.pk], "gpu")]
    assert run.adaptation.task_index is None and run.adaptation.target == "batch"


def test_batch_defaults_to_the_600_meta_test_tasks(world, sent):
    run = start(world, target=AdaptationTarget.BATCH)
    assert run.total_steps == 600


def test_custom_regression_task_is_stored_clean(world, sent):
    run = start(
        world,
        target=AdaptationTarget.CUSTOM,
        task_index=99,  # ignored for a custom task
        support={"x": [[-1.0], [0.5], [2]], "y": [0.3, -1, 2.5]},
        query={"x": [[1.0]], "y": [0.7]},
        desc=[2.0, 0.5],
    )
    adaptation = run.adaptation
    assert adaptation.support == {"x": [[-1.0], [0.5], [2.0]], "y": [0.3, -1.0, 2.5]}
    assert adaptation.query == {"x": [[1.0]], "y": [0.7]}
    assert adaptation.desc == [2.0, 0.5] and adaptation.task_index is None and adaptation.shots == 3
    assert run.total_steps == 10 and "task_index" not in run.config


def test_viewers_and_outsiders_cannot_adapt(world, sent):
    with pytest.raises(PermissionDenied):
        start(world, user="viewer")
    with pytest.raises(Http404):
        start(world, user="outsider")
    assert nothing_written(sent)


def test_admins_can_adapt(world, sent):
    assert start(world, user="admin").kind == RunKind.ADAPT


BAD_INPUTS = [
    ({"task_index": 600}, "task_index"),
    ({"task_index": -1}, "task_index"),
    ({"task_index": None}, "task_index"),
    ({"task_index": True}, "task_index"),
    ({"steps": 101}, "steps"),
    ({"steps": -1}, "steps"),
    ({"steps": 2.5}, "steps"),
    ({"lr": 0}, "lr"),
    ({"lr": -0.1}, "lr"),
    ({"lr": math.nan}, "lr"),
    ({"lr": math.inf}, "lr"),
    ({"lr": 11.0}, "lr"),
    ({"target": "everything"}, "target"),
    ({"queue": "tpu"}, "queue"),
    ({"target": "custom", "support": None}, "support"),
    ({"target": "custom", "support": {"x": [], "y": []}}, "support"),
    ({"target": "custom", "support": {"x": [[1.0, 2.0]], "y": [1.0]}}, "support"),
    ({"target": "custom", "support": {"x": [[1.0], [2.0]], "y": [1.0]}}, "support"),
    ({"target": "custom", "support": {"x": [[math.nan]], "y": [1.0]}}, "support"),
    ({"target": "custom", "support": {"x": [[1.0]], "y": [math.inf]}}, "support"),
    ({"target": "custom", "support": {"x": [["1"]], "y": [1.0]}}, "support"),
    (
        {"target": "custom", "support": {"x": [[1.0]], "y": [1.0]}, "query": {"x": [[math.nan]], "y": [1.0]}},
        "query",
    ),
    ({"target": "custom", "support": {"x": [[1.0]], "y": [1.0]}, "desc": [1.0]}, "desc"),
    ({"target": "custom", "support": {"x": [[1.0]], "y": [1.0]}, "desc": [1.0, math.nan]}, "desc"),
    ({"target": "custom", "support": {"x": [[0.0]] * 2001, "y": [0.0] * 2001}}, "support"),
]


@pytest.mark.parametrize(("changes", "field"), BAD_INPUTS)
def test_bad_input_is_a_field_error_and_nothing_is_written(
    world, sent, changes, field, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(ValidationError) as info:
        start(world, **changes)
    assert field in info.value.message_dict, info.value.message_dict
    assert nothing_written(sent)


def test_the_line_or_example_at_fault_is_named(world, sent):
    with pytest.raises(ValidationError) as info:
        start(
            world,
            target="custom",
            support={"x": [[1.0], [2.0], [math.nan]], "y": [1.0, 2.0, 3.0], "names": ["a", "b", "line 7"]},
        )
    assert "line 7" in info.value.message_dict["support"][0]


def test_missing_checkpoint_is_refused(world, sent):
    shutil.rmtree(storage.meta_model_dir(world["meta_model"].pk))
    with pytest.raises(ValidationError) as info:
        start(world)
    assert "checkpoint is missing" in info.value.message_dict["meta_model"][0]
    assert nothing_written(sent)


def test_a_backbone_that_does_not_fit_its_task_set_is_refused(world, sent):
    """A sinusoid checkpoint registered against a digits task set: kind, input shape and
    description size all differ, and the error names them."""
    meta_model = world["meta_model"]
    digits = TaskSetVersionFactory(taskset__team=world["team"], taskset__family="digits")
    MetaModel.objects.filter(pk=meta_model.pk).update(taskset_version=digits)
    meta_model.refresh_from_db()
    with pytest.raises(ValidationError) as info:
        adaptation_start(
            actor=world["users"]["member"],
            meta_model=meta_model,
            target="test_task",
            task_index=0,
            steps=5,
            lr=0.01,
        )
    message = info.value.message_dict["meta_model"][0]
    assert (
        "does not fit" in message and "regression model" in message and "[1]" in message and "[64]" in message
    )
    assert nothing_written(sent)


def test_harmonic_task_set_differs_in_description_size(world, sent):
    harmonic = TaskSetVersionFactory(taskset__team=world["team"], taskset__family="harmonic")
    MetaModel.objects.filter(pk=world["meta_model"].pk).update(taskset_version=harmonic)
    world["meta_model"].refresh_from_db()
    with pytest.raises(ValidationError) as info:
        start(world)
    assert "descriptions of 2 values, the task set has 5" in info.value.message_dict["meta_model"][0]
    assert nothing_written(sent)


# -- classification input checks (a checkpoint.json is enough for validation) ------------


def write_checkpoint_json(
    meta_model: MetaModel, *, family: str, kind: str, input_shape, ways: int, algorithm: str
):
    folder = storage.meta_model_dir(meta_model.pk)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": 1,
        "algorithm": algorithm,
        "config": {
            "algorithm": algorithm,
            "shots": 1,
            "query": 2,
            "ways": ways,
            "inner_lr": 0.4,
            "family": {"name": family, "version": 1, "params": {}},
        },
        "family_info": {
            "name": family,
            "version": 1,
            "kind": kind,
            "input_shape": list(input_shape),
            "desc_dim": None,
            "ways": ways,
        },
    }
    (folder / storage.CHECKPOINT_JSON).write_text(json.dumps(meta))


@pytest.fixture
def digits_model(team_roles):
    team, users = team_roles
    version = TaskSetVersionFactory(taskset__team=team, taskset__family="digits")
    meta_model = MetaModelFactory(experiment__team=team, taskset_version=version, algorithm="protonet")
    write_checkpoint_json(
        meta_model, family="digits", kind="classification", input_shape=[64], ways=3, algorithm="protonet"
    )
    return {"team": team, "users": users, "meta_model": meta_model}


def image(value: float) -> list[float]:
    return [value] * 64


@pytest.mark.parametrize(
    ("support", "message"),
    [
        ({"x": [image(0.1), image(0.2)], "y": [0, 1]}, "give at least 1 image for each of 3 classes"),
        ({"x": [image(0.1), image(0.2), image(0.3)], "y": [0, 1, 3]}, "labels must be classes 0 to 2"),
        ({"x": [image(0.1), [0.2] * 63, image(0.3)], "y": [0, 1, 2]}, "takes 64 input value(s), got 63"),
    ],
)
def test_classification_support_needs_every_class(digits_model, sent, support, message):
    with pytest.raises(ValidationError) as info:
        adaptation_start(
            actor=digits_model["users"]["member"],
            meta_model=digits_model["meta_model"],
            target="custom",
            support=support,
            steps=0,
            lr=0.1,
        )
    assert message in info.value.message_dict["support"][0]
    assert nothing_written(sent)


def test_classification_custom_task_records_classes_and_shots(digits_model, sent):
    run = adaptation_start(
        actor=digits_model["users"]["member"],
        meta_model=digits_model["meta_model"],
        target="custom",
        support={
            "x": [image(0.1), image(0.2), image(0.3), image(0.4)],
            "y": [0, 1, 2, 2],
            "classes": ["a", "b", "c"],
        },
        query={"x": [image(0.5)], "y": [1]},
        steps=5,
        lr=0.1,
    )
    assert run.adaptation.shots == 1 and run.adaptation.support["classes"] == ["a", "b", "c"]
    assert run.total_steps == 0 and run.adaptation.steps == 0  # prototypes take no inner step


# -- completing ------------------------------------------------------------------------


def test_complete_creates_one_adapted_model_and_writes_the_weights(world, sent):
    run = start(world)
    claim = run_claim(run_id=run.pk, worker="w", device="cpu")
    weights = b"not really safetensors, only bytes"
    result = AdaptedResult(metric="mse", before=2.0, after=0.5, curve=[{"step": 0, "query_loss": 2.0}])
    adapted = adaptation_complete(run_id=run.pk, token=claim.token, result=result, weights=weights, step=0)
    assert adapted is not None and adapted.adaptation == run.adaptation
    assert adapted.meta_model == world["meta_model"] and adapted.team == world["team"]
    path = storage.adapted_model_dir(adapted.pk) / storage.WEIGHTS_FILE
    assert path.read_bytes() == weights and adapted.weights_sha256 == hashlib.sha256(weights).hexdigest()
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED and run.summary["adapted_model"] == adapted.pk
    # A late second completion (a redelivered task) is refused and changes nothing.
    assert adaptation_complete(run_id=run.pk, token=claim.token, result=result, weights=b"other") is None
    assert AdaptedModel.objects.count() == 1 and path.read_bytes() == weights


def test_complete_by_a_lost_attempt_writes_nothing(world, sent):
    run = start(world)
    run_claim(run_id=run.pk, worker="w", device="cpu")
    assert (
        adaptation_complete(run_id=run.pk, token="stale", result=AdaptedResult(metric="mse"), weights=b"x")
        is None
    )
    assert not AdaptedModel.objects.exists()
    assert not storage.adapted_model_dir(1).exists() and not (storage.registry_root() / "adapted").exists()
    assert Run.objects.get(pk=run.pk).status == RunStatus.RUNNING


def test_complete_rolls_back_and_removes_the_file_on_error(world, sent, monkeypatch):
    from apps.adaptations import services as module

    run = start(world)
    claim = run_claim(run_id=run.pk, worker="w", device="cpu")

    def broken(**kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(module, "run_succeed", broken)
    with pytest.raises(RuntimeError):
        adaptation_complete(
            run_id=run.pk, token=claim.token, result=AdaptedResult(metric="mse"), weights=b"x"
        )
    assert not AdaptedModel.objects.exists()
    adapted_root = storage.registry_root() / "adapted"
    assert adapted_root.is_dir() and not any(adapted_root.rglob("*"))  # written, then removed
    assert Run.objects.get(pk=run.pk).status == RunStatus.RUNNING
