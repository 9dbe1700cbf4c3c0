"""What every task family shares: seeding, the task-id scheme and episode checks.

Seeding. Every task is generated from its own generator,
``np.random.default_rng([FAMILY_SEED_SALT, family code, version, split seed, task id])``,
so task ``i`` of a split depends only on the family, its version, the split's
fixed seed and ``i``. ``fixed_tasks`` uses ids ``start .. start+count-1`` (below
:data:`FIXED_TASK_LIMIT`); ``sample`` draws ``batch_size`` ids at random in
``[FIXED_TASK_LIMIT, 2**62)`` from a generator keyed by its ``seed``, so sampled
tasks never coincide with the fixed evaluation list and a sampled task can be
rebuilt from its id. numpy's ``SeedSequence`` and PCG64 give the same stream on
every platform.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from workers.metalearn.types import (
    SPLITS,
    DataError,
    EpisodeSpec,
    InputStats,
    Split,
    TaskBatch,
    TaskKind,
    TaskPool,
)

#: Mixed into every seed so that family streams differ from other uses of the same integers.
FAMILY_SEED_SALT = 0x4D455441  # "META"
#: Each split's own fixed seed: the fixed task lists (600 tasks for meta-test) derive from these.
SPLIT_SEEDS: dict[str, int] = {"train": 0x7EA10001, "val": 0x7EA10002, "test": 0x7EA10003}
#: Ids of fixed tasks lie below this; ids of sampled tasks lie in ``[FIXED_TASK_LIMIT, 2**62)``.
FIXED_TASK_LIMIT = 2**31
_SAMPLE_STREAM = 0x5A3D1E
_POOL_STREAM = 0x9001D
#: The standard meta-test protocol: this many fixed tasks.
TEST_TASKS = 600


class FamilyParams(BaseModel):
    """Base of the families' parameter models: frozen, unknown keys refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def family_code(name: str) -> int:
    """A stable integer for a family name (seeds must not depend on Python's ``hash``)."""
    return zlib.crc32(name.encode())


