"""``table``: few-shot tasks from a user's own data.

Two layouts:

* **CSV** (``*.csv``): one row per example, with a task-id column, numeric feature
  columns and a target column. Regression tasks draw ``shots + query`` rows of one
  task; classification tasks are N-way K-shot episodes over one task's target
  labels. Tasks (not rows) are split into train/val/test by a fixed permutation of
  the sorted task ids.
* **Images**: a folder or a ``.zip``, laid out ``class/image.png`` (one optional
  top folder around it is allowed). Images are converted to
  grayscale, scaled to [0, 1] and must share one size. Classes are split
  disjointly into train/val/test; episodes are N-way K-shot.

Every problem raises :class:`~workers.metalearn.types.DataError` naming the file,
row, column, task or class at fault. Rows are numbered as in a spreadsheet: the
header is row 1, the first example row 2. :func:`inspect_table` validates a file
and summarises it, for the web to check an upload before saving it.

Both layouts are read by :mod:`workers.metalearn.uploads` (the one CSV reader and
the one image reader), within its :class:`UploadLimits`: the site's caps, or
tighter ones passed in, lowered again by ``max_bytes``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
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
from workers.metalearn.types import (
    SPLITS,
    DataError,
    EpisodeSpec,
    InputStats,
    Split,
    TaskBatch,
    TaskKind,
)
from workers.metalearn.uploads import (
    DEFAULT_LIMITS,
    ImageFile,
    UploadLimits,
    check_images,
    folder_images,
    open_zip,
    read_table_csv,
)

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
        20_000_000,
        ge=1,
        le=2_000_000_000,
        description="Largest file (or unpacked zip) accepted; lowers the site's limits, never raises them.",
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
    ``class_names`` parallels the groups. ``x`` is None when the data was only
    inspected (images checked one at a time, never held together).
    """

    format: Literal["csv", "images"]
    kind: TaskKind
    rows: int
    input_shape: tuple[int, ...]
    x: np.ndarray | None
    y: np.ndarray | None
    sources: dict[str, list[list[np.ndarray]]]
    names: dict[str, list[str]]
    class_names: dict[str, list[list[str]]]
    columns: list[str]
    feature_columns: list[str]


def _limits(params: TableParams, limits: UploadLimits | None) -> UploadLimits:
    """The site's limits (or tighter ones given), lowered by the task set's
    ``max_bytes``, which can never raise them."""
    return (limits or DEFAULT_LIMITS).tightened(
        max_file_bytes=params.max_bytes, max_unpacked_bytes=params.max_bytes
    )


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


def _csv_sources(
    tasks: np.ndarray,
    targets: np.ndarray | None,
    target_names: list[str],
    split_tasks: dict[str, list[str]],
    task_code: dict[str, int],
) -> tuple[dict[str, list[list[np.ndarray]]], dict[str, list[list[str]]]]:
    """Each split's units: per task, its rows (regression) or its rows per label."""
    order = np.argsort(tasks, kind="stable")
    groups = np.split(order, np.cumsum(np.bincount(tasks, minlength=len(task_code)))[:-1])
    sources: dict[str, list[list[np.ndarray]]] = {}
    class_names: dict[str, list[list[str]]] = {}
    for split, names in split_tasks.items():
        sources[split], class_names[split] = [], []
        for task in names:
            members = groups[task_code[task]]
            if targets is None:
                sources[split].append([members])
                class_names[split].append([])
                continue
            codes = targets[members]
            labels = sorted((target_names[c], c) for c in set(codes.tolist()))
            sources[split].append([members[codes == c] for _, c in labels])
            class_names[split].append([name for name, _ in labels])
    return sources, class_names


def load_csv(path: Path, params: TableParams, limits: UploadLimits | None = None) -> TableData:
    columns = read_table_csv(
        path,
        task_column=params.task_column,
        target_column=params.target_column,
        feature_columns=params.feature_columns,
        regression=params.kind == "regression",
        limits=_limits(params, limits),
    )
    split_tasks = _split_names(columns.task_names, params, "tasks", f"column '{params.task_column}'")
    task_code = {name: i for i, name in enumerate(columns.task_names)}
    sources, class_names = _csv_sources(
        columns.tasks, columns.targets, columns.target_names, split_tasks, task_code
    )
    return TableData(
        format="csv",
        kind=params.kind,
        rows=len(columns.x),
        input_shape=tuple(columns.x.shape[1:]),
        x=columns.x,
        y=columns.y,
        sources=sources,
        names=split_tasks,
        class_names=class_names,
        columns=columns.header,
        feature_columns=columns.features,
    )


# -- images ----------------------------------------------------------------------------------


@contextlib.contextmanager
def _image_files(path: Path, limits: UploadLimits) -> Iterator[list[ImageFile]]:
    if path.is_dir():
        yield folder_images(path, limits=limits)
        return
    with open_zip(path, name=path.name, limits=limits) as files:
        yield files


