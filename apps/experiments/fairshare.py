"""Fair share of a queue between teams: the order in which waiting runs get a slot.

Pure: no database. The dispatcher (``services/scheduling.py``) sends runs in this
order while its queue has free slots, and the run lists show the same order as a
queued run's place ("position 2"), so both agree.

Round-robin by load, then by turn: the next run goes to the team with the fewest
runs in flight on the queue (running, or sent to the broker and not yet started);
among equals, to the team served longest ago (never served first); among those,
the team whose oldest waiting run is oldest. Within a team, runs go oldest first.
Each pick counts as in flight and as the team's latest turn, so one team's 100
waiting runs alternate with another team's single run instead of going first.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Mapping, Sequence
from datetime import datetime

__all__ = ["fair_order"]


def fair_order(
    waiting: Sequence[tuple[int, Hashable]],
    *,
    in_flight: Mapping[Hashable, int],
    last_served: Mapping[Hashable, datetime],
) -> list[int]:
    """Run ids of ``waiting`` (``(run id, team)`` pairs, oldest first) in the order
    they get a slot, given each team's runs ``in_flight`` and when each team was
    ``last_served`` (its latest dispatch on the queue; absent: never)."""
    by_team: dict[Hashable, list[int]] = {}
    first_seen: dict[Hashable, int] = {}
    for index, (run_id, team) in enumerate(waiting):
        by_team.setdefault(team, []).append(run_id)
        first_seen.setdefault(team, index)
    # Turns: teams never served first (0), then by their last dispatch; a pick gets
    # a turn later than every recorded one.
    ranked = sorted(last_served.items(), key=lambda item: item[1])
    turn = {team: rank + 1 for rank, (team, _) in enumerate(ranked)}
    next_turn = len(ranked) + 1
    teams = list(by_team)
    heap = [
        (in_flight.get(team, 0), turn.get(team, 0), first_seen[team], index)
        for index, team in enumerate(teams)
    ]
    heapq.heapify(heap)
    position = dict.fromkeys(teams, 0)
    order: list[int] = []
    while heap:
        load, _, seen, index = heapq.heappop(heap)
        team = teams[index]
        runs = by_team[team]
        order.append(runs[position[team]])
        position[team] += 1
        if position[team] < len(runs):
            heapq.heappush(heap, (load + 1, next_turn, seen, index))
            next_turn += 1
    return order
