"""apps.registry.stats: the paired comparison against scipy and a hand computation,
its behaviour on clear and null effects, the confidence intervals, and the edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from apps.registry.stats import mean_ci95, paired_comparison


def _pair(seed: int, n: int = 600, shift: float = 0.0, noise: float = 0.3):
    """A skewed per-task loss for ``a`` and ``b = a + shift + noise``, as two models
    evaluated on the same tasks would give."""
    rng = np.random.default_rng(seed)
    a = rng.gamma(2.0, 0.5, size=n)
    b = a + shift + rng.normal(0.0, noise, size=n)
    return a, b


def test_t_statistic_and_p_match_scipy_and_a_hand_computation():
    a, b = _pair(1, n=50, shift=0.1)
    result = paired_comparison(a, b)

    d = b - a
    n = d.size
    mean = sum(d) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    t_by_hand = mean / (sd / math.sqrt(n))
    reference = sps.ttest_rel(b, a)

    assert result.n == n and result.df == n - 1
    assert result.mean_diff == pytest.approx(mean, rel=1e-12)
    assert result.sd_diff == pytest.approx(sd, rel=1e-12)
    assert result.t == pytest.approx(t_by_hand, rel=1e-10)
    assert result.t == pytest.approx(reference.statistic, rel=1e-10)
    assert result.p_value == pytest.approx(reference.pvalue, rel=1e-9)
    assert result.wilcoxon_p == pytest.approx(sps.wilcoxon(b, a).pvalue, rel=1e-12)
    assert result.mean_a == pytest.approx(a.mean()) and result.mean_b == pytest.approx(b.mean())


def test_direction_is_b_minus_a():
    a = np.array([1.0, 2.0, 3.0, 4.0])
    b = a - np.array([0.5, 0.4, 0.6, 0.5])  # b is lower on every task
    result = paired_comparison(a, b)
    assert result.mean_diff == pytest.approx(-0.5)
    assert result.t < 0
    swapped = paired_comparison(b, a)
    assert swapped.mean_diff == pytest.approx(0.5) and swapped.t == pytest.approx(-result.t)


def test_confidence_interval_of_the_difference_is_t_based():
    a, b = _pair(2, n=30, shift=0.2)
    result = paired_comparison(a, b)
    d = b - a
    half = sps.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size)
    assert result.ci_low == pytest.approx(d.mean() - half, rel=1e-10)
    assert result.ci_high == pytest.approx(d.mean() + half, rel=1e-10)
    assert result.ci_half_width == pytest.approx(half, rel=1e-10)
    # scipy's own interval for the paired test agrees.
    low, high = sps.ttest_rel(b, a).confidence_interval(0.95)
    assert (result.ci_low, result.ci_high) == (pytest.approx(low), pytest.approx(high))


def test_a_clear_difference_is_significant_and_its_interval_holds_the_true_shift():
    a, b = _pair(3, shift=0.15)
    result = paired_comparison(a, b)
    assert result.significant
    assert result.p_value < 1e-6 and result.wilcoxon_p < 1e-6
    assert result.ci_low < 0.15 < result.ci_high
    assert result.ci_low > 0


def test_noise_without_a_shift_is_mostly_not_significant():
    rejections = sum(paired_comparison(*_pair(seed)).significant for seed in range(200))
    # 5% expected under the null; 200 draws: a binomial(200, 0.05) is below 20 with
    # probability > 0.999. Fixed seeds make this deterministic anyway.
    assert rejections < 20
    assert rejections > 0  # the test can reject at all


def test_interval_covers_the_true_shift_about_95_percent_of_the_time():
    covered = 0
    for seed in range(300):
        a, b = _pair(1000 + seed, n=40, shift=-0.05)
        result = paired_comparison(a, b)
        covered += result.ci_low <= -0.05 <= result.ci_high
    assert 0.91 <= covered / 300 <= 0.99


def test_mean_ci95_matches_the_t_interval():
    x = np.random.default_rng(4).normal(2.0, 1.0, size=25)
    ci = mean_ci95(x)
    low, high = sps.t.interval(0.95, df=24, loc=x.mean(), scale=sps.sem(x))
    assert ci.n == 25
    assert ci.mean == pytest.approx(x.mean())
    assert (ci.low, ci.high) == (pytest.approx(low), pytest.approx(high))
    assert mean_ci95([3.0]).half_width == 0.0
    assert mean_ci95([1.0, 1.0, 1.0]).half_width == 0.0


def test_identical_samples_are_not_significant():
    a = np.linspace(0.1, 2.0, 20)
    result = paired_comparison(a, a.copy())
    assert (result.mean_diff, result.sd_diff, result.t, result.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert result.wilcoxon_p == 1.0
    assert not result.significant
    assert (result.ci_low, result.ci_high) == (0.0, 0.0)


def test_a_constant_shift_is_significant_without_dividing_by_zero():
    a = np.linspace(0.0, 1.0, 10)
    result = paired_comparison(a, a + 0.25)
    assert result.mean_diff == pytest.approx(0.25)
    assert result.t == math.inf and result.p_value == 0.0
    assert result.significant
    assert result.ci_low == pytest.approx(0.25) and result.ci_high == pytest.approx(0.25)
    assert paired_comparison(a, a - 0.25).t == -math.inf


@pytest.mark.parametrize(
    ("a", "b", "message"),
    [
        ([1.0, 2.0, 3.0], [1.0, 2.0], "pair up"),
        ([1.0], [2.0], "at least 2"),
        ([], [], "empty"),
        ([1.0, float("nan")], [1.0, 2.0], "NaN"),
        ([1.0, 2.0], [1.0, float("inf")], "NaN or infinite"),
        ([[1.0, 2.0]], [[1.0, 2.0]], "one-dimensional"),
    ],
)
def test_bad_input_is_a_value_error(a, b, message):
    with pytest.raises(ValueError, match=message):
        paired_comparison(a, b)


def test_mean_ci95_rejects_nan_and_empty():
    with pytest.raises(ValueError, match="NaN"):
        mean_ci95([1.0, float("nan")])
    with pytest.raises(ValueError, match="empty"):
        mean_ci95([])
