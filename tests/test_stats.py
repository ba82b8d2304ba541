"""Statistics helpers: intervals, paired tests, bootstrap and the seeds estimate."""

import math

import numpy as np
import pytest
from scipy import stats

from alphaprune.engine.stats import (
    bootstrap_ci,
    mean_ci,
    paired_difference,
    seeds_needed,
    t_halfwidth,
)


def test_mean_ci_is_the_student_t_interval():
    x = np.random.default_rng(1).normal(3.0, 2.0, size=7)
    ci = mean_ci(x)
    half = stats.t.ppf(0.975, 6) * x.std(ddof=1) / math.sqrt(7)
    assert (
        ci.n == 7 and ci.mean == pytest.approx(x.mean()) and ci.std == pytest.approx(x.std(ddof=1))
    )
    assert (ci.low, ci.high) == pytest.approx((x.mean() - half, x.mean() + half))
    assert ci.halfwidth == pytest.approx(half)


def test_mean_ci_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(400):
        ci = mean_ci(rng.normal(10.0, 1.5, size=5))
        hits += ci.low <= 10.0 <= ci.high
    assert 0.91 <= hits / 400 <= 0.99


def test_mean_ci_edge_cases():
    single = mean_ci([2.5])
    assert single.mean == 2.5 and math.isnan(single.low) and math.isnan(single.std)
    constant = mean_ci([1.0, 1.0, 1.0])
    assert (constant.low, constant.high, constant.std) == (1.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="non-finite"):
        mean_ci([1.0, float("nan")])
    with pytest.raises(ValueError, match="no values"):
        mean_ci([])


def test_paired_difference_matches_a_one_sample_test_of_the_differences():
    rng = np.random.default_rng(2)
    b = rng.normal(25, 2, size=6)
    a = b + rng.normal(0.5, 0.3, size=6)  # large seed effect, small paired effect
    d = paired_difference(a, b)
    one_sample = stats.ttest_1samp(a - b, 0.0)
    assert d.p_value == pytest.approx(one_sample.pvalue)
    assert d.mean == pytest.approx(np.mean(a - b)) and d.std == pytest.approx(np.std(a - b, ddof=1))
    assert d.low > 0  # the pairing removes the seed effect: significant
    unpaired = stats.ttest_ind(a, b)
    assert unpaired.pvalue > d.p_value
    with pytest.raises(ValueError, match="pairs"):
        paired_difference([1.0, 2.0], [1.0])


def test_bootstrap_ci_covers_the_mean_and_narrows_with_more_items():
    rng = np.random.default_rng(3)
    small = rng.normal(30, 3, size=20)
    large = rng.normal(30, 3, size=400)
    lo_s, hi_s = bootstrap_ci(small)
    lo_l, hi_l = bootstrap_ci(large)
    assert lo_s < small.mean() < hi_s and lo_l < large.mean() < hi_l
    assert hi_l - lo_l < (hi_s - lo_s) / 2
    assert bootstrap_ci(small) == (lo_s, hi_s)  # seeded: reproducible
    assert bootstrap_ci([4.0]) == (4.0, 4.0) and bootstrap_ci([2.0, 2.0]) == (2.0, 2.0)


@pytest.mark.parametrize("std, half", [(1.8, 0.3), (0.5, 0.3), (0.2, 0.3), (1.0, 1.0)])
def test_seeds_needed_is_the_smallest_sufficient_n(std, half):
    n = seeds_needed(std, half)
    assert n >= 2 and t_halfwidth(std, n) <= half
    if n > 2:
        assert t_halfwidth(std, n - 1) > half
    assert seeds_needed(0.0, half) == 2
    with pytest.raises(ValueError):
        seeds_needed(std, 0.0)
