"""Unset DJANGO_SETTINGS_MODULE means production settings: DEBUG off, a secret key required.

Each check imports the entry points in a fresh interpreter, so the test process's own
settings cannot leak in.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import os
import django
from django.conf import settings
{entry}
print("SETTINGS", os.environ["DJANGO_SETTINGS_MODULE"], "DEBUG", settings.DEBUG)
"""


def _run(entry: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "METAWEB_"))}
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-c", PROBE.format(entry=entry)],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_celery_without_settings_module_or_key_fails_naming_the_key() -> None:
    result = _run("import metaweb.celery; django.setup()")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_asgi_without_settings_module_or_key_fails_naming_the_key() -> None:
    result = _run("import metaweb.asgi")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_manage_py_without_settings_module_or_key_fails_naming_the_key() -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "METAWEB_"))}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_with_a_key_the_default_is_production_debug_off() -> None:
    result = _run("import metaweb.asgi", DJANGO_SECRET_KEY="a-test-key-" + "x" * 40)
    assert result.returncode == 0, result.stderr
    assert "SETTINGS metaweb.settings.base DEBUG False" in result.stdout


def test_dev_is_an_explicit_opt_in() -> None:
    result = _run("import metaweb.asgi", DJANGO_SETTINGS_MODULE="metaweb.settings.dev")
    assert result.returncode == 0, result.stderr
    assert "SETTINGS metaweb.settings.dev DEBUG True" in result.stdout
