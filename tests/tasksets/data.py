"""Upload payloads for the task-set tests: good and bad CSVs and image zips."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

TABLE_PARAMS = {"kind": "classification", "task_column": "task", "target_column": "target"}


def good_csv(tasks: int = 4, classes: int = 2, rows: int = 6) -> bytes:
    lines = ["task,target,x1,x2"]
    rng = np.random.default_rng(0)
    for t in range(tasks):
        for c in range(classes):
            for _ in range(rows):
                x1, x2 = rng.normal(c, 0.5, size=2)
                lines.append(f"t{t},c{c},{x1:.3f},{x2:.3f}")
    return ("\n".join(lines) + "\n").encode()


def table_taskset(team, actor):
    """A ``table`` task set named "T" over :func:`good_csv`, created through the service."""
    from apps.tasksets.services import taskset_create

    return taskset_create(
        team=team,
        actor=actor,
        name="T",
        family="table",
        description="",
        params=TABLE_PARAMS,
        data_file=upload(good_csv()),
    )


def csv_missing_column() -> bytes:
    return b"task,label,x1\nt0,a,1.0\nt1,b,2.0\nt2,a,3.0\n"


def csv_non_numeric() -> bytes:
    return b"task,target,x1,x2\nt0,a,1.0,2.0\nt0,b,abc,2.0\nt1,a,1.0,2.0\n"


def png(size: tuple[int, int], value: int = 0) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((size[1], size[0]), value, dtype=np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def image_zip(sizes: dict[str, tuple[int, int]] | None = None, per_class: int = 3) -> bytes:
    """A zip of class/image.png; ``sizes`` maps a class to its images' size (8x8 by default)."""
    sizes = sizes or {}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for c in "abcd":
            for i in range(per_class):
                archive.writestr(f"{c}/{i}.png", png(sizes.get(c, (8, 8)), value=40 * i))
    return buffer.getvalue()


def upload(content: bytes, name: str = "data.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type="application/octet-stream")


def stored_files(media_root: Path) -> list[Path]:
    return sorted(p for p in Path(media_root).rglob("*") if p.is_file()) if Path(media_root).exists() else []
