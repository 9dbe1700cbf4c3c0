"""apps.reviews.comparison.analysis: the paired comparison against scipy and a hand computation,
its behaviour on clear and null effects, the confidence intervals, and the edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from apps.reviews.comparison.analysis import (
    TaskMismatch,
    align_tasks,
    analyse_batch,
    box_stats,
    histogram,
    mean_ci95,
    mean_curve,
    outcome,
    paired_comparison,
    shared_edges,
)


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


# -- pairing, distributions and a whole batch analysis, all without a database --------


def test_align_tasks_pairs_by_id_whatever_the_stored_order():
    ids_a = np.array([2, 0, 1, 3])
    ids_b = np.array([3, 1, 0, 2])
    orders = align_tasks([ids_a, ids_b])
    assert ids_a[orders[0]].tolist() == ids_b[orders[1]].tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("other", [np.array([0, 1, 2, 4]), np.array([0, 1, 2])])
def test_align_tasks_names_the_first_item_on_other_tasks(other):
    with pytest.raises(TaskMismatch) as caught:
        align_tasks([np.arange(4), np.arange(4), other])
    assert (caught.value.index, caught.value.reference_size, caught.value.size) == (2, 4, other.size)


def test_box_stats_are_tukeys():
    values = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 100.0])
    box = box_stats(values)
    assert (box.q1, box.median, box.q3) == (3.0, 5.0, 7.0)
    assert (box.whisker_low, box.whisker_high) == (1.0, 8.0)
    assert (box.outliers_low, box.outliers_high, box.maximum) == (0, 1, 100.0)


def test_shared_edges_stop_at_the_99th_percentile_for_mse_and_the_maximum_for_accuracy():
    pooled = np.arange(1001, dtype=np.float64)
    mse = shared_edges(pooled, "mse")
    accuracy = shared_edges(pooled, "accuracy")
    assert mse.size == accuracy.size == 31
    assert mse[0] == accuracy[0] == 0.0
    assert mse[-1] == pytest.approx(990.0) and accuracy[-1] == 1000.0
    assert shared_edges(np.full(5, 2.0), "mse")[-1] > 2.0  # equal values still get a width


def test_histogram_counts_the_tail_apart():
    edges = np.array([0.0, 1.0, 2.0])
    counts, overflow = histogram(np.array([-1.0, 0.5, 1.5, 2.0, 3.0, 9.0]), edges)
    assert counts == [2, 2] and overflow == 2


def test_mean_curve_averages_tasks_and_blanks_diverged_steps():
    losses = np.array([[2.0, 1.0, np.inf], [4.0, 3.0, 1.0]], dtype=np.float32)
    assert mean_curve(losses) == [3.0, 2.0, None]


def test_analyse_batch_compares_with_the_first_on_shared_edges():
    rng = np.random.default_rng(7)
    a = rng.gamma(2.0, 1.0, 200)
    b = a * 0.5  # every task better
    losses = np.stack([a + 1.0, a], axis=1)
    analysis = analyse_batch([a, b], [losses, None], "mse")
    first, second = analysis.items
    assert first.paired is None and first.curve == pytest.approx([float(a.mean() + 1.0), float(a.mean())])
    assert second.curve == [] and second.paired.mean_diff < 0 and second.paired.significant
    assert outcome(second.paired, "mse") == "better" and outcome(second.paired, "accuracy") == "worse"
    assert outcome(first.paired, "mse") == ""
    assert analysis.bin_edges[0] == pytest.approx(min(a.min(), b.min()))
    for figures, scores in ((first, a), (second, b)):
        assert sum(figures.hist_counts) + figures.overflow == scores.size
        assert figures.after == pytest.approx(scores.mean())
        assert figures.mean_ci.mean == pytest.approx(scores.mean())
