"""Where ``metaweb login`` keeps the server and the token:
``$XDG_CONFIG_HOME/metaweb/config.json`` (else ``~/.config/metaweb/config.json``),
readable by its owner only (0600, in a 0700 folder). ``METAWEB_URL``,
``METAWEB_TOKEN`` and ``METAWEB_TEAM`` override it (for CI)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from metaweb.client.errors import ApiError


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "metaweb" / "config.json"


def load() -> dict[str, Any]:
    path = config_path()
    stored: dict[str, Any] = {}
    if path.exists():
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError):
            raise ApiError(0, f"Cannot read {path}: run 'metaweb login' again.") from None
        if not isinstance(stored, dict):
            raise ApiError(0, f"{path} is not a MetaWeb config: run 'metaweb login' again.")
    for key in ("url", "token", "team"):
        if os.environ.get(f"METAWEB_{key.upper()}"):
            stored[key] = os.environ[f"METAWEB_{key.upper()}"]
    return stored


def save(values: dict[str, Any]) -> Path:
    """Write the config atomically, mode 0600 from the start (never readable by others)."""
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, partial = tempfile.mkstemp(prefix=".config.", dir=path.parent)  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(values, out, indent=2)
        os.chmod(partial, 0o600)
        os.replace(partial, path)
    except BaseException:
        os.unlink(partial)
        raise
    return path
