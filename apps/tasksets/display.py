"""An upload's summary (``TaskSetVersion.data_summary``, written by the engine's
``inspect_table``) as lines a person reads on the task set's page."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from workers.metalearn.types import SPLITS


def _words(values: Any) -> str:
    return ", ".join(str(value) for value in values) if isinstance(values, list | tuple) else str(values)


def _shape(shape: Any) -> str:
    return " × ".join(str(side) for side in shape) if isinstance(shape, list | tuple) else str(shape)


def _splits(splits: Any) -> str:
    if not isinstance(splits, Mapping):
        return str(splits)
    parts = []
    for name in SPLITS:
        entry = splits.get(name)
        if not isinstance(entry, Mapping):
            continue
        counts = [f"{entry.get('rows', 0):,} rows"]
        if "tasks" in entry:
            counts.append(f"{entry['tasks']} task{'s' if entry['tasks'] != 1 else ''}")
        if entry.get("classes"):
            counts.append(f"{entry['classes']} class{'es' if entry['classes'] != 1 else ''}")
        parts.append(f"{name}: {', '.join(counts)}")
    return "; ".join(parts)


def _range(span: Any) -> str:
    if not isinstance(span, Mapping):
        return str(span)
    low, high = span.get("min"), span.get("max")
    return str(low) if low == high else f"{low} to {high}"


def _room(room: Any) -> str:
    """The largest episode every task gives, in the launch form's words."""
    if not isinstance(room, Mapping):
        return str(room)
    parts = [f"up to {room['ways']}-way"] if room.get("ways") else []
    parts.append(f"shots + query up to {room.get('examples')}")
    return ", ".join(parts)


#: Summary key: (label, how to show its value); in this order, any other key after.
_LINES: dict[str, tuple[str, Callable[[Any], str]]] = {
    "format": ("format", lambda value: {"csv": "CSV", "images": "image folders"}.get(value, str(value))),
    "kind": ("kind", str),
    "rows": ("rows", lambda value: f"{value:,}" if isinstance(value, int) else str(value)),
    "tasks": ("tasks", str),
    "classes": ("classes", str),
    "classes_per_task": ("classes per task", _range),
    "input_shape": ("input shape", _shape),
    "columns": ("columns", _words),
    "feature_columns": ("feature columns", _words),
    "splits": ("splits", _splits),
    "episode_room": ("largest episode", _room),
}


def summary_lines(summary: Any) -> list[tuple[str, str]]:
    """``(label, text)`` per entry of ``summary``, the upload's own name and size left
    to the page; a key this module does not know is shown as stored."""
    if not isinstance(summary, Mapping):
        return []
    known = [(label, show(summary[key])) for key, (label, show) in _LINES.items() if key in summary]
    rest = [(key, str(value)) for key, value in summary.items() if key not in _LINES and key != "upload"]
    return known + rest
