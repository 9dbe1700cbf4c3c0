"""The comparison's analysis: pure functions over numpy arrays, no ORM, no Django.

Pairing tasks by their ids, means with confidence intervals, the paired t-test and
Wilcoxon test, Tukey box statistics and histogram counts on edges shared by every
compared model. :mod:`apps.reviews.comparison.load` turns stored rows into the
arrays these take; :mod:`apps.reviews.comparison.display` places the results on the
page. Torch-free (numpy and scipy only): the web process imports it.

Conventions, used everywhere in the registry's comparison pages:

* A 95% confidence interval is **t-based**: ``mean ± t(0.975, n-1) · s / sqrt(n)``
  with the sample standard deviation ``s`` (``ddof=1``). The engine's stored
  ``AdaptedModel.ci95`` uses 1.96 standard errors instead; for 600 tasks the two
  half-widths differ by 0.2%.
* A paired comparison of ``a`` (the reference) and ``b`` (the challenger) is over
  the per-task differences ``d = b - a`` (same task in the same position). A
  negative ``mean_diff`` means ``b`` scored lower than ``a``: better for MSE,
  worse for accuracy. The callers say which way is better; these functions only
  count.
* The paired t-test is the primary test; the Wilcoxon signed-rank test is
  reported beside it as a check that does not assume normal differences
  (post-adaptation MSE over tasks is strongly skewed).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as sps

from apps.experiments.analysis.summary import higher_is_better

__all__ = [
    "ALPHA",
    "BatchAnalysis",
    "BoxStats",
    "ItemAnalysis",
    "MeanCI",
    "PairedResult",
    "TaskMismatch",
    "align_tasks",
    "analyse_batch",
    "box_stats",
    "higher_is_better",
    "histogram",
    "mean_ci95",
    "mean_curve",
    "outcome",
    "paired_comparison",
    "shared_edges",
]

#: The significance level of :attr:`PairedResult.significant`.
ALPHA = 0.05
#: Shared histogram bins across the compared models.
HIST_BINS = 30
#: The histogram's right edge is this quantile of the pooled scores for MSE (heavy
#: right tail); higher values are counted as ``overflow``. Accuracy uses its maximum.
HIST_UPPER_QUANTILE = 0.99


@dataclass(frozen=True)
class MeanCI:
    """A mean with its t-based 95% confidence interval ``[low, high]``;
    ``half_width`` is the ``±`` part (0 when ``n`` is 1 or the values are equal)."""

    mean: float
    half_width: float
    n: int

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width


@dataclass(frozen=True)
class PairedResult:
    """The paired comparison of ``b`` against the reference ``a`` over the same tasks.

    ``mean_diff`` is ``mean(b - a)`` and ``ci_low``/``ci_high`` its t-based 95%
    interval. ``t`` is the paired t statistic ``mean(d) / (sd(d) / sqrt(n))`` with
    ``n - 1`` degrees of freedom and ``p_value`` its two-sided p-value.
    ``wilcoxon_p`` is the two-sided Wilcoxon signed-rank p-value (scipy's defaults:
    zero differences dropped, exact distribution for small samples, normal
    approximation otherwise). ``significant`` is ``p_value < alpha``.

    When every difference is the same number (zero variance) the t statistic is not
    defined by the formula; by convention here, equal samples (all differences 0)
    give ``t = 0``, ``p = 1``, and a constant non-zero shift gives ``t = ±inf``,
    ``p = 0`` (the shift is certain under any noise model). ``wilcoxon_p`` is 1 when
    all differences are 0.
    """

    n: int
    mean_a: float
    mean_b: float
    mean_diff: float
    sd_diff: float
    ci_low: float
    ci_high: float
    t: float
    df: int
    p_value: float
    wilcoxon_p: float
    alpha: float = ALPHA

    @property
    def significant(self) -> bool:
        return self.p_value < self.alpha

    @property
    def ci_half_width(self) -> float:
        return (self.ci_high - self.ci_low) / 2.0


def _vector(x: ArrayLike, name: str) -> np.ndarray:
    """``x`` as a 1-D float64 array of finite numbers, or ValueError."""
    array = np.asarray(x, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(array)):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise ValueError(f"{name} holds {bad} value(s) that are NaN or infinite")
    return array


def _t_quantile(df: int) -> float:
    return float(sps.t.ppf(0.975, df))


def mean_ci95(x: ArrayLike) -> MeanCI:
    """Mean of ``x`` with its t-based 95% confidence interval. ValueError on an empty
    array or a NaN/infinite value."""
    values = _vector(x, "x")
    n = values.size
    mean = float(values.mean())
    if n < 2:
        return MeanCI(mean=mean, half_width=0.0, n=n)
    sd = float(values.std(ddof=1))
    return MeanCI(mean=mean, half_width=_t_quantile(n - 1) * sd / math.sqrt(n), n=n)


def paired_comparison(a: ArrayLike, b: ArrayLike, *, alpha: float = ALPHA) -> PairedResult:
    """Compare ``b`` with the reference ``a``, position by position (the same task at
    the same index). See :class:`PairedResult` for what each figure means.

    Raises ValueError when the lengths differ, when there are fewer than 2 pairs, or
    when a value is NaN or infinite.
    """
    xa, xb = _vector(a, "a"), _vector(b, "b")
    if xa.size != xb.size:
        raise ValueError(f"a and b must pair up task by task: {xa.size} values against {xb.size}")
    n = xa.size
    if n < 2:
        raise ValueError("a paired comparison needs at least 2 tasks")
    if not 0 < alpha < 1:
        raise ValueError("alpha must be between 0 and 1")
    d = xb - xa
    mean_diff = float(d.mean())
    sd_diff = float(d.std(ddof=1))
    df = n - 1
    # Differences equal to rounding: treat as zero variance rather than divide by ~0.
    scale = max(float(np.abs(d).max()), 1e-300)
    if sd_diff <= 1e-12 * scale:
        sd_diff = 0.0
        half = 0.0
        if mean_diff == 0.0:
            t, p = 0.0, 1.0
        else:
            t, p = math.copysign(math.inf, mean_diff), 0.0
    else:
        se = sd_diff / math.sqrt(n)
        half = _t_quantile(df) * se
        t = mean_diff / se
        p = float(2.0 * sps.t.sf(abs(t), df))
    if np.all(d == 0.0):
        wilcoxon_p = 1.0
    else:
        wilcoxon_p = float(sps.wilcoxon(xb, xa).pvalue)
    return PairedResult(
        n=n,
        mean_a=float(xa.mean()),
        mean_b=float(xb.mean()),
        mean_diff=mean_diff,
        sd_diff=sd_diff,
        ci_low=mean_diff - half,
        ci_high=mean_diff + half,
        t=float(t),
        df=df,
        p_value=min(1.0, max(0.0, p)),
        wilcoxon_p=wilcoxon_p,
        alpha=alpha,
    )


# -- direction ----------------------------------------------------------------------


def outcome(paired: PairedResult | None, metric: str) -> str:
    """``"better"``, ``"worse"`` (significant at 0.05, by the metric's direction),
    ``"not significant"``, or ``""`` for the reference itself."""
    if paired is None:
        return ""
    if not paired.significant:
        return "not significant"
    improved = paired.mean_diff > 0 if higher_is_better(metric) else paired.mean_diff < 0
    return "better" if improved else "worse"


# -- pairing tasks --------------------------------------------------------------------


class TaskMismatch(ValueError):
    """Item ``index`` was not evaluated on the reference's (item 0's) tasks."""

    def __init__(self, index: int, reference_size: int, size: int) -> None:
        super().__init__(f"item {index}: {size} tasks that are not the reference's {reference_size}")
        self.index = index
        self.reference_size = reference_size
        self.size = size


def align_tasks(task_ids: Sequence[np.ndarray]) -> list[np.ndarray]:
    """For each item, the order that sorts its tasks by id, so that position ``i``
    is the same task in every item. Raises :class:`TaskMismatch` naming the first
    item whose set of task ids differs from item 0's."""
    orders: list[np.ndarray] = []
    reference: np.ndarray | None = None
    for index, ids in enumerate(task_ids):
        order = np.argsort(ids, kind="stable")
        ids = ids[order]
        if reference is None:
            reference = ids
        elif ids.shape != reference.shape or not np.array_equal(ids, reference):
            raise TaskMismatch(index, int(reference.size), int(ids.size))
        orders.append(order)
    return orders


