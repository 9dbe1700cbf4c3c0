"""The engine is pure: torch and numpy, never django, celery or channels."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
ENGINE = ROOT / "workers" / "metalearn"
FORBIDDEN = {"django", "celery", "channels", "channels_redis", "daphne", "apps", "metaweb"}


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in {
            "import_module",
            "__import__",
        }:
            for arg in node.args[:1]:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    found.add(arg.value)
    return found


def test_no_web_framework_imports_anywhere_in_the_engine():
    files = sorted(ENGINE.rglob("*.py"))
    assert len(files) > 10
    offenders = {
        str(path.relative_to(ROOT)): sorted(m for m in imported_modules(path) if m.split(".")[0] in FORBIDDEN)
        for path in files
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_config_types_and_package_import_without_torch():
    code = (
        "import sys\n"
        "import workers.metalearn, workers.metalearn.config, workers.metalearn.types\n"
        "from workers.metalearn.config import parse_config\n"
        "parse_config({'algorithm': 'maml'})\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'django', 'celery'})\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def test_the_web_side_imports_the_engine_facts_without_torch():
    """The web process reads algorithm specs, shapes and the checkpoint layout from the
    engine package; none of that (nor any page's module) may pull in torch."""
    code = (
        "import django, sys; django.setup()\n"
        "import metaweb.urls, apps.experiments.views, apps.experiments.forms\n"
        "import apps.adaptations.views, apps.registry.views, apps.reviews.views\n"
        "import apps.adaptations.forms, apps.adaptations.services\n"
        "import apps.registry.services, apps.reviews.services\n"
        "from workers.metalearn import checkpoint_layout, shapes, specs\n"
        "from apps.experiments.forms import RunLaunchForm\n"
        "assert set(RunLaunchForm.base_fields) >= specs.ALGORITHM_FIELDS\n"
        "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)
