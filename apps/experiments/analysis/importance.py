"""Which swept settings go with a sweep's metric: what W&B's parameter-importance
panel shows as its correlation column, done with rank statistics, which suit a
sweep's few runs and a metric's outliers (a diverged run's loss of 1e6 is just the
worst rank).

For each swept setting, over the runs given (one final value of the metric each):

* **a number** (and yes/no, as 0 and 1): Spearman's rank correlation of the setting
  with the metric, and its two-sided p-value (``scipy.stats.spearmanr``). ``effect``
  is signed so that a positive value means *better* as the setting grows (lower for
  a loss, higher for an accuracy);
* **a choice**, and the seed (its numbers are names, not amounts): the Kruskal-Wallis
  H test across the setting's values (``scipy.stats.kruskal``), with the effect size
  epsilon squared, ``H / (n - 1)`` (0: the values do not matter, 1: they decide the
  rank), and the value whose runs have the best median.

Beside them, each setting's share of a random forest's importance
(:mod:`.forest`, W&B's importance column), with the forest's out-of-bag R²: a number
with no clear rank link but at least half of a forest that predicts well
(``FOREST_CLEAR_SHARE``, ``FOREST_CLEAR_R2``) matters without being monotone, which
the reading says.

A setting with a single value among the runs, or fewer than three runs, gets no
figure, and says why. A reading whose p is 0.05 or more says the link is not clear
and gives only its lean. The p-values are per setting, not corrected for testing
several, and a correlation over one sweep is not a cause: with a swept seed, the
seed's own line says how much of the spread is luck.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from scipy import stats

from apps.experiments.analysis.configdiff import value_display
from apps.experiments.analysis.forest import ForestFit, forest_fit

#: Settings whose values are names, not amounts, though they are numbers.
NAMED_SETTINGS = frozenset({"seed"})
#: Fewest runs a figure is computed from.
MIN_RUNS = 3
#: Above this p-value the reading says the link is not clear, and only leans.
CLEAR_P = 0.05
#: A forest predicting this well out of bag (R² of the ranks) has found something. On
#: made-up sweeps of 15-20 runs (``benchmarks/importance_forest.py``), the rule below
#: flagged pure noise in none of 300 draws and a U-shaped rate in 243 of 300 (at 0.3,
#: one noise draw was flagged); on 300 fresh draws of each (``--seed-base 5000``), 0 and 249.
FOREST_CLEAR_R2 = 0.35
#: ...and a setting with at least this share of it, and no clear rank link, matters
#: without being monotone.
FOREST_CLEAR_SHARE = 0.5


@dataclass(frozen=True)
class Importance:
    """One swept setting's association with the metric."""

    setting: str
    test: Literal["spearman", "kruskal"]
    n: int
    effect: float | None  # spearman: signed rho (positive: better as it grows); kruskal: epsilon^2
    p: float | None
    reading: str
    forest: float | None = None  # the setting's share of the forest's importance (0-1)
    forest_r2: float | None = None  # the forest's out-of-bag R² (the same for every setting)
    #: No clear rank link, but most of a well-fitting forest's importance.
    not_monotone: bool = False

    @property
    def strength(self) -> float:
        """What the table is sorted by (strongest first): |rho| or epsilon squared, or
        the forest's share for a setting that matters without being monotone."""
        if self.not_monotone and self.forest is not None:
            return self.forest
        return abs(self.effect) if self.effect is not None else -1.0


def _is_amount(values: Sequence[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v)) for v in values)


def _is_named(setting: str, values: Sequence[Any]) -> bool:
    """Whether a setting's values are names (a choice, the seed), not amounts."""
    return setting in NAMED_SETTINGS or not _is_amount([v for v in values if v is not None])


def setting_importance(
    setting: str, points: Sequence[tuple[Any, float]], *, metric: str, maximize: bool
) -> Importance:
    """The association of ``setting`` with ``metric`` over ``points``, each a run's
    ``(setting value, final metric value)`` (finite values only)."""
    points = [(v, m) for v, m in points if v is not None and math.isfinite(m)]
    named = _is_named(setting, [v for v, _ in points])
    test: Literal["spearman", "kruskal"] = "kruskal" if named else "spearman"
    distinct = {value_display(v) for v, _ in points}
    if len(points) < MIN_RUNS:
        return Importance(setting, test, len(points), None, None, f"too few runs with {metric} to tell")
    if len(distinct) < 2:
        return Importance(setting, test, len(points), None, None, "one value among these runs")
    if named:
        return _groups(setting, points, metric=metric, maximize=maximize)
    return _rank(setting, points, metric=metric, maximize=maximize)


