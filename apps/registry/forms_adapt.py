"""The adaptation form: parses what people type or upload into plain lists.

A custom task is typed as lines of numbers ("x, y": the model's inputs then the
target), uploaded as a CSV file of the same columns, or, for image models, uploaded
as a zip of ``class/image.png`` or as several files named ``class_anything.png``.
Errors name the line or the file. The rules on the result (shapes, labels, shots,
the model's fit to its task set) live in ``adaptation_start``, whose errors come
back on these fields through :meth:`AdaptForm.add_service_errors`.
"""

from __future__ import annotations

import io
import math
import re
import zipfile
from pathlib import PurePosixPath
from typing import Any

import numpy as np
from django import forms
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile

from apps.experiments.models import Queue
from apps.registry.models import AdaptationTarget
from apps.registry.selectors.adaptations import ADAPT_TEST_TASKS, ModelFacts
from apps.registry.services.adaptations import (
    DEFAULT_ADAPT_STEPS,
    MAX_ADAPT_SHOTS,
    MAX_ADAPT_STEPS,
    MAX_SET_EXAMPLES,
)

#: Largest CSV file accepted for a support or query set.
MAX_CSV_BYTES = 2 * 1024 * 1024
#: Largest zip of images, and most images in one set.
MAX_ZIP_BYTES = 20 * 1024 * 1024
MAX_IMAGES = 600
MAX_IMAGE_BYTES = 2 * 1024 * 1024
#: Largest image accepted (as the task sets' image folders).
MAX_IMAGE_PIXELS = 256 * 256
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif"})

_SPLIT = re.compile(r"\s*[,;\t]\s*|\s+")


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """Several files in one input (Django's documented pattern)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("widget", MultipleFileInput())
        super().__init__(*args, **kwargs)

    def clean(self, data: Any, initial: Any = None) -> list[UploadedFile]:
        single = super().clean
        if isinstance(data, list | tuple):
            return [single(d, initial) for d in data if d]
        return [single(data, initial)] if data else []


# -- typed points and CSV files ---------------------------------------------------------


def _number(text: str, where: str) -> float:
    token = text.strip().strip("\"'")
    try:
        value = float(token)
    except ValueError:
        raise ValidationError(f"{where}: '{token[:20]}' is not a number.") from None
    if not math.isfinite(value):
        raise ValidationError(f"{where}: '{token[:20]}' is not a finite number (no NaN or inf).")
    return value


def _class_order(names: set[str]) -> list[str]:
    """Class names in label order: numerically when they are all whole numbers."""
    if all(re.fullmatch(r"-?\d+", n) for n in names):
        return sorted(names, key=int)
    return sorted(names)


def parse_rows(
    text: str, *, facts: ModelFacts, classes: list[str] | None = None, source: str = "line"
) -> dict[str, Any]:
    """Rows of ``inputs..., target`` -> ``{"x": [[...]], "y": [...]}`` (classification:
    ``y`` holds labels, ``classes`` the class names in label order). A first line that
    is not numeric is taken for a header. ``classes`` given (a query set): labels must
    be among them."""
    n_inputs = facts.input_size
    columns = n_inputs + 1
    what = "x, y" if n_inputs == 1 else f"{n_inputs} inputs and a target"
    xs: list[list[float]] = []
    raw_labels: list[tuple[str, str]] = []
    ys: list[float] = []
    first = True
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        where = f"{source} {number}"
        values = [v for v in _SPLIT.split(stripped) if v != ""]
        if first:
            first = False
            try:
                [float(v.strip("\"'")) for v in values[:n_inputs]]
            except ValueError:
                continue  # a header row
        if len(values) != columns:
            raise ValidationError(f"{where}: expected {columns} values ({what}), found {len(values)}.")
        xs.append([_number(v, where) for v in values[:n_inputs]])
        if facts.classification:
            raw_labels.append((values[-1].strip().strip("\"'"), where))
        else:
            ys.append(_number(values[-1], where))
        if len(xs) > MAX_SET_EXAMPLES:
            raise ValidationError(f"Give at most {MAX_SET_EXAMPLES} rows.")
    if not xs:
        raise ValidationError("Give at least 1 point (one line per point).")
    result: dict[str, Any] = {"x": xs}
    if not facts.classification:
        result["y"] = ys
        return result
    if classes is None:
        classes = _class_order({label for label, _ in raw_labels})
        _check_class_count(classes, facts)
    index = {name: i for i, name in enumerate(classes)}
    labels = []
    for label, where in raw_labels:
        if label not in index:
            raise ValidationError(f"{where}: class '{label[:40]}' is not one of the support set's classes.")
        labels.append(index[label])
    result["y"] = labels
    result["classes"] = classes
    return result


def _check_class_count(classes: list[str], facts: ModelFacts) -> None:
    if len(classes) != facts.ways:
        shown = ", ".join(c[:20] for c in classes[:8]) + (", ..." if len(classes) > 8 else "")
        raise ValidationError(
            f"Found {len(classes)} classes ({shown}); this model tells {facts.ways} classes apart, "
            f"so give images of exactly {facts.ways} classes, at least 1 each."
        )


def read_text_upload(upload: UploadedFile) -> str:
    if upload.size and upload.size > MAX_CSV_BYTES:
        raise ValidationError(f"{upload.name} is larger than {MAX_CSV_BYTES // (1024 * 1024)} MB.")
    data = upload.read(MAX_CSV_BYTES + 1)
    if len(data) > MAX_CSV_BYTES:
        raise ValidationError(f"{upload.name} is larger than {MAX_CSV_BYTES // (1024 * 1024)} MB.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValidationError(f"{upload.name} is not a UTF-8 text (CSV) file.") from None


# -- images ------------------------------------------------------------------------------


def _decode_image(name: str, data: bytes) -> list[list[float]]:
    """A grey image as rows of values in [0, 1]."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise ValidationError(f"{name}: the file is empty.")
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise ValidationError(f"{name} is {image.width}x{image.height} pixels; the limit is 256x256.")
            pixels = np.asarray(image.convert("L"), dtype=np.float64) / 255.0
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        raise ValidationError(f"{name} is not a readable image.") from None
    return pixels.tolist()


