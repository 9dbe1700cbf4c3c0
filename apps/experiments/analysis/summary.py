"""Per-run summaries for the compare page: the final and the best value of each
metric, and the run's duration. The one place that knows which metrics are better
high (accuracy-like) and which low (losses and errors)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from workers.system_metrics import SYSTEM_PREFIX

#: Metric names (after any ``val_`` prefix) that are better high; all others are
#: better low (loss, mse, error...).
HIGHER_IS_BETTER = ("accuracy", "acc", "precision", "recall", "f1", "auc", "r2")


def higher_is_better(name: str) -> bool:
    """``accuracy``, ``val_accuracy``, ``val.acc`` rise; ``loss``, ``val_mse`` fall."""
    lowered = name.lower()
    return any(lowered == word or lowered.endswith(("_" + word, "." + word)) for word in HIGHER_IS_BETTER)


@dataclass(frozen=True)
class MetricSummary:
    """One metric of one run: ``final`` is the value at its last step, ``best`` the
    lowest or the highest value (by the metric's direction); None when unknown."""

    name: str
    final: float | None
    best: float | None
    higher_is_better: bool


def metric_summary(name: str, *, final: float | None, low: float | None, high: float | None) -> MetricSummary:
    """The summary from a metric's last value and its extremes (``MIN``/``MAX``
    computed by the database); non-finite figures become None. A system figure
    (memory, CPU) has no better direction: its peak is shown."""
    higher = higher_is_better(name) or name.startswith(SYSTEM_PREFIX)
    return MetricSummary(name, _finite(final), _finite(high if higher else low), higher)


def _finite(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def run_duration(started_at: datetime | None, ended_at: datetime | None) -> float | None:
    """Seconds from start to end (finish, or now for a run in progress); None
    when it has not started."""
    if started_at is None or ended_at is None:
        return None
    return max((ended_at - started_at).total_seconds(), 0.0)


def duration_display(seconds: float | None) -> str:
    """``"1 h 02 min"``, ``"3 min 05 s"``, ``"42 s"``, or ``"—"``."""
    if seconds is None:
        return "—"
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"
