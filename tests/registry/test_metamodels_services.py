"""Registry services on PostgreSQL: registering a training run (idempotent, files and
sha256, version numbers, the worker's hook), uploads (safetensors only, shapes,
config; nothing half-saved), alias moves with their history and the production
rule, and verdicts."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from safetensors.numpy import save as save_numpy

from apps.experiments.models import RunEvent, RunKind, RunStatus
from apps.experiments.services import run_claim, run_succeed
from apps.registry import storage
from apps.registry.models import AliasMove, MetaModel, MetaModelSource, ModelAlias
from apps.registry.services import alias_move, metamodel_register_from_run, metamodel_upload, staging, uploads
from apps.registry.services import metamodels as services
from apps.reviews.models import Verdict
from apps.reviews.services import review_create
from tests.factories import (
    SMALL_CONFIG,
    ExperimentFactory,
    MetaModelFactory,
    RunFactory,
    TaskSetVersionFactory,
)
from workers.metalearn.config import parse_config
from workers.metalearn.specs import expected_shapes

pytestmark = pytest.mark.django_db

SINE_INFO = {"name": "sinusoid", "kind": "regression", "input_shape": [1], "desc_dim": 2, "ways": 1}
UPLOAD_CONFIG = {"algorithm": "maml", "hidden": [8, 8], "shots": 5, "query": 10, "inner_lr": 0.01}


# -- a real tiny checkpoint, trained once per session ---------------------------------------


@pytest.fixture(scope="session")
def trained_checkpoints(tmp_path_factory) -> Path:
    """A 4-iteration sinusoid MAML's checkpoint folder, written by the engine."""
    from workers.metalearn import meta_train
    from workers.metalearn.families import make_family

    config = parse_config({**SMALL_CONFIG, "iterations": 4, "checkpoint_interval": 2, "eval_interval": 2})
    root = tmp_path_factory.mktemp("engine") / "checkpoints"
    result = meta_train(config, make_family(config.family), None, root)
    assert result.status == "completed" and (root / "latest").is_file()
    return root


def _succeeded_run(trained: Path, settings, **kwargs):
    fields = {
        "status": RunStatus.SUCCEEDED,
        "step": 4,
        "summary": {"metrics": {"loss": 0.75, "grad_norm": 1.5}, "val": {"val_loss": 0.9}, "step": 4},
        "code_version": "abc1234",
    }
    run = RunFactory(**{**fields, **kwargs})
    shutil.copytree(trained, Path(settings.RUNS_DIR) / str(run.pk) / "checkpoints")
    return run


def _meta_entries() -> list[str]:
    """What is in the registry's meta-model folder (temporary folders included)."""
    parent = storage.registry_root() / "meta"
    return sorted(p.name for p in parent.iterdir()) if parent.exists() else []


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- registering a training run -------------------------------------------------------------


def test_register_copies_the_checkpoint_and_is_idempotent(trained_checkpoints, settings):
    from workers.metalearn import load_checkpoint

    run = _succeeded_run(trained_checkpoints, settings, taskset_version__taskset__name="Sine waves")
    meta_model = metamodel_register_from_run(run_id=run.pk)

    assert (meta_model.name, meta_model.version) == ("sine-waves-maml", 1)
    assert meta_model.source == MetaModelSource.RUN and meta_model.training_run_id == run.pk
    assert meta_model.team_id == run.team_id and meta_model.experiment_id == run.experiment_id
    assert meta_model.taskset_version_id == run.taskset_version_id and meta_model.algorithm == "maml"
    assert meta_model.config == run.config and meta_model.code_version == "abc1234"
    assert meta_model.created_by_id == run.launched_by_id
    assert meta_model.metrics == {"loss": 0.75, "grad_norm": 1.5, "val_loss": 0.9}

    folder = storage.meta_model_dir(meta_model.pk)
    source = trained_checkpoints / (trained_checkpoints / "latest").read_text().strip()
    weights = folder / storage.WEIGHTS_FILE
    assert weights.read_bytes() == (source / "params.safetensors").read_bytes()
    assert meta_model.weights_sha256 == _sha(weights) and meta_model.weights_bytes == weights.stat().st_size
    assert json.loads((folder / storage.CHECKPOINT_JSON).read_text())["step"] == 4
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint.json", "params.safetensors"]
    assert load_checkpoint(folder).step == 4  # the engine reads the folder as it is

    again = metamodel_register_from_run(run_id=run.pk)
    assert again.pk == meta_model.pk and MetaModel.objects.count() == 1
    assert _meta_entries() == [str(meta_model.pk)]


