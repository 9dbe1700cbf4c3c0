"""The run list as CSV: every run it matches (not one page), in its order, with the
run's facts, the headline metrics and the chosen columns (``?cols=``). Values are
written in full (a float as Python writes it, a time in ISO 8601 UTC), a missing
value as an empty cell."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from apps.experiments.listing.columns import Column, column_parse
from apps.experiments.models import Run

#: The run's own facts, first in every row (search fields, so ``Column`` reads them).
FACT_COLUMNS: tuple[str, ...] = (
    "id",
    "kind",
    "experiment",
    "taskset",
    "algorithm",
    "status",
    "step",
    "seed",
    "by",
    "created",
    "finished",
)
#: Rows written per chunk of text.
ROWS_PER_CHUNK = 200


def export_columns(shown: Sequence[Column]) -> list[Column]:
    """The facts, then the columns the list shows (headline and chosen), once each."""
    return list(dict.fromkeys([*(column_parse(name) for name in FACT_COLUMNS), *shown]))


def csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return str(value)


def run_rows_csv(runs: Iterable[Run], columns: Sequence[Column]) -> Iterator[str]:
    """CSV text: a header of the columns' names, then a row per run, in chunks."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([column.name for column in columns])
    for count, run in enumerate(runs, start=1):
        writer.writerow([csv_cell(column.value(run)) for column in columns])
        if count % ROWS_PER_CHUNK == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
