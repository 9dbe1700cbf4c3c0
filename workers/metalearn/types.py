"""Shared data types of the engine: task batches, the family protocol, the reporter
protocol, results and errors. Torch-free: arrays here are numpy.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
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
class InputStats:
    """Per-column mean and standard deviation of a table's features over its training
    split, stored with the model (``params.safetensors``' metadata) and applied to its
    inputs in training, evaluation and adaptation: ``(x - mean) / std``. A constant
    column keeps std 1."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def of(cls, x: np.ndarray) -> InputStats:
        """The statistics of ``x`` ``[rows, columns]`` (float64 sums)."""
        x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        std = x.std(axis=0)
        return cls(mean=x.mean(axis=0), std=np.where(std > 1e-12, std, 1.0))

    def apply(self, x: np.ndarray) -> np.ndarray:
        """``x`` ``[..., columns]`` standardised, as float32."""
        return ((np.asarray(x, dtype=np.float64) - self.mean) / self.std).astype(np.float32)

    def apply_batch(self, batch: TaskBatch) -> TaskBatch:
        return replace(batch, x_support=self.apply(batch.x_support), x_query=self.apply(batch.x_query))

    def to_metadata(self) -> dict[str, str]:
        return {
            INPUT_MEAN_KEY: json.dumps([float(v) for v in self.mean]),
            INPUT_STD_KEY: json.dumps([float(v) for v in self.std]),
        }

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str] | None) -> InputStats | None:
        """The statistics a safetensors file's metadata holds (None: none, or not readable)."""
        if not metadata or INPUT_MEAN_KEY not in metadata or INPUT_STD_KEY not in metadata:
            return None
        try:
            mean = np.asarray(json.loads(metadata[INPUT_MEAN_KEY]), dtype=np.float64)
            std = np.asarray(json.loads(metadata[INPUT_STD_KEY]), dtype=np.float64)
        except (ValueError, TypeError):
            return None
        if mean.ndim != 1 or mean.shape != std.shape or not (np.isfinite(mean).all() and (std > 0).all()):
            return None
        return cls(mean=mean, std=std)


#: Keys of :class:`InputStats` in a safetensors file's metadata.
INPUT_MEAN_KEY = "input_mean"
INPUT_STD_KEY = "input_std"


@dataclass(frozen=True)
class TaskPool:
    """A fixed pool of ``size`` distinct training tasks, drawn from ``seed`` alone
    (the config's ``train_tasks``).

    ``pick(pool_ids, batch_size, step)`` gives the task ids of meta-batch ``step``
    (1-based): drawn from the pool at random, from a generator keyed by ``(seed,
    step)``; or, with ``epochs``, walked through in passes, each pass a fresh
    shuffle keyed by ``(seed, pass)`` (seed-mnn's epochs over its tasks). Either way
    a step's tasks depend on the seed and the step only, never on the run's length.
    """

    size: int
    seed: int
    epochs: bool = False

    def steps_per_epoch(self, batch_size: int) -> int:
        return -(-self.size // max(1, batch_size))

    def pick(self, pool_ids: np.ndarray, batch_size: int, step: int) -> np.ndarray:
        if not self.epochs:
            rng = np.random.default_rng([_POOL_PICK, int(self.seed), int(step)])
            return pool_ids[rng.choice(self.size, size=batch_size, replace=batch_size > self.size)]
        epoch, place = divmod(int(step) - 1, self.steps_per_epoch(batch_size))
        order = np.random.default_rng([_POOL_PICK, int(self.seed), _POOL_EPOCH, epoch]).permutation(self.size)
        return pool_ids[np.take(order, place * batch_size + np.arange(batch_size), mode="wrap")]


_POOL_PICK = 0x9001
_POOL_EPOCH = 0xE90C


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

    def sample_pool(
        self, split: Split, batch_size: int, episode: EpisodeSpec, pool: TaskPool, step: int
    ) -> TaskBatch:
        """Meta-batch ``step`` (1-based) drawn from a fixed pool of the split's tasks
        (:class:`TaskPool`), a pure function of the pool and the step."""
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

    ``on_warning(step, kind, message)`` tells of something worth a person's look that
    does not stop training: a loss spike (``kind`` ``"spike"`` or ``"spike_level"``,
    :mod:`workers.metalearn.spikes`), after that step's ``on_step``.
    """

    def on_step(self, step: int, metrics: dict[str, float]) -> None: ...

    def on_warning(self, step: int, kind: str, message: str) -> None: ...

    def on_eval(self, step: int, metrics: dict[str, float]) -> None: ...

    def should_stop(self) -> bool: ...

    def before_checkpoint(self, step: int) -> None: ...

    def on_checkpoint(self, step: int) -> None: ...


class NullReporter:
    """A reporter that records nothing and never stops the run."""

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        return None

    def on_warning(self, step: int, kind: str, message: str) -> None:
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

    @property
    def reason(self) -> str:
        """The message without the step, for a page that shows the step beside it."""
        return f"{self.phase} diverged: {self.quantity} is {self.value}"


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
    safetensors; ``metadata`` is what the file should carry with them (the inputs'
    standardisation of a ``table`` model, :class:`InputStats`)."""

    weights: dict[str, Any]
    curve: list[dict[str, float]]
    predictions: np.ndarray
    predictions_before: np.ndarray
    grid: np.ndarray | None = None
    grid_before: np.ndarray | None = None
    metadata: dict[str, str] = field(default_factory=dict)
