"""The random forest's share of each setting (analysis/forest.py) and what it adds to
the readings of analysis/importance.py: a U-shaped rate is found where Spearman's rho
sees nothing, noise is not, and choices, missing values and small sweeps."""

from __future__ import annotations

import math
import random

import pytest

from apps.experiments.analysis.forest import FOREST_MIN_RUNS, forest_fit
from apps.experiments.analysis.importance import FOREST_CLEAR_R2, sweep_importance

RATES = [1e-4, 10**-3.25, 10**-2.5, 10**-1.75, 1e-1]
SETTINGS = ["inner_lr", "seed", "steps"]


def _sweep(shape, seed=7, noise=0.3):
    """A 5 x 3 grid over a rate and the seed, with an irrelevant ``steps``; the loss is
    ``shape(log10 rate + 2.5)`` plus Gaussian noise."""
    rnd = random.Random(seed)
    return [
        (
            {"inner_lr": lr, "seed": s, "steps": rnd.choice([1, 5])},
            shape(math.log10(lr) + 2.5) + rnd.gauss(0, noise),
        )
        for s in range(3)
        for lr in RATES
    ]


def _importance(runs, **kwargs):
    return {item.setting: item for item in sweep_importance(SETTINGS, runs, metric="val_loss", **kwargs)}


def test_a_u_shaped_rate_matters_though_rho_sees_nothing():
    runs = _sweep(lambda x: x * x)
    found = sweep_importance(SETTINGS, runs, metric="val_loss", maximize=False)
    rate = found[0]  # first: it matters most, though its rho is the weakest
    assert rate.setting == "inner_lr" and rate.not_monotone
    assert rate.effect == pytest.approx(-0.010911, abs=1e-6) and rate.p > 0.9
    assert rate.forest == pytest.approx(0.84828, abs=1e-5)
    assert rate.forest_r2 == pytest.approx(0.54904, abs=1e-5) and rate.forest_r2 >= FOREST_CLEAR_R2
    assert rate.reading == (
        "matters, but not monotonically: 85% of the forest's importance (best val_loss at inner_lr = 0.00316)"
    )
    others = {item.setting: item for item in found[1:]}
    assert others["seed"].forest == pytest.approx(0.12365, abs=1e-5) and not others["seed"].not_monotone
    assert sum(item.forest for item in found) == pytest.approx(1.0)


def test_noise_fits_no_forest_and_keeps_the_hedged_reading():
    rate = _importance(_sweep(lambda x: 0.0), maximize=False)["inner_lr"]
    assert rate.forest_r2 == pytest.approx(-0.71157, abs=1e-5)  # worse than the mean rank
    assert rate.forest == pytest.approx(0.57778, abs=1e-5)  # impurity favours many values: not telling
    assert not rate.not_monotone
    assert rate.reading == "no clear link at this n (leans: higher inner_lr, lower val_loss (better))"


def test_a_monotone_rate_keeps_its_rank_reading():
    rate = _importance(_sweep(lambda x: x), maximize=False)["inner_lr"]
    assert rate.forest == pytest.approx(0.95816, abs=1e-5) and rate.forest_r2 == pytest.approx(
        0.86715, abs=1e-5
    )
    assert not rate.not_monotone and rate.reading == "higher inner_lr, higher val_loss (worse)"


def test_the_same_runs_give_the_same_shares():
    runs = _sweep(lambda x: x * x, seed=3)
    assert forest_fit(SETTINGS, runs, named={"seed"}) == forest_fit(SETTINGS, runs, named={"seed"})


def test_a_choice_is_one_input_per_value_added_up():
    rnd = random.Random(0)
    runs = [
        (
            {"optimizer": name, "inner_lr": rnd.uniform(0.01, 0.1)},
            (5.0 if name == "b" else 1.0) + rnd.random(),
        )
        for name in ("a", "b", "c")
        for _ in range(4)
    ]
    fit = forest_fit(["optimizer", "inner_lr"], runs, named={"optimizer"})
    assert fit.n == 12 and fit.shares["optimizer"] == pytest.approx(0.76571, abs=1e-5)
    found = {
        item.setting: item
        for item in sweep_importance(["optimizer", "inner_lr"], runs, metric="m", maximize=False)
    }
    assert found["optimizer"].test == "kruskal" and not found["optimizer"].not_monotone


def test_runs_without_a_setting_are_missing_values():
    runs = _sweep(lambda x: x)
    runs = [({**point, "extra": 1.0} if i % 2 else point, value) for i, (point, value) in enumerate(runs)]
    runs[0] = ({**runs[0][0], "extra": 2.0}, runs[0][1])
    fit = forest_fit([*SETTINGS, "extra"], runs, named={"seed"})
    assert set(fit.shares) == {"inner_lr", "seed", "steps", "extra"} and fit.shares["inner_lr"] > 0.9


def test_no_forest_for_small_sweeps_nor_when_asked_not_to():
    runs = _sweep(lambda x: x)
    few = _importance(runs[: FOREST_MIN_RUNS - 1], maximize=False)
    assert few["inner_lr"].forest is None and few["inner_lr"].forest_r2 is None
    assert _importance(runs[:FOREST_MIN_RUNS], maximize=False)["inner_lr"].forest is not None
    assert _importance(runs, maximize=False, forest=False)["inner_lr"].forest is None
    same = [(point, 1.0) for point, _ in runs]
    assert forest_fit(SETTINGS, same, named={"seed"}) is None
    assert forest_fit(SETTINGS, [(point, math.nan) for point, _ in runs], named={"seed"}) is None
