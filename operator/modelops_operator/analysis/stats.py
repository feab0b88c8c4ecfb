"""One-sided tests of "the canary is worse than stable", pure, with `math` only.

The operator's image carries no scipy, so the normal distribution is `math.erfc` and the
hypergeometric one `math.lgamma`; tests/operator/test_analysis_stats.py checks both against
scipy. docs/monitoring.md gives the formulas.

- `proportions`: is the canary's share of bad outcomes (5xx, wrong answers) higher than
  stable's? The two-proportion z-test with the pooled proportion and Yates' continuity correction
  (R's `prop.test(correct = TRUE, alternative = "greater")`) when its normal approximation holds,
  that is when every expected count of the 2x2 table is at least `MIN_EXPECTED`; otherwise
  Fisher's exact test (one-sided), which needs no approximation. No bad outcome on either side
  (or only bad ones) is no evidence: p = 1.
- `mann_whitney`: are the canary's observations larger (slower) than stable's? The Mann-Whitney
  U test on histogram bins: every observation in a bin ties with the others of that bin and
  takes the bin's mid-rank; the variance has the tie correction, the normal approximation a
  continuity correction of 0.5 (scipy's `mannwhitneyu(alternative="greater",
  method="asymptotic")`).

Counts may be fractional (Prometheus' `increase()` extrapolates); the z and U statistics take them
as they are, Fisher's test rounds them to whole observations.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# The smallest expected count of every cell of the 2x2 table for the normal approximation (the
# usual rule for a chi-square or z test on proportions); below it, Fisher's exact test.
MIN_EXPECTED = 5.0


@dataclass(frozen=True)
class Test:
    """One test's result: the statistic (z; the U statistic's z for Mann-Whitney; the canary's
    bad count for Fisher's), the one-sided p-value, and which test it was."""

    statistic: float
    p_value: float
    method: str


def normal_sf(z: float) -> float:
    """P(Z > z) for a standard normal Z."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def proportions(bad_canary: float, n_canary: float, bad_stable: float, n_stable: float) -> Test:
    """One-sided test that the canary's proportion of bad outcomes exceeds stable's."""
    if n_canary <= 0 or n_stable <= 0:
        raise ValueError("both tracks need observations")
    if not (0 <= bad_canary <= n_canary and 0 <= bad_stable <= n_stable):
        raise ValueError("a bad count must lie between 0 and its track's observations")
    n = n_canary + n_stable
    bad = bad_canary + bad_stable
    expected = min(bad, n - bad) * min(n_canary, n_stable) / n  # the smallest expected cell
    if expected >= MIN_EXPECTED:
        return z_test(bad_canary, n_canary, bad_stable, n_stable)
    return fisher(bad_canary, n_canary, bad_stable, n_stable)


def z_test(bad_canary: float, n_canary: float, bad_stable: float, n_stable: float) -> Test:
    """The pooled two-proportion z-test with Yates' continuity correction, one-sided."""
    pooled = (bad_canary + bad_stable) / (n_canary + n_stable)
    inverse = 1 / n_canary + 1 / n_stable
    if pooled <= 0 or pooled >= 1:
        return Test(0.0, 1.0, "z-test")
    delta = bad_canary / n_canary - bad_stable / n_stable
    corrected = max(abs(delta) - 0.5 * inverse, 0.0)  # never past zero (R's min(0.5, ...))
    z = math.copysign(corrected, delta) / math.sqrt(pooled * (1 - pooled) * inverse)
    return Test(z, normal_sf(z), "z-test")


def _log_choose(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def fisher(bad_canary: float, n_canary: float, bad_stable: float, n_stable: float) -> Test:
    """Fisher's exact test, one-sided: P(X >= the canary's bad count) for X hypergeometric with
    the table's margins (the canary's share of all bad outcomes if the tracks were alike)."""
    a, n1 = round(bad_canary), round(n_canary)
    bad, n = a + round(bad_stable), n1 + round(n_stable)
    low, high = max(0, bad - (n - n1)), min(bad, n1)
    if a <= low:
        return Test(float(a), 1.0, "Fisher's exact test")
    base = _log_choose(n, n1)
    p = sum(
        math.exp(_log_choose(bad, k) + _log_choose(n - bad, n1 - k) - base)
        for k in range(a, high + 1)
    )
    return Test(float(a), min(1.0, p), "Fisher's exact test")


def mann_whitney(canary: Sequence[float], stable: Sequence[float]) -> Test:
    """One-sided Mann-Whitney U test that the canary's observations are larger than stable's, from
    their counts per bin (the same bins, in increasing order)."""
    if len(canary) != len(stable):
        raise ValueError("both tracks need the same bins")
    n1, n2 = sum(canary), sum(stable)
    if n1 <= 0 or n2 <= 0:
        raise ValueError("both tracks need observations")
    n = n1 + n2
    u = 0.0  # pairs where the canary's observation is larger, ties counting half
    stable_below = 0.0
    ties = 0.0
    for c, s in zip(canary, stable, strict=True):
        u += c * (stable_below + s / 2)
        stable_below += s
        t = c + s
        ties += t**3 - t
    mean = n1 * n2 / 2
    variance = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)))
    if variance <= 0:  # every observation in one bin: nothing tells the tracks apart
        return Test(0.0, 1.0, "Mann-Whitney U test")
    z = (u - mean - 0.5) / math.sqrt(variance)
    return Test(z, normal_sf(z), "Mann-Whitney U test")
