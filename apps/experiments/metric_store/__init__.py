"""The metric store: the one place that knows how points are kept.

A run's metric is a *series* (``MetricSeries``: one row per (run, name) with its
figures: count, last step and value, lowest and highest value) and its points are
*chunks* (``MetricChunk``: up to ``CHUNK_POINTS`` consecutive points, steps int32
and values float64 packed in bytes, with an envelope of per-block extremes for wide
charts). About 13 bytes a point, against 139 for one row per point.

The rule for replays: per (run, name), steps only grow. A point whose step is not
above the highest step stored for its name is a replay and is skipped; the stored
value stays (Weights & Biases has the same monotonic-step rule). So a resumed
attempt that replays steps never duplicates or overwrites a point.
"""

from apps.experiments.metric_store.codec import CHUNK_POINTS
from apps.experiments.metric_store.read import (
    ChartPoints,
    chart_read,
    points_count,
    points_read,
    run_chunks,
    run_series_names,
    series_figures,
    series_last_steps,
    values_at,
)
from apps.experiments.metric_store.write import points_append

__all__ = [
    "CHUNK_POINTS",
    "ChartPoints",
    "chart_read",
    "points_append",
    "points_count",
    "points_read",
    "run_chunks",
    "run_series_names",
    "series_figures",
    "series_last_steps",
    "values_at",
]
