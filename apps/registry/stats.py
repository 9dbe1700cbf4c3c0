"""Statistics for comparing adapted models on the same fixed test tasks.

Torch-free (numpy and scipy only): the web process imports it.

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
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as sps

__all__ = ["ALPHA", "MeanCI", "PairedResult", "mean_ci95", "paired_comparison"]

#: The significance level of :attr:`PairedResult.significant`.
ALPHA = 0.05


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
