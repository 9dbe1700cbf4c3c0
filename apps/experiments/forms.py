"""Forms for experiments and runs. They parse input into types; the rules live in the
services and in the engine's ``parse_config``, whose errors come back on these fields."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError

from apps.experiments.models import ALGORITHM_CHOICES, Experiment, Queue, RunStatus
from apps.experiments.selectors import taskset_list_launchable
from apps.tasksets.models import TaskSet
from apps.teams.models import Team
from workers.metalearn.config import TrainConfig

_DEFAULTS = TrainConfig()
DEVICE_CHOICES = [("auto", "Auto (CUDA when the worker has it)"), ("cpu", "CPU"), ("cuda", "CUDA")]
HIDDEN_MAX_LENGTH = 100


class ExperimentForm(forms.Form):
    name = forms.CharField(max_length=120)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)


def _number(field: type[forms.Field], name: str, help_text: str = "", **kwargs: Any) -> forms.Field:
    """A form field whose initial value and help come from the engine's TrainConfig."""
    info = TrainConfig.model_fields[name]
    return field(
        initial=getattr(_DEFAULTS, name),
        help_text=help_text or info.description or "",
        **kwargs,
    )


class RunLaunchForm(forms.Form):
    """The launch form. Ranges are checked by the engine's ``parse_config``, once."""

    experiment = forms.ModelChoiceField(queryset=Experiment.objects.none(), empty_label=None)
    algorithm = forms.ChoiceField(choices=ALGORITHM_CHOICES, initial=_DEFAULTS.algorithm)
    taskset = forms.ModelChoiceField(
        queryset=TaskSet.objects.none(),
        empty_label=None,
        label="Task set",
        help_text="Runs use the task set's latest version.",
    )

    inner_lr = _number(forms.FloatField, "inner_lr", label="Inner learning rate")
    inner_steps = _number(forms.IntegerField, "inner_steps", label="Inner steps")
    meta_lr = _number(forms.FloatField, "meta_lr", label="Meta learning rate")
    meta_batch = _number(forms.IntegerField, "meta_batch", label="Meta-batch size")
    shots = _number(forms.IntegerField, "shots")
    ways = _number(
        forms.IntegerField, "ways", help_text="Classes per episode (classification task sets only)."
    )
    query = _number(forms.IntegerField, "query")
    iterations = _number(forms.IntegerField, "iterations")
    eval_interval = _number(forms.IntegerField, "eval_interval", label="Eval interval")
    seed = _number(forms.IntegerField, "seed")
    first_order = forms.BooleanField(
        required=False, label="First-order", help_text="Drop second-order terms of the meta-gradient."
    )
    grad_clip = forms.FloatField(
        required=False, label="Gradient clip", help_text="Clip the meta-gradient's norm (empty: no clipping)."
    )
    device = forms.ChoiceField(choices=DEVICE_CHOICES, initial=_DEFAULTS.device)
    queue = forms.ChoiceField(choices=Queue.choices, initial=Queue.CPU)

    # Advanced and algorithm-specific settings.
    eval_tasks = _number(forms.IntegerField, "eval_tasks", label="Eval tasks")
    checkpoint_interval = _number(forms.IntegerField, "checkpoint_interval", label="Checkpoint interval")
    hidden = forms.CharField(
        max_length=HIDDEN_MAX_LENGTH,
        initial=", ".join(str(h) for h in _DEFAULTS.hidden),
        label="MLP hidden sizes",
        help_text="Comma-separated layer sizes, e.g. 40, 40 (regression backbones).",
    )
    conv_filters = _number(forms.IntegerField, "conv_filters", label="Conv filters")
    bf16 = forms.BooleanField(required=False, label="bf16 autocast", help_text="CUDA only.")
    compile = forms.BooleanField(
        required=False, label="torch.compile", help_text="Pays off on long runs only."
    )
    mnn_hidden = _number(forms.IntegerField, "mnn_hidden", label="MNN hidden size")
    mnn_embed_dim = _number(forms.IntegerField, "mnn_embed_dim", label="MNN embedding size")
    mnn_finetune_steps = _number(forms.IntegerField, "mnn_finetune_steps", label="MNN fine-tune steps")
    seed_mnn_epochs = _number(forms.IntegerField, "seed_mnn_epochs", label="seed-mnn epochs")

    cloned_from = forms.IntegerField(required=False, widget=forms.HiddenInput)

    #: Fields shown in the "advanced" section, and which algorithms use them.
    ADVANCED = ("eval_tasks", "checkpoint_interval", "hidden", "conv_filters", "bf16", "compile")
    EXTRAS = {
        "mnn_hidden": ("mnn", "seed-mnn"),
        "mnn_embed_dim": ("mnn", "seed-mnn"),
        "mnn_finetune_steps": ("mnn",),
        "seed_mnn_epochs": ("seed-mnn",),
    }
    #: Fields that are not part of the engine's config.
    NOT_CONFIG = ("experiment", "taskset", "queue", "cloned_from")

    def __init__(self, *args: Any, team: Team, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.team = team
        self.fields["experiment"].queryset = Experiment.objects.filter(team=team).order_by("name")
        self.fields["taskset"].queryset = taskset_list_launchable(team=team)

    def clean_hidden(self) -> list[int]:
        raw = self.cleaned_data["hidden"]
        try:
            sizes = [int(part) for part in raw.replace(" ", "").split(",") if part]
        except ValueError:
            raise ValidationError("Give whole numbers separated by commas, e.g. 40, 40.") from None
        if not sizes:
            raise ValidationError("Give at least one layer size.")
        return sizes

    def basic_fields(self) -> list[forms.BoundField]:
        skip = set(self.ADVANCED) | set(self.EXTRAS) | {"experiment", "algorithm", "taskset", "cloned_from"}
        return [self[name] for name in self.fields if name not in skip]

    def advanced_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in self.ADVANCED]

    def extra_fields(self) -> list[tuple[forms.BoundField, str]]:
        return [(self[name], ", ".join(algorithms)) for name, algorithms in self.EXTRAS.items()]

    def config(self) -> dict[str, Any]:
        """The engine config from the cleaned data (the family is the service's job)."""
        data = self.cleaned_data
        return {name: data[name] for name in self.fields if name not in self.NOT_CONFIG}

    def add_service_errors(self, error: ValidationError) -> None:
        """Put a service's ValidationError on the fields it names, the rest on the form."""
        if not hasattr(error, "error_dict"):
            self.add_error(None, error)
            return
        for field, errors in error.error_dict.items():
            if field in self.fields:
                self.add_error(field, errors)
            else:
                for item in errors:
                    for message in item.messages:
                        self.add_error(None, f"{field}: {message}")


class RunFilterForm(forms.Form):
    """Filters of the run list, from the query string; invalid values are ignored."""

    status = forms.ChoiceField(choices=[("", "Any status"), *RunStatus.choices], required=False)
    algorithm = forms.ChoiceField(choices=[("", "Any algorithm"), *ALGORITHM_CHOICES], required=False)
    taskset = forms.ModelChoiceField(
        queryset=TaskSet.objects.none(), required=False, empty_label="Any task set", label="Task set"
    )
    launched_by = forms.ModelChoiceField(
        queryset=get_user_model().objects.none(), required=False, empty_label="Anyone", label="Launched by"
    )
    date_from = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args: Any, team: Team, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fields["taskset"].queryset = TaskSet.objects.filter(team=team).order_by("name")
        self.fields["launched_by"].queryset = (
            get_user_model().objects.filter(memberships__team=team).order_by("username")
        )

    def filters(self) -> dict[str, Any]:
        """The valid filters; a field with a bad value is dropped rather than failing the page."""
        self.is_valid()
        return {name: value for name, value in self.cleaned_data.items() if value not in (None, "")}
