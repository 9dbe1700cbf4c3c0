"""The fair-share order, without a database."""

from __future__ import annotations

from datetime import datetime

from apps.experiments.fairshare import fair_order

T0, T1 = datetime(2026, 1, 1), datetime(2026, 1, 2)


def test_one_teams_backlog_alternates_with_another_teams_runs():
    waiting = [(i, "a") for i in range(1, 101)] + [(200, "b")]
    order = fair_order(waiting, in_flight={}, last_served={})
    assert order[:3] == [1, 200, 2]  # b's run, queued last, goes second
    assert order[3:] == list(range(3, 101))
    assert sorted(order) == sorted(pk for pk, _ in waiting)


def test_the_team_with_fewer_runs_in_flight_goes_first():
    waiting = [(1, "a"), (2, "b"), (3, "b")]
    assert fair_order(waiting, in_flight={"a": 2}, last_served={}) == [2, 3, 1]
    assert fair_order(waiting, in_flight={"a": 2, "b": 1}, last_served={}) == [2, 1, 3]
    assert fair_order(waiting, in_flight={"a": 1, "b": 1}, last_served={}) == [1, 2, 3]


def test_among_equals_the_team_served_longest_ago_goes_first():
    waiting = [(1, "a"), (2, "a"), (3, "b")]
    # Both idle; a was served yesterday, b never: b first, although a's runs are older.
    assert fair_order(waiting, in_flight={}, last_served={"a": T0}) == [3, 1, 2]
    assert fair_order(waiting, in_flight={}, last_served={"a": T0, "b": T1}) == [1, 3, 2]


def test_three_teams_take_turns_and_each_keeps_its_own_order():
    waiting = [(1, "a"), (2, "a"), (3, "b"), (4, "a"), (5, "c"), (6, "b")]
    assert fair_order(waiting, in_flight={}, last_served={}) == [1, 3, 5, 2, 6, 4]
    assert fair_order([], in_flight={"a": 3}, last_served={"a": T0}) == []