def _zip_entries(upload: UploadedFile) -> list[tuple[str, str, bytes]]:
    """``(class, name, bytes)`` of each image in a zip laid out as ``class/image.png``
    (one folder around the classes is allowed)."""
    if upload.size and upload.size > MAX_ZIP_BYTES:
        raise ValidationError(f"{upload.name} is larger than {MAX_ZIP_BYTES // (1024 * 1024)} MB.")
    try:
        archive = zipfile.ZipFile(upload)
    except (zipfile.BadZipFile, OSError):
        raise ValidationError(f"{upload.name} is not a readable zip file.") from None
    found: list[tuple[list[str], str, bytes]] = []
    with archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            parts = [p for p in PurePosixPath(info.filename.replace("\\", "/")).parts if p not in ("", ".")]
            if ".." in parts or info.filename.startswith("/"):
                raise ValidationError(f"{info.filename}: paths must stay inside the zip.")
            if not parts or any(p.startswith(".") or p == "__MACOSX" for p in parts):
                continue
            if len(found) >= MAX_IMAGES:
                raise ValidationError(f"{upload.name} holds more than {MAX_IMAGES} files.")
            if info.file_size > MAX_IMAGE_BYTES:
                raise ValidationError(f"{info.filename} is larger than 2 MB.")
            try:
                data = archive.read(info)
            except (RuntimeError, zipfile.BadZipFile, NotImplementedError, OSError):
                raise ValidationError(f"{info.filename} cannot be read from the zip.") from None
            found.append((parts, info.filename, data))
    if not found:
        raise ValidationError(f"{upload.name} holds no images; lay them out as class/image.png.")
    strip = len({parts[0] for parts, _, _ in found}) == 1 and all(len(parts) == 3 for parts, _, _ in found)
    entries = []
    for parts, name, data in found:
        parts = parts[1:] if strip else parts
        if len(parts) != 2:
            raise ValidationError(
                f"{name}: put each image in a folder named after its class (class/image.png)."
            )
        if PurePosixPath(name).suffix.lower() not in IMAGE_SUFFIXES:
            raise ValidationError(f"{name} is not an image ({', '.join(sorted(IMAGE_SUFFIXES))}).")
        entries.append((parts[0], name, data))
    return entries


def _file_entries(uploads: list[UploadedFile]) -> list[tuple[str, str, bytes]]:
    """``(class, name, bytes)`` of separately uploaded images named ``class_anything.png``."""
    if len(uploads) > MAX_IMAGES:
        raise ValidationError(f"Give at most {MAX_IMAGES} images.")
    entries = []
    for upload in uploads:
        name = PurePosixPath(upload.name or "image").name
        path = PurePosixPath(name)
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise ValidationError(f"{name} is not an image ({', '.join(sorted(IMAGE_SUFFIXES))}) or a zip.")
        if "_" not in path.stem or not path.stem.split("_", 1)[0]:
            raise ValidationError(f"{name}: name each image after its class, as class_anything.png.")
        if upload.size and upload.size > MAX_IMAGE_BYTES:
            raise ValidationError(f"{name} is larger than 2 MB.")
        entries.append((path.stem.split("_", 1)[0], name, upload.read(MAX_IMAGE_BYTES + 1)))
    return entries


