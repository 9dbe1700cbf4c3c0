"""Task-set CSV files: a header row naming the columns, then one example per row
with a task id, numeric features and a target (a number or a class name).

Read by :class:`~workers.metalearn.uploads.csvrows.CsvRows` (the one CSV reader),
numbers parsed as each row arrives into compact float32 buffers, so memory stays
near four bytes per feature cell. The task and target columns are named by the
task set's parameters; the features are the listed columns, or all the others.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workers.metalearn.types import DataError
from workers.metalearn.uploads.csvrows import CsvRows, parse_number
from workers.metalearn.uploads.limits import DEFAULT_LIMITS, UploadLimits


@dataclass(frozen=True)
class TableColumns:
    """``x`` float32 ``[R, F]``; ``tasks`` int64 codes into ``task_names``; for
    regression ``y`` float32 ``[R]``, for classification ``targets`` int64 codes
    into ``target_names``."""

    header: list[str]
    features: list[str]
    x: np.ndarray
    tasks: np.ndarray
    task_names: list[str]
    y: np.ndarray | None
    targets: np.ndarray | None
    target_names: list[str]


def _check_header(
    header: list[str], task_column: str, target_column: str, feature_columns: Sequence[str] | None
) -> list[str]:
    """The feature columns, once the header is known to hold every named column once."""
    seen: set[str] = set()
    for name in header:
        if name in seen:
            raise DataError(f"column '{name}'", "appears twice in the header")
        seen.add(name)
    wanted = [task_column, target_column, *(feature_columns or ())]
    for name in wanted:
        if name not in seen:
            raise DataError(
                f"column '{name}'", f"no such column; the file has {', '.join(map(repr, header))}"
            )
    features = list(feature_columns or (h for h in header if h not in wanted[:2]))
    if not features:
        raise DataError(
            "feature_columns", "no feature columns: the file has only the task and target columns"
        )
    for name in features:
        if name in (task_column, target_column):
            raise DataError(f"column '{name}'", "cannot be a feature and the task or target column at once")
    return features


class _Buffers:
    """Parsed rows so far, in compact arrays: four bytes per feature cell."""

    def __init__(self, header: list[str], features: list[str], task: str, target: str, regression: bool):
        index = {column: i for i, column in enumerate(header)}
        self.width, self.task, self.target, self.regression = len(header), task, target, regression
        self.feature_at = [(index[f], f"column '{f}'") for f in features]
        self.task_at, self.target_at = index[task], index[target]
        self.x: array[float] = array("f")
        self.y: array[float] = array("f")
        self.tasks: array[int] = array("q")
        self.targets: array[int] = array("q")
        self.task_codes: dict[str, int] = {}
        self.target_codes: dict[str, int] = {}

    def add(self, number: int, cells: list[str]) -> None:
        if len(cells) != self.width:
            raise DataError(f"row {number}", f"has {len(cells)} values; the header has {self.width} columns")
        if not cells[self.task_at]:
            raise DataError(f"row {number}, column '{self.task}'", "the task id is missing")
        target_where = f"row {number}, column '{self.target}'"
        if not cells[self.target_at]:
            raise DataError(target_where, "the value is missing")
        for j, column in self.feature_at:
            self.x.append(parse_number(cells[j], f"row {number}, {column}"))
        if self.regression:
            self.y.append(parse_number(cells[self.target_at], target_where))
        else:
            self.targets.append(self.target_codes.setdefault(cells[self.target_at], len(self.target_codes)))
        self.tasks.append(self.task_codes.setdefault(cells[self.task_at], len(self.task_codes)))


def read_table_csv(
    path: Path,
    *,
    task_column: str,
    target_column: str,
    feature_columns: Sequence[str] | None,
    regression: bool,
    limits: UploadLimits = DEFAULT_LIMITS,
) -> TableColumns:
    """Read and check a task-set CSV. Raises :class:`DataError` naming the file,
    row, column or task at fault."""
    name = path.name
    with CsvRows(path, name=name, limits=limits) as rows:
        lines = iter(rows)
        first = next(lines, None)
        if first is None:
            raise DataError(name, "the file is empty")
        header = first[1]
        rows.columns, rows.header_rows = header, 1
        features = _check_header(header, task_column, target_column, feature_columns)
        parsed = _Buffers(header, features, task_column, target_column, regression)
        for number, cells in lines:
            parsed.add(number, cells)
    count = len(parsed.tasks)
    if not count:
        raise DataError(name, "the file has a header but no rows")
    return TableColumns(
        header=header,
        features=features,
        x=np.frombuffer(parsed.x, dtype=np.float32).reshape(count, len(features)),
        tasks=np.frombuffer(parsed.tasks, dtype=np.int64),
        task_names=list(parsed.task_codes),
        y=np.frombuffer(parsed.y, dtype=np.float32) if regression else None,
        targets=None if regression else np.frombuffer(parsed.targets, dtype=np.int64),
        target_names=list(parsed.target_codes),
    )
