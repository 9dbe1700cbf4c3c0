"""Bayesian sweeps' proposals (sweeps/bayes.py): in the dimensions, reproducible, and
better than random search on a known objective, by a measured margin."""

from __future__ import annotations

import math
import random
import statistics

from apps.experiments.sweeps.bayes import STARTUP, bayes_point
from apps.experiments.sweeps.dimensions import Dimension
from apps.experiments.sweeps.expand import random_points, sweep_points

DIMENSIONS = [
    Dimension("inner_lr", "log", low=1e-4, high=1e-1),
    Dimension("inner_steps", "list", values=(1, 2, 3, 5)),
]


def objective(point) -> float:
    """A loss whose best is at inner_lr 3e-3 and 2 inner steps."""
    return (math.log10(point["inner_lr"]) - math.log10(3e-3)) ** 2 + 0.3 * abs(point["inner_steps"] - 2)


def _search(seed: int, runs: int) -> float:
    done = [(p, objective(p)) for p in random_points(DIMENSIONS, samples=STARTUP, seed=seed)]
    while len(done) < runs:
        point = bayes_point(DIMENSIONS, done=done, running=[], maximize=False, seed=seed + len(done))
        done.append((point, objective(point)))
    return min(value for _, value in done)


def test_proposals_lie_in_the_dimensions_and_repeat_with_the_seed():
    done = [(p, objective(p)) for p in random_points(DIMENSIONS, samples=6, seed=1)]
    first = bayes_point(DIMENSIONS, done=done, running=[], maximize=False, seed=7)
    assert first == bayes_point(DIMENSIONS, done=done, running=[], maximize=False, seed=7)
    assert 1e-4 <= first["inner_lr"] <= 1e-1 and first["inner_steps"] in (1, 2, 3, 5)
    assert first["inner_lr"] == float(f"{first['inner_lr']:.6g}")  # as random sweeps round theirs
    # Runs still going and other results change the proposal; a value outside a
    # dimension (an older config) is left out rather than refused.
    going = bayes_point(DIMENSIONS, done=done, running=[first], maximize=False, seed=7)
    assert going != first
    stray = [({"inner_lr": 5.0, "inner_steps": 4}, 0.0), *done]
    assert bayes_point(DIMENSIONS, done=stray, running=[], maximize=False, seed=7) == first


def test_a_bayes_sweep_starts_with_its_random_points():
    points = sweep_points("bayes", DIMENSIONS, samples=12, seed=3)
    assert points == random_points(DIMENSIONS, samples=STARTUP, seed=3)
    assert sweep_points("bayes", DIMENSIONS, samples=2, seed=3) == points[:2]


def test_tpe_finds_better_settings_than_random_search_in_as_many_runs():
    """20 runs a search, seeds 0-9. Measured: the best loss found averaged 0.0078 with
    TPE against 0.108 with random search (13.8x), and TPE won on 9 seeds of 10. The
    test asks for 4x and 7 seeds."""
    tpe = [_search(seed, 20) for seed in range(10)]
    rand = [min(objective(p) for p in random_points(DIMENSIONS, samples=20, seed=seed)) for seed in range(10)]
    assert statistics.mean(tpe) * 4 < statistics.mean(rand), (tpe, rand)
    assert sum(t < r for t, r in zip(tpe, rand, strict=True)) >= 7, (tpe, rand)


def test_runs_stopped_early_steer_the_proposals_by_how_far_they_got():
    """Twelve runs stopped early, none finished: those at 2 inner steps got to step 30,
    the others were stopped at step 10. As optuna's pruned trials they make TPE
    propose 2 inner steps in 56 of 60 seeds, against 16 (about a quarter, the prior)
    knowing nothing."""
    rnd = random.Random(0)
    stopped = []
    for i in range(12):
        steps = (1, 2, 3, 5)[i % 4]
        point = {"inner_lr": 10 ** rnd.uniform(-4, -1), "inner_steps": steps}
        stopped.append((point, 30, 1.0) if steps == 2 else (point, 10, 5.0))

    def at_two(**kwargs) -> int:
        proposals = [
            bayes_point(DIMENSIONS, done=[], running=[], maximize=False, seed=s, **kwargs) for s in range(60)
        ]
        return sum(p["inner_steps"] == 2 for p in proposals)

    assert at_two(stopped=stopped) == 56
    assert at_two() == 16
