"""From a family's numpy :class:`~workers.metalearn.types.TaskBatch` to torch tensors.

Also the few facts about a family that the algorithms need (:class:`FamilyInfo`),
the episode shape a config asks for, and the seed of each meta-batch, so that the
data of step ``s`` is a pure function of ``(config.seed, s)`` and never of RNG state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from workers.metalearn.config import TrainConfig
from workers.metalearn.types import TaskBatch, TaskFamily, TaskKind


@dataclass(frozen=True)
class FamilyInfo:
    """What the algorithms need to know about a family (saved in every checkpoint).

    ``ways`` is the number of outputs: the episode's classes when classifying, 1 for
    regression.
    """

    name: str
    version: int
    kind: TaskKind
    input_shape: tuple[int, ...]
    desc_dim: int | None
    ways: int

    @classmethod
    def of(cls, family: TaskFamily, config: TrainConfig) -> FamilyInfo:
        kind = family.kind
        return cls(
            name=str(family.name),
            version=int(family.version),
            kind=kind,
            input_shape=tuple(int(s) for s in family.input_shape),
            desc_dim=None if family.desc_dim is None else int(family.desc_dim),
            ways=int(config.ways) if kind == "classification" else 1,
        )

    @property
    def classification(self) -> bool:
        return self.kind == "classification"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "kind": self.kind,
            "input_shape": list(self.input_shape),
            "desc_dim": self.desc_dim,
            "ways": self.ways,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FamilyInfo:
        return cls(
            name=str(data["name"]),
            version=int(data["version"]),
            kind=data["kind"],
            input_shape=tuple(int(s) for s in data["input_shape"]),
            desc_dim=None if data.get("desc_dim") is None else int(data["desc_dim"]),
            ways=int(data["ways"]),
        )


class Episode(NamedTuple):
    """Torch view of a task batch ``[B, ...]`` (or of one task, inside ``vmap``).

    ``desc`` is ``[B, D]``, and ``[B, 0]`` when the family has no description, so
    that every field is a tensor ``vmap`` can map over.
    """

    xs: Tensor
    ys: Tensor
    xq: Tensor
    yq: Tensor
    desc: Tensor

    @property
    def tasks(self) -> int:
        return int(self.xs.shape[0])

    def to(self, dtype: torch.dtype) -> Episode:
        """Cast the floating fields (inputs, regression targets, descriptions)."""

        def cast(t: Tensor) -> Tensor:
            return t.to(dtype) if t.is_floating_point() else t

        return Episode(*(cast(t) for t in self))


def to_episode(batch: TaskBatch, device: torch.device | str = "cpu") -> Episode:
    def tensor(a: np.ndarray) -> Tensor:
        return torch.as_tensor(np.ascontiguousarray(a), device=device)

    if batch.desc is None:
        desc = torch.zeros((len(batch), 0), dtype=torch.float32, device=device)
    else:
        desc = tensor(batch.desc.astype(np.float32, copy=False))
    x_dtype = np.float32
    ys = batch.y_support
    yq = batch.y_query
    if ys.dtype.kind == "f":
        ys, yq = ys.astype(np.float32, copy=False), yq.astype(np.float32, copy=False)
    else:
        ys, yq = ys.astype(np.int64, copy=False), yq.astype(np.int64, copy=False)
    return Episode(
        xs=tensor(batch.x_support.astype(x_dtype, copy=False)),
        ys=tensor(ys),
        xq=tensor(batch.x_query.astype(x_dtype, copy=False)),
        yq=tensor(yq),
        desc=desc,
    )


def batch_seed(seed: int, step: int) -> int:
    """Seed of the meta-batch of (1-based) ``step``: a pure function of both."""
    return int(np.random.SeedSequence([int(seed), int(step)]).generate_state(1)[0])