def load_images(
    path: Path, params: TableParams, limits: UploadLimits | None = None, *, keep_pixels: bool = True
) -> TableData:
    """Images per class folder, checked by :mod:`workers.metalearn.uploads` (sizes
    from the headers first), then decoded one at a time into ``x`` (float32 in
    [0, 1]), or only checked when ``keep_pixels`` is False."""
    if params.kind != "classification":
        raise DataError("kind", "image folders hold classification data; set kind to 'classification'")
    bounds = _limits(params, limits)
    with _image_files(path, bounds) as files:
        images = check_images(files, where=path.name, limits=bounds)
        shape = (images.height, images.width)
        x = np.empty((len(files), 1, *shape), dtype=np.float32) if keep_pixels else None
        by_class: dict[str, list[int]] = {}
        for i, image in enumerate(images.files):
            pixels = images.decode(image)
            if pixels.shape != shape:
                raise DataError(image.name, "is not a readable image")
            if x is not None:
                x[i, 0] = pixels.astype(np.float32) / np.float32(255)
            by_class.setdefault(image.cls, []).append(i)
    split_classes = _split_names(list(by_class), params, "classes", path.name)
    return TableData(
        format="images",
        kind="classification",
        rows=len(files),
        input_shape=(1, *shape),
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


def load_table(
    path: str | Path,
    params: Mapping[str, Any] | TableParams | None = None,
    *,
    limits: UploadLimits | None = None,
) -> TableData:
    """Read and validate ``path``: a ``.csv`` file, a ``.zip`` of images or a folder
    of them, within ``limits`` (the site's by default) and ``params.max_bytes``."""
    params = _coerce(params)
    path = Path(path)
    if path.is_dir() or path.suffix.lower() == ".zip":
        return load_images(path, params, limits)
    return load_csv(path, params, limits)


def inspect_table(
    path: str | Path,
    params: Mapping[str, Any] | TableParams | None = None,
    *,
    limits: UploadLimits | None = None,
) -> dict[str, Any]:
    """Validate an upload and summarise it (JSON-ready), raising :class:`DataError`
    (bad data) or :class:`~workers.metalearn.config.ConfigError` (bad parameters).
    Images are decoded one at a time and not kept."""
    params = _coerce(params)
    path = Path(path)
    if path.is_dir() or path.suffix.lower() == ".zip":
        return _summary(load_images(path, params, limits, keep_pixels=False))
    return _summary(load_csv(path, params, limits))


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
        "rows": data.rows,
        "classes": len(labels),
        "input_shape": list(data.input_shape),
        "splits": splits,
    }
    if data.format == "csv":
        summary["tasks"] = sum(len(n) for n in data.names.values())
        summary["columns"] = data.columns
        summary["feature_columns"] = data.feature_columns
        if data.kind == "classification":
            per_task = [len(names) for split in SPLITS for names in data.class_names[split]]
            summary["classes_per_task"] = {"min": min(per_task), "max": max(per_task)}
    summary["episode_room"] = episode_room(data)
    return summary


def episode_room(data: TableData) -> dict[str, int | None]:
    """The largest episode that every task of every split can give, the bounds
    :meth:`TableFamily.check_episode` enforces: ``ways``, the fewest classes a task
    has (for images, a split; None for regression), and ``examples``, the most
    ``shots + query``, the fewest rows a class (a regression task) has."""
    units = [unit for split in SPLITS for unit in data.sources[split]]
    return {
        "ways": min(len(unit) for unit in units) if data.kind == "classification" else None,
        "examples": min(len(group) for unit in units for group in unit),
    }


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
        self.input_shape = tuple(int(n) for n in self.data.input_shape)

    def num_classes(self, split: Split) -> int:
        if self.kind != "classification":
            return 0
        return min(len(unit) for unit in self.data.sources[split])

    def input_stats(self) -> InputStats | None:
        """CSV features' per-column mean and std over the training split's rows, for the
        model to standardise its inputs with (None for images, already in [0, 1])."""
        if self.data.format != "csv" or self.data.x is None:
            return None
        rows = np.concatenate([g for unit in self.data.sources["train"] for g in unit])
        return InputStats.of(self.data.x[np.unique(rows)])

    def task_name(self, split: Split, task_id: int) -> str:
        """The user's task id behind task ``task_id`` of ``split`` ("" for image folders)."""
        names = self.data.names[split]
        return names[int(task_id) % len(names)]

    def _check_data(self, episode: EpisodeSpec, split: Split) -> None:
        """Every task of ``split`` has ``ways`` classes, each with ``shots + query``
        rows; a shortfall is a :class:`DataError` on the setting to lower (``ways``,
        else ``shots``), naming the task and class."""
        need = episode.shots + episode.query
        wants = f"{episode.shots} shots + {episode.query} query need {need}"
        for task, unit, labels in zip(
            self.data.names[split], self.data.sources[split], self.data.class_names[split], strict=True
        ):
            where = f"task '{task}'" if self.data.format == "csv" else f"the {split} split"
            if self.kind == "regression":  # CSV only
                if len(unit[0]) < need:
                    raise DataError("shots", f"{where} has {len(unit[0])} rows; {wants}")
                continue
            if len(unit) < episode.ways:
                raise DataError(
                    "ways",
                    f"{episode.ways}-way episodes need {episode.ways} classes; {where} has {len(unit)}",
                )
            for label, members in zip(labels, unit, strict=True):
                if len(members) < need:
                    owner = f"{where}, class '{label}'" if self.data.format == "csv" else f"class '{label}'"
                    noun = "rows" if self.data.format == "csv" else "images"
                    raise DataError("shots", f"{owner} has {len(members)} {noun}; {wants} per class")

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
        assert x is not None
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
