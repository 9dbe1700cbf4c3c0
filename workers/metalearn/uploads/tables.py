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


def _code(codes: dict[str, int], name: str) -> int:
    return codes.setdefault(name, len(codes))


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
    x: array[float] = array("f")
    y: array[float] = array("f")
    tasks: array[int] = array("q")
    targets: array[int] = array("q")
    task_codes: dict[str, int] = {}
    target_codes: dict[str, int] = {}
    with CsvRows(path, name=name, limits=limits) as rows:
        lines = iter(rows)
        first = next(lines, None)
        if first is None or not any(first[1]):
            raise DataError(name, "the file is empty")
        header = first[1]
        rows.columns, rows.header_rows = header, 1
        features = _check_header(header, task_column, target_column, feature_columns)
        index = {column: i for i, column in enumerate(header)}
        feature_at = [(index[f], f"column '{f}'") for f in features]
        task_at, target_at = index[task_column], index[target_column]
        for number, cells in lines:
            if len(cells) != len(header):
                raise DataError(
                    f"row {number}", f"has {len(cells)} values; the header has {len(header)} columns"
                )
            if not cells[task_at]:
                raise DataError(f"row {number}, column '{task_column}'", "the task id is missing")
            target_where = f"row {number}, column '{target_column}'"
            if not cells[target_at]:
                raise DataError(target_where, "the value is missing")
            for j, column in feature_at:
                x.append(parse_number(cells[j], f"row {number}, {column}"))
            if regression:
                y.append(parse_number(cells[target_at], target_where))
            else:
                targets.append(_code(target_codes, cells[target_at]))
            tasks.append(_code(task_codes, cells[task_at]))
    if not tasks:
        raise DataError(name, "the file has a header but no rows")
    return TableColumns(
        header=header,
        features=features,
        x=np.frombuffer(x, dtype=np.float32).reshape(len(tasks), len(features)),
        tasks=np.frombuffer(tasks, dtype=np.int64),
        task_names=list(task_codes),
        y=np.frombuffer(y, dtype=np.float32) if regression else None,
        targets=None if regression else np.frombuffer(targets, dtype=np.int64),
        target_names=list(target_codes),
    )
