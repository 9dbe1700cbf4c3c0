"""Forms for experiments and runs. They parse input into types; the rules live in the
services and in the engine's ``parse_config``, whose errors come back on these fields."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, get_args

from django import forms
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError

from apps.experiments.models import ALGORITHM_CHOICES, Experiment, Queue, RunStatus
from apps.experiments.selectors import (
    LaunchFacts,
    taskset_family_facts,
    taskset_latest_version,
    taskset_list_launchable,
)
from apps.tasksets.models import TaskSet
from apps.teams.models import Team
from workers.metalearn.compiling import auto_rule
from workers.metalearn.config import MetaLrSchedule, TrainConfig
from workers.metalearn.specs import ALGORITHM_FIELDS, MNN_CONDITIONS, SPECS, launch_fields

_DEFAULTS = TrainConfig()
DEVICE_CHOICES = [("auto", "Auto (CUDA when the worker has it)"), ("cpu", "CPU"), ("cuda", "CUDA")]
HIDDEN_MAX_LENGTH = 100


def _whole(value: Any) -> int | None:
    """``value`` as a whole number, or None (a prefilled field may hold any text)."""
    try:
        return int(str(value))
    except ValueError:
        return None


#: The episode settings that a task set's bounds may lower, in the order they are lowered.
FITTED_FIELDS = ("ways", "query", "shots")
FITTED_MAX_LENGTH = 100


def fit_episode(
    values: Mapping[str, int | None], *, most_ways: int | None, most_examples: int | None
) -> dict[str, int]:
    """The episode settings of ``values`` to lower to fit the bounds: ways to
    ``most_ways`` (at least 2), then shots + query to ``most_examples``, query first
    (down to 1), then shots."""
    lowered: dict[str, int] = {}
    ways, shots, query = (values.get(name) for name in ("ways", "shots", "query"))
    if most_ways is not None and most_ways >= 2 and ways is not None and ways > most_ways:
        lowered["ways"] = most_ways
    if most_examples is None or most_examples < 2 or shots is None or query is None:
        return lowered
    if shots + query > most_examples:
        new_query = max(1, most_examples - shots)
        lowered["query"] = new_query
        if shots + new_query > most_examples:
            lowered["shots"] = most_examples - new_query
    return lowered


def parse_fitted(text: Any) -> dict[str, tuple[int, int]]:
    """``"query:10>7,ways:5>3"`` -> ``{"query": (10, 7), "ways": (5, 3)}``; anything
    else in it is ignored (it comes back from the browser)."""
    found: dict[str, tuple[int, int]] = {}
    for part in str(text or "")[:FITTED_MAX_LENGTH].split(","):
        name, _, values = part.partition(":")
        was, _, now = values.partition(">")
        if name in FITTED_FIELDS and was.isdigit() and now.isdigit():
            found[name] = (int(was), int(now))
    return found


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


ALGORITHM_LABELS = [(spec.name, spec.label) for spec in SPECS.values()]
MNN_CONDITION_LABELS = {
    "description": "The task's description",
    "support": "The support set (a set encoder over the K shots)",
}
MNN_CONDITION_CHOICES = [(name, MNN_CONDITION_LABELS[name]) for name in MNN_CONDITIONS]


class RunLaunchForm(forms.Form):
    """The launch form. Ranges are checked by the engine's ``parse_config``, once.

    Only the settings that apply to the chosen algorithm and task set are fields
    (:func:`workers.metalearn.specs.launch_fields`); the others are dropped, so a
    submitted value for them is ignored and the engine's default is used. Values
    typed into a setting that no longer applies are carried along as hidden inputs
    (``carried``), so that switching back shows them again.
    """

    experiment = forms.ModelChoiceField(queryset=Experiment.objects.none(), empty_label=None)
    algorithm = forms.ChoiceField(choices=ALGORITHM_LABELS, initial=_DEFAULTS.algorithm)
    taskset = forms.ModelChoiceField(
        queryset=TaskSet.objects.none(),
        empty_label=None,
        label="Task set",
        help_text="Runs use the task set's latest version.",
    )

    inner_lr = _number(forms.FloatField, "inner_lr", label="Inner learning rate")
    inner_steps = _number(forms.IntegerField, "inner_steps", label="Inner steps")
    meta_lr = _number(forms.FloatField, "meta_lr", label="Meta learning rate")
    meta_lr_schedule = forms.ChoiceField(
        required=False,
        choices=[(name, name) for name in get_args(MetaLrSchedule)],
        initial=_DEFAULTS.meta_lr_schedule,
        label="Meta learning-rate schedule",
        help_text=TrainConfig.model_fields["meta_lr_schedule"].description or "",
    )
    meta_batch = _number(forms.IntegerField, "meta_batch", label="Meta-batch size")
    shots = _number(forms.IntegerField, "shots")
    ways = _number(forms.IntegerField, "ways")
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

    # Algorithm-specific settings.
    mnn_hidden = _number(forms.IntegerField, "mnn_hidden", label="MNN hidden size")
    mnn_embed_dim = _number(forms.IntegerField, "mnn_embed_dim", label="MNN embedding size")
    mnn_finetune_steps = _number(forms.IntegerField, "mnn_finetune_steps", label="MNN fine-tune steps")
    mnn_condition = forms.ChoiceField(
        choices=MNN_CONDITION_CHOICES,
        required=False,
        label="MNN conditioned on",
        help_text=TrainConfig.model_fields["mnn_condition"].description or "",
    )
    train_tasks = forms.IntegerField(
        required=False,
        label="Training tasks",
        help_text=TrainConfig.model_fields["train_tasks"].description or "",
    )
    train_ways = forms.IntegerField(
        required=False,
        label="Training ways",
        help_text=TrainConfig.model_fields["train_ways"].description or "",
    )

    # Advanced settings.
    eval_tasks = _number(forms.IntegerField, "eval_tasks", label="Eval tasks")
    checkpoint_interval = _number(forms.IntegerField, "checkpoint_interval", label="Checkpoint interval")
    hidden = forms.CharField(
        max_length=HIDDEN_MAX_LENGTH,
        initial=", ".join(str(h) for h in _DEFAULTS.hidden),
        label="MLP hidden sizes",
        help_text="Comma-separated layer sizes, e.g. 40, 40.",
    )
    conv_filters = _number(forms.IntegerField, "conv_filters", label="Conv filters")
    bf16 = forms.BooleanField(required=False, label="bf16 autocast", help_text="CUDA only.")
    compile = forms.ChoiceField(
        required=False,
        choices=[("auto", "auto"), ("on", "on"), ("off", "off")],
        initial=_DEFAULTS.compile,
        label="torch.compile",
        help_text=auto_rule(),
    )

    cloned_from = forms.IntegerField(required=False, widget=forms.HiddenInput)
    #: What a task set's bounds lowered, as ``name:was>now`` (``query:10>7``), so that a
    #: swap to another task set restores what the user left as it was lowered.
    fitted = forms.CharField(required=False, widget=forms.HiddenInput, max_length=FITTED_MAX_LENGTH)

    #: Fields of the "advanced" section, and of the algorithm's own section.
    ADVANCED = (
        "eval_tasks", "checkpoint_interval", "train_tasks", "hidden", "conv_filters", "bf16", "compile",
    )  # fmt: skip
    SPECIFIC = ("train_ways", "mnn_condition", "mnn_hidden", "mnn_embed_dim", "mnn_finetune_steps")
    #: Fields that are not part of the engine's config.
    NOT_CONFIG = ("experiment", "taskset", "queue", "cloned_from", "fitted")
    CHOICES = ("experiment", "algorithm", "taskset")

    def __init__(self, *args: Any, team: Team, fallback: Mapping[str, Any] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.team = team
        self.fields["experiment"].queryset = Experiment.objects.filter(team=team).order_by("name")
        self.fields["taskset"].queryset = taskset_list_launchable(team=team)
        if not self.is_bound:
            self._settle_choices(fallback or {})
        self.spec = SPECS.get(str(self._chosen("algorithm")))
        self.chosen_taskset = self._chosen_taskset()
        self.facts = self._facts()
        if (
            not self.is_bound
            and not self.initial.get("mnn_condition")
            and self.spec
            and self.spec.conditioned
        ):
            # The default where the family has a description: the description.
            self.initial["mnn_condition"] = self.spec.condition(self.facts.desc_dim)
        self._fit_episode_to_data()
        self.applicable = self._applicable()
        self.carried: dict[str, Any] = {}
        for name in sorted(ALGORITHM_FIELDS - self.applicable):
            self.fields.pop(name)
            value = self.data.get(name) if self.is_bound else self.initial.get(name)
            if value not in (None, ""):
                self.carried[name] = value

    # -- which choices and fields ------------------------------------------------------

    def _chosen(self, name: str) -> Any:
        if self.is_bound:
            return self.data.get(name)
        return self.initial.get(name, self.fields[name].initial)

    def _settle_choices(self, fallback: Mapping[str, Any]) -> None:
        """Keep an initial experiment or task set only if the team owns it; else take
        ``fallback``'s (what the user used last), else the newest."""
        for name in ("experiment", "taskset"):
            queryset = self.fields[name].queryset
            for candidate in (self.initial.get(name), fallback.get(name)):
                if str(candidate).isdigit() and queryset.filter(pk=int(candidate)).exists():
                    self.initial[name] = int(candidate)
                    break
            else:
                newest = queryset.order_by("-pk").values_list("pk", flat=True).first()
                self.initial[name] = newest

    def _chosen_taskset(self) -> TaskSet | None:
        value = self._chosen("taskset")
        if isinstance(value, TaskSet):
            value = value.pk
        if not str(value).isdigit():
            return None
        return self.fields["taskset"].queryset.filter(pk=int(value)).first()

    def _facts(self) -> LaunchFacts:
        version = taskset_latest_version(taskset=self.chosen_taskset) if self.chosen_taskset else None
        if version is None:
            return LaunchFacts()
        return taskset_family_facts(taskset=self.chosen_taskset, version=version)

    def _fit_episode_to_data(self) -> None:
        """Where an upload bounds the episode (``LaunchFacts.max_ways``, ``max_examples``),
        say so beside ways, shots and query, and lower a prefilled value past the bound
        (query first, then shots), so that the form's defaults launch on any task set.
        Values an earlier task set's bounds lowered, untouched since, are first restored
        (``fitted``), so that its bounds do not follow the user to the next task set."""
        most_ways, most_examples = self.facts.max_ways, self.facts.max_examples
        if most_ways is not None and most_ways >= 2:
            self.fields["ways"].help_text += f" At most {most_ways} with this task set."
        if most_examples is not None and most_examples >= 2:
            for name in ("shots", "query"):
                self.fields[name].help_text += f" Shots + query: at most {most_examples} with this task set."
        if self.is_bound:
            return
        for name, (was, now) in parse_fitted(self.initial.get("fitted")).items():
            if _whole(self._chosen(name)) == now:
                self.initial[name] = was
        before = {name: _whole(self._chosen(name)) for name in FITTED_FIELDS}
        fitted = fit_episode(before, most_ways=most_ways, most_examples=most_examples)
        self.initial.update(fitted)
        self.initial["fitted"] = ",".join(f"{name}:{before[name]}>{value}" for name, value in fitted.items())

    def _applicable(self) -> frozenset[str]:
        """The config fields that apply: all of them until the algorithm is known."""
        if self.spec is None:
            return ALGORITHM_FIELDS
        facts = self.facts
        described = None if facts.kind is None else bool(facts.desc_dim)
        condition = str(self._chosen("mnn_condition") or "") or None
        return launch_fields(
            self.spec.name,
            kind=facts.kind,
            input_shape=facts.input_shape,
            described=described,
            condition=condition if condition in MNN_CONDITIONS else None,
        )

    def clean_mnn_condition(self) -> str | None:
        return self.cleaned_data.get("mnn_condition") or None

    def clean_compile(self) -> str:
        return self.cleaned_data.get("compile") or _DEFAULTS.compile

    def clean_meta_lr_schedule(self) -> str:
        return self.cleaned_data.get("meta_lr_schedule") or _DEFAULTS.meta_lr_schedule

    def clean_hidden(self) -> list[int]:
        raw = self.cleaned_data["hidden"]
        try:
            sizes = [int(part) for part in raw.replace(" ", "").split(",") if part]
        except ValueError:
            raise ValidationError("Give whole numbers separated by commas, e.g. 40, 40.") from None
        if not sizes:
            raise ValidationError("Give at least one layer size.")
        return sizes

    # -- sections of the page ----------------------------------------------------------

    def _present(self, names: Iterable[str]) -> list[forms.BoundField]:
        return [self[name] for name in names if name in self.fields]

    def basic_fields(self) -> list[forms.BoundField]:
        skip = {*self.ADVANCED, *self.SPECIFIC, *self.CHOICES, "cloned_from", "fitted"}
        return self._present(name for name in self.fields if name not in skip)

    def specific_fields(self) -> list[forms.BoundField]:
        return self._present(self.SPECIFIC)

    def advanced_fields(self) -> list[forms.BoundField]:
        return self._present(self.ADVANCED)

    def config(self) -> dict[str, Any]:
        """The engine config from the cleaned data (the family is the service's job);
        settings that do not apply are left to the engine's defaults."""
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


class RunArchiveForm(forms.Form):
    """Archive or restore the runs ticked on a run table (``ids``: run numbers,
    comma-separated), then go back to ``next`` (a path on this site)."""

    ids = forms.CharField(max_length=4000, label="Runs")
    action = forms.ChoiceField(choices=[("archive", "Archive"), ("restore", "Restore")])
    next = forms.CharField(max_length=2000, required=False)

    def clean_ids(self) -> list[int]:
        parts = [part.strip().lstrip("#") for part in self.cleaned_data["ids"].split(",")]
        numbers = [part for part in parts if part]
        if not numbers or not all(part.isdigit() and len(part) <= 18 for part in numbers):
            raise ValidationError("Give run numbers separated by commas, such as 12,15.")
        return [int(part) for part in numbers]
