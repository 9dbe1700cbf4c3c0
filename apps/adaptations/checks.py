"""What an adaptation may ask for, checked before anything is written: steps and
learning rate, the meta-model's checkpoint against its task set, the meta-test split's
episode, and a custom task's support and query sets and description.

Every check raises a ValidationError keyed by the adapt form's field. Torch-free: the
meta-model's facts come from its ``checkpoint.json``, the task set's from the engine's
numpy-only families.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from django.core.exceptions import ValidationError

from apps.adaptations.selectors import ModelFacts, meta_model_facts
from apps.registry.models import MetaModel
from apps.runfiles.store import StoreUnavailable
from apps.tasksets.files import version_data_path
from workers.metalearn.config import ConfigError, FamilySpec
from workers.metalearn.families import make_family
from workers.metalearn.types import DataError, EpisodeSpec

__all__ = [
    "DEFAULT_ADAPT_STEPS",
    "MAX_ADAPT_LR",
    "MAX_ADAPT_SHOTS",
    "MAX_ADAPT_STEPS",
    "MAX_SET_EXAMPLES",
    "MAX_SET_VALUES",
    "check_fits_taskset",
    "check_split",
    "check_steps_lr",
    "default_adapt_steps",
    "steps_warning",
    "clean_desc",
    "clean_set",
    "model_facts",
]

MAX_ADAPT_STEPS = 100
#: Inner steps an adaptation takes unless told otherwise (the adapt form's default).
DEFAULT_ADAPT_STEPS = 10
#: As the engine's ``TrainConfig.inner_lr``.
MAX_ADAPT_LR = 10.0
#: Most support examples per meta-test task (per class) a test-task or batch adaptation may ask for.
MAX_ADAPT_SHOTS = 100
#: A custom support or query set holds at most this many examples...
MAX_SET_EXAMPLES = 2000
#: ... and this many input values in all (e.g. 600 images of 28x28).
MAX_SET_VALUES = 500_000


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_steps_lr(steps: Any, lr: Any) -> tuple[int, float]:
    errors: dict[str, str] = {}
    if not isinstance(steps, int) or isinstance(steps, bool) or not 0 <= steps <= MAX_ADAPT_STEPS:
        errors["steps"] = f"Give a whole number of steps from 0 to {MAX_ADAPT_STEPS}."
    if not _is_number(lr) or not math.isfinite(lr) or not 0 < lr <= MAX_ADAPT_LR:
        errors["lr"] = f"The learning rate must be a number above 0 and at most {MAX_ADAPT_LR:g}."
    if errors:
        raise ValidationError(errors)
    return int(steps), float(lr)


def default_adapt_steps(facts: ModelFacts) -> int:
    """The inner steps an adaptation takes unless told otherwise: the trained number
    where more can diverge (the spec's ``bounded_steps``: Meta-SGD, ANIL), else
    ``DEFAULT_ADAPT_STEPS``."""
    if facts.spec.bounded_steps:
        return facts.inner_steps
    return DEFAULT_ADAPT_STEPS


def steps_warning(facts: ModelFacts, steps: int | None) -> str:
    """A warning when ``steps`` exceeds what a ``bounded_steps`` model was trained
    for; '' otherwise."""
    if steps is None or not facts.spec.bounded_steps or steps <= facts.inner_steps:
        return ""
    trained = f"{facts.inner_steps} inner step{'s' if facts.inner_steps != 1 else ''}"
    return (
        f"{facts.spec.label} was meta-trained for {trained}; adapting with more can diverge on "
        "some tasks (its step sizes were learned for that many)."
    )


def model_facts(meta_model: MetaModel) -> ModelFacts:
    facts = meta_model_facts(meta_model)
    if facts is None:
        raise ValidationError(
            {"meta_model": "This meta-model's checkpoint is missing from storage or unreadable."}
        )
    return facts


def check_fits_taskset(meta_model: MetaModel, facts: ModelFacts) -> Any:
    """The meta-model's task set's family, after checking that the checkpoint's
    backbone fits it (kind, input shape, description size). Returns the family."""
    version = meta_model.taskset_version
    spec = FamilySpec(name=version.taskset.family, params=version.params or {})
    try:
        data_path = version_data_path(version)
    except FileNotFoundError:
        raise ValidationError({"meta_model": "The task set's data file is missing from storage."}) from None
    except StoreUnavailable as exc:
        raise ValidationError({"meta_model": str(exc)}) from None
    try:
        family = make_family(spec, data_path=data_path)
    except (ConfigError, DataError, OSError) as exc:
        raise ValidationError({"meta_model": f"The task set cannot be built: {exc}"}) from None
    theirs = (family.kind, tuple(int(s) for s in family.input_shape), family.desc_dim)
    ours = (facts.kind, facts.input_shape, facts.desc_dim)
    if theirs != ours:
        what = []
        if theirs[0] != ours[0]:
            what.append(f"it is a {ours[0]} model, the task set is {theirs[0]}")
        if theirs[1] != ours[1]:
            what.append(f"it takes inputs of shape {list(ours[1])}, the task set has {list(theirs[1])}")
        if theirs[2] != ours[2]:
            what.append(
                f"it expects task descriptions of {ours[2] or 0} values, the task set has {theirs[2] or 0}"
            )
        name = f"{version.taskset.name} v{version.number}"
        raise ValidationError(
            {"meta_model": f"This meta-model's backbone does not fit its task set {name}: {'; '.join(what)}."}
        )
    return family


def check_split(family: Any, facts: ModelFacts, shots: int | None) -> int:
    """The support size of meta-test tasks (``shots``, or the model's training K),
    checked against what the task set's meta-test split can give."""
    if shots is not None and (
        not isinstance(shots, int) or isinstance(shots, bool) or not 1 <= shots <= MAX_ADAPT_SHOTS
    ):
        raise ValidationError({"shots": f"Give 1 to {MAX_ADAPT_SHOTS} shots, or leave it empty."})
    k = facts.shots if shots is None else int(shots)
    ways = facts.ways if facts.classification else 1
    try:
        family.check_episode(EpisodeSpec(shots=k, query=facts.query, ways=ways), "test")
    except DataError as exc:
        field = "shots" if shots is not None else "target"
        raise ValidationError(
            {field: f"The task set's meta-test split cannot give these tasks: {exc}"}
        ) from None
    return k


def _where(index: int, names: Sequence[Any] | None) -> str:
    if names and index < len(names) and isinstance(names[index], str) and names[index]:
        return names[index]
    return f"example {index + 1}"


def _clean_inputs(xs: list[Any], size: int, names: list[Any] | None, field: str) -> list[list[float]]:
    """Each input row: ``size`` finite numbers, as floats."""
    clean_x: list[list[float]] = []
    for i, row in enumerate(xs):
        if not isinstance(row, list) or len(row) != size:
            found = len(row) if isinstance(row, list) else 0
            raise ValidationError(
                {field: f"{_where(i, names)}: the model takes {size} input value(s), got {found}."}
            )
        if not all(_is_number(v) and math.isfinite(v) for v in row):
            raise ValidationError(
                {field: f"{_where(i, names)}: inputs must be finite numbers (no NaN or inf)."}
            )
        clean_x.append([float(v) for v in row])
    return clean_x


def _clean_labels(
    ys: list[Any], facts: ModelFacts, names: list[Any] | None, field: str, *, support: bool
) -> list[int]:
    """Class labels 0 to ways-1; a support set needs every class at least once."""
    labels = []
    for i, label in enumerate(ys):
        if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < facts.ways:
            raise ValidationError(
                {field: f"{_where(i, names)}: labels must be classes 0 to {facts.ways - 1}."}
            )
        labels.append(label)
    if support:
        missing = sorted(set(range(facts.ways)) - set(labels))
        if missing:
            raise ValidationError(
                {
                    field: f"This model tells {facts.ways} classes apart: give at least 1 image "
                    f"for each of {facts.ways} classes ({len(set(labels))} given)."
                }
            )
    return labels


def _clean_targets(ys: list[Any], names: list[Any] | None, field: str) -> list[float]:
    """Regression targets: finite numbers, as floats."""
    values = []
    for i, value in enumerate(ys):
        if not _is_number(value) or not math.isfinite(value):
            raise ValidationError({field: f"{_where(i, names)}: targets must be finite numbers."})
        values.append(float(value))
    return values


def clean_set(data: Any, facts: ModelFacts, field: str, *, support: bool) -> dict[str, Any]:
    """A custom support or query set ``{"x": [[...], ...], "y": [...], "classes"?,
    "names"?}`` checked against the model: shapes, finite numbers, labels, shots.
    Returns it cleaned (floats and ints only)."""
    if not isinstance(data, Mapping):
        raise ValidationError({field: "Give the examples as inputs and targets."})
    xs, ys = data.get("x"), data.get("y")
    names = data.get("names") if isinstance(data.get("names"), list) else None
    if not isinstance(xs, list) or not isinstance(ys, list) or not xs:
        need = "at least 1 point" if not facts.classification else "at least 1 image for each class"
        raise ValidationError({field: f"Give {need}."})
    if len(xs) != len(ys):
        raise ValidationError({field: f"There are {len(xs)} inputs but {len(ys)} targets."})
    if len(xs) > MAX_SET_EXAMPLES:
        raise ValidationError({field: f"Give at most {MAX_SET_EXAMPLES} examples, not {len(xs)}."})
    size = facts.input_size
    if len(xs) * size > MAX_SET_VALUES:
        raise ValidationError({field: f"Too much data: at most {MAX_SET_VALUES:,} input values in all."})
    clean: dict[str, Any] = {"x": _clean_inputs(xs, size, names, field)}
    if facts.classification:
        clean["y"] = _clean_labels(ys, facts, names, field, support=support)
        classes = data.get("classes")
        if isinstance(classes, list) and len(classes) == facts.ways:
            clean["classes"] = [str(c)[:100] for c in classes]
    else:
        clean["y"] = _clean_targets(ys, names, field)
    if names is not None and len(names) == len(xs):
        clean["names"] = [str(n)[:200] for n in names]
    return clean


def clean_desc(desc: Any, facts: ModelFacts) -> list[float] | None:
    if desc is None or desc == []:
        if facts.needs_desc:
            needed = f"the task's description ({facts.desc_dim} values)"
            raise ValidationError({"desc": f"This {facts.algorithm} model needs {needed}."})
        return None
    if not facts.desc_dim:
        raise ValidationError({"desc": "This model takes no task description."})
    if (
        not isinstance(desc, list | tuple)
        or len(desc) != facts.desc_dim
        or not all(_is_number(v) and math.isfinite(v) for v in desc)
    ):
        raise ValidationError({"desc": f"Give {facts.desc_dim} finite numbers."})
    return [float(v) for v in desc]
