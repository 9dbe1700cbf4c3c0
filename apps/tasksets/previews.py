"""A few tasks of a task-set version, for people to look at. Torch-free.

Tasks come from the version's fixed meta-validation list (task ``i`` is always
the same task), built with the engine's numpy families:

* 1-D regression: per task, uPlot-ready aligned data (support points, query
  points, and the true function when the family has ``truth``);
* image classification: per task, the support images of each class as small
  PNG data URIs (Pillow), drawn server-side;
* anything else (tabular features): the first support rows as numbers.

Versions are immutable, so a preview is cached by version and start. The key holds
the version's creation time beside its id: SQLite hands a deleted row's id to the
next new row, which must not inherit its predecessor's preview.
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.core.cache import cache

from apps.runfiles.store import StoreUnavailable
from apps.tasksets.files import version_data_path
from apps.tasksets.models import TaskSetVersion
from workers.metalearn.config import ConfigError, FamilySpec
from workers.metalearn.families import make_family
from workers.metalearn.types import DataError, EpisodeSpec, TaskBatch, TaskFamily

SPLIT = "val"
TASKS_PER_PAGE = 3
MAX_START = 600 - TASKS_PER_PAGE
REGRESSION_EPISODE = EpisodeSpec(shots=5, query=20)
MAX_WAYS = 5
IMAGE_SHOTS = 5
CURVE_POINTS = 200
TABLE_ROWS = 8
TABLE_COLUMNS = 6
CACHE_SECONDS = 3600
_CACHE_FORMAT = 1

#: Families whose inputs are flattened images, and their (height, width).
FLAT_IMAGE_SHAPES: dict[str, tuple[int, int]] = {"digits": (8, 8)}


@dataclass
class PreviewTask:
    task_id: int
    title: str
    dom_id: str = ""
    chart: dict[str, Any] | None = None
    classes: list[dict[str, Any]] = field(default_factory=list)
    table: dict[str, Any] | None = None


@dataclass
class Preview:
    kind: str  # "regression-chart" | "images" | "table" | "error"
    split: str
    start: int
    count: int
    episode: dict[str, int]
    tasks: list[PreviewTask] = field(default_factory=list)
    error: str = ""

    @property
    def next_start(self) -> int | None:
        nxt = self.start + self.count
        return nxt if nxt <= MAX_START else None

    @property
    def previous_start(self) -> int | None:
        return max(0, self.start - self.count) if self.start > 0 else None


def clamp_start(value: Any) -> int:
    try:
        start = int(value)
    except (TypeError, ValueError):
        return 0
    return min(max(start, 0), MAX_START)


def taskset_version_preview(*, version: TaskSetVersion, start: int = 0) -> Preview:
    """The preview of ``TASKS_PER_PAGE`` fixed val tasks from ``start`` (cached)."""
    start = clamp_start(start)
    key = f"tasksets:preview:{_CACHE_FORMAT}:{version.pk}:{version.created_at.timestamp()}:{start}"
    preview = cache.get(key)
    if preview is None:
        preview = _build(version=version, start=start)
        if preview.kind != "error":
            cache.set(key, preview, CACHE_SECONDS)
    return preview


def _build(*, version: TaskSetVersion, start: int) -> Preview:
    empty = {"shots": 0, "query": 0, "ways": 0}
    try:
        family = _family_for(version)
        episode, batch = _first_batch(family, start)
    except (ConfigError, DataError) as error:
        return Preview(kind="error", split=SPLIT, start=start, count=0, episode=empty, error=str(error))
    except StoreUnavailable as error:
        return Preview(kind="error", split=SPLIT, start=start, count=0, episode=empty, error=str(error))
    except FileNotFoundError:
        return Preview(
            kind="error",
            split=SPLIT,
            start=start,
            count=0,
            episode=empty,
            error="The data file is missing from storage.",
        )
    meta = {"shots": episode.shots, "query": episode.query, "ways": episode.ways}
    image_shape = _image_shape(family)
    if family.kind == "regression" and tuple(family.input_shape) == (1,):
        kind, tasks = "regression-chart", _regression_tasks(family, batch, version)
    elif family.kind == "classification" and image_shape is not None:
        kind, tasks = "images", _image_tasks(batch, episode, image_shape)
    else:
        kind, tasks = "table", _table_tasks(family, batch, episode)
    return Preview(kind=kind, split=SPLIT, start=start, count=len(tasks), episode=meta, tasks=tasks)


def _family_for(version: TaskSetVersion) -> TaskFamily:
    spec = FamilySpec(name=version.taskset.family, params=version.params or {})
    return make_family(spec, data_path=version_data_path(version))


def _first_batch(family: TaskFamily, start: int) -> tuple[EpisodeSpec, TaskBatch]:
    """The preview's tasks, with the largest episode the family's data allows
    (small uploads may hold only a few examples per class)."""
    if family.kind == "regression":
        episodes = [REGRESSION_EPISODE, EpisodeSpec(shots=5, query=5), EpisodeSpec(shots=1, query=1)]
    else:
        ways = max(2, min(MAX_WAYS, family.num_classes(SPLIT)))
        episodes = [EpisodeSpec(shots=shots, query=1, ways=ways) for shots in (IMAGE_SHOTS, 3, 1)]
    for episode in episodes[:-1]:
        try:
            return episode, family.fixed_tasks(SPLIT, episode, TASKS_PER_PAGE, start=start)
        except DataError:
            continue
    return episodes[-1], family.fixed_tasks(SPLIT, episodes[-1], TASKS_PER_PAGE, start=start)


def _image_shape(family: TaskFamily) -> tuple[int, int, int] | None:
    """(channels, height, width) when the family's inputs are images, else None."""
    explicit = getattr(family, "image_shape", None)
    shape = tuple(int(s) for s in (explicit or family.input_shape))
    if len(shape) == 3 and shape[0] in (1, 3):
        return shape  # type: ignore[return-value]
    if len(shape) == 2:
        return (1, *shape)  # type: ignore[return-value]
    flat = FLAT_IMAGE_SHAPES.get(family.name)
    if len(shape) == 1 and flat is not None and flat[0] * flat[1] == shape[0]:
        return (1, *flat)
    return None


