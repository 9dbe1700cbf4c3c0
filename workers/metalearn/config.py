"""Typed, validated configuration for meta-training runs.

Torch-free on purpose: the web process validates launch forms with
:func:`parse_config` without importing torch. Every error names its field, so a
form can show it next to the input it concerns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from workers.metalearn.specs import ALGORITHM_NAMES, MNN_CONDITIONS, SPECS
from workers.metalearn.types import ConfigError

#: The algorithms' names, from their specs (:mod:`workers.metalearn.specs`).
Algorithm = Literal[ALGORITHM_NAMES]  # type: ignore[valid-type]
FamilyName = Literal["sinusoid", "harmonic", "glyphs", "digits", "table"]
Device = Literal["auto", "cpu", "cuda"]
MnnCondition = Literal[MNN_CONDITIONS]  # type: ignore[valid-type]
CompileMode = Literal["auto", "on", "off"]
MetaLrSchedule = Literal["constant", "cosine"]

ALGORITHMS: tuple[str, ...] = ALGORITHM_NAMES
FAMILIES: tuple[str, ...] = FamilyName.__args__  # type: ignore[attr-defined]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FamilySpec(_Frozen):
    """Which task family to sample from, and its family-specific parameters.

    ``params`` are validated by the family itself (``families.make_family``).
    ``data`` is a file path, used by the command line for the ``table`` family;
    the web app never sets it and passes the stored upload's path explicitly.
    """

    name: FamilyName
    version: int = Field(1, ge=1)
    params: dict[str, Any] = Field(default_factory=dict)
    data: str | None = None


class TrainConfig(_Frozen):
    """Everything that defines a meta-training run. Defaults follow Finn et al. 2017 (sinusoid)."""

    algorithm: Algorithm = "maml"
    family: FamilySpec = FamilySpec(name="sinusoid")

    # Inner loop (adaptation).
    inner_lr: float = Field(0.01, gt=0, le=10, description="Inner-loop (adaptation) learning rate.")
    inner_steps: int = Field(1, ge=0, le=100, description="Gradient steps in the inner loop.")
    first_order: bool = Field(False, description="Drop second-order terms of the meta-gradient.")

    # Outer loop (meta-optimisation).
    meta_lr: float = Field(1e-3, gt=0, le=1, description="Meta (outer) learning rate, Adam.")
    meta_lr_schedule: MetaLrSchedule = Field(
        "constant",
        description=(
            "Meta learning rate over the run: constant, or cosine, decayed from meta_lr towards 0 "
            "at the last iteration (Loshchilov & Hutter 2017, without restarts)."
        ),
    )
    meta_batch: int = Field(25, ge=1, le=1024, description="Tasks per meta-batch.")
    iterations: int = Field(1000, ge=1, le=1_000_000, description="Meta-training iterations.")
    grad_clip: float | None = Field(None, gt=0, description="Clip the meta-gradient's norm to this value.")

    # Episodes.
    shots: int = Field(
        5, ge=1, le=1000, description="Support examples per task (per class when classifying)."
    )
    ways: int = Field(5, ge=2, le=100, description="Classes per episode (classification families only).")
    query: int = Field(
        10, ge=1, le=10_000, description="Query examples per task (per class when classifying)."
    )
    train_ways: int | None = Field(
        None,
        ge=2,
        le=100,
        description=(
            "Classes per meta-training episode, when it should differ from ways (ProtoNets: Snell et al. "
            "train with more ways than they test); validation, evaluation and adaptation use ways. "
            "Empty: ways."
        ),
    )

    # Evaluation and checkpoints.
    eval_interval: int = Field(100, ge=1, description="Evaluate on meta-val every this many iterations.")
    eval_tasks: int = Field(100, ge=1, le=600, description="Meta-val tasks per evaluation.")
    checkpoint_interval: int = Field(100, ge=1, description="Write a checkpoint every this many iterations.")

    # Execution.
    seed: int = Field(0, ge=0, lt=2**31, description="Seed: fixes tasks, initialisation and order.")
    device: Device = "auto"
    bf16: bool = Field(False, description="bf16 autocast (CUDA only).")
    compile: CompileMode = Field(
        "auto",
        description=(
            "torch.compile the meta-loss: auto compiles when the run is long enough to pay the compile "
            "back (workers.metalearn.compiling); true/false are accepted as on/off."
        ),
    )

    # Architectures.
    hidden: tuple[int, ...] = Field((40, 40), description="MLP backbone hidden sizes.")
    conv_filters: int = Field(64, ge=1, le=512, description="Filters per block of the 4-block conv net.")
    mnn_hidden: int = Field(128, ge=1, le=4096, description="MNN hypernetwork hidden size.")
    mnn_embed_dim: int = Field(64, ge=1, le=4096, description="MNN set-encoder embedding size.")
    mnn_finetune_steps: int = Field(0, ge=0, le=100, description="MNN: inner steps on generated weights.")
    seed_mnn_epochs: int = Field(
        10,
        ge=1,
        le=10_000,
        description="Unused (seed-mnn's pool is train_tasks); kept so stored configs load.",
    )
    mnn_condition: MnnCondition | None = Field(
        None,
        description="MNN: condition on the task's description or on its support set (a set encoder "
        "over the K shots); empty: the description where the family has one.",
    )

    # Data.
    train_tasks: int | None = Field(
        None,
        ge=1,
        le=1_000_000,
        description="Distinct training tasks: a fixed pool drawn from the seed (empty: unlimited).",
    )

    @field_validator("compile", mode="before")
    @classmethod
    def _compile_from_bool(cls, value: Any) -> Any:
        """``true``/``false`` (the setting's earlier values, still in stored configs) mean on/off."""
        if isinstance(value, bool):
            return "on" if value else "off"
        return {"true": "on", "false": "off"}.get(value, value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_combinations(self) -> TrainConfig:
        if SPECS[self.algorithm].applies("inner_steps") and self.inner_steps < 1:
            raise ValueError(f"inner_steps: must be at least 1 for {self.algorithm}")
        if not 1 <= len(self.hidden) <= 8 or any(h < 1 or h > 4096 for h in self.hidden):
            raise ValueError("hidden: give 1 to 8 layer sizes between 1 and 4096")
        if self.meta_lr_schedule != "constant" and not SPECS[self.algorithm].applies("meta_lr_schedule"):
            raise ValueError(f"meta_lr_schedule: {self.algorithm} keeps its own fixed optimiser")
        if self.train_ways is not None and not SPECS[self.algorithm].applies("train_ways"):
            raise ValueError(f"train_ways: {self.algorithm} trains on episodes of its own ways only")
        if self.bf16 and self.device == "cpu":
            raise ValueError("bf16: bf16 autocast needs device 'cuda' or 'auto'")
        return self


def _field_of(error: Mapping[str, Any]) -> tuple[str, str]:
    loc = ".".join(str(part) for part in error.get("loc", ()))
    msg = str(error.get("msg", "invalid value"))
    # Model-level validators raise "field: message"; lift the field out.
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if not loc and ": " in msg:
        loc, msg = msg.split(": ", 1)
    return loc, msg


def config_error(exc: ValidationError, *, under: str = "") -> ConfigError:
    """A pydantic error as a :class:`ConfigError` keyed by dotted field, prefixed with
    ``under`` (e.g. ``"family.params"``); the first message per field is kept."""
    errors: dict[str, str] = {}
    for err in exc.errors():
        field, msg = _field_of(err)
        errors.setdefault(".".join(part for part in (under, field) if part) or "config", msg)
    return ConfigError(errors)


def parse_config(data: dict[str, Any] | TrainConfig) -> TrainConfig:
    """Validate a JSON-like dict into a :class:`TrainConfig`, or raise :class:`ConfigError`."""
    if isinstance(data, TrainConfig):
        return data
    if not isinstance(data, dict):
        raise ConfigError({"config": "must be a JSON object"})
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        raise config_error(exc) from None


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    """JSON-ready dict that :func:`parse_config` turns back into an equal config."""
    return config.model_dump(mode="json")
