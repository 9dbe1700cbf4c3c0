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

from workers.metalearn.config import ConfigError, FamilySpec, TrainConfig, config_error
from workers.metalearn.cost import training_ways
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
from workers.metalearn.types import DataError, EpisodeSpec, TaskFamily, TaskKind

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
    "check_run_episodes",
    "episode_spec",
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


def episode_spec(config: TrainConfig, kind: TaskKind, *, training: bool = False) -> EpisodeSpec:
    """The episode a config asks for; regression episodes have one 'way'. Meta-training
    episodes (``training``) have ``train_ways`` classes where the config sets it."""
    ways = (training_ways(config) if training else config.ways) if kind == "classification" else 1
    return EpisodeSpec(shots=config.shots, query=config.query, ways=ways)


def check_run_episodes(config: TrainConfig, family: TaskFamily) -> None:
    """Check that ``family`` gives the episodes a training run draws: training's on
    the train split, validation's on the val split. Raises :class:`ConfigError` on the
    setting to change (``shots``, ``query``, ``ways``, or ``train_ways`` where training
    has its own ways), its message naming the split."""
    for split in ("train", "val"):
        spec = episode_spec(config, family.kind, training=split == "train")
        try:
            family.check_episode(spec, split)
        except DataError as exc:
            field = exc.field
            if field == "ways" and spec.ways != config.ways:
                field = "train_ways"
            raise ConfigError({field: f"{exc.message} (split {split!r})"}) from None