def _r(value: float) -> float | None:
    value = float(value)
    return round(value, 4) if math.isfinite(value) else None


def _regression_tasks(family: TaskFamily, batch: TaskBatch, version: TaskSetVersion) -> list[PreviewTask]:
    tasks = []
    truth = getattr(family, "truth", None)
    desc_names = list(getattr(family, "desc_names", ()) or ())
    params = version.params or {}
    for i in range(len(batch)):
        xs, ys = batch.x_support[i, :, 0], batch.y_support[i, :, 0]
        xq, yq = batch.x_query[i, :, 0], batch.y_query[i, :, 0]
        points: dict[float, list[float | None]] = {}

        def put(x: float, column: int, y: float, points: dict[float, list[float | None]] = points) -> None:
            row = points.setdefault(_r(x), [None, None, None])  # type: ignore[arg-type]
            row[column] = _r(y)

        for x, y in zip(xs, ys, strict=True):
            put(x, 0, y)
        for x, y in zip(xq, yq, strict=True):
            put(x, 1, y)
        has_truth = callable(truth) and batch.desc is not None
        if has_truth:
            all_x = np.concatenate([xs, xq])
            low = float(params.get("x_min", all_x.min()))
            high = float(params.get("x_max", all_x.max()))
            grid = np.linspace(low, high, CURVE_POINTS, dtype=np.float32)
            curve = truth(batch.desc[i], grid[:, None])[:, 0]  # type: ignore[misc,index]
            for x, y in zip(grid, curve, strict=True):
                put(x, 2, y)
        xs_sorted = sorted(k for k in points if k is not None)
        series = [
            {"label": "support", "kind": "points", "values": [points[x][0] for x in xs_sorted]},
            {"label": "query", "kind": "points", "values": [points[x][1] for x in xs_sorted]},
        ]
        if has_truth:
            series.append(
                {"label": "true function", "kind": "line", "values": [points[x][2] for x in xs_sorted]}
            )
        title = f"Task {int(batch.task_ids[i])}"
        if batch.desc is not None and desc_names:
            title += " · " + ", ".join(
                f"{n} {float(v):.2f}" for n, v in zip(desc_names, batch.desc[i], strict=False)
            )
        task_id = int(batch.task_ids[i])
        tasks.append(
            PreviewTask(
                task_id=task_id,
                title=title,
                dom_id=f"preview-data-{version.pk}-{task_id}",
                chart={"x": xs_sorted, "series": series},
            )
        )
    return tasks


def png_data_uri(image: np.ndarray) -> str:
    """A small PNG data URI of one image: ``[C, H, W]`` (C = 1 or 3), values in
    [0, 1] (else scaled by their own range). Grey images are drawn dark on light."""
    from PIL import Image

    array = np.asarray(image, dtype=np.float32)
    if not np.isfinite(array).all():
        array = np.nan_to_num(array)
    low, high = float(array.min()), float(array.max())
    if low < 0 or high > 1:
        array = (array - low) / (high - low) if high > low else np.zeros_like(array)
    if array.shape[0] == 1:
        pixels = ((1.0 - array[0]) * 255).round().astype(np.uint8)
        picture = Image.fromarray(pixels, mode="L")
    else:
        pixels = (np.transpose(array, (1, 2, 0)) * 255).round().astype(np.uint8)
        picture = Image.fromarray(pixels, mode="RGB")
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _image_tasks(batch: TaskBatch, episode: EpisodeSpec, shape: tuple[int, int, int]) -> list[PreviewTask]:
    tasks = []
    for i in range(len(batch)):
        images = batch.x_support[i].reshape(-1, *shape)
        labels = batch.y_support[i]
        classes = []
        for c in range(episode.ways):
            members = images[labels == c]
            classes.append({"label": f"Class {c + 1}", "images": [png_data_uri(img) for img in members]})
        tasks.append(
            PreviewTask(
                task_id=int(batch.task_ids[i]), title=f"Task {int(batch.task_ids[i])}", classes=classes
            )
        )
    return tasks


def _table_tasks(family: TaskFamily, batch: TaskBatch, episode: EpisodeSpec) -> list[PreviewTask]:
    tasks = []
    names = list(family.describe().get("data", {}).get("feature_columns") or ())
    for i in range(len(batch)):
        x = batch.x_support[i].reshape(len(batch.x_support[i]), -1)
        y = batch.y_support[i].reshape(len(batch.y_support[i]), -1)[:, 0]
        width = min(TABLE_COLUMNS, x.shape[1])
        header = [names[j] if j < len(names) else f"x{j + 1}" for j in range(width)]
        if x.shape[1] > width:
            header.append("…")
        rows = []
        for r in range(min(TABLE_ROWS, len(x))):
            target = f"class {int(y[r]) + 1}" if family.kind == "classification" else f"{float(y[r]):.3g}"
            values = [f"{float(v):.3g}" for v in x[r, :width]]
            if x.shape[1] > width:
                values.append("")
            rows.append({"target": target, "values": values})
        tasks.append(
            PreviewTask(
                task_id=int(batch.task_ids[i]),
                title=f"Task {int(batch.task_ids[i])}",
                table={
                    "header": header,
                    "rows": rows,
                    "target": "class" if family.kind == "classification" else "y",
                },
            )
        )
    return tasks