def test_versions_count_per_team_and_name(trained_checkpoints, settings):
    first = _succeeded_run(trained_checkpoints, settings, taskset_version__taskset__name="Sines")
    second = _succeeded_run(
        trained_checkpoints, settings, experiment=first.experiment, taskset_version=first.taskset_version
    )
    reptile = _succeeded_run(
        trained_checkpoints,
        settings,
        experiment=first.experiment,
        taskset_version=first.taskset_version,
        algorithm="reptile",
    )
    elsewhere = _succeeded_run(trained_checkpoints, settings, taskset_version__taskset__name="Sines")
    registered = [metamodel_register_from_run(run_id=r.pk) for r in (first, second, reptile, elsewhere)]
    assert [(m.name, m.version) for m in registered] == [
        ("sines-maml", 1),
        ("sines-maml", 2),
        ("sines-reptile", 1),
        ("sines-maml", 1),  # another team
    ]


def test_version_collision_is_retried(trained_checkpoints, settings, monkeypatch):
    """A concurrent registration that took the next number: the loser tries the one after."""
    run = _succeeded_run(trained_checkpoints, settings, taskset_version__taskset__name="Sines")
    rival = MetaModelFactory(experiment=run.experiment, name="sines-maml", version=1)
    calls = []
    real_filter = MetaModel.objects.filter

    def stale_max(*args, **kwargs):
        queryset = real_filter(*args, **kwargs)
        if kwargs.get("name") == "sines-maml" and not calls:
            calls.append(1)
            return real_filter(pk=-1)  # sees no version yet, as if read before the rival committed
        return queryset

    monkeypatch.setattr(MetaModel.objects, "filter", stale_max)
    meta_model = metamodel_register_from_run(run_id=run.pk)
    assert calls and meta_model.version == 2 and rival.version == 1


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"status": RunStatus.RUNNING}, "succeeded"),
        ({"kind": RunKind.ADAPT}, "meta-training"),
    ],
)
def test_only_succeeded_training_runs_register(trained_checkpoints, settings, changes, message):
    run = _succeeded_run(trained_checkpoints, settings, **changes)
    with pytest.raises(ValidationError) as error:
        metamodel_register_from_run(run_id=run.pk)
    assert message in str(error.value.message_dict["run"])
    assert not MetaModel.objects.exists() and _meta_entries() == []


def test_a_run_without_checkpoint_does_not_register():
    run = RunFactory(status=RunStatus.SUCCEEDED)
    with pytest.raises(ValidationError) as error:
        metamodel_register_from_run(run_id=run.pk)
    assert "checkpoint" in error.value.message_dict["run"][0]
    assert not MetaModel.objects.exists()


def test_a_failure_while_publishing_leaves_no_row_and_no_files(trained_checkpoints, settings, monkeypatch):
    run = _succeeded_run(trained_checkpoints, settings)

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(staging.os, "replace", broken_replace)
    with pytest.raises(OSError):
        metamodel_register_from_run(run_id=run.pk)
    assert not MetaModel.objects.exists() and _meta_entries() == []


def test_succeeding_a_training_run_registers_it_on_commit(
    trained_checkpoints, settings, django_capture_on_commit_callbacks
):
    run = _succeeded_run(trained_checkpoints, settings)
    run.status = RunStatus.QUEUED
    run.save(update_fields=["status"])
    claim = run_claim(run_id=run.pk, worker="w", device="cpu")
    with django_capture_on_commit_callbacks(execute=True):
        assert run_succeed(run_id=run.pk, token=claim.token, summary={"metrics": {"loss": 0.5}}, step=4)
    meta_model = MetaModel.objects.get(training_run=run)
    assert meta_model.metrics == {"loss": 0.5}
    assert not RunEvent.objects.filter(run=run, kind="registry_failed").exists()


def test_a_registration_failure_never_fails_the_run(django_capture_on_commit_callbacks):
    run = RunFactory()  # no checkpoint on disk
    claim = run_claim(run_id=run.pk, worker="w", device="cpu")
    with django_capture_on_commit_callbacks(execute=True):
        assert run_succeed(run_id=run.pk, token=claim.token, summary={}, step=20)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED and not MetaModel.objects.exists()
    event = RunEvent.objects.get(run=run, kind="registry_failed")
    assert "no complete checkpoint" in event.message


