"""The adaptation form's uploads, read by the engine's one reader.

Typed points and CSV files go through :func:`workers.metalearn.uploads.read_points`
(its rule: a header column ``y``, ``label`` or ``target`` wherever it is, else the
last column), images through its zip and header checks, under the caps below.
The results are plain lists for ``adaptation_start``; the engine's errors become
``ValidationError`` naming the row, column or file.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator
from pathlib import PurePosixPath
from typing import IO, Any

import numpy as np
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile

from apps.adaptations.checks import MAX_SET_EXAMPLES, MAX_SET_VALUES
from apps.adaptations.selectors import ModelFacts
from workers.metalearn.types import DataError
from workers.metalearn.uploads import (
    DEFAULT_LIMITS,
    ImageFile,
    check_class_count,
    check_file_size,
    check_images,
    class_order,
    label_indices,
    named_images,
    open_zip,
    read_points,
)

#: The adaptation form's caps, tighter than the engine's defaults: a CSV file of
#: points, a zip (or loose files) of images, and the set sizes the service accepts
#: (the decoded pixels of a set are at most ``MAX_SET_VALUES``, read from headers).
MAX_CSV_BYTES = 2 * 1024 * 1024
MAX_ZIP_BYTES = 20 * 1024 * 1024
MAX_IMAGES = 600
ROW_LIMITS = DEFAULT_LIMITS.tightened(max_file_bytes=MAX_CSV_BYTES, max_rows=MAX_SET_EXAMPLES)
IMAGE_LIMITS = DEFAULT_LIMITS.tightened(
    max_file_bytes=MAX_ZIP_BYTES,
    max_unpacked_bytes=MAX_ZIP_BYTES,
    max_entries=MAX_IMAGES,
    max_total_pixels=MAX_SET_VALUES,
)
#: Error fields that name no place: their message stands alone.
_GENERIC_FIELDS = frozenset({"", "data", "classes", "images"})


def _invalid(error: DataError) -> ValidationError:
    """The engine's error as the form shows it: the place, then what is wrong."""
    message = error.message.rstrip(".") + "."
    if error.field in _GENERIC_FIELDS:
        return ValidationError(message[:1].upper() + message[1:])
    return ValidationError(f"{error.field}: {message}")


def _labelled(names: list[str], where: list[str], facts: ModelFacts, classes: list[str] | None) -> dict:
    """``{"y": labels, "classes": names}``; without ``classes`` (a support set) the
    classes found must be the model's ``ways``."""
    if classes is None:
        classes = class_order(names)
        check_class_count(classes, facts.ways)
    return {"y": label_indices(names, classes, where), "classes": classes}


def parse_rows(
    source: str | UploadedFile, *, facts: ModelFacts, classes: list[str] | None = None
) -> dict[str, Any]:
    """Typed text or a CSV upload of ``inputs..., target`` rows (the rule of
    :mod:`workers.metalearn.uploads.points`) -> ``{"x": [[...]], "y": [...]}``
    (classification: ``y`` holds labels, ``classes`` the class names in label
    order). ``classes`` given (a query set): labels must be among them."""
    try:
        if isinstance(source, str):
            points = read_points(
                source, input_size=facts.input_size, classification=facts.classification, limits=ROW_LIMITS
            )
        else:
            name = PurePosixPath(source.name or "data.csv").name
            check_file_size(name, source.size or 0, ROW_LIMITS)
            source.seek(0)
            points = read_points(
                source.file,
                input_size=facts.input_size,
                classification=facts.classification,
                name=name,
                limits=ROW_LIMITS,
            )
        result: dict[str, Any] = {"x": points.x.tolist()}
        if facts.classification:
            assert points.labels is not None
            return {**result, **_labelled(points.labels, points.where, facts, classes)}
        assert points.y is not None
        return {**result, "y": points.y.tolist()}
    except DataError as error:
        raise _invalid(error) from None


def _upload_opener(upload: UploadedFile) -> Callable[[], IO[bytes]]:
    def opener() -> IO[bytes]:
        upload.seek(0)
        return io.BytesIO(upload.read(IMAGE_LIMITS.max_entry_bytes + 1))

    return opener


@contextlib.contextmanager
def _image_files(uploads: list[UploadedFile]) -> Iterator[list[ImageFile]]:
    """One zip laid out ``class/image.png``, or loose files named ``class_anything.png``."""
    zips = [u for u in uploads if PurePosixPath(u.name or "").suffix.lower() == ".zip"]
    if zips and len(uploads) > 1:
        raise DataError("", "Upload one zip file, or several image files, not both")
    if not zips:
        yield named_images(
            [(u.name or "", u.size or 0, _upload_opener(u)) for u in uploads], limits=IMAGE_LIMITS
        )
        return
    name = PurePosixPath(zips[0].name or "images.zip").name
    check_file_size(name, zips[0].size or 0, IMAGE_LIMITS)
    with open_zip(zips[0], name=name, limits=IMAGE_LIMITS) as files:
        yield files


def parse_images(
    uploads: list[UploadedFile], *, facts: ModelFacts, classes: list[str] | None = None
) -> dict[str, Any]:
    """Images per class -> ``{"x": [[flat pixels]], "y": [labels], "classes": [...],
    "names": [...]}``. Sizes are checked from the image headers (one size for all,
    the model's, and at most ``MAX_SET_VALUES`` pixels in all) before any is decoded."""
    assert facts.image_shape is not None
    height, width = facts.image_shape
    try:
        with _image_files(uploads) as files:
            images = check_images(files, where="images", limits=IMAGE_LIMITS)
            if (images.height, images.width) != (height, width):
                first = images.files[0].name
                raise DataError(
                    first,
                    f"is {images.width}x{images.height} pixels; this model takes {width}x{height} images",
                )
            pixels = [(images.decode(f).astype(np.float64) / 255.0).ravel().tolist() for f in images.files]
        names = [f.name[:200] for f in images.files]
        labelled = _labelled([f.cls for f in images.files], names, facts, classes)
    except DataError as error:
        raise _invalid(error) from None
    return {"x": pixels, **labelled, "names": names}
