"""Examples for one task, ``inputs..., target`` per row: the adaptation form's
typed and uploaded sets and the command line's ``adapt --support/--query``.

The target rule, decided once:

* The first row is a header when it is not a data row, i.e. when a cell that must
  be a number is not one (without a header the target is the last cell, and a
  classification target is a class name, so it may be anything).
* With a header, the column named ``y`` (or ``label`` or ``target``, any case) is
  the target, wherever it is; the other columns are the inputs, in order.
* Otherwise the last column is the target when there are ``input_size + 1``
  columns; with exactly ``input_size`` columns there is no target, which only a
  set that may lack one (a query set to predict) accepts.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass

import numpy as np

from workers.metalearn.types import DataError
from workers.metalearn.uploads.csvrows import CsvRows, CsvSource, is_number, parse_number
from workers.metalearn.uploads.limits import DEFAULT_LIMITS, UploadLimits

#: Header names that mark the target column, compared in lower case.
TARGET_NAMES = ("y", "label", "target")


@dataclass(frozen=True)
class Points:
    """``x`` is float64 ``[N, input_size]``; ``y`` the regression targets (float64
    ``[N]``) and ``labels`` the class names as written (classification), both None
    without a target column; ``rows`` each example's row number."""

    x: np.ndarray
    y: np.ndarray | None
    labels: list[str] | None
    rows: list[int]

    @property
    def where(self) -> list[str]:
        return [f"row {n}" for n in self.rows]


@dataclass(frozen=True)
class _Layout:
    width: int
    target: int | None
    inputs: list[int]

    @property
    def what(self) -> str:
        n = len(self.inputs)
        inputs = f"{n} input{'s' if n != 1 else ''}"
        return f"{self.width} ({inputs}, then the target)" if self.target is not None else f"{n} ({inputs})"


def _values(n: int) -> str:
    return f"{n} value{'s' if n != 1 else ''}"


def _is_header(cells: list[str], input_size: int, classification: bool) -> bool:
    numeric = cells[:-1] if classification and len(cells) == input_size + 1 else cells
    return not all(is_number(cell) for cell in numeric)


def _layout(cells: list[str], header: bool, input_size: int, need_target: bool, number: int) -> _Layout:
    width = len(cells)
    names = [cell.lower() for cell in cells] if header else []
    target = next((names.index(n) for n in TARGET_NAMES if n in names), None)
    if target is None and width == input_size + 1:
        target = width - 1
    if width - (target is not None) != input_size or (need_target and target is None):
        inputs = f"{input_size} input{'s' if input_size != 1 else ''}"
        raise DataError(
            f"row {number}", f"has {_values(width)}; expected {input_size + 1} ({inputs}, then the target)"
        )
    return _Layout(width=width, target=target, inputs=[j for j in range(width) if j != target])


def read_points(
    source: CsvSource,
    *,
    input_size: int,
    classification: bool,
    need_target: bool = True,
    name: str = "data",
    limits: UploadLimits = DEFAULT_LIMITS,
) -> Points:
    """Read a set of examples by the rule above. Raises :class:`DataError` naming
    the row and column at fault."""
    values: array[float] = array("d")
    targets: array[float] = array("d")
    labels: list[str] = []
    numbers: list[int] = []
    layout: _Layout | None = None
    with CsvRows(source, name=name, limits=limits) as rows:
        for number, cells in rows:
            if layout is None:
                header = _is_header(cells, input_size, classification)
                layout = _layout(cells, header, input_size, need_target, number)
                if header:
                    rows.columns, rows.header_rows = cells, 1
                    continue
            if len(cells) != layout.width:
                raise DataError(f"row {number}", f"has {_values(len(cells))}; expected {layout.what}")
            for j in layout.inputs:
                values.append(parse_number(cells[j], f"row {number}, column {rows.column_name(j)}"))
            if layout.target is not None:
                cell, where = cells[layout.target], f"row {number}, column {rows.column_name(layout.target)}"
                if classification:
                    if not cell:
                        raise DataError(where, "the class is missing")
                    labels.append(cell)
                else:
                    targets.append(parse_number(cell, where))
            numbers.append(number)
    if not numbers:
        raise DataError(name, "holds no examples; give at least 1, one per row")
    has_target = layout is not None and layout.target is not None
    return Points(
        x=np.frombuffer(values, dtype=np.float64).reshape(len(numbers), input_size).copy(),
        y=np.frombuffer(targets, dtype=np.float64).copy() if has_target and not classification else None,
        labels=labels if has_target and classification else None,
        rows=numbers,
    )
