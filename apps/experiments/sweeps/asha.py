"""Asynchronous successive halving (ASHA; Li et al., 2020, "A System for Massively
Parallel Hyperparameter Tuning", arXiv:1810.05934), in its stopping form.

Rungs are eval steps: ``min_resource`` (the first evaluation), then each ``eta``
times the previous, below the run's last step. A run is judged at the highest rung
it has reached, against every run that reached that rung so far (and itself); it
continues only if it ranks in the top ``1/eta`` of them (at least the best one).
No run waits for the others to reach a rung: that is what makes it asynchronous.
Until it reaches the next rung, a run can still be stopped by better runs that
reach its rung after it: so only ``1/eta`` of the runs at a rung go past it, as in
successive halving.
"""

from __future__ import annotations

from collections.abc import Sequence

#: The reduction factor: one run in ``ETA`` continues at each rung.
ETA = 3


def asha_rungs(*, min_resource: int, max_resource: int, eta: int = ETA) -> list[int]:
    """The rung steps: ``min_resource * eta**k`` below ``max_resource`` (the last step
    ends the run anyway, so it is no rung)."""
    if min_resource <= 0 or eta < 2:
        return []
    rungs: list[int] = []
    step = min_resource
    while step < max_resource:
        rungs.append(step)
        step *= eta
    return rungs


def asha_keeps(value: float, others: Sequence[float], *, maximize: bool, eta: int = ETA) -> bool:
    """Whether a run with ``value`` at a rung continues, given the ``others`` values
    recorded at that rung (not including this run's). Ties keep the run."""
    everyone = len(others) + 1
    keep = max(1, everyone // eta)
    better = sum(1 for other in others if (other > value if maximize else other < value))
    return better < keep