def parse_images(
    uploads: list[UploadedFile], *, facts: ModelFacts, classes: list[str] | None = None
) -> dict[str, Any]:
    """Images per class -> ``{"x": [[flat pixels]], "y": [labels], "classes": [...],
    "names": [...]}``. All images must share one size, the model's."""
    shape = facts.image_shape
    assert shape is not None
    if len(uploads) == 1 and PurePosixPath(uploads[0].name or "").suffix.lower() == ".zip":
        entries = _zip_entries(uploads[0])
    elif any(PurePosixPath(u.name or "").suffix.lower() == ".zip" for u in uploads):
        raise ValidationError("Upload one zip file, or several image files, not both.")
    else:
        entries = _file_entries(uploads)
    if not entries:
        raise ValidationError("Give at least 1 image for each class.")
    height, width = shape
    first: tuple[str, int, int] | None = None
    pixels: list[list[float]] = []
    names: list[str] = []
    class_of: list[str] = []
    for cls, name, data in sorted(entries, key=lambda e: (e[0], e[1])):
        image = _decode_image(name, data)
        h, w = len(image), len(image[0]) if image else 0
        if first is None:
            first = (name, h, w)
        elif (h, w) != first[1:]:
            raise ValidationError(
                f"{name} is {w}x{h} pixels but {first[0]} is {first[2]}x{first[1]}; "
                "all images must share one size."
            )
        if (h, w) != (height, width):
            raise ValidationError(f"{name} is {w}x{h} pixels; this model takes {width}x{height} images.")
        pixels.append([v for row in image for v in row])
        names.append(name[:200])
        class_of.append(cls)
    if classes is None:
        classes = _class_order(set(class_of))
        _check_class_count(classes, facts)
    index = {c: i for i, c in enumerate(classes)}
    labels = []
    for cls, name in zip(class_of, names, strict=True):
        if cls not in index:
            raise ValidationError(f"{name}: class '{cls[:40]}' is not one of the support set's classes.")
        labels.append(index[cls])
    return {"x": pixels, "y": labels, "classes": classes, "names": names}


# -- the form ------------------------------------------------------------------------------


