"""Statistics for results: the sample-ratio-mismatch (SRM) chi-squared test and the Wilson
score interval of a conversion rate.

The chi-squared survival function is computed here (regularised upper incomplete gamma,
series and continued fraction as in Numerical Recipes) so the service does not depend on
SciPy; the tests check it against SciPy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Z_95", "SrmResult", "chi2_sf", "sample_ratio_mismatch", "wilson_interval"]

SRM_ALPHA = 0.001  # the conventional threshold: a p-value below it flags a mismatch
Z_95 = 1.959963984540054  # the standard normal quantile of 0.975: a two-sided 95% interval


def _gamma_p_series(a: float, x: float) -> float:
    term = total = 1.0 / a
    n = a
    for _ in range(10_000):
        n += 1.0
        term *= x / n
        total += term
        if abs(term) < abs(total) * 1e-15:
            break
    return total * math.exp(-x + a * math.log(x) - math.lgamma(a))


def _gamma_q_continued_fraction(a: float, x: float) -> float:
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return math.exp(-x + a * math.log(x) - math.lgamma(a)) * h


def chi2_sf(statistic: float, dof: int) -> float:
    """P(X >= statistic) for X ~ chi-squared with `dof` degrees of freedom."""
    if dof <= 0:
        raise ValueError("degrees of freedom must be positive")
    if statistic <= 0:
        return 1.0
    a, x = dof / 2.0, statistic / 2.0
    if x < a + 1.0:
        return max(0.0, 1.0 - _gamma_p_series(a, x))
    return min(1.0, _gamma_q_continued_fraction(a, x))


@dataclass(frozen=True, slots=True)
class SrmResult:
    statistic: float
    p_value: float
    mismatch: bool


def sample_ratio_mismatch(observed: Sequence[int], weights: Sequence[float]) -> SrmResult:
    """Chi-squared goodness of fit of observed exposures against the configured weights."""
    total = sum(observed)
    weight_sum = sum(weights)
    if total == 0 or len(observed) < 2:
        return SrmResult(0.0, 1.0, False)
    statistic = 0.0
    for count, weight in zip(observed, weights, strict=True):
        expected = total * weight / weight_sum
        if expected > 0:
            statistic += (count - expected) ** 2 / expected
    p_value = chi2_sf(statistic, len(observed) - 1)
    return SrmResult(statistic, p_value, p_value < SRM_ALPHA)


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95% by default).

    Why Wilson rather than the textbook normal ("Wald") interval: it stays inside [0, 1] and
    keeps its coverage for small samples and rates near 0 or 1, which is exactly where a young
    experiment's variants are. No trials: (0, 1), we know nothing."""
    if trials <= 0:
        return (0.0, 1.0)
    if not 0 <= successes <= trials:
        raise ValueError(f"successes must be within 0..{trials}, got {successes}")
    p = successes / trials
    z2 = z * z
    centre = (p + z2 / (2 * trials)) / (1 + z2 / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / (1 + z2 / trials)
    # At 0 or all successes the bound is exactly 0 or 1 (not a rounding error away from it).
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return (low, high)
