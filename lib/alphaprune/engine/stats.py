"""Statistics of studies and evaluations, all from :mod:`scipy.stats` (no hand-written resampling).

- :func:`mean_ci`: mean, sd and the Student-t confidence interval of the mean across seeds;
- :func:`paired_difference`: mean and sd of ``a − b`` paired by seed, its t interval and the
  p-value of the paired t-test (``scipy.stats.ttest_rel``);
- :func:`bootstrap_ci`: bootstrap interval of a mean over validation items (``scipy.stats.bootstrap``),
  the evaluation noise of one model;
- :func:`seeds_needed`: how many paired seeds a t interval of a given half-width needs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = [
    "Interval",
    "PairedDifference",
    "bootstrap_ci",
    "mean_ci",
    "paired_difference",
    "seeds_needed",
    "t_halfwidth",
]


@dataclass(frozen=True)
class Interval:
    """Mean, sample sd (ddof 1), count and the confidence interval of the mean."""

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
    """Mean of ``values`` with its Student-t interval (NaN interval for fewer than 2 values)."""
    x = _finite(values, "mean_ci")
    if x.size == 0:
        raise ValueError("mean_ci: no values")
    mean = float(x.mean())
    if x.size < 2:
        return Interval(1, mean, math.nan, math.nan, math.nan)
    std = float(x.std(ddof=1))
    if std == 0.0:
        return Interval(int(x.size), mean, 0.0, mean, mean)
    low, high = stats.t.interval(confidence, df=x.size - 1, loc=mean, scale=stats.sem(x))
    return Interval(int(x.size), mean, std, float(low), float(high))


def paired_difference(
    a: Sequence[float], b: Sequence[float], confidence: float = 0.95
) -> PairedDifference:
    """``a − b`` paired element by element (same seed): mean, sd, t interval, ``ttest_rel`` p."""
    x, y = _finite(a, "paired_difference a"), _finite(b, "paired_difference b")
    if x.shape != y.shape:
        raise ValueError(f"paired_difference: {x.size} values against {y.size}; pairs needed")
    base = mean_ci(x - y, confidence)
    p = math.nan
    if base.n >= 2 and base.std > 0:
        p = float(stats.ttest_rel(x, y).pvalue)
    return PairedDifference(base.n, base.mean, base.std, base.low, base.high, p)


def bootstrap_ci(
    values: Sequence[float],
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Bootstrap (BCa) interval of the mean of ``values`` (e.g. per-crop PSNRs); seeded.

    One value gives ``(v, v)``; constant values give a zero-width interval.
    """
    x = _finite(values, "bootstrap_ci")
    if x.size == 0:
        raise ValueError("bootstrap_ci: no values")
    if x.size == 1 or np.all(x == x[0]):
        return float(x[0]), float(x[0])
    result = stats.bootstrap(
        (x,),
        np.mean,
        confidence_level=confidence,
        n_resamples=n_resamples,
        method="BCa",
        rng=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def t_halfwidth(std: float, n: int, confidence: float = 0.95) -> float:
    """Half-width of the t interval of a mean of ``n`` values with sample sd ``std``."""
    if n < 2:
        return math.inf
    return float(stats.t.ppf(0.5 + confidence / 2, df=n - 1) * std / math.sqrt(n))


def seeds_needed(
    std: float, halfwidth: float, confidence: float = 0.95, max_n: int = 100_000
) -> int:
    """Smallest ``n ≥ 2`` whose t interval (sd ``std``) is at most ``halfwidth`` wide on each side.

    Uses the measured sd as if it were the true one (a planning estimate, not a guarantee).
    Returns ``max_n`` when even that many seeds are not enough.
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
