"""Forms of the reviews app: a verdict, and the side-by-side page's query
(``?a=<adapted model id>&a=...&m=<meta-model id>&m=...``)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from apps.reviews.models import Verdict

#: More ids than this is not a comparison but a malformed (or hostile) query string.
MAX_IDS = 50


class IdListField(forms.Field):
    """A repeated query parameter of positive integer ids, in the order given."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value: Any) -> list[int]:
        values = [v for v in (value or []) if str(v).strip()]
        if len(values) > MAX_IDS:
            raise ValidationError(f"At most {MAX_IDS} ids.")
        ids: list[int] = []
        for raw in values:
            text = str(raw).strip()
            if not text.isascii() or not text.isdigit() or len(text) > 18 or int(text) < 1:
                raise ValidationError("Not a model id.")
            ids.append(int(text))
        return ids


class CompareForm(forms.Form):
    a = IdListField(required=False, label="Adapted models")
    m = IdListField(required=False, label="Meta-models")

    def picked(self) -> tuple[list[int], list[int]]:
        """(adapted ids, meta-model ids) once valid."""
        return self.cleaned_data.get("a") or [], self.cleaned_data.get("m") or []

    def error_text(self) -> str:
        return " ".join(str(e) for errors in self.errors.values() for e in errors)


class ReviewForm(forms.Form):
    verdict = forms.ChoiceField(choices=Verdict.choices, widget=forms.RadioSelect)
    comment = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False, max_length=5000)
