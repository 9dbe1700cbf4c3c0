"""The ``metaweb`` command line on the real stack (daphne, a Celery worker, Redis,
PostgreSQL), run as a user runs it: a separate process per command.

login -> ``runs launch --follow`` until the run succeeds (progress over the run's
websocket with a bearer token) -> ``models pull NAME@production`` with the file's
sha256 checked against the registry -> ``adapt --follow`` on a meta-test task,
printing the losses, and on the user's own support and query CSVs.
"""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

#: A short sinusoid MAML run (a few seconds on a quiet 2-core machine).
RUN_CONFIG = {
    "algorithm": "maml",
    "inner_lr": 0.01,
    "inner_steps": 1,
    "meta_batch": 4,
    "iterations": 200,
    "eval_interval": 50,
    "eval_tasks": 10,
    "checkpoint_interval": 100,
    "seed": 1,
    "device": "cpu",
}

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def metaweb(tmp_path, live_stack):
    env = {
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "HOME": str(tmp_path),
    }

    def run(*argv: str, stdin: str | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
        code = "import sys; from metaweb.cli import main; sys.exit(main())"
        return subprocess.run(
            [sys.executable, "-c", code, *argv],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
        )

    return run


def test_login_launch_follow_pull_and_adapt(live_stack, e2e_user, metaweb, tmp_path):
    from apps.registry import storage
    from apps.registry.models import MetaModel, ModelAlias
    from apps.teams.token_services import api_token_create
    from tests.factories import TaskSetVersionFactory

    user, team = e2e_user
    TaskSetVersionFactory(taskset__team=team, taskset__name="Sines", created_by=user)
    secret = api_token_create(user=user, team=team, name="ci", scope="write", expires_in_days=1).secret

    login = metaweb("login", "--url", live_stack.base_url, stdin=secret + "\n")
    assert login.returncode == 0, login.stderr
    assert "team lab (admin)" in login.stdout

    config = tmp_path / "run.json"
    config.write_text(json.dumps(RUN_CONFIG))
    launched = metaweb("runs", "launch", "--taskset", "Sines", "--config", str(config), "--follow")
    assert launched.returncode == 0, launched.stdout + launched.stderr
    assert "succeeded" in launched.stdout
    # Not a terminal: a line per status change. The loss comes only from the websocket's
    # events (the API's run has none), so seeing it proves the bearer-token socket.
    progress = launched.stderr.splitlines()
    assert any("running" in line for line in progress), launched.stderr
    assert progress[-1].startswith("run ") and "100%" in progress[-1] and "loss" in progress[-1]

    model = MetaModel.objects.get(team=team)
    ModelAlias.objects.create(team=team, model_name=model.name, alias="production", meta_model=model)
    target = tmp_path / "model.safetensors"
    pulled = metaweb("models", "pull", f"{model.name}@production", "-o", str(target))
    assert pulled.returncode == 0, pulled.stderr
    stored = storage.meta_model_dir(model.pk) / storage.WEIGHTS_FILE
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    assert digest == model.weights_sha256 == hashlib.sha256(stored.read_bytes()).hexdigest()

    adapted = metaweb("adapt", f"{model.name}@production", "--task-index", "3", "--steps", "5", "--follow")
    assert adapted.returncode == 0, adapted.stdout + adapted.stderr
    assert " before " in adapted.stdout and ", after " in adapted.stdout, adapted.stdout

    support, query = tmp_path / "support.csv", tmp_path / "query.csv"
    support.write_text("x,y\n" + "".join(f"{x},{2 * math.sin(x + 0.5):.4f}\n" for x in (-4, -2, 0, 1, 3)))
    query.write_text("x,y\n" + "".join(f"{x},{2 * math.sin(x + 0.5):.4f}\n" for x in (-3, -1, 2, 4)))
    own = metaweb("adapt", model.name, "--support", str(support), "--query", str(query), "--follow", "--json")
    assert own.returncode == 0, own.stdout + own.stderr
    result = json.loads(own.stdout)["result"]
    assert result["n_tasks"] == 1 and result["before"] > 0 and result["after"] is not None

    listed = metaweb("runs", "ls", "--query", "status:succeeded", "--json")
    assert listed.returncode == 0
    assert sorted(r["kind"] for r in json.loads(listed.stdout)) == ["adapt", "adapt", "train"]
