"""Forms for meta-models: the list's filter, uploads and alias moves. They
parse input into types; the rules live in the services, whose ValidationErrors come
back on these fields."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from apps.experiments.models import Experiment
from apps.registry.models import ALGORITHM_CHOICES
from apps.registry.selectors import metamodel_tasksets_for_team
from apps.tasksets.models import TaskSet, TaskSetVersion
from apps.teams.forms import json_text_value
from apps.teams.models import Team

#: Suggested aliases (any slug is allowed).
SUGGESTED_ALIASES = ("candidate", "production", "staging")
#: The upload form's starting config: the engine's sinusoid defaults.
DEFAULT_UPLOAD_CONFIG = {"algorithm": "maml", "hidden": [40, 40], "inner_lr": 0.01, "shots": 5, "query": 10}
MAX_CONFIG_CHARS = 16 * 1024


class MetaModelFilterForm(forms.Form):
    taskset = forms.ModelChoiceField(queryset=TaskSet.objects.none(), required=False, label="Task set")
    algorithm = forms.ChoiceField(choices=[("", "Any")] + ALGORITHM_CHOICES, required=False)

    def __init__(self, *args: Any, team: Team, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fields["taskset"].queryset = metamodel_tasksets_for_team(team=team)
        self.fields["taskset"].empty_label = "Any"

    def filters(self) -> dict[str, Any]:
        """The cleaned filters; an invalid value is ignored rather than an error."""
        self.is_valid()  # fills cleaned_data with the fields that are valid
        return {k: v for k, v in self.cleaned_data.items() if v}


class TaskSetVersionChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: TaskSetVersion) -> str:
        return f"{obj.taskset.name} v{obj.number} ({obj.taskset.family})"


class MetaModelUploadForm(forms.Form):
    name = forms.CharField(max_length=80, help_text="Versions count per name, e.g. sine-maml.")
    experiment = forms.ModelChoiceField(queryset=Experiment.objects.none(), empty_label=None)
    taskset_version = TaskSetVersionChoiceField(
        queryset=TaskSetVersion.objects.none(), empty_label=None, label="Task set version"
    )
    config = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 8, "spellcheck": "false"}),
        max_length=MAX_CONFIG_CHARS,
        initial=json.dumps(DEFAULT_UPLOAD_CONFIG, indent=2),
        help_text="The training config as JSON (the engine's field names); the family comes "
        "from the task set. The weights must fit the backbone it describes.",
    )
    weights_file = forms.FileField(
        label="Weights (safetensors)",
        help_text="A .safetensors file of float32 meta-parameters. Pickles (.pt, .bin, .pkl) are refused.",
        widget=forms.ClearableFileInput(attrs={"accept": ".safetensors"}),
    )
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)

    def __init__(self, *args: Any, team: Team, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fields["experiment"].queryset = Experiment.objects.filter(team=team).order_by("name")
        self.fields["taskset_version"].queryset = (
            TaskSetVersion.objects.filter(taskset__team=team)
            .select_related("taskset")
            .order_by("taskset__name", "-number")
        )

    def clean_config(self) -> dict[str, Any]:
        value = json_text_value(self.cleaned_data["config"])
        if not isinstance(value, dict):
            raise ValidationError("The configuration must be a JSON object.")
        return value


class AliasMoveForm(forms.Form):
    alias = forms.CharField(
        max_length=40,
        help_text="candidate, production, or any short name; production needs an approve verdict.",
        widget=forms.TextInput(attrs={"list": "alias-suggestions", "autocomplete": "off"}),
    )
