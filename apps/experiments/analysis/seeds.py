"""Runs that differ only in their seed, pooled: the mean and 95% confidence interval
over seeds that a meta-learning result is reported with, next to each single run.

Pure: the caller gives each run's algorithm, task-set version, config and final
metrics. Two runs are in one group when all of these agree but the seed. The CI is
Student's t over the group's runs (``apps.reviews.comparison.analysis.mean_ci95``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from apps.experiments.analysis.configdiff import MISSING, config_flatten, value_display
from apps.reviews.comparison.analysis import MeanCI, mean_ci95

#: Config keys that only pick the random stream.
SEED_KEYS = frozenset({"seed"})


@dataclass(frozen=True)
class SeedRun:
    """What pooling needs of one run."""

    run_id: int
    algorithm: str
    taskset: str
    config: Mapping[str, Any]
    finals: Mapping[str, float | None]


@dataclass
class SeedGroup:
    """Runs alike but for the seed: their ids, what sets the group apart from the
    other groups (``label``: key -> value shown), and per metric the mean and CI over
    the runs that have it (None when fewer than two have)."""

    run_ids: list[int]
    label: dict[str, str] = field(default_factory=dict)
    stats: dict[str, MeanCI | None] = field(default_factory=dict)


def _described(run: SeedRun) -> dict[str, Any]:
    """The run as pooling compares it: algorithm, task set, then its config less the seed."""
    flat = {k: v for k, v in config_flatten(run.config).items() if k not in SEED_KEYS}
    return {"algorithm": run.algorithm, "taskset": run.taskset, **flat}


def seed_groups(runs: Sequence[SeedRun], metrics: Sequence[str]) -> list[SeedGroup]:
    """The groups of two or more runs, in the order of their first run, each with its
    ``metrics`` pooled. Keys whose value differs between groups label them."""
    members: dict[str, list[SeedRun]] = {}
    shown: dict[str, dict[str, str]] = {}
    for run in runs:
        facts = _described(run)
        key = json.dumps(facts, sort_keys=True, default=str)
        members.setdefault(key, []).append(run)
        shown.setdefault(key, {k: value_display(v) for k, v in facts.items()})
    if all(len(group) < 2 for group in members.values()):
        return []
    keys = sorted(set().union(*shown.values()))
    varying = [k for k in keys if len({facts.get(k, MISSING) for facts in shown.values()}) > 1]
    return [
        SeedGroup(
            run_ids=[run.run_id for run in group],
            label={k: shown[key].get(k, MISSING) for k in varying},
            stats={name: _pool([run.finals.get(name) for run in group]) for name in metrics},
        )
        for key, group in members.items()
        if len(group) >= 2
    ]


def _pool(values: Sequence[float | None]) -> MeanCI | None:
    present = [v for v in values if v is not None]
    return mean_ci95(present) if len(present) >= 2 else None
