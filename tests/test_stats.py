"""Statistics helpers: intervals, paired tests, bootstrap and the seeds estimate."""

import math

import numpy as np
import pytest
from scipy import stats

from alphaprune.engine.stats import (
    MIN_CLUSTERS,
    bootstrap_ci,
    cluster_bootstrap,
    holm,
    mean_ci,
    paired_difference,
    sd_interval,
    seeds_needed,
    seeds_needed_range,
    significant,
    t_halfwidth,
    tost,
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


@pytest.mark.heavy
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
    constant = mean_ci([1.0, 1.0, 1.0])  # sd 0: the spread is unknown, not zero
    assert constant.std == 0.0 and math.isnan(constant.low) and math.isnan(constant.high)
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
    assert all(math.isnan(v) for v in bootstrap_ci([4.0]) + bootstrap_ci([2.0, 2.0]))


@pytest.mark.parametrize("std, half", [(1.8, 0.3), (0.5, 0.3), (0.2, 0.3), (1.0, 1.0)])
def test_seeds_needed_is_the_smallest_sufficient_n(std, half):
    n = seeds_needed(std, half)
    assert n >= 2 and t_halfwidth(std, n) <= half
    if n > 2:
        assert t_halfwidth(std, n - 1) > half
    assert seeds_needed(0.0, half) == 2
    with pytest.raises(ValueError):
        seeds_needed(std, 0.0)


def test_identical_differences_give_no_interval_and_no_p_value():
    d = paired_difference([1.0, 2.0, 3.0], [0.5, 1.5, 2.5])  # every difference is 0.5
    assert d.mean == 0.5 and d.std == 0.0
    assert math.isnan(d.low) and math.isnan(d.high) and math.isnan(d.p_value)
    assert not significant(d.p_value, 0.05)
    assert math.isnan(tost([0.1, 0.1, 0.1], 0.2))


def test_tost_is_the_larger_of_two_one_sided_t_tests():
    rng = np.random.default_rng(4)
    d = rng.normal(0.02, 0.1, size=12)
    lower = stats.ttest_1samp(d, -0.2, alternative="greater").pvalue
    upper = stats.ttest_1samp(d, 0.2, alternative="less").pvalue
    assert tost(d, 0.2) == pytest.approx(max(lower, upper))
    assert tost(d, 0.2) < 0.05  # small differences, tight: equivalent within ±0.2
    assert tost(d + 0.5, 0.2) > 0.5  # shifted out of the margin: not equivalent
    assert tost(rng.normal(0.0, 1.0, size=4), 0.2) > 0.05  # noisy and few: undecided
    with pytest.raises(ValueError, match="margin"):
        tost(d, 0.0)


def test_holm_adjustment_matches_the_step_down_rule():
    adjusted = holm([0.01, 0.04, 0.03, 0.20])
    # sorted 0.01, 0.03, 0.04, 0.20 times 4, 3, 2, 1, then made monotone
    assert adjusted == pytest.approx([0.04, 0.09, 0.09, 0.20])
    with_nan = holm([0.01, float("nan"), 0.04])  # NaN is untestable: not in the family
    assert with_nan[0] == pytest.approx(0.02) and math.isnan(with_nan[1])
    assert with_nan[2] == pytest.approx(0.04)
    assert holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []


def test_sd_interval_is_the_chi_square_interval_and_covers_the_true_sd():
    low, high = sd_interval(1.0, 5)
    assert low == pytest.approx(math.sqrt(4 / stats.chi2.ppf(0.975, 4)))
    assert high == pytest.approx(math.sqrt(4 / stats.chi2.ppf(0.025, 4)))
    assert 0.59 < low < 0.61 and 2.8 < high < 2.9  # a 4-d.o.f. sd is uncertain by ×0.6 – ×2.9
    rng = np.random.default_rng(5)
    hits = 0
    for _ in range(400):
        x = rng.normal(0, 2.0, size=6)
        lo, hi = sd_interval(float(x.std(ddof=1)), 6)
        hits += lo <= 2.0 <= hi
    assert 0.91 <= hits / 400 <= 0.99
    assert all(math.isnan(v) for v in sd_interval(1.0, 1))


def test_seeds_needed_range_spans_the_sd_interval():
    point, low, high = seeds_needed_range(0.24, 5, 0.2)
    assert low <= point <= high and low < high
    assert point == seeds_needed(0.24, 0.2)
    assert high == seeds_needed(sd_interval(0.24, 5)[1], 0.2)
    assert all(math.isnan(v) for v in seeds_needed_range(0.0, 5, 0.2))


def _images(rng, n_images, tiles=20, image_sd=2.0, tile_sd=0.05):
    """Rows (squared error, count) per image: images differ a lot, tiles of one image little."""
    out = []
    for _ in range(n_images):
        level = 10 ** (-(25 + rng.normal(0, image_sd)) / 10)  # an image's MSE around 25 dB
        mse = level * np.exp(rng.normal(0, tile_sd, size=tiles))
        out.append(np.column_stack([mse * 100, np.full(tiles, 100.0)]))
    return out


def _mean_psnr(sums):
    return (10 * np.log10(sums[..., 1] / sums[..., 0])).mean(axis=-1)


def test_cluster_bootstrap_resamples_images_not_tiles():
    rng = np.random.default_rng(6)
    groups = _images(rng, 8)
    ci = cluster_bootstrap(groups, _mean_psnr)
    assert ci.available and ci.n_clusters == 8 and ci.low < ci.estimate < ci.high
    # the tiles as if independent: far too narrow when the images differ
    tiles = np.concatenate([10 * np.log10(g[:, 1] / g[:, 0]) for g in groups])
    naive_low, naive_high = bootstrap_ci(tiles)
    assert (ci.high - ci.low) > 3 * (naive_high - naive_low)
    assert cluster_bootstrap(groups, _mean_psnr) == ci  # seeded


def test_cluster_bootstrap_gives_no_interval_for_few_images():
    rng = np.random.default_rng(7)
    for n in (1, 3, MIN_CLUSTERS - 1):
        ci = cluster_bootstrap(_images(rng, n), _mean_psnr)
        assert not ci.available and math.isnan(ci.low) and math.isnan(ci.high)
        assert f"only {n} image" in ci.reason and math.isfinite(ci.estimate)
    assert cluster_bootstrap(_images(rng, MIN_CLUSTERS), _mean_psnr).available


@pytest.mark.heavy
def test_cluster_bootstrap_covers_the_mean_of_images():
    rng = np.random.default_rng(8)
    hits, trials = 0, 60
    for _ in range(trials):
        ci = cluster_bootstrap(_images(rng, 12, image_sd=1.0), _mean_psnr, n_resamples=400)
        hits += ci.low <= 25.0 <= ci.high
    assert hits / trials >= 0.8  # a percentile bootstrap of 12 clusters undercovers a little