def check_split(split: str) -> Split:
    if split not in SPLITS:
        raise DataError("split", f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    return split  # type: ignore[return-value]


class BaseFamily:
    """Shared machinery. Subclasses set the protocol attributes and implement
    :meth:`_build` (tasks from their generators) and, when their data is finite,
    :meth:`_check_data`."""

    name: str
    version: int = 1
    kind: TaskKind
    input_shape: tuple[int, ...]
    desc_dim: int | None = None
    params: FamilyParams

    # -- seeding ---------------------------------------------------------------

    def task_rng(self, split: Split, task_id: int) -> np.random.Generator:
        """The generator of task ``task_id`` of ``split``."""
        return np.random.default_rng(
            [FAMILY_SEED_SALT, family_code(self.name), self.version, SPLIT_SEEDS[split], int(task_id)]
        )

    def sample_ids(self, split: Split, batch_size: int, seed: int) -> np.ndarray:
        """The ids of the tasks ``sample(split, batch_size, ..., seed)`` returns."""
        if int(seed) < 0:
            raise DataError("seed", f"must be a non-negative integer, got {seed}")
        rng = np.random.default_rng(
            [
                FAMILY_SEED_SALT,
                family_code(self.name),
                self.version,
                SPLIT_SEEDS[split],
                _SAMPLE_STREAM,
                int(seed),
            ]
        )
        return rng.integers(FIXED_TASK_LIMIT, 2**62, size=batch_size, dtype=np.int64)

    # -- the protocol ----------------------------------------------------------

    def num_classes(self, split: Split) -> int:
        return 0

    def input_stats(self) -> InputStats | None:
        """Statistics for the model to standardise its inputs with (None: use them as
        they are; the ``table`` family's CSV features have them)."""
        return None

    def check_episode(self, episode: EpisodeSpec, split: Split = "train") -> None:
        split = check_split(split)
        if episode.shots < 1:
            raise DataError("shots", f"must be at least 1, got {episode.shots}")
        if episode.query < 1:
            raise DataError("query", f"must be at least 1, got {episode.query}")
        if self.kind == "classification" and episode.ways < 2:
            raise DataError("ways", f"classification episodes need at least 2 ways, got {episode.ways}")
        self._check_data(episode, split)

    def sample(self, split: Split, batch_size: int, episode: EpisodeSpec, seed: int) -> TaskBatch:
        self.check_episode(episode, split)
        if batch_size < 1:
            raise DataError("batch_size", f"must be at least 1, got {batch_size}")
        return self._build(split, episode, self.sample_ids(split, batch_size, seed))

    def pool_ids(self, split: Split, pool: TaskPool) -> np.ndarray:
        """The ids of the ``pool.size`` tasks of a fixed pool: a pure function of the
        family, the split and ``pool.seed``, in ``[FIXED_TASK_LIMIT, 2**62)`` like
        sampled tasks (so never a meta-val or meta-test task); a pool of ``n`` tasks
        is the first ``n`` of a larger one with the same seed."""
        cache: dict[tuple[str, int, int], np.ndarray] = self.__dict__.setdefault("_pools", {})
        key = (split, int(pool.size), int(pool.seed))
        if key not in cache:
            rng = np.random.default_rng(
                [
                    FAMILY_SEED_SALT,
                    family_code(self.name),
                    self.version,
                    SPLIT_SEEDS[split],
                    _POOL_STREAM,
                    int(pool.seed),
                ]
            )
            cache.clear()  # one pool per run
            cache[key] = rng.integers(FIXED_TASK_LIMIT, 2**62, size=int(pool.size), dtype=np.int64)
        return cache[key]

    def sample_pool(
        self, split: Split, batch_size: int, episode: EpisodeSpec, pool: TaskPool, step: int
    ) -> TaskBatch:
        self.check_episode(episode, split)
        if batch_size < 1:
            raise DataError("batch_size", f"must be at least 1, got {batch_size}")
        if pool.size < 1:
            raise DataError("train_tasks", f"must be at least 1, got {pool.size}")
        return self._build(split, episode, pool.pick(self.pool_ids(split, pool), batch_size, step))

    def fixed_tasks(self, split: Split, episode: EpisodeSpec, count: int, start: int = 0) -> TaskBatch:
        self.check_episode(episode, split)
        if count < 1 or start < 0 or start + count > FIXED_TASK_LIMIT:
            raise DataError("count", f"fixed tasks are numbered 0 .. {FIXED_TASK_LIMIT - 1}")
        return self._build(split, episode, np.arange(start, start + count, dtype=np.int64))

    def describe(self) -> dict[str, Any]:
        summary: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "kind": self.kind,
            "input_shape": list(self.input_shape),
            "desc_dim": self.desc_dim,
            "params": self.params.model_dump(mode="json"),
        }
        if self.kind == "classification":
            summary["classes"] = {split: self.num_classes(split) for split in SPLITS}
        return summary

    # -- for subclasses --------------------------------------------------------

    def _check_data(self, episode: EpisodeSpec, split: Split) -> None:
        """Raise :class:`DataError` if ``split`` cannot give the episode. This default
        checks that a classification split has ``ways`` classes; families with finite
        data extend it."""
        if self.kind != "classification":
            return
        available = self.num_classes(split)
        if episode.ways > available:
            raise DataError(
                "ways",
                f"{episode.ways}-way episodes need {episode.ways} classes; the {split} split has {available}",
            )

    def _build(self, split: Split, episode: EpisodeSpec, task_ids: np.ndarray) -> TaskBatch:
        raise NotImplementedError


def draw_members(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """``k`` indices into ``range(n)``: without replacement when ``k <= n``, else whole
    permutations one after another (each member used as evenly as possible)."""
    if k <= n:
        return rng.choice(n, size=k, replace=False)
    rounds = -(-k // n)
    return np.concatenate([rng.permutation(n) for _ in range(rounds)])[:k]


def cut_episode(
    rng: np.random.Generator,
    groups: list[np.ndarray],
    episode: EpisodeSpec,
) -> tuple[np.ndarray, np.ndarray]:
    """One N-way K-shot episode over ``groups`` (one array of example indices per class).

    Picks ``ways`` groups in random order (episode label ``c`` is the ``c``-th pick),
    then ``shots + query`` members of each (with replacement only when a group is
    smaller). Returns support and query example indices, class-major:
    ``[ways * shots]`` and ``[ways * query]``.
    """
    chosen = rng.choice(len(groups), size=episode.ways, replace=False)
    per_class = episode.shots + episode.query
    picks = np.stack([groups[c][draw_members(rng, len(groups[c]), per_class)] for c in chosen])
    return picks[:, : episode.shots].reshape(-1), picks[:, episode.shots :].reshape(-1)


def episode_labels(episode: EpisodeSpec, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Class-major episode labels ``[B, ways*shots]`` and ``[B, ways*query]`` (int64)."""
    classes = np.arange(episode.ways, dtype=np.int64)
    support = np.repeat(classes, episode.shots)
    query = np.repeat(classes, episode.query)
    return np.tile(support, (batch_size, 1)), np.tile(query, (batch_size, 1))
