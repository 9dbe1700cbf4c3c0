"""Forms of the task-set pages.

A task set's family parameters are defined by the engine, as one pydantic model
per family (``workers.metalearn.families.FAMILY_PARAMS``). :class:`FamilyParamsForm`
turns that model into Django form fields (labels, descriptions, defaults and
bounds included) and validates the values with the model itself, so a form
error is exactly the engine's. The services validate again: forms are for the
user's benefit, services for correctness.
"""

from __future__ import annotations

import enum
import types
import typing
from typing import Any

import annotated_types
from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from apps.tasksets.models import ALLOWED_DATA_SUFFIXES, TaskSet
from apps.tasksets.uploads import DATA_FAMILIES, format_bytes
from workers.metalearn.config import FAMILIES, ConfigError
from workers.metalearn.families import FAMILY_PARAMS, parse_family_params

PARAMS_PREFIX = "params"


def family_choices() -> list[tuple[str, str]]:
    """Families the engine offers a parameter model for, in the engine's order."""
    return [(name, name) for name in FAMILIES if name in FAMILY_PARAMS]


# -- family parameters ----------------------------------------------------------------------------


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); anything else -> (annotation, False)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(annotation)) == 2:
            return args[0], True
    return annotation, False


def _bounds(info: FieldInfo) -> dict[str, Any]:
    bounds: dict[str, Any] = {}
    for item in info.metadata:
        if isinstance(item, annotated_types.Ge):
            bounds["min_value"] = item.ge
        elif isinstance(item, annotated_types.Le):
            bounds["max_value"] = item.le
    return bounds


