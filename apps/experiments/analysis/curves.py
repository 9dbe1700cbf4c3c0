"""Curves for charts: min-max downsampling per pixel bucket and the estimated wall
time of a step. (EMA smoothing is done by the chart, ``static/js/compare_runs.js``,
over the points served, so the slider redraws without a request.)

Downsampling splits the visible x range into ``points // 2`` equal-width buckets
(about one per pixel column) and keeps, in each bucket, the point with the lowest
and the point with the highest value (one point when they coincide). So every
bucket's minimum and maximum survive exactly, at their own x: a one-step spike of
100x is the maximum of its bucket and stays drawn, where averaging or striding
would erase it. Min-max was chosen over LTTB because LTTB keeps one point per
bucket picked by triangle area, which can drop a bucket's extreme.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

#: The default and the largest number of points per series sent to a chart.
DEFAULT_POINTS = 2000
MAX_POINTS = 4000


@dataclass(frozen=True)
class Series:
    """One curve: ``x`` ascending, ``y`` finite, same length."""

    x: NDArray[np.float64]
    y: NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.x.size)


def series_clean(x: ArrayLike, y: ArrayLike) -> tuple[Series, int]:
    """The finite points of ``(x, y)`` sorted by x, and how many were dropped for
    being NaN or infinite (JSON and log scales cannot carry them)."""
    xs = np.asarray(x, dtype=np.float64).reshape(-1)
    ys = np.asarray(y, dtype=np.float64).reshape(-1)
    if xs.shape != ys.shape:
        raise ValueError(f"x has {xs.size} values and y {ys.size}")
    keep = np.isfinite(xs) & np.isfinite(ys)
    xs, ys = xs[keep], ys[keep]
    order = np.argsort(xs, kind="stable")
    return Series(xs[order], ys[order]), int((~keep).sum())


def downsample_minmax(
    series: Series, *, points: int = DEFAULT_POINTS, lo: float | None = None, hi: float | None = None
) -> Series:
    """At most ``points`` points of ``series`` (ascending x, finite y), keeping the
    minimum and the maximum of each of ``points // 2`` equal-width buckets over
    ``[lo, hi]`` (the series' own range by default). Points outside ``[lo, hi]``
    are dropped. A series that already fits is returned whole."""
    if points < 2:
        raise ValueError("points must be at least 2")
    x, y = series.x, series.y
    lo = float(x[0]) if lo is None and x.size else lo
    hi = float(x[-1]) if hi is None and x.size else hi
    if x.size and (lo is not None and hi is not None):
        inside = (x >= lo) & (x <= hi)
        x, y = x[inside], y[inside]
    if x.size <= points:
        return Series(x, y)
    buckets = points // 2
    span = (hi - lo) or 1.0
    bucket = np.minimum(((x - lo) / span * buckets).astype(np.int64), buckets - 1)
    # x ascends, so each bucket is one run of rows: reduce each run to its lowest and
    # its highest value, then keep the first row at the lowest and the last at the
    # highest (ties: the earliest x for the minimum, the latest for the maximum).
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    owner = np.repeat(np.arange(starts.size), np.diff(np.r_[starts, x.size]))
    at_low = np.flatnonzero(y == np.minimum.reduceat(y, starts)[owner])
    at_high = np.flatnonzero(y == np.maximum.reduceat(y, starts)[owner])
    firsts = at_low[np.r_[True, owner[at_low][1:] != owner[at_low][:-1]]]
    lasts = at_high[np.r_[owner[at_high][1:] != owner[at_high][:-1], True]]
    keep = np.zeros(x.size, dtype=bool)
    keep[firsts] = True
    keep[lasts] = True
    return Series(x[keep], y[keep])


def with_edges(shown: Series, full: Series, *, lo: float | None, hi: float | None) -> Series:
    """``shown`` (the points of ``full`` within ``[lo, hi]``) with ``full``'s nearest
    point before ``lo`` and after ``hi``: a chart zoomed to ``[lo, hi]`` then draws a
    sparse series' line across the window's edges (an evaluation every 500 steps, a
    system figure every 10 s) instead of nothing. The chart clips them at the edges."""
    before = full.x < lo if lo is not None else np.zeros(full.x.size, dtype=bool)
    after = full.x > hi if hi is not None else np.zeros(full.x.size, dtype=bool)
    first = np.flatnonzero(before)[-1:]  # the last point before lo, if any
    last = np.flatnonzero(after)[:1]
    if not first.size and not last.size:
        return shown
    x = np.concatenate([full.x[first], shown.x, full.x[last]])
    y = np.concatenate([full.y[first], shown.y, full.y[last]])
    return Series(x, y)


def seconds_per_step(*, elapsed_seconds: float | None, last_step: int) -> float | None:
    """The run's mean time per step: no metric stores its own time, so a step's wall
    time is estimated as ``step * seconds_per_step`` from the run's start. None
    when the run has not started or made no step."""
    if elapsed_seconds is None or last_step <= 0 or elapsed_seconds < 0:
        return None
    return elapsed_seconds / last_step