def _rank(setting: str, points: Sequence[tuple[Any, float]], *, metric: str, maximize: bool) -> Importance:
    xs = [float(v) for v, _ in points]
    ys = [m for _, m in points]
    if len(set(ys)) < 2:
        return Importance(setting, "spearman", len(points), None, None, f"{metric} is the same in every run")
    result = stats.spearmanr(xs, ys)
    rho, p = float(result.statistic), float(result.pvalue)
    effect = rho if maximize else -rho
    verdict = "better" if effect > 0 else "worse"
    if rho == 0:
        reading = f"no monotone link with {metric}"
    elif all(isinstance(v, bool) for v, _ in points):
        reading = f"{metric} {verdict} with {setting} on"
    else:
        reading = f"higher {setting}, {'higher' if rho > 0 else 'lower'} {metric} ({verdict})"
    return Importance(setting, "spearman", len(points), effect, p, _hedged(reading, p))


def _groups(setting: str, points: Sequence[tuple[Any, float]], *, metric: str, maximize: bool) -> Importance:
    groups: dict[str, list[float]] = {}
    for value, m in points:
        groups.setdefault(value_display(value), []).append(m)
    n = len(points)
    if len({m for _, m in points}) < 2:
        return Importance(setting, "kruskal", n, None, None, f"{metric} is the same in every run")
    result = stats.kruskal(*groups.values())
    epsilon2 = min(1.0, max(0.0, float(result.statistic) / (n - 1)))
    medians = {name: statistics.median(values) for name, values in groups.items()}
    best = (max if maximize else min)(medians, key=lambda name: medians[name])
    reading = f"best median {metric} at {setting} = {best}"
    return Importance(setting, "kruskal", n, epsilon2, float(result.pvalue), _hedged(reading, result.pvalue))


def _hedged(reading: str, p: float) -> str:
    """``reading`` as it stands when p is under ``CLEAR_P``, else as a lean only."""
    return reading if p < CLEAR_P else f"no clear link at this n (leans: {reading})"


def sweep_importance(
    settings: Sequence[str],
    runs: Sequence[tuple[Mapping[str, Any], float]],
    *,
    metric: str,
    maximize: bool,
    forest: bool = True,
) -> list[Importance]:
    """Each of ``settings`` over ``runs`` (each a run's swept point and final metric
    value), strongest first; settings without a figure last, in their given order.
    With ``forest``, each gets its share of a random forest fitted to them all."""
    found = [
        setting_importance(
            setting, [(point.get(setting), value) for point, value in runs], metric=metric, maximize=maximize
        )
        for setting in settings
    ]
    fit = None
    if forest:
        named = {s for s in settings if _is_named(s, [point.get(s) for point, _ in runs])}
        fit = forest_fit(settings, runs, named=named)
    if fit is not None:
        found = [_with_forest(item, fit, runs, metric=metric, maximize=maximize) for item in found]
    return sorted(found, key=lambda item: -item.strength)


def _with_forest(
    item: Importance,
    fit: ForestFit,
    runs: Sequence[tuple[Mapping[str, Any], float]],
    *,
    metric: str,
    maximize: bool,
) -> Importance:
    """``item`` with its forest share, and a reading that says so when a number
    matters to a well-fitting forest though it has no clear rank link (a choice's
    test, Kruskal-Wallis, already reads any shape)."""
    share = fit.shares.get(item.setting)
    unclear = item.test == "spearman" and item.p is not None and item.p >= CLEAR_P
    flagged = unclear and share is not None and share >= FOREST_CLEAR_SHARE and fit.r2 >= FOREST_CLEAR_R2
    reading = item.reading
    if flagged:
        finite = [(point, value) for point, value in runs if math.isfinite(value)]
        best_point, _ = (max if maximize else min)(finite, key=lambda run: run[1])
        best_value = best_point.get(item.setting)
        best = f"{best_value:.3g}" if isinstance(best_value, float) else value_display(best_value)
        reading = (
            f"matters, but not monotonically: {share:.0%} of the forest's importance "
            f"(best {metric} at {item.setting} = {best})"
        )
    return dataclasses.replace(item, forest=share, forest_r2=fit.r2, reading=reading, not_monotone=flagged)
