"""Bayesian sweeps, as W&B's ``bayes`` ones: after a few random configs, each next
config is proposed from the results so far by optuna's TPE sampler (the
Tree-structured Parzen Estimator: Bergstra et al., "Algorithms for Hyper-Parameter
Optimization", NeurIPS 2011). It models where the better runs' settings lie, and
proposes the point most likely to be among them.

Pure: the caller gives the dimensions, the ended runs' points with their final
metric value, the runs stopped early with the step they reached and their value
there (optuna's pruned trials: TPE ranks them below every finished run, the
further they got and the better they were, the higher), the points of the runs
still going, the direction and a seed. Runs
still going count as a pessimistic guess (``constant_liar``), so proposals made while
several runs go at once spread out instead of piling on one point. A list, and a
range with a step, are choices to TPE; a log range is a log-uniform number.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from apps.experiments.sweeps.dimensions import Dimension, Value

#: Random configs a bayes sweep starts with, before TPE models the results (optuna's
#: own default is 10; a sweep of a dozen runs would then be nearly all random).
STARTUP = 5


def _distribution(dimension: Dimension) -> Any:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if dimension.kind != "log":
        return CategoricalDistribution(list(dimension.values))
    if dimension.integer:
        return IntDistribution(int(dimension.low), int(dimension.high), log=True)
    return FloatDistribution(dimension.low, dimension.high, log=True)


def _in(dimension: Dimension, value: Any) -> Value | None:
    """``value`` as the dimension holds it, or None when it is not one of its values."""
    if dimension.kind != "log":
        return value if value in dimension.values else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    clamped = min(max(value, dimension.low), dimension.high)
    return int(round(clamped)) if dimension.integer else float(clamped)


def _point(dimensions: Sequence[Dimension], config: Mapping[str, Any]) -> dict[str, Value] | None:
    point = {d.field: _in(d, config.get(d.field)) for d in dimensions}
    return None if any(value is None for value in point.values()) else point  # type: ignore[return-value]


def _shown(dimension: Dimension, value: Any) -> Value:
    """A proposed value as a config holds it: a log range's float to 6 significant
    digits (as random sweeps round theirs), kept inside the range."""
    if dimension.kind != "log" or dimension.integer:
        return value
    return min(max(float(f"{value:.6g}"), dimension.low), dimension.high)


def bayes_point(
    dimensions: Sequence[Dimension],
    *,
    done: Sequence[tuple[Mapping[str, Any], float]],
    running: Sequence[Mapping[str, Any]],
    maximize: bool,
    seed: int,
    stopped: Sequence[tuple[Mapping[str, Any], int, float]] = (),
) -> dict[str, Value]:
    """The next point to run: ``done`` holds each ended run's swept values and final
    metric value, ``stopped`` each run stopped early's swept values, last step and
    value there, ``running`` the swept values of runs not ended. The same arguments
    give the same point."""
    import optuna
    from optuna.trial import TrialState, create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    distributions = {d.field: _distribution(d) for d in dimensions}
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=0, constant_liar=True)
    study = optuna.create_study(direction="maximize" if maximize else "minimize", sampler=sampler)
    for config, value in done:
        point = _point(dimensions, config)
        if point is not None and math.isfinite(value):
            study.add_trial(create_trial(params=point, distributions=distributions, value=value))
    for config, step, value in stopped:
        point = _point(dimensions, config)
        if point is not None and math.isfinite(value):
            reached = {int(step): float(value)}
            study.add_trial(
                create_trial(
                    params=point,
                    distributions=distributions,
                    state=TrialState.PRUNED,
                    intermediate_values=reached,
                )
            )
    for config in running:
        point = _point(dimensions, config)
        if point is not None:
            study.add_trial(create_trial(params=point, distributions=distributions, state=TrialState.RUNNING))
    trial = study.ask(distributions)
    return {d.field: _shown(d, trial.params[d.field]) for d in dimensions}
