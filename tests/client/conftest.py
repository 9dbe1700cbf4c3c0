"""Fixtures of the client and command-line tests: the real app behind Django's live
server (a threaded WSGI server on a free port), a team with a task set, a run with
metrics and a checkpoint, a meta-model with weights and an alias, and tokens."""

from __future__ import annotations

import hashlib
import json

import pytest
from django.core.cache import cache

from apps.experiments.models import RunEvent, RunStatus
from apps.registry import storage
from apps.registry.models import ModelAlias
from apps.teams.models import Role, TokenScope
from apps.teams.token_services import api_token_create
from metaweb.cli import main
from tests.factories import (
    SMALL_CONFIG,
    ExperimentFactory,
    MetaModelFactory,
    RunFactory,
    TaskSetVersionFactory,
    metric_points_add,
)

SINE_INFO = {
    "name": "sinusoid",
    "version": 1,
    "kind": "regression",
    "input_shape": [1],
    "desc_dim": 2,
    "ways": 1,
}
WEIGHTS = b"\x08\x00\x00\x00\x00\x00\x00\x00{}      "


@pytest.fixture(autouse=True)
def _fresh_rate_windows():
    cache.clear()
    yield
    cache.clear()


def issue(user, team, scope: str = TokenScope.WRITE) -> str:
    return api_token_create(user=user, team=team, name="t", scope=scope, expires_in_days=30).secret


@pytest.fixture
def world(live_server, transactional_db, team_roles, settings):
    """``alpha``'s world, served at ``world["url"]``; tokens per role and for ``beta``."""
    team, users = team_roles
    experiment = ExperimentFactory(team=team, created_by=users["member"], name="Sine study")
    version = TaskSetVersionFactory(taskset__team=team, taskset__name="Sines", params={})
    run = RunFactory(
        experiment=experiment,
        taskset_version=version,
        status=RunStatus.SUCCEEDED,
        config={**SMALL_CONFIG, "seed": 3},
        total_steps=50,
        step=49,
        summary={"metrics": {"loss": 0.02}},
    )
    metric_points_add(run, [("loss", s, 1.0 / (s + 1)) for s in range(50)])
    RunEvent.objects.create(run=run, kind="started", message="Started on cpu.")
    folder = settings.RUNS_DIR / str(run.pk) / "checkpoints" / "step-000020"
    folder.mkdir(parents=True)
    (folder / "params.safetensors").write_bytes(WEIGHTS)
    (folder / "checkpoint.json").write_text("{}")
    (folder.parent / "latest").write_text("step-000020\n")
    meta_model = MetaModelFactory(
        experiment=experiment,
        taskset_version=version,
        name="sine-maml",
        weights_sha256=hashlib.sha256(WEIGHTS).hexdigest(),
        weights_bytes=len(WEIGHTS),
    )
    weights = storage.meta_model_dir(meta_model.pk)
    weights.mkdir(parents=True)
    (weights / storage.WEIGHTS_FILE).write_bytes(WEIGHTS)
    checkpoint = {  # what the engine records beside the weights (the adaptation form reads it)
        "format": 1,
        "algorithm": "maml",
        "config": {**SMALL_CONFIG, "family": {"name": "sinusoid", "version": 1, "params": {}}},
        "family_info": SINE_INFO,
    }
    (weights / storage.CHECKPOINT_JSON).write_text(json.dumps(checkpoint))
    ModelAlias.objects.create(team=team, model_name="sine-maml", alias="production", meta_model=meta_model)
    beta = users["outsider"].memberships.get().team
    tokens = {role: issue(users[role], team) for role in (Role.VIEWER, Role.MEMBER)}
    tokens["read_only"] = issue(users["admin"], team, scope=TokenScope.READ)
    tokens["other_team"] = issue(users["outsider"], beta)
    return {
        "url": live_server.url,
        "team": team,
        "users": users,
        "experiment": experiment,
        "version": version,
        "run": run,
        "meta_model": meta_model,
        "tokens": tokens,
    }


@pytest.fixture
def make_client(world):
    """Clients of the live server, closed at the end: an idle keep-alive connection would
    keep a server thread, and its database connection, until the test database is dropped."""
    from metaweb.client import Client

    made = []

    def make(token: str, **kwargs) -> Client:
        made.append(Client(kwargs.pop("url", world["url"]), token, **kwargs))
        return made[-1]

    yield make
    for client in made:
        client.close()


@pytest.fixture
def member_client(world, make_client):
    return make_client(world["tokens"]["member"])


@pytest.fixture(autouse=True)
def _config_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for name in ("METAWEB_URL", "METAWEB_TOKEN", "METAWEB_TEAM"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "config"


@pytest.fixture
def cli(capsys):
    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def logged_in(world, cli):
    code, out, err = cli("login", "--url", world["url"], "--token", world["tokens"]["member"])
    assert code == 0, err
    return world


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("metaweb: error: ")
    return lines[0]
