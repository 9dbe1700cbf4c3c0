"""Which swept settings go with the metric (analysis/importance.py): figures checked
against hand computation, the signs, and the cases without a figure."""

from __future__ import annotations

import math

import pytest

from apps.experiments.analysis.importance import setting_importance, sweep_importance


def test_spearman_by_hand_signed_towards_better():
    # x ranks 2,2,2,4.5,4.5; y ranks 4,2.5,5,1,2.5: rho = -6.25 / sqrt(7.5 * 9.5) = -0.74044.
    points = [(0.01, 3.0), (0.01, 2.0), (0.01, 4.0), (0.1, 1.0), (0.1, 2.0)]
    loss = setting_importance("inner_lr", points, metric="val_loss", maximize=False)
    assert loss.test == "spearman" and loss.n == 5
    assert loss.effect == pytest.approx(6.25 / math.sqrt(7.5 * 9.5))
    # t = r * sqrt(3 / (1 - r^2)) = -1.9076 on 3 degrees of freedom, two-sided.
    assert loss.p == pytest.approx(0.152413, abs=1e-6)
    assert loss.reading == "no clear link at this n (leans: higher inner_lr, lower val_loss (better))"
    accuracy = setting_importance("inner_lr", points, metric="val_accuracy", maximize=True)
    assert accuracy.effect == pytest.approx(-loss.effect)
    assert accuracy.reading.endswith("(leans: higher inner_lr, lower val_accuracy (worse))")
    clear = setting_importance(
        "inner_lr", [(i, 10.0 - i) for i in range(8)], metric="val_loss", maximize=False
    )
    assert clear.effect == pytest.approx(1.0) and clear.p < 0.05
    assert clear.reading == "higher inner_lr, lower val_loss (better)"


def test_yes_no_settings_are_ranked_as_0_and_1():
    points = [(True, 0.9), (True, 0.8), (True, 0.7), (False, 0.5), (False, 0.4), (False, 0.3)]
    found = setting_importance("first_order", points, metric="val_accuracy", maximize=True)
    # x ranks 5,5,5,2,2,2 against y ranks 6..1: rho = 13.5 / sqrt(13.5 * 17.5).
    assert found.test == "spearman" and found.effect == pytest.approx(math.sqrt(13.5 / 17.5))
    assert found.p < 0.05 and found.reading == "val_accuracy better with first_order on"


def test_kruskal_by_hand_for_choices_and_the_seed():
    # Ranks 1-3 against 4-6: H = 12 / 42 * (6^2 / 3 + 15^2 / 3) - 21 = 3.857; eps^2 = H / 5.
    points = [("a", 1.0), ("a", 2.0), ("a", 3.0), ("b", 4.0), ("b", 5.0), ("b", 6.0)]
    found = setting_importance("optimizer", points, metric="val_loss", maximize=False)
    assert found.test == "kruskal" and found.effect == pytest.approx(27 / 35)
    assert found.p == pytest.approx(0.049535, abs=1e-6)  # chi-squared, 1 degree of freedom
    assert found.reading == "best median val_loss at optimizer = a"  # p just under 0.05: clear
    seeds = setting_importance("seed", [(0, 1.0), (0, 2.0), (1, 3.0), (1, 4.0)], metric="m", maximize=True)
    assert (
        seeds.test == "kruskal"
        and seeds.reading == "no clear link at this n (leans: best median m at seed = 1)"
    )


@pytest.mark.parametrize(
    ("points", "reading"),
    [
        ([(0.1, 1.0), (0.2, 2.0)], "too few runs with val_loss to tell"),
        ([(0.1, 1.0), (0.1, 2.0), (0.1, 3.0)], "one value among these runs"),
        ([(0.1, 1.0), (0.2, 1.0), (0.3, 1.0)], "val_loss is the same in every run"),
        ([(0.1, 1.0), (None, 2.0), (0.3, math.inf)], "too few runs with val_loss to tell"),
    ],
)
def test_no_figure_and_why(points, reading):
    found = setting_importance("inner_lr", points, metric="val_loss", maximize=False)
    assert (found.effect, found.p, found.reading) == (None, None, reading)


def test_strongest_first_and_settings_without_a_figure_last_in_order():
    runs = [
        ({"inner_lr": lr, "seed": seed, "steps": 5}, 1.0 / lr + 0.01 * seed)
        for lr in (0.01, 0.1, 1.0)
        for seed in (0, 1, 2)
    ]
    found = sweep_importance(["steps", "seed", "inner_lr"], runs, metric="val_loss", maximize=False)
    assert [item.setting for item in found] == ["inner_lr", "seed", "steps"]
    # Ranks tied three by three: rho = -54 / sqrt(54 * 60) = -sqrt(0.9), a loss: effect +.
    assert found[0].effect == pytest.approx(math.sqrt(0.9)) and found[2].effect is None
    # Seed rank sums 12, 15, 18: H = 12 / 90 * 231 - 30 = 0.8, eps^2 = 0.8 / 8; p = exp(-0.8 / 2).
    assert found[1].effect == pytest.approx(0.1) and found[1].p == pytest.approx(math.exp(-0.4))