# -- distributions --------------------------------------------------------------------


@dataclass(frozen=True)
class BoxStats:
    """Tukey's box plot: quartiles, whiskers at the furthest values within 1.5 IQR,
    and the counts beyond them."""

    minimum: float
    whisker_low: float
    q1: float
    median: float
    q3: float
    whisker_high: float
    maximum: float
    outliers_low: int
    outliers_high: int


def box_stats(values: ArrayLike) -> BoxStats:
    """Tukey's box statistics of ``values`` (finite, not empty)."""
    values = np.asarray(values, dtype=np.float64)
    q1, median, q3 = (float(v) for v in np.percentile(values, [25, 50, 75]))
    iqr = q3 - q1
    inside = values[(values >= q1 - 1.5 * iqr) & (values <= q3 + 1.5 * iqr)]
    low, high = float(inside.min()), float(inside.max())
    return BoxStats(
        minimum=float(values.min()),
        whisker_low=low,
        q1=q1,
        median=median,
        q3=q3,
        whisker_high=high,
        maximum=float(values.max()),
        outliers_low=int(np.count_nonzero(values < low)),
        outliers_high=int(np.count_nonzero(values > high)),
    )


def shared_edges(pooled: np.ndarray, metric: str, bins: int = HIST_BINS) -> np.ndarray:
    """``bins + 1`` histogram edges shared by every compared model: from the pooled
    minimum to the maximum (accuracy) or to the 99th percentile (MSE's long tail)."""
    lo = float(pooled.min())
    if higher_is_better(metric):
        hi = float(pooled.max())
    else:
        hi = float(np.quantile(pooled, HIST_UPPER_QUANTILE))
    if not hi > lo:
        hi = lo + max(abs(lo) * 1e-6, 1e-9)
    return np.linspace(lo, hi, bins + 1)


