"""The on-disk layout of checkpoints: names, the newest-checkpoint lookup and the
JSON record. Torch-free: the engine writes and reads checkpoints through it
(:mod:`workers.metalearn.checkpoint`), and the web side finds a run's newest
weights and reads a meta-model's record with it, without importing torch::

    run/
      latest                  "step-000500"
      step-000400/ params.safetensors  optimizer.safetensors  checkpoint.json
      step-000500/ ...

A checkpoint folder is complete once its ``checkpoint.json`` and
``params.safetensors`` are both there; anything else (a crash mid-write, a
``.tmp-`` folder) is ignored by the lookup.

Retention: while a run trains, the engine keeps its last few checkpoints and its
best one (:func:`best_checkpoint`: the lowest ``val_loss`` its record holds); when
the run ends, only the latest and the best are kept (:func:`superseded`, which
names what to delete; the deleting is the caller's, in one place).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: Version of the JSON record; readers refuse other values.
FORMAT = 1
PARAMS_FILE = "params.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
META_FILE = "checkpoint.json"
#: The pointer file naming the newest checkpoint folder.
LATEST = "latest"
#: Prefix of the temporary folder a checkpoint is written into before its rename.
TMP_PREFIX = ".tmp-"
#: Prefix of the folder an overwritten checkpoint is moved into before it is removed.
OLD_PREFIX = ".old-"
#: The recorded metric that makes a checkpoint its run's best: the lowest wins.
BEST_METRIC = "val_loss"
STEP_DIR = re.compile(r"^step-(\d{1,12})$")
#: Checkpoints kept per run (the newest ones), on the worker's disk and in the store.
KEEP = 3
#: The files of a checkpoint folder in the order they are stored: the record last,
#: since a folder counts as complete once its record and its weights are there.
STORE_ORDER = (OPTIMIZER_FILE, PARAMS_FILE, META_FILE)


def step_dir_name(step: int) -> str:
    return f"step-{step:06d}"


def step_of(name: str) -> int | None:
    """The step of a ``step-NNNNNN`` folder name, else None."""
    match = STEP_DIR.match(name)
    return int(match.group(1)) if match else None


def choose_latest(pointer: str | None, complete: set[str]) -> str | None:
    """The lookup rule, wherever the folders live: the folder ``pointer`` (the
    ``latest`` file's text) names when it is complete, else the highest-numbered
    complete one; None when there is none."""
    name = (pointer or "").strip()
    if name in complete and STEP_DIR.match(name):
        return name
    steps = sorted((step, n) for n in complete if (step := step_of(n)) is not None)
    return steps[-1][1] if steps else None


def is_complete(folder: Path) -> bool:
    """A ``step-NNNNNN`` folder holding both its record and its weights."""
    return (
        bool(STEP_DIR.match(folder.name))
        and (folder / META_FILE).is_file()
        and (folder / PARAMS_FILE).is_file()
    )


def _inside(folder: Path, root: Path) -> bool:
    """``folder`` (followed through links) lies inside ``root``."""
    try:
        return folder.resolve().is_relative_to(root.resolve())
    except OSError:
        return False


def list_checkpoints(root: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints directly under ``root`` as ``(step, path)``, oldest first."""
    root = Path(root)
    try:
        children = list(root.iterdir()) if root.is_dir() else []
    except OSError:
        return []
    found = []
    for child in children:
        match = STEP_DIR.match(child.name)
        if match and is_complete(child) and _inside(child, root):
            found.append((int(match.group(1)), child))
    return sorted(found)


def _pointed(root: Path) -> Path | None:
    """The folder ``latest`` names, when it is a complete checkpoint inside ``root``."""
    try:
        name = (root / LATEST).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    if not STEP_DIR.match(name):
        return None
    folder = root / name
    return folder if is_complete(folder) and _inside(folder, root) else None


def latest_checkpoint(root: str | Path) -> Path | None:
    """The folder ``latest`` points at, or (if it is missing, dangling or not a
    complete checkpoint) the newest complete one; None when the run has none
    (:func:`choose_latest`)."""
    root = Path(root)
    pointed = _pointed(root)
    complete = {path.name for _, path in list_checkpoints(root)}
    name = choose_latest(pointed.name if pointed is not None else None, complete)
    return None if name is None else root / name


def latest_weights(root: str | Path) -> Path | None:
    """The newest complete checkpoint's ``params.safetensors``, resolved; or None."""
    folder = latest_checkpoint(root)
    return None if folder is None else (folder / PARAMS_FILE).resolve()


def record_text(record: dict[str, Any]) -> str:
    """The JSON record as written to ``checkpoint.json``."""
    return json.dumps(record, indent=1, sort_keys=True)


def read_record(folder: str | Path) -> dict[str, Any]:
    """``checkpoint.json`` of a checkpoint folder (or a registry model's folder).
    Raises ``OSError`` or ``ValueError`` when it is missing or not a JSON object."""
    return parse_record((Path(folder) / META_FILE).read_bytes())


def parse_record(data: bytes | str) -> dict[str, Any]:
    """A ``checkpoint.json``'s content as a dict; ``ValueError`` when it is not a JSON object."""
    record = json.loads(data)
    if not isinstance(record, dict):
        raise ValueError(f"{META_FILE} is not a JSON object")
    return record


def record_metric(record: dict[str, Any]) -> float | None:
    """The finite ``BEST_METRIC`` a checkpoint's record holds, else None."""
    try:
        value = float(record.get("metrics", {}).get(BEST_METRIC))
    except (ValueError, TypeError, AttributeError):
        return None
    return value if math.isfinite(value) else None


def _recorded_best_metric(folder: Path) -> float | None:
    try:
        return record_metric(read_record(folder))
    except (OSError, ValueError):
        return None


def best_name(metrics: Mapping[str, float | None]) -> str | None:
    """Of ``step-NNNNNN`` names and their recorded ``BEST_METRIC`` (None: none), the
    one with the lowest value (the later step on a tie); None when none has one."""
    best: tuple[float, str] | None = None
    for _, name in sorted((step_of(n) or 0, n) for n in metrics):
        value = metrics[name]
        if value is not None and (best is None or value <= best[0]):
            best = (value, name)
    return None if best is None else best[1]


def kept_names(metrics: Mapping[str, float | None], *, latest: str | None, newest: int = 0) -> set[str]:
    """The retention rule, wherever the folders live (the worker's disk, the store):
    of the step folders ``metrics`` names (with their recorded ``BEST_METRIC``), keep
    ``latest``, the best (:func:`best_name`) and, while the run trains, the ``newest``
    highest-numbered ones (0 when it has ended). Every other one may go."""
    ordered = sorted(metrics, key=lambda n: step_of(n) or 0)
    kept = set(ordered[max(0, len(ordered) - newest) :]) if newest > 0 else set()
    return kept | {name for name in (latest, best_name(metrics)) if name is not None}


def recorded_metrics(root: str | Path) -> dict[str, float | None]:
    """The complete checkpoints under ``root`` by name, with their recorded ``BEST_METRIC``."""
    return {folder.name: _recorded_best_metric(folder) for _, folder in list_checkpoints(root)}


def best_checkpoint(root: str | Path) -> Path | None:
    """The complete checkpoint whose record holds the lowest finite ``BEST_METRIC``
    (the later one on a tie); None when no record holds one."""
    root = Path(root)
    name = best_name(recorded_metrics(root))
    return None if name is None else root / name


def superseded(root: str | Path) -> list[Path]:
    """What a finished run's checkpoint folder holds besides its latest and its best
    checkpoint: older complete checkpoints and the leftovers of interrupted writes
    (``.tmp-``, ``.old-`` folders, incomplete ``step-`` folders). The ``latest``
    pointer and the two kept folders are never named, so a resume still finds the
    latest."""
    root = Path(root)
    latest = latest_checkpoint(root)
    keep = kept_names(recorded_metrics(root), latest=None if latest is None else latest.name)
    try:
        children = sorted(root.iterdir()) if root.is_dir() else []
    except OSError:
        return []
    return [
        child
        for child in children
        if child.name not in keep
        and child.is_dir()
        and not child.is_symlink()
        and (STEP_DIR.match(child.name) or child.name.startswith((TMP_PREFIX, OLD_PREFIX)))
    ]
