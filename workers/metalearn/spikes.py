"""Loss spikes: a meta-training loss far above its recent level, reported as a
warning while training goes on.

A spike is not a divergence. The loss is finite and the run continues; many spikes
recover within a few steps (a meta-batch whose inner loop overshoots, typical of
second-order MAML with several inner steps), and some come just before a divergence.
NaN and inf fail the run (the loop's ``DivergenceError``); a spike only warns.

The rule, on the natural log of the loss: a step's loss is a spike when it is above
the median of the previous ``window`` ordinary losses by at least ``log(factor)``
*and* by at least ``z`` times their median absolute deviation. The first condition
keeps small relative moves quiet on a steady curve (a tiny deviation would otherwise
make a 2x step look extreme); the second keeps a noisy curve quiet (the MNN's loss,
near zero, moves by 10-36x from one meta-batch to the next).

Measured to choose the thresholds (``benchmarks/spike_thresholds.py``: 4,000
sinusoid iterations of MAML, FOMAML, Reptile, Meta-SGD, ANIL and the MNN on two seeds
and seed-mnn on one, 1,500 digits iterations of MAML, ANIL and ProtoNets, and 5-step
MAML on seeds 0-6): the largest value of the MADs figure in the runs that trained
normally was 11.0 (an MNN loss near 0.005 moving 36x); five of the seven 5-step MAML
seeds had steps at 19.1-52 MADs and 15x-121,000x, and one of them diverged 660 steps
after its spike. Hence ``mads = 15`` and ``factor = 10``.

A spike is told once, at the step it starts (most last one step: the chart shows
the rest). Spike losses never enter the window. A spike ends, silently, at the
first step that is no spike by the same rule against the window it started from; a
loss that stays high for ``window`` steps is a new level, told once, and the window
starts again from it. The window and a spike in progress are part of the checkpoint
(:meth:`SpikeWatch.state`), so a resumed attempt judges its first step as the
uninterrupted run would have.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: Ordinary steps a step is judged against.
SPIKE_WINDOW = 50
#: A spike is at least this many times its window's median...
SPIKE_FACTOR = 10.0
#: ...and at least this many median absolute deviations above it (of the log loss).
SPIKE_MADS = 15.0
#: The kinds of :class:`SpikeNotice`, as the run's history stores them.
SPIKE, SPIKE_LEVEL = "spike", "spike_level"
SPIKE_KINDS = (SPIKE, SPIKE_LEVEL)
#: The smallest spread of the log loss a step is judged with (a perfectly flat window).
MIN_LOG_MAD = 1e-3


@dataclass(frozen=True)
class SpikeNotice:
    """What the reporter is told: the step it happened at, and a sentence for people."""

    step: int
    kind: str  # "spike" or "spike_level"
    message: str


def spike_figures(window: Iterable[float], log: float) -> tuple[float, float]:
    """How far a log loss ``log`` stands above a ``window`` of earlier log losses: its
    ratio to their median loss, and how many median absolute deviations (at least
    ``MIN_LOG_MAD``) it is above their median. A spike has both past their limits."""
    logs = list(window)
    median = statistics.median(logs)
    mad = max(statistics.median(abs(v - median) for v in logs), MIN_LOG_MAD)
    return math.exp(log - median), (log - median) / mad


def _number(value: float) -> str:
    return f"{value:.3g}"


class SpikeWatch:
    """Judges each step's loss (:meth:`observe`) and says when a spike starts and when
    a high loss has become the new level. Pure Python: no torch."""

    def __init__(self, window: int = SPIKE_WINDOW, factor: float = SPIKE_FACTOR, mads: float = SPIKE_MADS):
        self.window = window
        self.factor = factor
        self.mads = mads
        self._logs: deque[float] = deque(maxlen=window)
        self._start: int | None = None  # the step a spike in progress started at
        self._length = 0
        self._median = 0.0

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps (JSON-ready): the window, and the spike in progress."""
        logs, start = list(self._logs), self._start
        return {"logs": logs, "start": start, "length": self._length, "median": self._median}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state`'s answer. Raises ``ValueError`` on a malformed one."""
        logs = [float(v) for v in state["logs"]]
        start = state["start"]
        if not all(math.isfinite(v) for v in logs) or (start is not None and not isinstance(start, int)):
            raise ValueError(f"spike state: not a window of finite log losses and a step: {state!r}")
        self._logs = deque(logs[-self.window :], maxlen=self.window)
        self._start = start
        self._length = int(state["length"])
        self._median = float(state["median"])

    def _is_spike(self, log: float) -> tuple[bool, float]:
        """Whether ``log`` is a spike against the window, and its ratio to the window's median."""
        ratio, mads = spike_figures(self._logs, log)
        return ratio >= self.factor and mads >= self.mads, ratio

    def observe(self, step: int, loss: float) -> SpikeNotice | None:
        """Judge ``loss`` (finite and positive to be judged) at ``step``."""
        if not math.isfinite(loss) or loss <= 0:
            return None
        log = math.log(loss)
        if len(self._logs) < self.window:
            self._logs.append(log)
            return None
        spike, ratio = self._is_spike(log)
        if self._start is None:
            if not spike:
                self._logs.append(log)
                return None
            median = loss / ratio
            self._start, self._length, self._median = step, 1, median
            return SpikeNotice(
                step,
                SPIKE,
                f"Loss spike at step {step:,}: {_number(loss)}, {_number(ratio)}x the median "
                f"({_number(median)}) of the {self.window} steps before. Training goes on.",
            )
        return self._during(step, loss, log, spike)

    def _during(self, step: int, loss: float, log: float, spike: bool) -> SpikeNotice | None:
        """A step of a spike in progress: over (silently) once the loss is back under
        the limit, a new level once it has stayed above it for a whole window."""
        if not spike:
            self._start = None
            self._logs.append(log)
            return None
        start = self._start
        self._length += 1
        if self._length < self.window:
            return None
        self._start = None
        self._logs.clear()  # the high loss is the new level: judge what follows against it
        return SpikeNotice(
            step,
            SPIKE_LEVEL,
            f"The loss has stayed high since its spike at step {start:,} ({self.window} steps): "
            f"{_number(loss)} at step {step:,}, against {_number(self._median)} before it. "
            "Later steps are judged against this level.",
        )