def histogram(scores: np.ndarray, edges: np.ndarray) -> tuple[list[int], int]:
    """Counts per bin of ``edges`` and the number of scores above the last edge
    (counted apart, not in the last bin). Scores below the first edge go in the first."""
    counts, _ = np.histogram(np.clip(scores, edges[0], edges[-1]), bins=edges)
    overflow = int(np.count_nonzero(scores > edges[-1]))
    counts[-1] -= overflow  # clipping put them in the last bin; they are shown apart
    return [int(c) for c in counts], overflow


def mean_curve(losses: np.ndarray) -> list[float | None]:
    """The mean over tasks of a ``[tasks, steps+1]`` loss matrix, per step; steps
    whose mean is not finite (a diverged task) are None."""
    with np.errstate(invalid="ignore", over="ignore"):
        curve = losses.mean(axis=0, dtype=np.float64)
    return [float(v) if math.isfinite(v) else None for v in curve]


# -- a batch comparison ---------------------------------------------------------------


@dataclass(frozen=True)
class ItemAnalysis:
    """One item's figures; ``paired`` is against item 0 (None for item 0 itself)."""

    n_tasks: int
    curve: list[float | None]
    after: float
    mean_ci: MeanCI
    paired: PairedResult | None
    hist_counts: list[int]
    overflow: int
    box: BoxStats


@dataclass(frozen=True)
class BatchAnalysis:
    items: list[ItemAnalysis]
    bin_edges: np.ndarray


def analyse_batch(
    scores: Sequence[np.ndarray], losses: Sequence[np.ndarray | None], metric: str
) -> BatchAnalysis:
    """Compare the items' per-task ``scores`` (already aligned by :func:`align_tasks`,
    finite) with item 0's, and summarise each item's ``[tasks, steps+1]`` ``losses``
    (None when not stored) as a mean curve."""
    edges = shared_edges(np.concatenate(list(scores)), metric)
    items = []
    for index, (values, matrix) in enumerate(zip(scores, losses, strict=True)):
        counts, overflow = histogram(values, edges)
        items.append(
            ItemAnalysis(
                n_tasks=int(values.size),
                curve=mean_curve(matrix) if matrix is not None else [],
                after=float(values.mean(dtype=np.float64)),
                mean_ci=mean_ci95(values),
                paired=None if index == 0 else paired_comparison(scores[0], values),
                hist_counts=counts,
                overflow=overflow,
                box=box_stats(values),
            )
        )
    return BatchAnalysis(items=items, bin_edges=edges)
