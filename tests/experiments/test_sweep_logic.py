"""Sweep dimensions, their expansion and the ASHA rule: pure functions, no database."""

from __future__ import annotations

import pytest

from apps.experiments.sweeps.asha import asha_keeps, asha_rungs
from apps.experiments.sweeps.dimensions import DimensionError, dimension_parse
from apps.experiments.sweeps.expand import grid_points, grid_size, random_points


def test_list_range_and_log_are_parsed():
    assert dimension_parse("inner_lr", "0.001, 0.01,0.1", value_type="float").values == (0.001, 0.01, 0.1)
    assert dimension_parse("inner_steps", "1..7 step 2", value_type="int").values == (1, 3, 5, 7)
    assert dimension_parse("meta_lr", "0.1..0.3 step 0.1", value_type="float").values == (0.1, 0.2, 0.3)
    log = dimension_parse("meta_lr", "1e-4..1e-1 log", value_type="float")
    assert (log.kind, log.low, log.high, log.finite) == ("log", 1e-4, 0.1, False)
    assert dimension_parse("first_order", "true, False", value_type="bool").values == (True, False)
    device = dimension_parse("device", "cpu,auto", value_type="choice", choices=("auto", "cpu", "cuda"))
    assert device.values == ("cpu", "auto")
    assert log.to_dict() == {"kind": "log", "low": 1e-4, "high": 0.1, "integer": False}


@pytest.mark.parametrize(
    ("text", "value_type", "message"),
    [
        ("", "float", "Give a list"),
        ("5..1 step 1", "int", "empty"),
        ("1..5 step 0", "int", "step must be greater than 0"),
        ("0.1..0.01 log", "float", "empty"),
        ("0..1 log", "float", "above 0"),
        ("1, two", "int", "'two' is not a whole number"),
        ("1.5", "int", "not a whole number"),
        ("nan", "float", "finite"),
        ("yes", "bool", "true or false"),
        ("1..5", "int", "Write a range as"),
        ("1..100000 step 1", "int", "at most"),
        ("1," * 1500, "int", "at most 2,000 characters"),
    ],
)
def test_bad_dimensions_say_why(text, value_type, message):
    with pytest.raises(DimensionError, match=message):
        dimension_parse("x", text, value_type=value_type)


def test_a_choice_outside_the_choices_is_refused():
    with pytest.raises(DimensionError, match="'tpu' is not one of: auto, cpu"):
        dimension_parse("device", "tpu", value_type="choice", choices=("auto", "cpu"))


def test_grid_is_the_cartesian_product():
    a = dimension_parse("inner_lr", "0.1, 0.2", value_type="float")
    b = dimension_parse("inner_steps", "1..3 step 1", value_type="int")
    points = grid_points([a, b])
    assert grid_size([a, b]) == len(points) == 6
    assert points[:2] == [{"inner_lr": 0.1, "inner_steps": 1}, {"inner_lr": 0.1, "inner_steps": 2}]
    assert len({tuple(p.items()) for p in points}) == 6


def test_grid_refuses_a_log_range():
    with pytest.raises(DimensionError, match="meta_lr"):
        grid_points([dimension_parse("meta_lr", "0.001..0.1 log", value_type="float")])


def test_random_points_are_seeded_and_in_range():
    dims = [
        dimension_parse("meta_lr", "0.0001..0.1 log", value_type="float"),
        dimension_parse("inner_steps", "1,2,3", value_type="int"),
        dimension_parse("mnn_hidden", "8..512 log", value_type="int"),
    ]
    first = random_points(dims, samples=50, seed=7)
    assert first == random_points(dims, samples=50, seed=7)
    assert first != random_points(dims, samples=50, seed=8)
    assert all(1e-4 <= p["meta_lr"] <= 0.1 and p["inner_steps"] in (1, 2, 3) for p in first)
    assert all(isinstance(p["mnn_hidden"], int) and 8 <= p["mnn_hidden"] <= 512 for p in first)
    assert len({p["meta_lr"] for p in first}) > 40  # drawn, not repeated


def test_asha_rungs_grow_by_eta_below_the_last_step():
    assert asha_rungs(min_resource=10, max_resource=100) == [10, 30, 90]
    assert asha_rungs(min_resource=10, max_resource=90) == [10, 30]
    assert asha_rungs(min_resource=0, max_resource=90) == []


def test_asha_keeps_the_top_third_of_those_at_the_rung():
    # The first at a rung always continues; so does the better of two.
    assert asha_keeps(5.0, [], maximize=False)
    assert asha_keeps(1.0, [2.0], maximize=False)
    assert not asha_keeps(3.0, [2.0], maximize=False)
    # Six values: the top two (6 // 3) continue.
    assert asha_keeps(0.2, [0.1, 0.5, 0.6, 0.7, 0.8], maximize=False)
    assert not asha_keeps(0.3, [0.1, 0.2, 0.6, 0.7, 0.8], maximize=False)
    # Accuracy: higher is better.
    assert asha_keeps(0.9, [0.5, 0.6], maximize=True)
    assert not asha_keeps(0.4, [0.5, 0.6], maximize=True)
    # A tie keeps the run.
    assert asha_keeps(1.0, [1.0], maximize=False)
