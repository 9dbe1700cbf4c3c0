"""The run list as CSV: every run it matches (not one page), in its order, with the
run's facts, the headline metrics and the chosen columns (``?cols=``), each value in
full (``columns.column_text``)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence

from apps.experiments.listing.columns import Column, column_parse, column_text
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


def run_rows_csv(runs: Iterable[Run], columns: Sequence[Column]) -> Iterator[str]:
    """CSV text: a header of the columns' names, then a row per run, in chunks."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([column.name for column in columns])
    for count, run in enumerate(runs, start=1):
        writer.writerow([column_text(column.value(run)) for column in columns])
        if count % ROWS_PER_CHUNK == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
