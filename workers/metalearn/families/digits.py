"""``digits``: scikit-learn's bundled handwritten digits (1,797 8x8 images) as a
real-data 5-way split.

Classes 0-4 are for meta-training; meta-validation uses held-out images of those
same classes (``val_fraction`` of each class, chosen by a fixed permutation);
classes 5-9 are the meta-test split. Images are flattened to ``(64,)`` and scaled
to [0, 1], so the MLP backbone takes them. scikit-learn is imported on first use.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from pydantic import Field

from workers.metalearn.families._base import (
    FAMILY_SEED_SALT,
    BaseFamily,
    FamilyParams,
    cut_episode,
    episode_labels,
)
from workers.metalearn.types import DataError, EpisodeSpec, Split, TaskBatch

_HELD_OUT_SEED = 0x0D161701
TRAIN_CLASSES = (0, 1, 2, 3, 4)
TEST_CLASSES = (5, 6, 7, 8, 9)


class DigitsParams(FamilyParams):
    val_fraction: float = Field(
        0.3, gt=0, lt=1, description="Share of each training class's images held out for meta-validation."
    )


@functools.cache
def _load() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    return (data.data / 16.0).astype(np.float32), data.target.astype(np.int64)


class DigitsFamily(BaseFamily):
    name = "digits"
    kind = "classification"
    input_shape = (64,)
    params: DigitsParams

    def __init__(self, params: DigitsParams):
        self.params = params
        self.images, labels = _load()
        rng = np.random.default_rng([FAMILY_SEED_SALT, _HELD_OUT_SEED])
        self._groups: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
        for digit in TRAIN_CLASSES:
            members = rng.permutation(np.flatnonzero(labels == digit))
            held_out = round(len(members) * params.val_fraction)
            self._groups["val"].append(np.sort(members[:held_out]))
            self._groups["train"].append(np.sort(members[held_out:]))
        self._groups["test"] = [np.flatnonzero(labels == digit) for digit in TEST_CLASSES]

    def num_classes(self, split: Split) -> int:
        return len(self._groups[split])

    def _check_data(self, episode: EpisodeSpec, split: Split) -> None:
        super()._check_data(episode, split)
        need = episode.shots + episode.query
        digits = TEST_CLASSES if split == "test" else TRAIN_CLASSES
        for digit, members in zip(digits, self._groups[split], strict=True):
            if len(members) < need:
                raise DataError(
                    "shots",
                    f"{episode.shots} shots + {episode.query} query need {need} images per class; "
                    f"digit {digit} has {len(members)} in the {split} split",
                )

    def _build(self, split: Split, episode: EpisodeSpec, task_ids: np.ndarray) -> TaskBatch:
        groups = self._groups[split]
        cuts = [cut_episode(self.task_rng(split, task_id), groups, episode) for task_id in task_ids]
        y_support, y_query = episode_labels(episode, len(task_ids))
        return TaskBatch(
            x_support=self.images[np.stack([s for s, _ in cuts])],
            y_support=y_support,
            x_query=self.images[np.stack([q for _, q in cuts])],
            y_query=y_query,
            desc=None,
            task_ids=task_ids,
        )

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "metric": "accuracy",
            "digits": {"train": list(TRAIN_CLASSES), "val": list(TRAIN_CLASSES), "test": list(TEST_CLASSES)},
            "images": {split: int(sum(len(g) for g in groups)) for split, groups in self._groups.items()},
        }
