"""The launch form's "Sweep" section: a strategy, and one dimension text per setting
that applies (syntax in :mod:`apps.experiments.sweeps.dimensions`). It only parses
types; ``services.sweep_create`` is the authority on every rule."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import forms
from django.conf import settings

from apps.experiments.models import SweepStrategy
from apps.experiments.services.sweeps import MAX_CONCURRENT
from apps.experiments.sweeps.fields import SWEEP_METRICS, sweepable_fields

PREFIX = "dim_"
DIMENSION_HELP = (
    "A list (0.01, 0.1), a range (1..5 step 1) or, for random, ASHA and Bayesian, "
    "a log range (1e-4..1e-1 log)."
)


def _placeholder(value_type: str, choices: tuple[str, ...]) -> str:
    if value_type == "bool":
        return "true, false"
    if value_type == "choice":
        return ", ".join(choices)
    return "e.g. 1, 2, 4 or 1..5 step 1" if value_type == "int" else "e.g. 0.01, 0.1 or 1e-4..1e-1 log"


class SweepForm(forms.Form):
    """``strategy`` empty: a single run (the rest is ignored)."""

    sweep_strategy = forms.ChoiceField(
        choices=[("", "No sweep: one run"), *SweepStrategy.choices],
        required=False,
        label="Strategy",
        help_text="Grid: every combination. Random: N seeded samples. ASHA: random, the worst stop early. "
        "Bayesian: 5 random samples, then each next one proposed from the results so far (TPE).",
    )
    sweep_samples = forms.IntegerField(
        required=False,
        min_value=1,
        initial=6,
        label="Samples",
        help_text="Runs of a random, ASHA or Bayesian sweep.",
    )
    sweep_seed = forms.IntegerField(required=False, initial=0, label="Sampling seed")
    sweep_metric = forms.ChoiceField(
        choices=[
            (name, f"{name} ({'higher' if up else 'lower'} is better)") for name, up in SWEEP_METRICS.items()
        ],
        initial="val_loss",
        required=False,
        label="Rank by",
    )
    sweep_max_concurrent = forms.IntegerField(
        min_value=1, max_value=MAX_CONCURRENT, initial=2, required=False, label="At most running at once"
    )
    sweep_early_stop = forms.BooleanField(
        required=False,
        label="Stop poor runs early",
        help_text="At ASHA's rungs (the first evaluation, then ×3), a run outside the top third stops. "
        "Always on for ASHA.",
    )
    sweep_name = forms.CharField(max_length=120, required=False, label="Sweep name")

    def __init__(self, *args: Any, applicable: Iterable[str], labels: dict[str, str], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.max_runs = settings.SWEEP_MAX_RUNS
        for name in labels:  # in the launch form's order
            if name in applicable and name in sweepable_fields():
                value_type, choices = sweepable_fields()[name]
                self.fields[PREFIX + name] = forms.CharField(
                    required=False,
                    max_length=500,
                    label=labels[name],
                    help_text=DIMENSION_HELP,
                    widget=forms.TextInput(attrs={"placeholder": _placeholder(value_type, choices)}),
                )

    @property
    def wanted(self) -> bool:
        """Whether the user asked for a sweep rather than one run."""
        return bool(self.is_bound and self.data.get("sweep_strategy"))

    def refuse_stray_dimensions(self) -> bool:
        """For one run (no strategy): put an error on the strategy when dimensions were
        given anyway, which one run would silently ignore; True when it did."""
        if not self.is_bound or self.wanted:
            return False
        stray = [
            self[name].label
            for name in self.fields
            if name.startswith(PREFIX) and self.data.get(name, "").strip()
        ]
        if not stray:
            return False
        self.is_valid()  # the errors of the other fields too, and an error list to add to
        self.add_error(
            "sweep_strategy",
            f"Values to sweep over are given for {', '.join(map(str, stray))}: choose a strategy, "
            "or clear them to launch one run.",
        )
        return True

    def dimension_fields(self) -> list[forms.BoundField]:
        return [
            self[name]
            for name in self.fields
            if name.startswith(PREFIX) and name[len(PREFIX) :] in sweepable_fields()
        ]

    def option_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in self.base_fields]

    def dimensions(self) -> dict[str, str]:
        return {
            name[len(PREFIX) :]: self.data.get(name, "")
            for name in self.data
            if name.startswith(PREFIX) and name[len(PREFIX) :] in sweepable_fields()
        }

    def options(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "strategy": data["sweep_strategy"],
            "samples": data.get("sweep_samples") or 0,
            "seed": data.get("sweep_seed") or 0,
            "metric": data.get("sweep_metric") or "val_loss",
            "max_concurrent": data.get("sweep_max_concurrent") or 1,
            "name": data.get("sweep_name") or "",
            "early_stop": bool(data.get("sweep_early_stop")),
        }
