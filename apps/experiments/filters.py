"""The run list's filters: ``RunFilterForm`` plus the kind of run, which defaults to
training runs so that adaptations do not crowd the list (or the algorithm filter)."""

from __future__ import annotations

from typing import Any

from django import forms

from apps.experiments.forms import RunFilterForm
from apps.experiments.models import RunKind
from apps.experiments.selectors import KIND_ALL

KIND_CHOICES = [
    (RunKind.TRAIN.value, "Training runs"),
    (RunKind.ADAPT.value, "Adaptations"),
    (KIND_ALL, "All kinds"),
]


class RunListFilterForm(RunFilterForm):
    kind = forms.ChoiceField(choices=KIND_CHOICES, required=False, initial=RunKind.TRAIN.value, label="Kind")

    field_order = ["kind"]

    def filters(self) -> dict[str, Any]:
        """The valid filters, with ``kind`` always set (training runs unless asked otherwise)."""
        filters = super().filters()
        filters.setdefault("kind", RunKind.TRAIN.value)
        return filters
