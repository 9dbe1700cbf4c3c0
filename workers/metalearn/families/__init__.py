"""Task families: seeded, versioned sources of few-shot tasks.

numpy only (with Pillow, scikit-learn and fontTools imported lazily where a
family needs them): the web process imports this package to validate uploads
and preview tasks, and must never pay for ``import torch``.

    family = make_family(FamilySpec(name="sinusoid"))
    batch = family.sample("train", 25, EpisodeSpec(shots=5, query=10), seed=0)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from workers.metalearn.config import ConfigError, FamilySpec, config_error
from workers.metalearn.families._base import (
    FAMILY_SEED_SALT,
    FIXED_TASK_LIMIT,
    SPLIT_SEEDS,
    TEST_TASKS,
    BaseFamily,
)
from workers.metalearn.families.digits import DigitsFamily, DigitsParams
from workers.metalearn.families.glyphs import GlyphsFamily, GlyphsParams
from workers.metalearn.families.regression import (
    HarmonicFamily,
    HarmonicParams,
    SinusoidFamily,
    SinusoidParams,
)
from workers.metalearn.families.table import TableFamily, TableParams, inspect_table
from workers.metalearn.types import TaskFamily, TaskKind

__all__ = [
    "FAMILY_PARAMS",
    "FAMILY_SEED_SALT",
    "FIXED_TASK_LIMIT",
    "SPLIT_SEEDS",
    "TEST_TASKS",
    "DigitsParams",
    "GlyphsParams",
    "HarmonicParams",
    "SinusoidParams",
    "TableParams",
    "family_desc_dim",
    "family_input_shape",
    "family_kind",
    "inspect_table",
    "make_family",
    "parse_family_params",
]

_FAMILIES: dict[str, type[BaseFamily]] = {
    "sinusoid": SinusoidFamily,
    "harmonic": HarmonicFamily,
    "glyphs": GlyphsFamily,
    "digits": DigitsFamily,
    "table": TableFamily,
}

#: Each family's parameter model, for the web to render a form per family.
FAMILY_PARAMS: dict[str, type[BaseModel]] = {
    "sinusoid": SinusoidParams,
    "harmonic": HarmonicParams,
    "glyphs": GlyphsParams,
    "digits": DigitsParams,
    "table": TableParams,
}


def _family_class(name: str) -> type[BaseFamily]:
    cls = _FAMILIES.get(name)
    if cls is None:
        raise ConfigError({"family.name": f"unknown family {name!r}; use one of {', '.join(_FAMILIES)}"})
    return cls


def parse_family_params(name: str, params: Mapping[str, Any] | BaseModel | None = None) -> BaseModel:
    """Validate ``params`` for family ``name``, or raise :class:`ConfigError` keyed
    ``"family.params.<field>"`` (``"family.name"`` for an unknown family)."""
    _family_class(name)
    model = FAMILY_PARAMS[name]
    if isinstance(params, model):
        return params
    if isinstance(params, BaseModel):
        params = params.model_dump()
    try:
        return model.model_validate(dict(params or {}))
    except ValidationError as exc:
        raise config_error(exc, under="family.params") from None


def family_kind(name: str, params: Mapping[str, Any] | None = None) -> TaskKind:
    """``"regression"`` or ``"classification"``, without building the family (the
    ``table`` family's kind is its ``kind`` parameter)."""
    cls = _family_class(name)
    if cls is TableFamily:
        return parse_family_params(name, params).kind  # type: ignore[attr-defined,no-any-return]
    return cls.kind


def family_input_shape(name: str) -> tuple[int, ...] | None:
    """A built-in family's input shape without building it; None where it depends on
    the data (the ``table`` family: see its upload's summary)."""
    shape = getattr(_family_class(name), "input_shape", None)
    return tuple(int(s) for s in shape) if shape is not None else None


def family_desc_dim(name: str) -> int | None:
    """How many task-description values a family's tasks carry (None: none), without
    building it."""
    return _family_class(name).desc_dim


def make_family(spec: FamilySpec, *, data_path: str | Path | None = None) -> TaskFamily:
    """Build the family ``spec`` names, its parameters validated.

    ``data_path`` overrides ``spec.data`` (the ``table`` family's file). Raises
    :class:`ConfigError` for bad parameters, and :class:`~workers.metalearn.types.DataError`
    for bad data files.
    """
    cls = _family_class(spec.name)
    params = parse_family_params(spec.name, spec.params)
    if spec.version != cls.version:
        raise ConfigError(
            {"family.version": f"{spec.name} has version {cls.version} only, not {spec.version}"}
        )
    if cls is TableFamily:
        path = data_path if data_path is not None else spec.data
        if path is None:
            raise ConfigError({"family.data": "the table family needs a data file"})
        return TableFamily(params, path)  # type: ignore[arg-type]
    return cls(params)  # type: ignore[call-arg]
