"""The config diff: every key of the runs' configs, flattened to dotted paths,
those whose values differ first."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: The value shown for a key a run's config does not have.
MISSING = "—"


def config_flatten(config: Mapping[str, Any], *, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}, "c": [1, 2]}`` -> ``{"a.b": 1, "c": [1, 2]}``: nested
    mappings become dotted keys; lists and scalars are leaves."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(config_flatten(value, prefix=f"{path}."))
        else:
            flat[path] = value
    return flat


def value_display(value: Any) -> str:
    """A config value as text: strings bare, everything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)


@dataclass(frozen=True)
class DiffRow:
    """One key: its value in each run (``MISSING`` when absent), and whether they differ."""

    key: str
    values: tuple[str, ...]
    differs: bool


def config_diff(configs: Sequence[Mapping[str, Any]]) -> list[DiffRow]:
    """One row per flattened key of any config, in the order of ``configs``: keys
    whose values differ (or that some runs lack) first, then the rest, each group
    sorted by key. ``1`` and ``1.0`` are equal; ``true`` and ``1`` are not."""
    flats = [config_flatten(config) for config in configs]
    keys = sorted({key for flat in flats for key in flat})
    rows = []
    for key in keys:
        present = [key in flat for flat in flats]
        raw = [_comparable(flat[key]) for flat in flats if key in flat]
        differs = not all(present) or any(value != raw[0] for value in raw[1:])
        values = tuple(value_display(flat[key]) if key in flat else MISSING for flat in flats)
        rows.append(DiffRow(key=key, values=values, differs=differs))
    return sorted(rows, key=lambda row: (not row.differs, row.key))


def varying_keys(configs: Sequence[Mapping[str, Any]]) -> list[str]:
    """The flattened keys whose values differ between the configs."""
    return [row.key for row in config_diff(configs) if row.differs]


def _comparable(value: Any) -> Any:
    """A value for equality: booleans kept apart from numbers, lists as JSON text."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, (int, float)):
        return ("number", float(value))
    return ("json", json.dumps(value, sort_keys=True))
