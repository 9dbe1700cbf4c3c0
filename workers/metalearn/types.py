"""Shared data types of the engine: task batches, the family protocol, the reporter
protocol, results and errors. Torch-free: arrays here are numpy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

Split = Literal["train", "val", "test"]
TaskKind = Literal["regression", "classification"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")


@dataclass(frozen=True)
class TaskBatch:
    """A batch of B few-shot tasks, as float32/int64 numpy arrays.

    Regression: ``x_*`` is ``[B, N, *input_shape]`` float32, ``y_*`` is ``[B, N, 1]`` float32.
    Classification: ``x_*`` is ``[B, N, *input_shape]`` float32, ``y_*`` is ``[B, N]`` int64
    holding episode labels ``0..ways-1`` (relabelled per task). Support sets list
    ``shots`` examples per class, class-major; query sets ``query`` per class.
    ``desc`` is ``[B, D]`` float32, or None when the family has no description.
    ``task_ids`` identify tasks within their split (the fixed index for val/test).
    """

    x_support: np.ndarray
    y_support: np.ndarray
    x_query: np.ndarray
    y_query: np.ndarray
    desc: np.ndarray | None
    task_ids: np.ndarray

    def __len__(self) -> int:
        return int(self.x_support.shape[0])

    def take(self, index: slice | np.ndarray) -> TaskBatch:
        return TaskBatch(
            x_support=self.x_support[index],
            y_support=self.y_support[index],
            x_query=self.x_query[index],
            y_query=self.y_query[index],
            desc=None if self.desc is None else self.desc[index],
            task_ids=self.task_ids[index],
        )


@dataclass(frozen=True)
class EpisodeSpec:
    """How tasks are cut: shots/query per task (per class when classifying) and ways."""

    shots: int
    query: int
    ways: int = 1


@runtime_checkable
class TaskFamily(Protocol):
    """A seeded, versioned family of few-shot tasks (numpy only, no torch).

    ``sample`` must be a pure function of its arguments: the same ``seed`` gives
    the same tasks on every machine. ``fixed_tasks`` returns the split's fixed task
    list (the meta-test split is 600 tasks), tasks ``start .. start+count-1``; task
    ``i`` depends only on (family version, split seed, i), never on ``count``.
    """

    name: str
    version: int
    kind: TaskKind
    input_shape: tuple[int, ...]
    desc_dim: int | None

    def num_classes(self, split: Split) -> int:
        """Classes available in the split (0 for regression)."""
        ...

    def check_episode(self, episode: EpisodeSpec, split: Split = "train") -> None:
        """Raise :class:`DataError` naming the field if the episode cannot be cut
        (ways above the classes available, too few examples for the shots...)."""
        ...

    def sample(self, split: Split, batch_size: int, episode: EpisodeSpec, seed: int) -> TaskBatch:
        """``batch_size`` fresh tasks, a pure function of ``seed``."""
        ...

    def fixed_tasks(self, split: Split, episode: EpisodeSpec, count: int, start: int = 0) -> TaskBatch:
        """The split's fixed, reproducible task list (the evaluation protocol)."""
        ...

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary: name, version, kind, params, class counts."""
        ...


class Reporter(Protocol):
    """How the training loop talks to the outside world; knows nothing of Django.

    ``on_step`` is called after every meta-iteration with its metrics (at least
    ``loss``); ``on_eval`` after each meta-validation; ``should_stop`` is polled
    between iterations, and a True answer ends the run cleanly after a checkpoint.

    Checkpoints: ``before_checkpoint(step)`` is called just before the loop writes
    the checkpoint of ``step`` (everything reported up to ``step`` must be kept by
    then: an attempt resumed from that checkpoint never replays those steps), and
    ``on_checkpoint(step)`` once it is durable (its files renamed into place), so a
    reporter never guesses when the engine checkpoints.
    """

    def on_step(self, step: int, metrics: dict[str, float]) -> None: ...

    def on_eval(self, step: int, metrics: dict[str, float]) -> None: ...

    def should_stop(self) -> bool: ...

    def before_checkpoint(self, step: int) -> None: ...

    def on_checkpoint(self, step: int) -> None: ...


class NullReporter:
    """A reporter that records nothing and never stops the run."""

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        return None

    def on_eval(self, step: int, metrics: dict[str, float]) -> None:
        return None

    def should_stop(self) -> bool:
        return False

    def before_checkpoint(self, step: int) -> None:
        return None

    def on_checkpoint(self, step: int) -> None:
        return None


class EngineError(Exception):
    """Base class of errors meant to be shown to users as they are."""


class DataError(EngineError, ValueError):
    """Bad task data or family parameters. ``field`` names the parameter, file, row
    or column at fault (e.g. ``"row 12, column 'x2'"`` or ``"shots"``)."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class DivergenceError(EngineError, FloatingPointError):
    """A NaN or inf appeared. Names the step and the quantity. In training the last
    good checkpoint is kept on disk; in adaptation (``phase="adaptation"``) the step
    is the inner step."""

    def __init__(self, step: int, quantity: str, value: float, phase: str = "training"):
        self.step = step
        self.quantity = quantity
        self.value = value
        self.phase = phase
        where = "inner step" if phase == "adaptation" else "step"
        super().__init__(f"{phase} diverged at {where} {step}: {quantity} is {value}")


class ConfigError(ValueError):
    """Invalid configuration. ``errors`` maps a dotted field name to a message."""

    def __init__(self, errors: dict[str, str]):
        self.errors = dict(errors)
        super().__init__("; ".join(f"{field}: {msg}" for field, msg in self.errors.items()))


class CheckpointError(EngineError):
    """A checkpoint is missing, unreadable, or does not fit the expected shapes."""


@dataclass
class TrainResult:
    status: Literal["completed", "stopped"]
    step: int
    metrics: dict[str, float] = field(default_factory=dict)
    checkpoint_dir: str = ""
    #: Whether the meta-loss was compiled, and why (``compiling.Decision.reason``).
    compile: str = ""


@dataclass
class EvalResult:
    """The standard protocol on a split's fixed tasks.

    ``metric`` is ``"mse"`` or ``"accuracy"``; ``mean`` and ``ci95`` are of that
    metric after adaptation. ``losses`` is ``[tasks, steps+1]`` float32: the query
    loss of each task before adaptation (column 0) and after each inner step.
    ``scores`` is ``[tasks]``: the post-adaptation metric per task.
    """

    metric: str
    mean: float
    ci95: float
    losses: np.ndarray
    scores: np.ndarray
    task_ids: np.ndarray
    steps: int


@dataclass
class AdaptResult:
    """One task adapted. ``curve[i]`` holds support and query loss (and accuracy when
    classifying) after ``i`` inner steps, ``i = 0..steps``. ``predictions`` are on
    the query inputs after adaptation, ``predictions_before`` before it (regression:
    values ``[N, 1]``; classification: logits ``[N, ways]``). ``grid`` and
    ``grid_before`` are the same on the extra inputs asked for (None if none were).
    ``weights`` maps parameter names to the adapted tensors (torch), ready for
    safetensors."""

    weights: dict[str, Any]
    curve: list[dict[str, float]]
    predictions: np.ndarray
    predictions_before: np.ndarray
    grid: np.ndarray | None = None
    grid_before: np.ndarray | None = None
