"""The one CSV reader: a stream of text becomes numbered rows of stripped cells.

Rules, the same for task-set tables, the adaptation form (typed or uploaded) and
the command line:

* UTF-8 text (a byte-order mark is dropped); rows are numbered as in a
  spreadsheet, counting blank lines: the first line is row 1.
* One row per line (a quoted cell may not span lines). Each row's delimiter is
  the first of ``,``, ``;`` and tab found in it; without any, cells are
  separated by runs of spaces (so typed points may be ``1, 2``, ``1;2`` or ``1 2``).
* Blank rows, and rows whose first cell starts with ``#`` (comments), are skipped.
* Lines, cells, columns and rows are capped by :class:`UploadLimits` while the
  text streams in, so a hostile file is refused before it is held in memory.

Every problem is a :class:`DataError` naming the row and column (or the file).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from workers.metalearn.types import DataError
from workers.metalearn.uploads.limits import DEFAULT_LIMITS, UploadLimits, check_file_size, format_mb

#: Delimiters tried on each row, in order; none found means runs of spaces.
DELIMITERS = (",", ";", "\t")

CsvSource = str | Path | IO[bytes]


def parse_number(cell: str, where: str) -> float:
    """A finite float from ``cell``, or a DataError on ``where`` saying what is wrong."""
    try:
        value = float(cell)
    except ValueError:
        if not cell.strip():
            raise DataError(where, "the value is missing") from None
        raise DataError(where, f"{cell.strip()[:40]!r} is not a number") from None
    if not math.isfinite(value):
        raise DataError(where, f"{'NaN' if math.isnan(value) else 'infinite'} values are not allowed")
    return value


def is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


class CsvRows:
    """Iterate ``(row number, cells)`` over ``source``: a path, a binary stream or
    typed text. Set :attr:`columns` once the header is known, so that errors name
    columns; set :attr:`header_rows` to 1 when the first row is a header (it does
    not count towards ``max_rows``)."""

    def __init__(self, source: CsvSource, *, name: str, limits: UploadLimits = DEFAULT_LIMITS) -> None:
        self.name = name
        self.limits = limits
        self.columns: list[str] | None = None
        self.header_rows = 0
        self.line = 0
        self._chars = 0
        self._owned = isinstance(source, Path)
        self._stream = self._open(source)

    def _open(self, source: CsvSource) -> IO[str]:
        if isinstance(source, str):
            return io.StringIO(source, newline="")
        if isinstance(source, Path):
            if not source.is_file():
                raise DataError(self.name, "no such file")
            check_file_size(self.name, source.stat().st_size, self.limits)
            return open(source, encoding="utf-8-sig", newline="")  # closed by close()
        return io.TextIOWrapper(source, encoding="utf-8-sig", newline="")

    def close(self) -> None:
        """Close a file this reader opened; leave a caller's binary stream open."""
        if self._owned:
            self._stream.close()
        elif isinstance(self._stream, io.TextIOWrapper):
            self._stream.detach()

    def __enter__(self) -> CsvRows:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _physical_lines(self) -> Iterator[str]:
        cap = self.limits.max_line_chars
        while True:
            try:
                line = self._stream.readline(cap + 2)  # room for "\r\n" after a full line
            except UnicodeDecodeError:
                raise DataError(self.name, f"is not UTF-8 text (near row {self.line + 1})") from None
            if not line:
                return
            if len(line.rstrip("\r\n")) > cap:
                raise DataError(f"row {self.line + 1}", f"is longer than {cap:,} characters")
            self._chars += len(line)
            if self._chars > self.limits.max_file_bytes:
                raise DataError(self.name, f"is over {format_mb(self.limits.max_file_bytes)}, the limit")
            yield line

    @staticmethod
    def _split(line: str) -> list[str]:
        delimiter = next((d for d in DELIMITERS if d in line), None)
        if delimiter is None:
            return line.split()
        return next(csv.reader([line], delimiter=delimiter, strict=True), [])

    def __iter__(self) -> Iterator[tuple[int, list[str]]]:
        count = 0
        for line in self._physical_lines():
            self.line += 1
            try:
                cells = [cell.strip() for cell in self._split(line.rstrip("\r\n"))]
            except csv.Error as exc:
                raise DataError(f"row {self.line}", f"is not valid CSV ({exc})") from None
            if not any(cells) or cells[0].startswith("#"):
                continue
            count += 1
            if count > self.limits.max_rows + self.header_rows:
                raise DataError(self.name, f"has over {self.limits.max_rows:,} rows, the limit")
            self._check_cells(cells)
            yield self.line, cells

    def column_name(self, index: int) -> str:
        if self.columns is not None and index < len(self.columns):
            return repr(self.columns[index])
        return str(index + 1)

    def _check_cells(self, cells: list[str]) -> None:
        if len(cells) > self.limits.max_columns:
            raise DataError(
                f"row {self.line}", f"has {len(cells):,} columns; the limit is {self.limits.max_columns:,}"
            )
        cap = self.limits.max_cell_chars
        for j, cell in enumerate(cells):
            if len(cell) > cap:
                raise DataError(
                    f"row {self.line}, column {self.column_name(j)}",
                    f"the cell has {len(cell):,} characters; the limit is {cap:,}",
                )