def _sequence_to_text(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return value


class SequenceField(forms.CharField):
    """A comma-separated list, handed to pydantic as a list of strings."""

    def to_python(self, value: Any) -> list[str] | None:
        text = super().to_python(value)
        if not text:
            return None
        return [part.strip() for part in text.split(",") if part.strip()]

    def prepare_value(self, value: Any) -> Any:
        return _sequence_to_text(value)


def form_field_for(name: str, info: FieldInfo) -> forms.Field:
    """The Django form field for one pydantic field (its type, bounds and help)."""
    annotation, optional = _unwrap_optional(info.annotation)
    default = None if info.is_required() else info.get_default(call_default_factory=True)
    common: dict[str, Any] = {
        "label": name.replace("_", " ").capitalize(),
        "help_text": info.description or "",
        "required": info.is_required() and not optional,
        "initial": default,
    }
    origin = typing.get_origin(annotation)
    if annotation is bool:
        common["required"] = False
        return forms.BooleanField(**common)
    if annotation is int:
        return forms.IntegerField(**common, **_bounds(info))
    if annotation is float:
        field = forms.FloatField(**common, **_bounds(info))
        field.widget.attrs["step"] = "any"
        return field
    if origin is typing.Literal:
        choices = [(str(v), str(v)) for v in typing.get_args(annotation)]
        if optional:
            choices = [("", "—"), *choices]
        return forms.TypedChoiceField(choices=choices, empty_value=None, **common)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        choices = [(str(m.value), str(m.value)) for m in annotation]
        if optional:
            choices = [("", "—"), *choices]
        if isinstance(default, enum.Enum):
            common["initial"] = default.value
        return forms.TypedChoiceField(choices=choices, empty_value=None, **common)
    if origin in (list, tuple, set, frozenset):
        common["initial"] = _sequence_to_text(default)
        common["help_text"] = f"{common['help_text']} Comma-separated.".strip()
        return SequenceField(**common)
    return forms.CharField(**common)


class FamilyParamsForm(forms.Form):
    """One field per parameter of the family's pydantic model.

    After ``is_valid()``, :attr:`params` holds the validated parameters as JSON
    (every parameter, defaults included).
    """

    def __init__(self, *args: Any, family: str, **kwargs: Any) -> None:
        kwargs.setdefault("prefix", PARAMS_PREFIX)
        super().__init__(*args, **kwargs)
        self.family = family
        self.model: type[BaseModel] = FAMILY_PARAMS[family]
        self.params: dict[str, Any] = {}
        for name, info in self.model.model_fields.items():
            self.fields[name] = form_field_for(name, info)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if self.errors:
            return cleaned
        values = {name: value for name, value in cleaned.items() if value is not None}
        try:
            model = parse_family_params(self.family, values)
        except ConfigError as error:
            for key, message in error.errors.items():
                name = key.removeprefix("family.params").lstrip(".")
                self.add_error(name if name in self.fields else None, message)
            return cleaned
        self.params = model.model_dump(mode="json")
        return cleaned


def ordered_params(family: str, params: dict[str, Any]) -> list[tuple[str, Any]]:
    """Stored parameters in the family model's field order (JSONB keeps its own),
    then any keys the model no longer knows."""
    model = FAMILY_PARAMS.get(family)
    order = list(model.model_fields) if model is not None else []
    known = [(name, params[name]) for name in order if name in params]
    return known + sorted((k, v) for k, v in params.items() if k not in order)


def params_initial(family: str, params: dict[str, Any]) -> dict[str, Any]:
    """Initial form values from stored parameters (unknown keys dropped)."""
    fields = FAMILY_PARAMS[family].model_fields
    return {name: _sequence_to_text(value) for name, value in params.items() if name in fields}


# -- task sets and versions ---------------------------------------------------------------------


class DataFileField(forms.FileField):
    """An optional upload: a CSV, or a zip of ``class/*.png`` folders. Its size is
    checked from the upload's metadata, before anything reads it."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("label", "Data file")
        kwargs.setdefault("help_text", "A CSV, or a zip of class folders of PNG images.")
        super().__init__(**kwargs)
        self.widget.attrs["accept"] = ",".join(sorted(ALLOWED_DATA_SUFFIXES))

    def clean(self, data: Any, initial: Any = None) -> UploadedFile | None:
        upload = super().clean(data, initial)
        if not upload:
            return None
        limit = settings.TASKSET_UPLOAD_MAX_BYTES
        if upload.size is not None and upload.size > limit:
            raise ValidationError(
                f"The file is {format_bytes(upload.size)}; the limit is {format_bytes(limit)}.",
                code="too_large",
            )
        suffix = "." + upload.name.rsplit(".", 1)[-1].lower() if "." in upload.name else ""
        if suffix not in ALLOWED_DATA_SUFFIXES:
            raise ValidationError(
                "Upload a .csv file, or a .zip of class folders of PNG images.", code="suffix"
            )
        return upload


class _DataFileMixin:
    """Shared by both forms: an upload the request's limit handler refused shows
    up as a field error, as if the field had checked it."""

    def __init__(self, *args: Any, oversized: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[call-arg]
        self.oversized = oversized
        field = self.fields.get("data_file")  # type: ignore[attr-defined]
        if field is not None:
            limit = format_bytes(settings.TASKSET_UPLOAD_MAX_BYTES)
            field.help_text = f"{field.help_text} At most {limit}."

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()  # type: ignore[misc]
        if self.oversized:
            limit = format_bytes(settings.TASKSET_UPLOAD_MAX_BYTES)
            message = f"The file is larger than the limit of {limit}."
            field = "data_file" if "data_file" in self.fields else None  # type: ignore[attr-defined]
            self.add_error(field, message)  # type: ignore[attr-defined]
        return cleaned


class TaskSetCreateForm(_DataFileMixin, forms.Form):
    family = forms.ChoiceField(choices=family_choices, label="Task family")
    name = forms.CharField(max_length=TaskSet._meta.get_field("name").max_length, label="Name")
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False, max_length=5000)
    data_file = DataFileField()

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        family = cleaned.get("family")
        if family in DATA_FAMILIES and not cleaned.get("data_file") and "data_file" not in self.errors:
            self.add_error("data_file", "This family needs a data file.")
        if family and family not in DATA_FAMILIES and cleaned.get("data_file"):
            self.add_error("data_file", f"The {family} family takes no data file.")
        return cleaned


class TaskSetVersionForm(_DataFileMixin, forms.Form):
    """Editing a task set: a new version with a description, parameters and,
    for data families, an optional new file (else the previous one is kept)."""

    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False, max_length=5000)
    data_file = DataFileField(help_text="Leave empty to keep the current file.")

    def __init__(self, *args: Any, family: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.family = family
        if family not in DATA_FAMILIES:
            del self.fields["data_file"]
