"""Fixtures of the API tests: a team with a run (with a checkpoint and metrics), and tokens."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from apps.experiments.models import RunStatus, SavedView, Sweep
from apps.experiments.services import run_file_upload
from apps.registry import storage
from apps.teams.models import ApiToken, Role, TokenScope
from apps.teams.token_services import api_token_create, api_token_revoke
from tests.factories import (
    SMALL_CONFIG,
    AdaptationFactory,
    ExperimentFactory,
    MetaModelFactory,
    RunFactory,
    TaskSetVersionFactory,
    metric_points_add,
)


@pytest.fixture(autouse=True)
def _fresh_rate_windows():
    """Rate-limit windows live in the cache; each test starts with none."""
    cache.clear()
    yield
    cache.clear()


def issue(user: Any, team: Any, scope: str = TokenScope.WRITE, days: int = 30) -> str:
    return api_token_create(user=user, team=team, name="t", scope=scope, expires_in_days=days).secret


def bearer(secret: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {secret}"}


@pytest.fixture
def api_world(team_roles, settings):
    """Team ``alpha`` (viewer, member, admin) and ``beta`` (outsider); one run of
    alpha with a checkpoint and a metric; a token per kind of caller."""
    team, users = team_roles
    experiment = ExperimentFactory(team=team, created_by=users["member"], name="Sine study")
    version = TaskSetVersionFactory(taskset__team=team, taskset__name="Sines", params={})
    run = RunFactory(experiment=experiment, taskset_version=version, status=RunStatus.QUEUED)
    external = RunFactory(
        experiment=experiment, taskset_version=version, kind="external", status=RunStatus.RUNNING
    )
    metric_points_add(run, [("loss", s, 1.0 / (s + 1)) for s in range(50)])
    folder = settings.RUNS_DIR / str(run.pk) / "checkpoints" / "step-000020"
    folder.mkdir(parents=True)
    (folder / "params.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    (folder / "checkpoint.json").write_text("{}")
    (folder.parent / "latest").write_text("step-000020\n")
    meta_model = MetaModelFactory(experiment=experiment, taskset_version=version, name="sine-maml")
    weights = storage.meta_model_dir(meta_model.pk)
    weights.mkdir(parents=True)
    (weights / storage.WEIGHTS_FILE).write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    checkpoint = {
        "format": 1,
        "algorithm": "maml",
        "config": {**SMALL_CONFIG, "family": {"name": "sinusoid", "version": 1, "params": {}}},
        "family_info": {
            "name": "sinusoid",
            "version": 1,
            "kind": "regression",
            "input_shape": [1],
            "desc_dim": 2,
            "ways": 1,
        },
    }
    (weights / storage.CHECKPOINT_JSON).write_text(json.dumps(checkpoint))
    adaptation = AdaptationFactory(meta_model=meta_model)
    sweep = Sweep.objects.create(
        team=team,
        experiment=experiment,
        taskset_version=version,
        name="seeds",
        strategy="grid",
        base_config={k: v for k, v in SMALL_CONFIG.items() if k != "family"},
        dimensions={"seed": {"kind": "list", "values": [0, 1]}},
        metric="val_loss",
        created_by=users["member"],
    )
    saved_view = SavedView.objects.create(
        team=team,
        name="Failed MAML",
        query="algorithm:maml",
        filters={"status": "failed"},
        created_by=users["member"],
    )
    run_file = run_file_upload(
        run=run,
        actor=users["member"],
        upload=SimpleUploadedFile("notes.txt", b"first try\n"),
        name="notes.txt",
    )
    beta = users["outsider"].memberships.get().team
    tokens = {role: issue(users[role], team) for role in (Role.VIEWER, Role.MEMBER, Role.ADMIN)}
    tokens["read_only"] = issue(users["admin"], team, scope=TokenScope.READ)
    tokens["other_team"] = issue(users["outsider"], beta)
    tokens["expired"] = issue(users["admin"], team)
    ApiToken.objects.filter(pk=ApiToken.objects.latest("pk").pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    revoked = api_token_create(user=users["admin"], team=team, name="r", scope="write", expires_in_days=30)
    api_token_revoke(user=users["admin"], token_id=revoked.token.pk)
    tokens["revoked"] = revoked.secret
    return {
        "team": team,
        "users": users,
        "run": run,
        "meta_model": meta_model,
        "adaptation": adaptation,
        "sweep": sweep,
        "saved_view": saved_view,
        "run_file": run_file,
        "external": external,
        "experiment": experiment,
        "version": version,
        "tokens": tokens,
    }