class AdaptForm(forms.Form):
    """Adapt a meta-model. Fields for typed points or images are kept according to the
    model (``facts``); without facts (the checkpoint is missing) the form cannot be
    submitted and says why."""

    target = forms.ChoiceField(
        choices=AdaptationTarget.choices, widget=forms.RadioSelect, initial=AdaptationTarget.TEST_TASK
    )
    task_index = forms.IntegerField(
        required=False,
        min_value=0,
        max_value=ADAPT_TEST_TASKS - 1,
        initial=0,
        label="Meta-test task",
        help_text=(
            f"One of the task set's {ADAPT_TEST_TASKS} fixed meta-test tasks (0 to {ADAPT_TEST_TASKS - 1})."
        ),
    )
    support_text = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 6, "placeholder": "-2.5, 1.2\n0.3, -0.8\n1.9, 2.1"}),
        label="Support set",
        help_text="One point per line: the inputs, then the target.",
    )
    support_file = forms.FileField(required=False, label="…or a CSV file of the support set")
    query_text = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        label="Query set (optional)",
        help_text="Held-out points to score the adapted model on, same columns.",
    )
    query_file = forms.FileField(required=False, label="…or a CSV file of the query set")
    support_images = MultipleFileField(
        required=False,
        label="Support images",
        help_text=(
            "A zip laid out as class/image.png, or several files named class_anything.png: "
            "at least 1 image of each class, grey levels as the task set stores them."
        ),
    )
    query_images = MultipleFileField(
        required=False, label="Query images (optional)", help_text="Same layout, same classes."
    )
    desc = forms.CharField(
        required=False,
        max_length=1000,
        label="Task description",
        help_text="The task's description values, separated by commas.",
    )
    shots = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_ADAPT_SHOTS,
        label="Shots",
        help_text="Support examples per meta-test task (per class when classifying).",
    )
    steps = forms.IntegerField(
        min_value=0,
        max_value=MAX_ADAPT_STEPS,
        initial=DEFAULT_ADAPT_STEPS,
        label="Inner steps",
        help_text=f"0 to {MAX_ADAPT_STEPS}.",
    )
    lr = forms.FloatField(label="Learning rate", help_text="Inner-loop learning rate, above 0.")
    queue = forms.ChoiceField(choices=Queue.choices, initial=Queue.CPU)

    def __init__(self, *args: Any, facts: ModelFacts | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if facts is not None:
            self.fields["shots"].help_text += (
                f" Empty: the {facts.shots} the model was meta-trained with"
                " (e.g. train at K=10, test at K=5)."
            )
        self.facts = facts
        self.support: dict[str, Any] | None = None
        self.query: dict[str, Any] | None = None
        self.desc_values: list[float] | None = None
        self.support_field = "support_text"
        self.query_field = "query_text"
        if facts is None:
            return
        self.fields["lr"].initial = facts.inner_lr
        if facts.image_shape is not None:
            for name in ("support_text", "support_file", "query_text", "query_file"):
                del self.fields[name]
            self.support_field, self.query_field = "support_images", "query_images"
            height, width = facts.image_shape
            self.fields["support_images"].help_text += f" The model takes {width}x{height} images."
        else:
            for name in ("support_images", "query_images"):
                del self.fields[name]
            columns = facts.input_size + 1
            if facts.input_size == 1:
                what = "x, y" if not facts.classification else "x, class"
            else:
                what = f"{facts.input_size} inputs, then the {'class' if facts.classification else 'target'}"
            self.fields["support_text"].help_text = f"One example per line, {columns} values: {what}."
        if facts.needs_desc:  # only models that read the description ask for it
            self.fields["desc"].help_text = f"{facts.desc_dim} values separated by commas."
        else:
            del self.fields["desc"]
        if not facts.takes_steps:
            self.fields["steps"].help_text = f"{facts.algorithm} takes no inner step; ignored."

    @property
    def is_images(self) -> bool:
        return "support_images" in self.fields

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if self.facts is None:
            raise ValidationError("This meta-model's checkpoint is missing; it cannot be adapted.")
        target = cleaned.get("target")
        if target == AdaptationTarget.TEST_TASK and cleaned.get("task_index") is None:
            if "task_index" not in self.errors:
                self.add_error("task_index", "Pick a meta-test task.")
        if target == AdaptationTarget.CUSTOM:
            self._clean_custom(cleaned)
        return cleaned

    def _clean_custom(self, cleaned: dict[str, Any]) -> None:
        facts = self.facts
        assert facts is not None
        if self.is_images:
            uploads = cleaned.get("support_images") or []
            if not uploads:
                self.add_error("support_images", "Give at least 1 image for each class.")
                return
            try:
                self.support = parse_images(uploads, facts=facts)
            except ValidationError as exc:
                self.add_error("support_images", exc)
                return
            queries = cleaned.get("query_images") or []
            if queries:
                try:
                    self.query = parse_images(queries, facts=facts, classes=self.support["classes"])
                except ValidationError as exc:
                    self.add_error("query_images", exc)
        else:
            self.support = self._rows(cleaned, "support", required=True)
            if self.support is not None:
                self.query = self._rows(cleaned, "query", required=False, classes=self.support.get("classes"))
        if "desc" in self.fields:
            raw = (cleaned.get("desc") or "").strip()
            if raw:
                try:
                    self.desc_values = [_number(v, "value") for v in _SPLIT.split(raw) if v]
                except ValidationError as exc:
                    self.add_error("desc", exc)

    def _rows(
        self, cleaned: dict[str, Any], which: str, *, required: bool, classes: list[str] | None = None
    ) -> dict[str, Any] | None:
        facts = self.facts
        assert facts is not None
        text = (cleaned.get(f"{which}_text") or "").strip()
        upload = cleaned.get(f"{which}_file")
        if text and upload:
            self.add_error(f"{which}_file", "Give the points either typed or as a file, not both.")
            return None
        field = f"{which}_file" if upload else f"{which}_text"
        if which == "support":
            self.support_field = field
        else:
            self.query_field = field
        if not text and not upload:
            if required:
                self.add_error(f"{which}_text", "Give at least 1 point (one line per point).")
            return None
        try:
            if upload:
                return parse_rows(read_text_upload(upload), facts=facts, classes=classes, source="line")
            return parse_rows(text, facts=facts, classes=classes)
        except ValidationError as exc:
            self.add_error(field, exc)
            return None

    def add_service_errors(self, error: ValidationError) -> None:
        """Put ``adaptation_start``'s errors on the fields they name."""
        if not hasattr(error, "error_dict"):
            self.add_error(None, error)
            return
        fields = {"support": self.support_field, "query": self.query_field}
        for key, messages in error.error_dict.items():
            field = fields.get(key, key)
            self.add_error(field if field in self.fields else None, messages)