def test_an_internal_error_while_registering_is_logged_not_raised(monkeypatch, caplog):
    run = RunFactory(status=RunStatus.SUCCEEDED)

    def boom(**kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(services, "metamodel_register_from_run", boom)
    assert services.metamodel_autoregister(run_id=run.pk) is None
    assert "internal error (RuntimeError)" in RunEvent.objects.get(run=run, kind="registry_failed").message
    assert "registering the meta-model failed" in caplog.text


def test_adaptation_runs_do_not_register(django_capture_on_commit_callbacks):
    run = RunFactory(kind=RunKind.ADAPT)
    claim = run_claim(run_id=run.pk, worker="w", device="cpu")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        run_succeed(run_id=run.pk, token=claim.token, summary={}, step=1)
    assert not any("register" in getattr(c, "func", c).__name__ for c in callbacks)
    assert not RunEvent.objects.filter(run=run, kind="registry_failed").exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
def test_the_worker_registers_a_real_training_run(settings):
    """train_run end to end (the engine on the CPU): the succeeded run is a meta-model."""
    import torch

    from workers.metalearn import load_checkpoint
    from workers.tasks import train_run

    torch.set_num_threads(1)
    settings.HEARTBEAT_SECONDS = 0.2
    run = RunFactory(
        taskset_version__taskset__name="Sine waves",
        config={**SMALL_CONFIG, "iterations": 6, "eval_interval": 3, "checkpoint_interval": 3},
        total_steps=6,
    )
    assert train_run.run(run.pk) == "succeeded"
    meta_model = MetaModel.objects.get(training_run=run)
    assert (meta_model.name, meta_model.version) == ("sine-waves-maml", 1)
    assert set(meta_model.metrics) >= {"loss", "val_loss"}
    checkpoint = load_checkpoint(storage.meta_model_dir(meta_model.pk))
    assert checkpoint.step == 6 and checkpoint.algorithm == "maml"
    assert _sha(storage.meta_model_dir(meta_model.pk) / storage.WEIGHTS_FILE) == meta_model.weights_sha256


# -- uploads ----------------------------------------------------------------------------------


def _weights(shapes: dict[str, list[int]], dtype=np.float32) -> bytes:
    rng = np.random.default_rng(0)
    return save_numpy({k: rng.standard_normal(v).astype(dtype) for k, v in shapes.items()})


def _good_weights() -> bytes:
    return _weights(expected_shapes(parse_config(UPLOAD_CONFIG), SINE_INFO))


@pytest.fixture
def upload(team_roles):
    team, users = team_roles
    version = TaskSetVersionFactory(taskset__team=team, taskset__name="Sines")
    experiment = ExperimentFactory(team=team)

    def call(data: bytes | None = None, **changes):
        kwargs = {
            "team": team,
            "actor": users["member"],
            "experiment": experiment,
            "taskset_version": version,
            "name": "Sine MAML",
            "config": dict(UPLOAD_CONFIG),
            "weights_file": io.BytesIO(_good_weights() if data is None else data),
        }
        kwargs.update(changes)
        return metamodel_upload(**kwargs)

    call.team, call.users, call.version, call.experiment = team, users, version, experiment
    return call


def test_upload_stores_weights_and_a_checkpoint_the_engine_loads(upload):
    from workers.metalearn import load_checkpoint

    data = _good_weights()
    meta_model = upload(data)
    assert (meta_model.name, meta_model.version, meta_model.source) == (
        "sine-maml",
        1,
        MetaModelSource.UPLOAD,
    )
    assert meta_model.training_run is None and meta_model.created_by == upload.users["member"]
    assert meta_model.weights_sha256 == hashlib.sha256(data).hexdigest()
    assert meta_model.weights_bytes == len(data)
    assert meta_model.config["hidden"] == [8, 8] and meta_model.config["family"]["name"] == "sinusoid"

    folder = storage.meta_model_dir(meta_model.pk)
    assert (folder / storage.WEIGHTS_FILE).read_bytes() == data
    checkpoint = load_checkpoint(folder)
    assert checkpoint.algorithm == "maml" and checkpoint.config.hidden == (8, 8)
    assert checkpoint.family_info.desc_dim == 2 and checkpoint.step == 0
    assert sorted(checkpoint.params) == sorted(expected_shapes(checkpoint.config, checkpoint.family_info))

    from workers.metalearn.api import restore

    restore(folder, "cpu")  # the algorithm built from the config accepts the tensors
    assert upload().version == 2


def test_upload_of_a_conv_net_for_a_classification_task_set(upload):
    """ProtoNets on glyphs: the conv body only, ways from the config; the engine restores it."""
    from workers.metalearn.api import restore

    version = TaskSetVersionFactory(taskset__team=upload.team, taskset__family="glyphs", params={})
    config = {"algorithm": "protonet", "conv_filters": 4, "ways": 3, "shots": 1, "query": 2}
    info = {
        "name": "glyphs",
        "kind": "classification",
        "input_shape": [1, 28, 28],
        "desc_dim": None,
        "ways": 3,
    }
    meta_model = upload(
        _weights(expected_shapes(parse_config(config), info)), taskset_version=version, config=config
    )
    checkpoint, algorithm, _ = restore(storage.meta_model_dir(meta_model.pk), "cpu")
    assert checkpoint.family_info.ways == 3 and checkpoint.family_info.input_shape == (1, 28, 28)
    assert algorithm.name == "protonet" and meta_model.algorithm == "protonet"


def _assert_nothing_saved():
    assert not MetaModel.objects.exists()
    assert _meta_entries() == []


def _zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"head.weight": [1.0]}))
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (pickle.dumps({"head.weight": [1.0, 2.0]}), "pickle"),
        (_zip_bytes(), "zip"),
        (b"this is not a model at all, just some text that goes on", "not a safetensors file"),
        (b"", "too short"),
        (b"\x10\x00", "too short"),
        ("truncated", "truncated"),
        ("header-cut", "truncated"),
        ("f16", "float32"),
    ],
)
def test_upload_refuses_anything_but_float32_safetensors(upload, data, message):
    good = _good_weights()
    if data == "truncated":
        data = good[: len(good) - 10]
    elif data == "header-cut":
        data = good[:20]
    elif data == "f16":
        data = _weights(expected_shapes(parse_config(UPLOAD_CONFIG), SINE_INFO), np.float16)
    with pytest.raises(ValidationError) as error:
        upload(data)
    assert list(error.value.message_dict) == ["weights_file"]
    assert message in error.value.message_dict["weights_file"][0]
    _assert_nothing_saved()


