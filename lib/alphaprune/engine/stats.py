"""Statistics of studies and evaluations, from :mod:`scipy.stats` where it has them.

- :func:`mean_ci`: mean, sd and the Student-t confidence interval of the mean across seeds;
- :func:`paired_difference`: mean and sd of ``a − b`` paired by (baseline, seed), its t
  interval and the p-value of the paired t-test (``scipy.stats.ttest_rel``);
- :func:`tost`: the two one-sided tests of equivalence within ``±margin``
  (``scipy.stats.ttest_1samp`` with one-sided alternatives);
- :func:`holm`: Holm's step-down adjustment of p-values for a family of comparisons;
- :func:`sd_interval`: the chi-square confidence interval of a sample sd (how uncertain the
  noise estimate of 4 degrees of freedom is), and :func:`seeds_needed_range` built on it;
- :func:`cluster_bootstrap`: a two-stage bootstrap over images (clusters), then tiles within
  each image — the evaluation noise of a score measured on a few images; absent when there are
  fewer than :data:`MIN_CLUSTERS` images;
- :func:`bootstrap_ci`: bootstrap interval of a mean over independent items
  (``scipy.stats.bootstrap``).

A statistic that cannot be estimated is NaN, never a number that looks exact: an sd of 0
(identical values) gives no interval and no p-value, and a NaN p-value is never significant.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = [
    "MIN_CLUSTERS",
    "ClusterInterval",
    "Interval",
    "PairedDifference",
    "bootstrap_ci",
    "cluster_bootstrap",
    "holm",
    "mean_ci",
    "paired_difference",
    "sd_interval",
    "seeds_needed",
    "seeds_needed_range",
    "significant",
    "t_halfwidth",
    "tost",
]

#: Fewest images (clusters) for an evaluation interval over images: with fewer, the bootstrap
#: distribution of a mean has at most a handful of distinct values and its percentile interval
#: is far too narrow (3 images give 10 distinct resampled means), so none is given.
MIN_CLUSTERS = 5


@dataclass(frozen=True)
class Interval:
    """Mean, sample sd (ddof 1), count and the confidence interval of the mean (NaN when it
    cannot be estimated: fewer than 2 values, or an sd of 0)."""

    n: int
    mean: float
    std: float
    low: float
    high: float

    @property
    def halfwidth(self) -> float:
        return (self.high - self.low) / 2


@dataclass(frozen=True)
class PairedDifference(Interval):
    """:class:`Interval` of ``a − b`` plus the two-sided p-value of the paired t-test."""

    p_value: float = math.nan


def _finite(values: Sequence[float], what: str) -> np.ndarray:
    array = np.asarray(values, dtype=float).ravel()
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{what}: non-finite values {array.tolist()}")
    return array


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> Interval:
    """Mean of ``values`` with its Student-t interval.

    Fewer than 2 values, or values that are all equal (sd 0: the spread is unknown, not zero),
    give a NaN interval.
    """
    x = _finite(values, "mean_ci")
    if x.size == 0:
        raise ValueError("mean_ci: no values")
    mean = float(x.mean())
    if x.size < 2:
        return Interval(1, mean, math.nan, math.nan, math.nan)
    if np.ptp(x) == 0:  # identical values: sd 0 exactly (numpy's may be ~1e-17)
        return Interval(int(x.size), mean, 0.0, math.nan, math.nan)
    std = float(x.std(ddof=1))
    low, high = stats.t.interval(confidence, df=x.size - 1, loc=mean, scale=stats.sem(x))
    return Interval(int(x.size), mean, std, float(low), float(high))


def paired_difference(
    a: Sequence[float], b: Sequence[float], confidence: float = 0.95
) -> PairedDifference:
    """``a − b`` paired element by element: mean, sd, t interval, ``ttest_rel`` p (NaN when
    fewer than 2 pairs or every difference is the same)."""
    x, y = _finite(a, "paired_difference a"), _finite(b, "paired_difference b")
    if x.shape != y.shape:
        raise ValueError(f"paired_difference: {x.size} values against {y.size}; pairs needed")
    base = mean_ci(x - y, confidence)
    p = math.nan
    if base.n >= 2 and base.std > 0:
        p = float(stats.ttest_rel(x, y).pvalue)
    return PairedDifference(base.n, base.mean, base.std, base.low, base.high, p)


def tost(differences: Sequence[float], margin: float) -> float:
    """p-value of the two one-sided t-tests that the mean of ``differences`` lies within
    ``(−margin, +margin)``: equivalence is shown at level a when it is below a (the
    ``1 − 2a`` t interval then lies inside the margin). NaN for fewer than 2 values or sd 0."""
    if not (math.isfinite(margin) and margin > 0):
        raise ValueError(f"tost: margin must be > 0, got {margin}")
    d = _finite(differences, "tost")
    if d.size < 2 or np.ptp(d) == 0:
        return math.nan
    above = stats.ttest_1samp(d, -margin, alternative="greater").pvalue
    below = stats.ttest_1samp(d, margin, alternative="less").pvalue
    return float(max(above, below))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values of one family of tests (same order as given).

    NaN p-values (untestable comparisons) stay NaN and do not count in the family size.
    """
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, math.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = finite.size
    running = 0.0
    for rank, index in enumerate(finite[np.argsort(p[finite], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[index]))
        out[index] = running
    return out.tolist()


def significant(p_value: float, level: float) -> bool:
    """``p_value < level``; a NaN p-value is never significant."""
    return bool(math.isfinite(p_value) and p_value < level)


def sd_interval(std: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Chi-square confidence interval of the population sd from a sample sd of ``n`` values.

    With ``n − 1`` degrees of freedom ``(n−1)s²/σ²`` is chi-square distributed, so σ lies in
    ``[s·√((n−1)/χ²_hi), s·√((n−1)/χ²_lo)]``; NaN for ``n < 2`` or a non-finite sd.
    """
    if n < 2 or not math.isfinite(std):
        return math.nan, math.nan
    df = n - 1
    tail = (1 - confidence) / 2
    low = std * math.sqrt(df / stats.chi2.ppf(1 - tail, df))
    high = std * math.sqrt(df / stats.chi2.ppf(tail, df))
    return float(low), float(high)


def bootstrap_ci(
    values: Sequence[float],
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Bootstrap (BCa) interval of the mean of independent ``values``; seeded.

    One value or constant values give a NaN interval (the spread is unknown). Not for tiles of
    a few images — they are not independent: use :func:`cluster_bootstrap`.
    """
    x = _finite(values, "bootstrap_ci")
    if x.size == 0:
        raise ValueError("bootstrap_ci: no values")
    if x.size == 1 or np.all(x == x[0]):
        return math.nan, math.nan
    result = stats.bootstrap(
        (x,),
        np.mean,
        confidence_level=confidence,
        n_resamples=n_resamples,
        method="BCa",
        rng=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


@dataclass(frozen=True)
class ClusterInterval:
    """The result of :func:`cluster_bootstrap`: the statistic on the data, its percentile
    interval (NaN with a ``reason`` when there are too few clusters) and the cluster count."""

    estimate: float
    low: float
    high: float
    n_clusters: int
    reason: str = ""

    @property
    def available(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)


def cluster_bootstrap(
    clusters: Sequence[np.ndarray],
    statistic: Callable[[np.ndarray], np.ndarray | float],
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
    min_clusters: int = MIN_CLUSTERS,
) -> ClusterInterval:
    """Two-stage bootstrap: resample clusters (images) with replacement, then the rows (tiles)
    of each drawn cluster with replacement within it. Percentile interval at ``confidence``;
    seeded.

    Each cluster is an array of rows ``(tiles, columns)``; ``statistic`` maps the per-cluster
    column sums, an array ``(..., clusters, columns)``, to one value per leading index (e.g. the
    mean over images of ``10·log10(count / squared error)``). scipy.stats.bootstrap resamples
    one level only; this is the nested resampling for tiles that share an image (the rows drawn
    within a cluster are a multinomial count of its rows). With fewer than ``min_clusters``
    clusters the interval is NaN and ``reason`` says why: the spread between images cannot be
    estimated from so few.
    """
    groups = [np.asarray(c, dtype=float) for c in clusters]
    if not groups or any(g.ndim != 2 or len(g) == 0 for g in groups):
        raise ValueError("cluster_bootstrap: every cluster needs at least one row")
    estimate = float(statistic(np.stack([g.sum(axis=0) for g in groups])))
    n = len(groups)
    if n < min_clusters:
        reason = (
            f"only {n} image{'s' if n != 1 else ''}: an interval over images needs at least "
            f"{min_clusters}"
        )
        return ClusterInterval(estimate, math.nan, math.nan, n, reason)
    rng = np.random.default_rng(seed)
    chosen = rng.integers(n, size=(n_resamples, n))
    drawn = np.empty((n_resamples, n, groups[0].shape[1]))
    for slot in range(n):
        for k in np.unique(chosen[:, slot]):
            hits = chosen[:, slot] == k
            rows = len(groups[k])
            counts = rng.multinomial(rows, np.full(rows, 1.0 / rows), size=int(hits.sum()))
            drawn[hits, slot] = counts @ groups[k]
    values = np.asarray(statistic(drawn), dtype=float)
    tail = (1 - confidence) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return ClusterInterval(estimate, float(low), float(high), n)


def t_halfwidth(std: float, n: int, confidence: float = 0.95) -> float:
    """Half-width of the t interval of a mean of ``n`` values with sample sd ``std``."""
    if n < 2:
        return math.inf
    return float(stats.t.ppf(0.5 + confidence / 2, df=n - 1) * std / math.sqrt(n))


def seeds_needed(
    std: float, halfwidth: float, confidence: float = 0.95, max_n: int = 100_000
) -> int:
    """Smallest ``n ≥ 2`` whose t interval (sd ``std``) is at most ``halfwidth`` wide on each side.

    Uses ``std`` as if it were the true sd (see :func:`seeds_needed_range` for the range that
    the uncertainty of a measured sd gives). Returns ``max_n`` when even that many are not enough.
    """
    if not (math.isfinite(std) and std >= 0):
        raise ValueError(f"seeds_needed: std must be finite and >= 0, got {std}")
    if not halfwidth > 0:
        raise ValueError(f"seeds_needed: halfwidth must be > 0, got {halfwidth}")
    if std == 0:
        return 2
    # normal approximation as the starting point, then walk up with the t quantile
    z = stats.norm.ppf(0.5 + confidence / 2)
    n = max(2, math.ceil((z * std / halfwidth) ** 2))
    while n < max_n and t_halfwidth(std, n, confidence) > halfwidth:
        n += 1
    return min(n, max_n)


def seeds_needed_range(
    std: float, n: int, halfwidth: float, confidence: float = 0.95
) -> tuple[float, float, float]:
    """``(point, low, high)``: the seeds a ``±halfwidth`` interval needs at the measured sd and
    at both ends of the sd's chi-square interval (NaN where the sd cannot be estimated)."""
    if n < 2 or not math.isfinite(std) or std <= 0:
        return math.nan, math.nan, math.nan
    sd_low, sd_high = sd_interval(std, n, confidence)
    return tuple(float(seeds_needed(s, halfwidth, confidence)) for s in (std, sd_low, sd_high))  # type: ignore[return-value]
