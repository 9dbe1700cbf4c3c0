"""Purity, both ways, also after the embedded worker has trained a run.

The engine imports no Django (``tests/workers/metalearn/test_purity.py``), and the
web side imports no torch (``tests/experiments/test_views.py``,
``tests/tasksets/test_views.py``). This file checks the second under ``make run``'s
exact configuration, where the question is sharpest.

What "the web process" means there, found by running it: ``manage.py serve`` without
REDIS_URL embeds the Celery worker as a *thread* of the server's process
(``workers/embedded.py``), so once a run has trained, torch IS in that process's
``sys.modules``: it cannot be otherwise while training happens in-process. What stays
true, and what this test proves in a fresh subprocess:

* before any run, the whole web side (the ASGI application, every URL's views, the
  embedded worker's start, Celery's task modules) is loaded without torch;
* torch is then imported by the worker thread only (``celery-embedded``), never by
  the server's thread, and only through the engine package (``workers.metalearn``):
  no module of the web side (``apps``, ``metaweb``, the task shells in ``workers``)
  holds torch, so pages rendered after the run still run torch-free code.

With REDIS_URL set (the real stack), workers are their own processes and the web
process never loads torch at all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import importlib.abc, json, sys, threading, time, types

importers = []


class WatchTorch(importlib.abc.MetaPathFinder):
    # Records which thread imports torch first (find_spec runs once, before the import).
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            importers.append(threading.current_thread().name)
        return None


sys.meta_path.insert(0, WatchTorch())

import django

django.setup()
from django.conf import settings
from django.core.management import call_command

assert settings.EMBEDDED_WORKER and settings.CELERY_BROKER_URL == "memory://"
call_command("migrate", verbosity=0)
call_command("seed_demo", verbosity=0)
import metaweb.asgi, metaweb.urls  # the application serve runs, every page's views
from workers import embedded

embedded.start()  # what serve starts beside the server: the worker thread, the watchdog
time.sleep(1.0)  # let the worker thread import the task modules (Celery autodiscovery)
before = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))

from django.contrib.auth import get_user_model
from apps.experiments.models import Experiment, Run
from apps.experiments.services import run_create
from apps.tasksets.models import TaskSetVersion

user = get_user_model().objects.get(username="demo")
config = {
    "algorithm": "maml", "family": {"name": "sinusoid"}, "inner_lr": 0.01, "inner_steps": 1,
    "meta_lr": 0.001, "meta_batch": 4, "shots": 5, "query": 10, "iterations": 20,
    "eval_interval": 10, "eval_tasks": 10, "checkpoint_interval": 10, "seed": 0, "device": "cpu",
}
run = run_create(
    experiment=Experiment.objects.first(),
    actor=user,
    taskset_version=TaskSetVersion.objects.get(taskset__family="sinusoid"),
    config=config,
)
deadline = time.monotonic() + 240
while time.monotonic() < deadline:
    run.refresh_from_db()
    if run.status in ("succeeded", "failed", "cancelled"):
        break
    time.sleep(0.2)

from django.test import Client

client = Client(HTTP_HOST="localhost")
client.force_login(user)
page = client.get(f"/runs/{run.pk}/").status_code

engine = ("workers.metalearn",)
holders = sorted(
    name
    for name, module in list(sys.modules.items())
    if name.split(".")[0] in ("apps", "metaweb", "workers")
    and not name.startswith(engine)
    and any(
        isinstance(value, types.ModuleType) and value.__name__.split(".")[0] == "torch"
        or getattr(type(value), "__module__", "").startswith("torch")
        for value in vars(module).values()
    )
)
print("RESULT " + json.dumps({
    "status": run.status, "error": run.error, "step": run.step, "page": page,
    "before": before, "torch_loaded": "torch" in sys.modules,
    "importers": importers, "holders": holders,
}))
"""


@pytest.mark.timeout(300)
def test_web_side_stays_torch_free_after_the_embedded_worker_trained_a_run():
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    with tempfile.TemporaryDirectory(prefix="purity-") as data_dir:
        env.update(
            METAWEB_DATA_DIR=data_dir,
            DJANGO_SETTINGS_MODULE="metaweb.settings.dev",
            PYTHONPATH=str(ROOT),
            METAWEB_LOG_LEVEL="WARNING",
        )
        out = subprocess.run(
            [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=280
        )
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    assert out.returncode == 0 and lines, out.stderr[-3000:]
    found = json.loads(lines[-1].removeprefix("RESULT "))
    assert found["status"] == "succeeded" and found["step"] == 20, found
    assert found["page"] == 200
    # Before any run: the web side, the worker's start and the task modules, no torch.
    assert found["before"] == []
    # Then torch came with the run, imported by the embedded worker's thread only ...
    assert found["torch_loaded"] is True  # in-process worker: see the module docstring
    assert found["importers"] == ["celery-embedded"]
    # ... through the engine package: no web-side module holds torch.
    assert found["holders"] == []