def test_upload_with_wrong_shapes_lists_the_first_differences(upload):
    shapes = expected_shapes(parse_config({**UPLOAD_CONFIG, "hidden": [8, 9]}), SINE_INFO)
    with pytest.raises(ValidationError) as error:
        upload(_weights(shapes))
    message = error.value.message_dict["weights_file"][0]
    assert "do not fit" in message
    assert "body.3.weight: expected [8, 8], got [9, 8]" in message
    assert "head.weight: expected [1, 8], got [1, 9]" in message
    _assert_nothing_saved()


def test_upload_with_missing_and_extra_tensors(upload):
    shapes = expected_shapes(parse_config(UPLOAD_CONFIG), SINE_INFO)
    shapes.pop("head.bias")
    shapes["lr.head.bias"] = [1]
    with pytest.raises(ValidationError) as error:
        upload(_weights(shapes))
    message = error.value.message_dict["weights_file"][0]
    assert "head.bias: missing (expected [1])" in message and "lr.head.bias: not expected" in message
    _assert_nothing_saved()


@pytest.mark.parametrize(
    ("config", "field", "message"),
    [
        ({**UPLOAD_CONFIG, "inner_lr": -1}, "config", "inner_lr"),
        ({**UPLOAD_CONFIG, "algorithm": "protonet"}, "config", "classification"),
        ({**UPLOAD_CONFIG, "nonsense": 1}, "config", "nonsense"),
        (["not", "an", "object"], "config", "JSON object"),
    ],
)
def test_upload_with_a_bad_config_names_the_field(upload, config, field, message):
    with pytest.raises(ValidationError) as error:
        upload(config=config)
    assert message in " ".join(error.value.message_dict[field])
    _assert_nothing_saved()


def test_upload_of_weights_for_another_family_is_refused(upload):
    """A meta-model whose backbone does not fit the task set: digits weights on sines."""
    digits = {"name": "digits", "kind": "classification", "input_shape": [64], "desc_dim": None, "ways": 5}
    with pytest.raises(ValidationError) as error:
        upload(_weights(expected_shapes(parse_config(UPLOAD_CONFIG), digits)))
    assert "body.1.weight: expected [8, 1], got [8, 64]" in error.value.message_dict["weights_file"][0]
    _assert_nothing_saved()


def test_upload_checks_names_and_team(upload):
    with pytest.raises(ValidationError) as error:
        upload(name="  !!  ")
    assert "name" in error.value.message_dict
    with pytest.raises(ValidationError) as error:
        upload(experiment=ExperimentFactory())
    assert "experiment" in error.value.message_dict
    with pytest.raises(ValidationError) as error:
        upload(taskset_version=TaskSetVersionFactory())
    assert "taskset_version" in error.value.message_dict
    _assert_nothing_saved()


