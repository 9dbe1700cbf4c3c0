"""The Celery app is loaded with Django (``metaweb.apps.MetaWebConfig.ready``), not by
importing the package: ``celery -A metaweb`` still finds it, and tasks bind to it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CHECK = """
import sys
import metaweb
assert "celery" not in sys.modules and "django" not in sys.modules
import django
django.setup()
from celery import current_app
from metaweb.celery import app
from workers.tasks import train_run
assert current_app._get_current_object() is app and train_run.app is app, (current_app, train_run.app)
from celery.app.utils import find_app
assert find_app("metaweb") is app
print("ok")
"""

ROOT = Path(__file__).resolve().parents[2]


def test_django_loads_the_celery_app_and_celery_finds_it():
    env = {
        "DJANGO_SETTINGS_MODULE": "metaweb.settings.test",
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
    }
    result = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr
