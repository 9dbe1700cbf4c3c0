"""Random-forest importance: W&B's parameter-importance column, beside the rank tests
of :mod:`.importance`.

A random forest (scikit-learn's ``RandomForestRegressor``, ``FOREST_TREES`` trees,
seeded) is fitted with the settings as inputs and the metric's ranks as the target,
and each setting's *share* is its part of the forest's impurity importance (the
shares sum to 1). Trees split a setting's range anywhere, so a setting whose best
values lie in the middle of its range (a learning rate too small or too large) gets
a large share where Spearman's rho, which reads only "the more, the better", sees
nothing. Ranks, as the rank tests use, so a diverged run's loss of 1e6 is only the
worst rank.

A forest fits noise too, so the fit comes with its out-of-bag R² (each run predicted
by the trees that did not see it): at or under 0 the forest predicts a run no better
than the mean rank and its shares say nothing. Numbers (yes/no as 0 and 1) are one
input each, a run without the setting a missing value; choices and the seed are one
input per value, their importances added up. Impurity importance favours inputs
with many distinct values, so a swept seed's share is the yardstick of luck: a
setting whose share is not well above the seed's is not shown to matter.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from apps.experiments.analysis.configdiff import value_display

#: Trees in the forest (100: W&B's and scikit-learn's default).
FOREST_TREES = 100
#: Fewest runs a forest is fitted to: under this, out-of-bag R² is too unsteady to read.
FOREST_MIN_RUNS = 8
#: The forest's seed: the same runs give the same shares.
FOREST_SEED = 0


@dataclass(frozen=True)
class ForestFit:
    """Each setting's share of the forest's importance, and how well it predicts."""

    shares: dict[str, float]
    r2: float  # out of bag, on the metric's ranks
    n: int


def _columns(
    settings: Sequence[str], points: Sequence[Mapping[str, Any]], named: Collection[str]
) -> tuple[list[list[float]], list[str]]:
    """The forest's inputs, one list of values per column, and the setting of each column.
    Settings with one value among the points get no column."""
    columns: list[list[float]] = []
    owners: list[str] = []
    for setting in settings:
        values = [point.get(setting) for point in points]
        if len({value_display(v) for v in values if v is not None}) < 2:
            continue
        if setting in named:
            for shown in sorted({value_display(v) for v in values if v is not None}):
                columns.append([1.0 if v is not None and value_display(v) == shown else 0.0 for v in values])
                owners.append(setting)
        else:
            columns.append([math.nan if v is None else float(v) for v in values])
            owners.append(setting)
    return columns, owners


def forest_fit(
    settings: Sequence[str], runs: Sequence[tuple[Mapping[str, Any], float]], *, named: Collection[str]
) -> ForestFit | None:
    """Fit the forest to ``runs`` (each a run's settings and final metric value; a
    setting in ``named`` is a choice, any other a number). None when there are fewer
    than ``FOREST_MIN_RUNS`` runs with a finite value, or nothing varies."""
    runs = [(point, value) for point, value in runs if math.isfinite(value)]
    ranks = stats.rankdata([value for _, value in runs])
    if len(runs) < FOREST_MIN_RUNS or len(set(ranks)) < 2:
        return None
    columns, owners = _columns(settings, [point for point, _ in runs], named)
    if not columns:
        return None
    from sklearn.ensemble import RandomForestRegressor  # about 1 s, on the first fit only

    forest = RandomForestRegressor(
        n_estimators=FOREST_TREES, random_state=FOREST_SEED, oob_score=True, n_jobs=1
    )
    with warnings.catch_warnings():  # at small n a run may be in every tree's sample
        warnings.simplefilter("ignore", UserWarning)
        forest.fit(np.array(columns, dtype=float).T, ranks)
    shares = dict.fromkeys(owners, 0.0)
    for owner, importance in zip(owners, forest.feature_importances_, strict=True):
        shares[owner] += float(importance)
    return ForestFit(shares=shares, r2=float(forest.oob_score_), n=len(runs))
