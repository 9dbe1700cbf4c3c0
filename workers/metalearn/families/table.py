"""``table``: few-shot tasks from a user's own data.

Two layouts:

* **CSV** (``*.csv``): one row per example, with a task-id column, numeric feature
  columns and a target column. Regression tasks draw ``shots + query`` rows of one
  task; classification tasks are N-way K-shot episodes over one task's target
  labels. Tasks (not rows) are split into train/val/test by a fixed permutation of
  the sorted task ids.
* **Images**: a folder, or a ``.zip`` read in memory, laid out ``class/image.png``
  (one optional top folder around it is allowed). Images are converted to
  grayscale, scaled to [0, 1] and must share one size. Classes are split
  disjointly into train/val/test; episodes are N-way K-shot.

Every problem raises :class:`~workers.metalearn.types.DataError` naming the file,
row, column, task or class at fault. Rows are numbered as in a spreadsheet: the
header is row 1, the first example row 2. :func:`inspect_table` validates a file
and summarises it, for the web to check an upload before saving it.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from workers.metalearn.families._base import (
    FAMILY_SEED_SALT,
    BaseFamily,
    FamilyParams,
    cut_episode,
    draw_members,
    episode_labels,
)
from workers.metalearn.types import SPLITS, DataError, EpisodeSpec, Split, TaskBatch, TaskKind

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif"})
#: Largest image accepted, in pixels (e.g. 256x256).
MAX_IMAGE_PIXELS = 256 * 256
_IGNORED_NAMES = frozenset({"__MACOSX", "Thumbs.db", "desktop.ini"})
_TABLE_SPLIT_SEED = 0x7AB1E001


class TableParams(FamilyParams):
    kind: Literal["regression", "classification"] = Field(
        "classification",
        description="Regression (numeric target) or classification (labels); images classify.",
    )
    task_column: str = Field("task", min_length=1, description="CSV: the column naming each row's task.")
    target_column: str = Field("target", min_length=1, description="CSV: the column to predict.")
    feature_columns: tuple[str, ...] | None = Field(
        None, description="CSV: input columns; all but the task and target columns when empty."
    )
    max_bytes: int = Field(
        20_000_000, ge=1, le=2_000_000_000, description="Largest file (or unpacked zip) accepted."
    )
    val_fraction: float = Field(
        0.2, gt=0, lt=1, description="Share of tasks (CSV) or classes (images) for val."
    )
    test_fraction: float = Field(
        0.2, gt=0, lt=1, description="Share of tasks (CSV) or classes (images) for test."
    )

    @model_validator(mode="after")
    def _fractions(self) -> TableParams:
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError("test_fraction: val_fraction + test_fraction must leave some data for train")
        if self.feature_columns is not None and not self.feature_columns:
            raise ValueError("feature_columns: list at least one column, or leave it empty for all")
        return self


@dataclass(frozen=True)
class TableData:
    """Loaded, validated examples, grouped for sampling.

    ``x`` is float32 ``[R, *input_shape]``; ``y`` float32 ``[R]`` (regression) or
    None. ``sources[split]`` lists that split's sampling units: for CSV one per
    user task (``names``: its id), for images a single unit; each unit is a list of
    row-index groups, one per class (classification) or one in all (regression).
    ``class_names`` parallels the groups.
    """

    format: Literal["csv", "images"]
    kind: TaskKind
    x: np.ndarray
    y: np.ndarray | None
    sources: dict[str, list[list[np.ndarray]]]
    names: dict[str, list[str]]
    class_names: dict[str, list[list[str]]]
    columns: list[str]
    feature_columns: list[str]


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _split_names(names: list[str], params: TableParams, what: str, field: str) -> dict[str, list[str]]:
    """Sorted ``names`` (``what``: plural noun) dealt to splits by a fixed permutation;
    every split gets at least one."""
    names = sorted(names)
    if len(names) < 3:
        raise DataError(field, f"needs at least 3 {what} (one per split); found {len(names)}")
    order = np.random.default_rng([FAMILY_SEED_SALT, _TABLE_SPLIT_SEED]).permutation(len(names))
    n_test = max(1, round(len(names) * params.test_fraction))
    n_val = max(1, round(len(names) * params.val_fraction))
    if n_test + n_val >= len(names):
        n_test, n_val = 1, 1
    picked = [names[i] for i in order]
    return {
        "test": sorted(picked[:n_test]),
        "val": sorted(picked[n_test : n_test + n_val]),
        "train": sorted(picked[n_test + n_val :]),
    }


# -- CSV -------------------------------------------------------------------------------------


def _read_text(path: Path, params: TableParams) -> str:
    if not path.is_file():
        raise DataError(path.name, "no such file")
    size = path.stat().st_size
    if size == 0:
        raise DataError(path.name, "the file is empty")
    if size > params.max_bytes:
        raise DataError(path.name, f"the file is {_mb(size)}; the limit is {_mb(params.max_bytes)}")
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(path.name, f"is not UTF-8 text (byte {exc.start})") from None


def _numbers(cells: list[list[str]], row_numbers: list[int], columns: list[str]) -> np.ndarray:
    """Parse a ``[rows, columns]`` grid of strings into float32, or name the first bad
    cell (``row_numbers`` are the rows' numbers in the file)."""
    grid = np.array(cells, dtype=str).reshape(len(cells), len(columns))
    try:
        values = grid.astype(np.float64)
    except ValueError:
        for r, row in enumerate(cells):
            for c, cell in enumerate(row):
                try:
                    float(cell)
                except ValueError:
                    where = f"row {row_numbers[r]}, column '{columns[c]}'"
                    if not cell.strip():
                        raise DataError(where, "the value is missing") from None
                    raise DataError(where, f"{cell.strip()[:40]!r} is not a number") from None
        raise
    bad = np.argwhere(~np.isfinite(values))
    if len(bad):
        r, c = bad[0]
        what = "NaN" if np.isnan(values[r, c]) else "infinite"
        raise DataError(f"row {row_numbers[r]}, column '{columns[c]}'", f"{what} values are not allowed")
    return values.astype(np.float32)


def load_csv(path: Path, params: TableParams) -> TableData:
    text = _read_text(path, params)
    rows = csv.reader(io.StringIO(text, newline=""))
    header = [name.strip() for name in next(rows, [])]
    if not any(header):
        raise DataError(path.name, "the file is empty")
    seen: set[str] = set()
    for name in header:
        if name in seen:
            raise DataError(f"column '{name}'", "appears twice in the header")
        seen.add(name)
    wanted = [params.task_column, params.target_column, *(params.feature_columns or ())]
    for name in wanted:
        if name not in seen:
            raise DataError(
                f"column '{name}'", f"no such column; the file has {', '.join(map(repr, header))}"
            )
    features = list(params.feature_columns or (h for h in header if h not in wanted[:2]))
    if not features:
        raise DataError(
            "feature_columns", "no feature columns: the file has only the task and target columns"
        )
    for name in features:
        if name in (params.task_column, params.target_column):
            raise DataError(f"column '{name}'", "cannot be a feature and the task or target column at once")

    index = {name: i for i, name in enumerate(header)}
    feature_at = [index[name] for name in features]
    task_at, target_at = index[params.task_column], index[params.target_column]
    tasks, targets, cells, row_numbers = [], [], [], []
    number = 1
    try:
        for number, row in enumerate(rows, start=2):
            if not row or not any(cell.strip() for cell in row):
                continue  # a blank line
            if len(row) != len(header):
                raise DataError(
                    f"row {number}", f"has {len(row)} values; the header has {len(header)} columns"
                )
            task = row[task_at].strip()
            if not task:
                raise DataError(f"row {number}, column '{params.task_column}'", "the task id is missing")
            target = row[target_at].strip()
            if not target:
                raise DataError(f"row {number}, column '{params.target_column}'", "the value is missing")
            tasks.append(task)
            targets.append(target)
            cells.append([row[i] for i in feature_at])
            row_numbers.append(number)
    except csv.Error as exc:
        raise DataError(f"row {number + 1}", f"is not valid CSV ({exc})") from None
    if not cells:
        raise DataError(path.name, "the file has a header but no rows")

    x = _numbers(cells, row_numbers, features)
    y = None
    if params.kind == "regression":
        y = _numbers([[t] for t in targets], row_numbers, [params.target_column])[:, 0]

    task_rows: dict[str, list[int]] = {}
    for i, task in enumerate(tasks):
        task_rows.setdefault(task, []).append(i)
    split_tasks = _split_names(list(task_rows), params, "tasks", f"column '{params.task_column}'")
    sources: dict[str, list[list[np.ndarray]]] = {}
    class_names: dict[str, list[list[str]]] = {}
    for split, names in split_tasks.items():
        sources[split], class_names[split] = [], []
        for task in names:
            members = np.asarray(task_rows[task], dtype=np.int64)
            if params.kind == "regression":
                sources[split].append([members])
                class_names[split].append([])
                continue
            labels = sorted({targets[i] for i in members})
            sources[split].append([members[[targets[i] == label for i in members]] for label in labels])
            class_names[split].append(labels)
    return TableData(
        format="csv",
        kind=params.kind,
        x=x,
        y=y,
        sources=sources,
        names=split_tasks,
        class_names=class_names,
        columns=header,
        feature_columns=features,
    )


# -- images ----------------------------------------------------------------------------------


def _hidden(parts: tuple[str, ...]) -> bool:
    return any(part.startswith(".") or part in _IGNORED_NAMES for part in parts)


def _image_entries(path: Path, params: TableParams) -> list[tuple[str, str, bytes]]:
    """(class, display name, bytes) of every image under ``path`` (folder or zip), sorted."""
    found: list[tuple[tuple[str, ...], bytes]] = []
    if path.is_dir():
        total = 0
        for file in sorted(path.rglob("*")):
            parts = file.relative_to(path).parts
            if file.is_symlink() or not file.is_file() or _hidden(parts):
                continue
            total += file.stat().st_size
            if total > params.max_bytes:
                raise DataError(path.name, f"the folder holds over {_mb(params.max_bytes)}, the limit")
            found.append((parts, file.read_bytes()))
    else:
        if not path.is_file():
            raise DataError(path.name, "no such file or folder")
        size = path.stat().st_size
        if size == 0:
            raise DataError(path.name, "the file is empty")
        if size > params.max_bytes:
            raise DataError(path.name, f"the file is {_mb(size)}; the limit is {_mb(params.max_bytes)}")
        try:
            archive = zipfile.ZipFile(io.BytesIO(path.read_bytes()))
        except zipfile.BadZipFile:
            raise DataError(path.name, "is not a valid zip file") from None
        with archive:
            infos = [i for i in archive.infolist() if not i.is_dir()]
            unpacked = sum(i.file_size for i in infos)
            if unpacked > params.max_bytes:
                raise DataError(
                    path.name, f"unpacks to {_mb(unpacked)}; the limit is {_mb(params.max_bytes)}"
                )
            for info in sorted(infos, key=lambda i: i.filename):
                # Names are only labels here: never joined to a path on disk.
                parts = tuple(
                    p for p in PurePosixPath(info.filename.replace("\\", "/")).parts if p not in ("", "/")
                )
                if ".." in parts:
                    raise DataError(info.filename, "has '..' in its path; entries must stay inside the zip")
                if not parts or _hidden(parts):
                    continue
                try:
                    found.append((parts, archive.read(info)))
                except (RuntimeError, zipfile.BadZipFile, NotImplementedError, OSError) as exc:
                    raise DataError(info.filename, f"cannot be read from the zip ({exc})") from None
    if not found:
        raise DataError(path.name, "holds no images; lay them out as class/image.png")
    # Allow one folder around the classes (zipping a folder adds it).
    strip = len({parts[0] for parts, _ in found}) == 1 and all(len(parts) == 3 for parts, _ in found)
    entries = []
    for parts, data in found:
        name = "/".join(parts)
        parts = parts[1:] if strip else parts
        if len(parts) != 2:
            raise DataError(
                name, "images must sit directly in a folder named after their class: class/image.png"
            )
        if PurePosixPath(name).suffix.lower() not in IMAGE_SUFFIXES:
            raise DataError(name, f"is not an image ({', '.join(sorted(IMAGE_SUFFIXES))})")
        entries.append((parts[0], name, data))
    return entries


def _decode(name: str, data: bytes) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise DataError(name, "the file is empty")
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise DataError(
                    name,
                    f"is {image.width}x{image.height} pixels; the limit is {MAX_IMAGE_PIXELS} (256x256)",
                )
            return np.asarray(image.convert("L"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(name, "is not a readable image") from None


def load_images(path: Path, params: TableParams) -> TableData:
    if params.kind != "classification":
        raise DataError("kind", "image folders hold classification data; set kind to 'classification'")
    entries = _image_entries(path, params)
    pixels, by_class = [], {}
    first: tuple[str, tuple[int, ...]] | None = None
    for cls, name, data in entries:
        image = _decode(name, data)
        if first is None:
            first = (name, image.shape)
        elif image.shape != first[1]:
            (h, w), (h0, w0) = image.shape, first[1]
            raise DataError(
                name, f"is {w}x{h} pixels but {first[0]} is {w0}x{h0}; all images must share one size"
            )
        by_class.setdefault(cls, []).append(len(pixels))
        pixels.append(image)
    x = (np.stack(pixels)[:, None].astype(np.float32)) / np.float32(255)
    split_classes = _split_names(list(by_class), params, "classes", path.name)
    return TableData(
        format="images",
        kind="classification",
        x=x,
        y=None,
        sources={
            s: [[np.asarray(by_class[c], dtype=np.int64) for c in names]]
            for s, names in split_classes.items()
        },
        names={s: [""] for s in split_classes},
        class_names={s: [names] for s, names in split_classes.items()},
        columns=[],
        feature_columns=[],
    )


def _coerce(params: Mapping[str, Any] | TableParams | None) -> TableParams:
    if isinstance(params, TableParams):
        return params
    from workers.metalearn.families import parse_family_params

    return parse_family_params("table", params)  # type: ignore[return-value]


def load_table(path: str | Path, params: Mapping[str, Any] | TableParams | None = None) -> TableData:
    """Read and validate ``path``: a ``.csv`` file, a ``.zip`` of images or a folder of them."""
    params = _coerce(params)
    path = Path(path)
    if path.is_dir() or path.suffix.lower() == ".zip":
        return load_images(path, params)
    return load_csv(path, params)


def inspect_table(path: str | Path, params: Mapping[str, Any] | TableParams | None = None) -> dict[str, Any]:
    """Validate an upload and summarise it (JSON-ready), raising :class:`DataError`
    (bad data) or :class:`~workers.metalearn.config.ConfigError` (bad parameters)."""
    return _summary(load_table(path, params))


def _summary(data: TableData) -> dict[str, Any]:
    splits = {}
    for split in SPLITS:
        rows = sum(len(g) for unit in data.sources[split] for g in unit)
        labels = {label for names in data.class_names[split] for label in names}
        entry: dict[str, Any] = {"rows": rows, "classes": len(labels)}
        if data.format == "csv":
            entry["tasks"] = len(data.names[split])
        splits[split] = entry
    labels = {label for split in SPLITS for names in data.class_names[split] for label in names}
    summary: dict[str, Any] = {
        "format": data.format,
        "kind": data.kind,
        "rows": int(len(data.x)),
        "classes": len(labels),
        "input_shape": list(data.x.shape[1:]),
        "splits": splits,
    }
    if data.format == "csv":
        summary["tasks"] = sum(len(n) for n in data.names.values())
        summary["columns"] = data.columns
        summary["feature_columns"] = data.feature_columns
        if data.kind == "classification":
            per_task = [len(names) for split in SPLITS for names in data.class_names[split]]
            summary["classes_per_task"] = {"min": min(per_task), "max": max(per_task)}
    return summary


# -- the family ------------------------------------------------------------------------------


class TableFamily(BaseFamily):
    """Tasks from :func:`load_table`'s data. Fixed task ``i`` of a split uses that
    split's unit ``i mod units`` (so evaluation cycles evenly over the user's tasks);
    a sampled task id does the same. :meth:`task_name` gives the user's task id."""

    name = "table"
    params: TableParams

    def __init__(self, params: TableParams, data_path: str | Path):
        self.params = params
        self.data = load_table(data_path, params)
        self.kind = self.data.kind
        self.input_shape = tuple(int(n) for n in self.data.x.shape[1:])

    def num_classes(self, split: Split) -> int:
        if self.kind != "classification":
            return 0
        return min(len(unit) for unit in self.data.sources[split])

    def task_name(self, split: Split, task_id: int) -> str:
        """The user's task id behind task ``task_id`` of ``split`` ("" for image folders)."""
        names = self.data.names[split]
        return names[int(task_id) % len(names)]

    def _check_data(self, episode: EpisodeSpec, split: Split) -> None:
        need = episode.shots + episode.query
        wants = f"{episode.shots} shots + {episode.query} query need {need}"
        for task, unit, labels in zip(
            self.data.names[split], self.data.sources[split], self.data.class_names[split], strict=True
        ):
            if self.kind == "regression":  # CSV only
                if len(unit[0]) < need:
                    raise DataError(f"task '{task}'", f"has {len(unit[0])} rows; {wants}")
                continue
            where = f"task '{task}'" if self.data.format == "csv" else None
            if len(unit) < episode.ways:
                has = f"the task has {len(unit)}" if where else f"the {split} split has {len(unit)}"
                raise DataError(
                    where or "ways", f"{episode.ways}-way episodes need {episode.ways} classes; {has}"
                )
            for label, members in zip(labels, unit, strict=True):
                if len(members) < need:
                    noun = "rows" if where else "images"
                    raise DataError(
                        f"{where}, class '{label}'" if where else f"class '{label}'",
                        f"has {len(members)} {noun}; {wants} per class",
                    )

    def _build(self, split: Split, episode: EpisodeSpec, task_ids: np.ndarray) -> TaskBatch:
        units = self.data.sources[split]
        support, query = [], []
        for task_id in task_ids:
            rng = self.task_rng(split, task_id)
            unit = units[int(task_id) % len(units)]
            if self.kind == "regression":
                rows = unit[0][draw_members(rng, len(unit[0]), episode.shots + episode.query)]
                s, q = rows[: episode.shots], rows[episode.shots :]
            else:
                s, q = cut_episode(rng, unit, episode)
            support.append(s)
            query.append(q)
        s_idx, q_idx = np.stack(support), np.stack(query)
        x = self.data.x
        if self.kind == "regression":
            y = self.data.y
            assert y is not None
            y_support, y_query = y[s_idx][..., None], y[q_idx][..., None]
        else:
            y_support, y_query = episode_labels(episode, len(task_ids))
        return TaskBatch(
            x_support=x[s_idx],
            y_support=y_support,
            x_query=x[q_idx],
            y_query=y_query,
            desc=None,
            task_ids=task_ids,
        )

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "metric": "mse" if self.kind == "regression" else "accuracy",
            "data": _summary(self.data),
        }
