"""Tiny task families for the engine's tests, written against the TaskFamily protocol.

They stand in for (and mimic the names of) the real families, so that the engine's
tests do not depend on ``workers/metalearn/families``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from workers.metalearn.types import DataError, EpisodeSpec, Split, TaskBatch

_SPLIT_SEED = {"train": 11, "val": 22, "test": 33}


class ToySinusoid:
    """Finn et al.'s sinusoid: amplitude U[0.1, 5], phase U[0, pi], x U[-5, 5]."""

    name = "sinusoid"
    version = 1
    kind = "regression"
    input_shape = (1,)

    def __init__(self, with_desc: bool = True):
        self.desc_dim = 2 if with_desc else None

    def num_classes(self, split: Split) -> int:
        return 0

    def check_episode(self, episode: EpisodeSpec, split: Split = "train") -> None:
        if episode.shots < 1:
            raise DataError("shots", "must be at least 1")

    def _tasks(self, rngs: list[np.random.Generator], episode: EpisodeSpec, ids: np.ndarray) -> TaskBatch:
        n = episode.shots + episode.query
        amp, phase, xs = [], [], []
        for rng in rngs:
            amp.append(rng.uniform(0.1, 5.0))
            phase.append(rng.uniform(0.0, np.pi))
            xs.append(rng.uniform(-5.0, 5.0, size=(n, 1)))
        a = np.array(amp, dtype=np.float32)[:, None, None]
        p = np.array(phase, dtype=np.float32)[:, None, None]
        x = np.stack(xs).astype(np.float32)
        y = (a * np.sin(x - p)).astype(np.float32)
        desc = np.stack([a[:, 0, 0], p[:, 0, 0]], axis=1) if self.desc_dim else None
        k = episode.shots
        return TaskBatch(x[:, :k], y[:, :k], x[:, k:], y[:, k:], desc, ids)

    def sample(self, split: Split, batch_size: int, episode: EpisodeSpec, seed: int) -> TaskBatch:
        rng = np.random.default_rng([_SPLIT_SEED[split], seed])
        rngs = [np.random.default_rng(s) for s in rng.integers(0, 2**31, size=batch_size)]
        return self._tasks(rngs, episode, np.full(batch_size, -1))

    def fixed_tasks(self, split: Split, episode: EpisodeSpec, count: int, start: int = 0) -> TaskBatch:
        ids = np.arange(start, start + count)
        rngs = [np.random.default_rng([_SPLIT_SEED[split], 7, int(i)]) for i in ids]
        return self._tasks(rngs, episode, ids)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "kind": self.kind, "params": {}}


class ToyBlobs:
    """Classification: class c of a split is a fixed random pattern plus noise."""

    kind = "classification"
    version = 1
    desc_dim = None

    def __init__(
        self,
        input_shape: tuple[int, ...] = (1, 16, 16),
        classes: int = 20,
        noise: float = 0.6,
        name: str = "glyphs",
    ):
        self.name = name
        self.input_shape = input_shape
        self.classes = classes
        self.noise = noise
        self._means = {
            split: np.random.default_rng([_SPLIT_SEED[split], 99])
            .normal(size=(classes, *input_shape))
            .astype(np.float32)
            for split in _SPLIT_SEED
        }

    def num_classes(self, split: Split) -> int:
        return self.classes

    def check_episode(self, episode: EpisodeSpec, split: Split = "train") -> None:
        if episode.ways > self.classes:
            raise DataError("ways", f"at most {self.classes} classes in split {split!r}")

    def _task(self, rng: np.random.Generator, split: Split, episode: EpisodeSpec):
        classes = rng.choice(self.classes, size=episode.ways, replace=False)
        means = self._means[split][classes]

        def cut(per_class: int):
            x = np.repeat(means, per_class, axis=0)
            x = x + self.noise * rng.normal(size=x.shape).astype(np.float32)
            y = np.repeat(np.arange(episode.ways), per_class)
            return x.astype(np.float32), y.astype(np.int64)

        return cut(episode.shots), cut(episode.query)

    def _batch(self, rngs, split, episode, ids) -> TaskBatch:
        parts = [self._task(r, split, episode) for r in rngs]
        return TaskBatch(
            np.stack([p[0][0] for p in parts]),
            np.stack([p[0][1] for p in parts]),
            np.stack([p[1][0] for p in parts]),
            np.stack([p[1][1] for p in parts]),
            None,
            ids,
        )

    def sample(self, split: Split, batch_size: int, episode: EpisodeSpec, seed: int) -> TaskBatch:
        rng = np.random.default_rng([_SPLIT_SEED[split], seed])
        rngs = [np.random.default_rng(s) for s in rng.integers(0, 2**31, size=batch_size)]
        return self._batch(rngs, split, episode, np.full(batch_size, -1))

    def fixed_tasks(self, split: Split, episode: EpisodeSpec, count: int, start: int = 0) -> TaskBatch:
        ids = np.arange(start, start + count)
        rngs = [np.random.default_rng([_SPLIT_SEED[split], 7, int(i)]) for i in ids]
        return self._batch(rngs, split, episode, ids)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "kind": self.kind,
            "params": {"classes": self.classes, "input_shape": list(self.input_shape)},
        }
