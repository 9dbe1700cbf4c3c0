"""Which launch settings can be swept, and the type of their values: read from the
engine's ``TrainConfig`` (one place) and its specs' ``ALGORITHM_FIELDS``."""

from __future__ import annotations

import functools
import types
from typing import Literal, Union, get_args, get_origin

from apps.experiments.analysis.summary import higher_is_better
from apps.experiments.search.fields import HEADLINE_METRICS
from apps.experiments.sweeps.dimensions import ValueType
from workers.metalearn.config import TrainConfig
from workers.metalearn.specs import ALGORITHM_FIELDS

#: Metrics a sweep can rank by (a training run's headline metrics), and whether higher is better.
SWEEP_METRICS: dict[str, bool] = {name: higher_is_better(name) for name in HEADLINE_METRICS["train"]}


def _value_type(annotation: object) -> tuple[ValueType, tuple[str, ...]] | None:
    if get_origin(annotation) in (Union, types.UnionType):
        present = [arg for arg in get_args(annotation) if arg is not type(None)]
        annotation = present[0] if len(present) == 1 else None
    if annotation is bool:
        return "bool", ()
    if annotation is int:
        return "int", ()
    if annotation is float:
        return "float", ()
    if get_origin(annotation) is Literal:
        return "choice", tuple(str(arg) for arg in get_args(annotation))
    return None


@functools.cache
def sweepable_fields() -> dict[str, tuple[ValueType, tuple[str, ...]]]:
    """``{field: (value type, choices)}`` for every algorithm setting with numeric,
    yes/no or choice values (not the MLP's list of sizes)."""
    found: dict[str, tuple[ValueType, tuple[str, ...]]] = {}
    for name, info in TrainConfig.model_fields.items():
        typed = _value_type(info.annotation)
        if name in ALGORITHM_FIELDS and typed is not None:
            found[name] = typed
    return found
