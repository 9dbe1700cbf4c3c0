"""Sweep dimensions, parsed from one short text per launch-form field.

The syntax (also in the README, "Sweeps"):

* ``0.001, 0.01, 0.1`` -- a list of values (any field; the choices of a choice field,
  ``true, false`` for a yes/no field);
* ``1..10 step 1`` -- a range from start to stop, both included, by ``step``
  (numeric fields);
* ``0.0001..0.1 log`` -- a log-uniform range between low and high (numeric fields,
  random and ASHA sweeps only: a grid needs a finite list).

Errors are :class:`DimensionError` with a message meant for the field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

ValueType = Literal["int", "float", "bool", "choice"]
Value = int | float | bool | str

#: The most values one list or range may hold (a sweep's total is limited separately).
MAX_VALUES = 1000
#: The longest dimension text read.
MAX_TEXT = 2000

_RANGE = re.compile(r"^\s*(\S+?)\s*\.\.\s*(\S+?)\s+step\s+(\S+)\s*$", re.IGNORECASE)
_LOG = re.compile(r"^\s*(\S+?)\s*\.\.\s*(\S+?)\s+log\s*$", re.IGNORECASE)


class DimensionError(ValueError):
    """A dimension that cannot be swept; ``str()`` is the message for the field."""


@dataclass(frozen=True)
class Dimension:
    """The values one field takes in a sweep: ``values`` (a list or a range, already
    enumerated) or a log-uniform range ``low``..``high``."""

    field: str
    kind: Literal["list", "range", "log"]
    values: tuple[Value, ...] = ()
    low: float = 0.0
    high: float = 0.0
    integer: bool = False

    @property
    def finite(self) -> bool:
        return self.kind != "log"

    def to_dict(self) -> dict[str, object]:
        if self.kind == "log":
            return {"kind": "log", "low": self.low, "high": self.high, "integer": self.integer}
        return {"kind": self.kind, "values": list(self.values)}

    @classmethod
    def from_dict(cls, field: str, data: Mapping[str, Any]) -> Dimension:
        """The dimension :meth:`to_dict` stored (``Sweep.dimensions[field]``)."""
        if data.get("kind") == "log":
            low, high = float(data["low"]), float(data["high"])
            return cls(field=field, kind="log", low=low, high=high, integer=bool(data.get("integer")))
        return cls(field=field, kind=data.get("kind", "list"), values=tuple(data.get("values") or ()))


def _number(text: str, value_type: ValueType) -> int | float:
    try:
        number: int | float = int(text) if value_type == "int" else float(text)
    except ValueError:
        kind = "a whole number" if value_type == "int" else "a number"
        raise DimensionError(f"'{text}' is not {kind}.") from None
    if not math.isfinite(number):
        raise DimensionError(f"'{text}' is not a finite number.")
    return number


def _scalar(text: str, value_type: ValueType, choices: tuple[str, ...]) -> Value:
    text = text.strip()
    if value_type == "bool":
        lowered = text.lower()
        if lowered not in ("true", "false"):
            raise DimensionError(f"'{text}' is not true or false.")
        return lowered == "true"
    if value_type == "choice":
        if text not in choices:
            raise DimensionError(f"'{text}' is not one of: {', '.join(choices)}.")
        return text
    return _number(text, value_type)


def _range(field: str, match: re.Match[str], value_type: ValueType) -> Dimension:
    start, stop, step = (_number(part, value_type) for part in match.groups())
    if step <= 0:
        raise DimensionError("The step must be greater than 0.")
    if stop < start:
        raise DimensionError(f"The range {start}..{stop} is empty: the stop is below the start.")
    count = math.floor((stop - start) / step + 1e-9) + 1
    if count > MAX_VALUES:
        raise DimensionError(f"The range holds {count:,} values; at most {MAX_VALUES:,}.")
    values = tuple(start + i * step for i in range(count))
    if value_type == "float":
        values = tuple(round(v, 12) for v in values)
    return Dimension(field=field, kind="range", values=values)


def _log(field: str, match: re.Match[str], value_type: ValueType) -> Dimension:
    low, high = (_number(part, value_type) for part in match.groups())
    if low <= 0:
        raise DimensionError("A log-uniform range needs a low bound above 0.")
    if high <= low:
        raise DimensionError(f"The range {low}..{high} is empty: the high bound must exceed the low.")
    return Dimension(field=field, kind="log", low=float(low), high=float(high), integer=value_type == "int")


def dimension_parse(
    field: str, text: str, *, value_type: ValueType, choices: tuple[str, ...] = ()
) -> Dimension:
    """The dimension ``text`` describes for ``field`` (see the module's syntax)."""
    text = (text or "").strip()
    if not text:
        raise DimensionError("Give a list, a range with a step, or a log range.")
    if len(text) > MAX_TEXT:
        raise DimensionError(f"Use at most {MAX_TEXT:,} characters.")
    numeric = value_type in ("int", "float")
    if numeric and (match := _RANGE.match(text)):
        return _range(field, match, value_type)
    if numeric and (match := _LOG.match(text)):
        return _log(field, match, value_type)
    if ".." in text:
        raise DimensionError(
            "Write a range as 'start..stop step s' or 'low..high log'."
            if numeric
            else "Give a list of values."
        )
    parts = [part for part in text.split(",") if part.strip()]
    if not parts:
        raise DimensionError("The list is empty.")
    if len(parts) > MAX_VALUES:
        raise DimensionError(f"The list holds {len(parts):,} values; at most {MAX_VALUES:,}.")
    values = tuple(dict.fromkeys(_scalar(part, value_type, choices) for part in parts))
    return Dimension(field=field, kind="list", values=values)