def test_upload_is_for_members(upload):
    with pytest.raises(PermissionDenied):
        upload(actor=upload.users["viewer"])
    with pytest.raises(Http404):
        upload(actor=upload.users["outsider"])
    _assert_nothing_saved()


def test_upload_larger_than_the_limit_is_refused_while_copying(upload, monkeypatch):
    monkeypatch.setattr(uploads, "MAX_UPLOAD_BYTES", 100)
    with pytest.raises(ValidationError) as error:
        upload()
    assert "larger than the limit" in error.value.message_dict["weights_file"][0]
    _assert_nothing_saved()


# -- aliases ----------------------------------------------------------------------------------


@pytest.fixture
def versions(team_roles):
    team, users = team_roles
    v1 = MetaModelFactory(experiment__team=team, name="sine-maml", version=1)
    v2 = MetaModelFactory(
        experiment=v1.experiment, taskset_version=v1.taskset_version, name="sine-maml", version=2
    )
    return team, users, v1, v2


def test_alias_moves_are_recorded_with_who_and_from_where(versions):
    team, users, v1, v2 = versions
    alias = alias_move(
        team=team, actor=users["member"], model_name="sine-maml", alias="candidate", meta_model=v1
    )
    assert (alias.model_name, alias.alias, alias.meta_model) == ("sine-maml", "candidate", v1)
    moved = alias_move(
        team=team, actor=users["admin"], model_name="sine-maml", alias="Candidate", meta_model=v2
    )
    assert moved.pk == alias.pk and moved.meta_model == v2
    # Moving to where it already points records nothing.
    alias_move(team=team, actor=users["admin"], model_name="sine-maml", alias="candidate", meta_model=v2)
    history = list(AliasMove.objects.filter(alias=alias))
    assert [(m.from_model, m.to_model, m.moved_by.username) for m in history] == [
        (v1, v2, "admin"),
        (None, v1, "member"),
    ]
    assert history[0].moved_at >= history[1].moved_at
    assert ModelAlias.objects.count() == 1


def test_production_needs_an_approve_verdict(versions):
    team, users, v1, v2 = versions
    kwargs = {"team": team, "actor": users["member"], "model_name": "sine-maml", "alias": "production"}
    with pytest.raises(ValidationError) as error:
        alias_move(meta_model=v1, **kwargs)
    assert "approve verdict" in error.value.message_dict["alias"][0]
    assert "no verdict" in error.value.message_dict["alias"][0]

    review_create(actor=users["member"], verdict=Verdict.APPROVE, comment="good", meta_model=v1)
    review_create(actor=users["admin"], verdict=Verdict.REJECT, comment="regressed", meta_model=v1)
    with pytest.raises(ValidationError) as error:
        alias_move(meta_model=v1, **kwargs)
    assert "latest verdict is reject" in error.value.message_dict["alias"][0]
    review_create(actor=users["admin"], verdict=Verdict.APPROVE, comment="fixed", meta_model=v2)
    assert not ModelAlias.objects.exists()

    alias = alias_move(meta_model=v2, **kwargs)
    assert alias.meta_model == v2 and AliasMove.objects.get(alias=alias).to_model == v2


def test_alias_needs_a_version_of_the_name_in_the_team(versions):
    team, users, v1, _ = versions
    other_name = MetaModelFactory(experiment=v1.experiment, name="sine-reptile")
    other_team = MetaModelFactory(name="sine-maml")
    for meta_model in (other_name, other_team):
        with pytest.raises(ValidationError) as error:
            alias_move(
                team=team,
                actor=users["member"],
                model_name="sine-maml",
                alias="candidate",
                meta_model=meta_model,
            )
        assert "meta_model" in error.value.message_dict
    for bad in ("", "has space", "x" * 41, "-dash"):
        with pytest.raises(ValidationError) as error:
            alias_move(team=team, actor=users["member"], model_name="sine-maml", alias=bad, meta_model=v1)
        assert "alias" in error.value.message_dict
    assert not ModelAlias.objects.exists() and not AliasMove.objects.exists()


def test_alias_moves_are_for_members(versions):
    team, users, v1, _ = versions
    kwargs = {"team": team, "model_name": "sine-maml", "alias": "candidate", "meta_model": v1}
    with pytest.raises(PermissionDenied):
        alias_move(actor=users["viewer"], **kwargs)
    with pytest.raises(Http404):
        alias_move(actor=users["outsider"], **kwargs)
    assert not ModelAlias.objects.exists()
