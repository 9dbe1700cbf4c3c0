"""The adaptation form: turns what people type or upload into plain lists.

A custom task is typed as lines of numbers ("x, y": the model's inputs then the
target), uploaded as a CSV file of the same columns, or, for image models, uploaded
as a zip of ``class/image.png`` or as several files named ``class_anything.png``.
Reading them is :mod:`apps.adaptations.uploads`'s job (the engine's one reader);
errors name the row or the file. The rules on the result (shapes, labels, shots,
the model's fit to its task set) live in ``adaptation_start``, whose errors come
back on these fields through :meth:`AdaptForm.add_service_errors`.
"""

from __future__ import annotations

import math
import re
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile

from apps.adaptations.checks import (
    DEFAULT_ADAPT_STEPS,
    MAX_ADAPT_SHOTS,
    MAX_ADAPT_STEPS,
    default_adapt_steps,
    steps_warning,
)
from apps.adaptations.models import AdaptationTarget
from apps.adaptations.selectors import ADAPT_TEST_TASKS, ModelFacts
from apps.adaptations.uploads import parse_images, parse_rows
from apps.experiments.models import Queue
from apps.teams.forms import add_service_errors

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


# -- description values ---------------------------------------------------------------


def _number(text: str, where: str) -> float:
    token = text.strip().strip("\"'")
    try:
        value = float(token)
    except ValueError:
        raise ValidationError(f"{where}: '{token[:20]}' is not a number.") from None
    if not math.isfinite(value):
        raise ValidationError(f"{where}: '{token[:20]}' is not a finite number (no NaN or inf).")
    return value


_EXAMPLE_NUMBERS = ("-2.5", "1.2", "0.3", "-0.8", "1.9", "2.1", "0.7", "-1.4", "1.1", "-0.2", "2.4", "0.5")
#: Beyond this many inputs the example names the columns instead of giving numbers.
_EXAMPLE_MAX_INPUTS = 4


def example_rows(facts: ModelFacts) -> str:
    """An example support set in the model's columns (its inputs, then the target or a
    class name), for the text box's placeholder: three points, or one example of each
    of a classifier's classes (named a, b, c, ...)."""
    n, last = facts.input_size, "class" if facts.classification else "y"
    if n > _EXAMPLE_MAX_INPUTS:
        return f"x1, x2, …, x{n}, {last}"
    lines = []
    for row in range(facts.ways if facts.classification else 3):
        cells = [_EXAMPLE_NUMBERS[(row * (n + 1) + k) % len(_EXAMPLE_NUMBERS)] for k in range(n + 1)]
        if facts.classification:
            cells[-1] = _class_name(row)
        lines.append(", ".join(cells))
    return "\n".join(lines)


def _class_name(index: int) -> str:
    """a, b, ..., z, then a1, b1, ..."""
    letter, round_ = chr(ord("a") + index % 26), index // 26
    return f"{letter}{round_}" if round_ else letter


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
        widget=forms.Textarea(attrs={"rows": 6}),
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
            self.fields["support_text"].widget.attrs["placeholder"] = example_rows(facts)
        if facts.needs_desc:  # only models that read the description ask for it
            self.fields["desc"].help_text = f"{facts.desc_dim} values separated by commas."
        else:
            del self.fields["desc"]
        if not facts.takes_steps:
            self.fields["steps"].help_text = f"{facts.algorithm} takes no inner step; ignored."
        self.fields["steps"].initial = default_adapt_steps(facts)
        if facts.spec.bounded_steps:
            self.fields["steps"].help_text += f" Meta-trained with {facts.inner_steps}; more can diverge."

    @property
    def trained_steps(self) -> int | None:
        """The inner steps beyond which the page warns (None: no such limit)."""
        if self.facts is None or not self.facts.spec.bounded_steps:
            return None
        return self.facts.inner_steps

    @property
    def steps_warning(self) -> str:
        """The warning the page shows once the steps typed pass the trained number."""
        if self.facts is None or self.trained_steps is None:
            return ""
        return steps_warning(self.facts, self.trained_steps + 1)

    @property
    def steps_exceeded(self) -> bool:
        """A bound form asking more steps than the model was trained for."""
        if not self.is_bound or self.trained_steps is None:
            return False
        try:
            return int(self.data.get("steps") or 0) > self.trained_steps
        except (TypeError, ValueError):
            return False

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
                return parse_rows(upload, facts=facts, classes=classes)
            return parse_rows(text, facts=facts, classes=classes)
        except ValidationError as exc:
            self.add_error(field, exc)
            return None

    def start_kwargs(self) -> dict[str, Any]:
        """``adaptation_start``'s arguments from the valid form (the actor and the
        meta-model aside): the parts that the chosen target uses, None for the rest."""
        data = self.cleaned_data
        target = data["target"]
        custom = target == AdaptationTarget.CUSTOM
        return {
            "target": target,
            "task_index": data.get("task_index") if target == AdaptationTarget.TEST_TASK else None,
            "shots": None if custom else data.get("shots"),
            "support": self.support if custom else None,
            "query": self.query if custom else None,
            "desc": self.desc_values if custom else None,
            "steps": data["steps"],
            "lr": data["lr"],
            "queue": data["queue"],
        }

    def add_service_errors(self, error: ValidationError) -> None:
        """Put ``adaptation_start``'s errors on the fields they name: its ``support``
        and ``query`` keys go on whichever field held that part of the task."""
        add_service_errors(self, error, aliases={"support": self.support_field, "query": self.query_field})
