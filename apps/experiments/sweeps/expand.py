"""Expand a sweep's dimensions into the configs of its runs. Pure functions."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

from apps.experiments.sweeps.bayes import STARTUP
from apps.experiments.sweeps.dimensions import Dimension, DimensionError, Value

GRID = "grid"
RANDOM = "random"
ASHA = "asha"
BAYES = "bayes"
STRATEGIES = (GRID, RANDOM, ASHA, BAYES)


def grid_size(dimensions: Sequence[Dimension]) -> int:
    """How many runs a grid over ``dimensions`` makes (their values' product)."""
    return math.prod(len(d.values) for d in dimensions)


def grid_points(dimensions: Sequence[Dimension]) -> list[dict[str, Value]]:
    """Every combination of the dimensions' values, the last dimension varying fastest."""
    for dimension in dimensions:
        if not dimension.finite:
            raise DimensionError(f"{dimension.field}: a grid needs a list or a range, not a log range.")
    names = [d.field for d in dimensions]
    return [
        dict(zip(names, combo, strict=True)) for combo in itertools.product(*(d.values for d in dimensions))
    ]


def _sample(dimension: Dimension, rng: random.Random) -> Value:
    if dimension.kind == "log":
        value = math.exp(rng.uniform(math.log(dimension.low), math.log(dimension.high)))
        return round(value) if dimension.integer else float(f"{value:.6g}")
    return rng.choice(dimension.values)


def random_points(dimensions: Sequence[Dimension], *, samples: int, seed: int) -> list[dict[str, Value]]:
    """``samples`` points drawn independently per dimension with ``random.Random(seed)``:
    the same seed gives the same points."""
    rng = random.Random(seed)
    return [{d.field: _sample(d, rng) for d in dimensions} for _ in range(samples)]


def sweep_points(
    strategy: str, dimensions: Sequence[Dimension], *, samples: int, seed: int
) -> list[dict[str, Value]]:
    """The points of a sweep known when it starts: the grid, ``samples`` seeded random
    points (random, ASHA), or a bayes sweep's first ``STARTUP`` random ones (the rest
    are proposed as results come in: ``bayes.bayes_point``)."""
    if strategy == GRID:
        return grid_points(dimensions)
    if strategy == BAYES:
        samples = min(samples, STARTUP)
    return random_points(dimensions, samples=samples, seed=seed)


def point_config(base: Mapping[str, Any], point: Mapping[str, Value]) -> dict[str, Any]:
    """The base config with the point's values in."""
    return {**base, **point}
