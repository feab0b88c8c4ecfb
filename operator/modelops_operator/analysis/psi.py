"""Population Stability Index and Jensen-Shannon divergence of observed counts against reference
shares: pure arithmetic, no Prometheus.

Numeric features arrive as cumulative histogram buckets (`le` -> count, as `increase()` of
`modelops_feature_value_bucket` returns them); their bins are right-closed and their interior
bounds are exactly the reference `edges`, so bin i's count is `c(le=b_i) - c(le=b_(i-1))` and no
re-binning is needed. Categorical features arrive as counts per category, with `__other__` for
every value outside the reference categories.

    PSI = sum_i (a_i - e_i) * ln(a_i / e_i)

with `a_i` the observed share and `e_i` the reference share of bin i, both floored at `EPSILON`
so that an empty bin contributes a large but finite term instead of an infinity. Shares are floored,
not renormalised, the usual convention (an unseen bin of a 10-bin reference then adds about
0.1 * ln(0.1 / 1e-4) = 0.69).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from modelops_api import contract

EPSILON = 1e-4
OTHER = "__other__"
# Bucket bounds are written by prometheus_client as the float's shortest repr and equal the
# reference edges exactly; the tolerance only forgives a reference stored with fewer digits.
EDGE_TOLERANCE = 1e-9


class ReferenceMismatch(ValueError):
    """The observed series cannot be compared with the reference (other bins, no bins)."""


@dataclass(frozen=True)
class Comparison:
    """PSI and JS (base 2) of one feature, and the number of observations behind them."""

    psi: float
    js: float
    samples: float


def bin_counts(cumulative: Mapping[float, float]) -> list[float]:
    """Per-bin counts from cumulative `le` buckets (with `+Inf`), lowest bin first.

    A negative difference (a counter reset inside the window that `increase()` corrected for one
    bucket and not its neighbour) is clamped to zero.
    """
    if not cumulative or math.inf not in cumulative:
        raise ReferenceMismatch("no +Inf bucket")
    counts: list[float] = []
    previous = 0.0
    for bound in sorted(cumulative):
        value = cumulative[bound]
        counts.append(max(value - previous, 0.0))
        previous = max(value, previous)
    return counts


def shares(counts: Sequence[float]) -> list[float]:
    total = sum(counts)
    if total <= 0:
        raise ReferenceMismatch("no observations")
    return [c / total for c in counts]


def psi(observed: Sequence[float], expected: Sequence[float], epsilon: float = EPSILON) -> float:
    """PSI of observed shares against expected shares, both floored at `epsilon`."""
    if len(observed) != len(expected):
        raise ReferenceMismatch(f"{len(observed)} observed bins, {len(expected)} in the reference")
    total = 0.0
    for a, e in zip(observed, expected, strict=True):
        a, e = max(a, epsilon), max(e, epsilon)
        total += (a - e) * math.log(a / e)
    return total


def jensen_shannon(observed: Sequence[float], expected: Sequence[float]) -> float:
    """Jensen-Shannon divergence in bits (0: same shares, 1: disjoint); empty bins need no floor."""
    if len(observed) != len(expected):
        raise ReferenceMismatch(f"{len(observed)} observed bins, {len(expected)} in the reference")
    p_total, q_total = sum(observed), sum(expected)
    if p_total <= 0 or q_total <= 0:
        raise ReferenceMismatch("no observations")
    divergence = 0.0
    for a, e in zip(observed, expected, strict=True):
        p, q = a / p_total, e / q_total
        m = (p + q) / 2
        if p > 0:
            divergence += 0.5 * p * math.log2(p / m)
        if q > 0:
            divergence += 0.5 * q * math.log2(q / m)
    return min(max(divergence, 0.0), 1.0)


def _same_edges(bounds: Sequence[float], edges: Sequence[float]) -> bool:
    return len(bounds) == len(edges) and all(
        math.isclose(b, e, rel_tol=EDGE_TOLERANCE, abs_tol=EDGE_TOLERANCE)
        for b, e in zip(bounds, edges, strict=True)
    )


def numeric(cumulative: Mapping[float, float], reference: Mapping[str, object]) -> Comparison:
    """One numeric feature: cumulative buckets against `{"edges": [...], "proportions": [...]}`."""
    edges = [_number(e) for e in _sequence(reference, contract.REFERENCE_EDGES)]
    proportions = [_number(p) for p in _sequence(reference, contract.REFERENCE_PROPORTIONS)]
    if len(proportions) != len(edges) + 1:
        raise ReferenceMismatch(
            f"the reference has {len(edges)} edges and {len(proportions)} proportions"
        )
    bounds = sorted(b for b in cumulative if math.isfinite(b))
    if not _same_edges(bounds, edges):
        raise ReferenceMismatch(f"bucket bounds {bounds} are not the reference edges {edges}")
    counts = bin_counts(cumulative)
    observed = shares(counts)
    return Comparison(
        psi=psi(observed, proportions),
        js=jensen_shannon(observed, proportions),
        samples=sum(counts),
    )


def categorical(counts: Mapping[str, float], reference: Mapping[str, object]) -> Comparison:
    """One categorical feature: counts per category against `{"categories": {...}, "other": p}`.

    The bins are the reference categories and `__other__`; a category outside the reference (an
    older runtime's, say) is counted as `__other__`.
    """
    categories = reference.get("categories")
    if not isinstance(categories, Mapping):
        raise ReferenceMismatch("the reference has no categories")
    names = [str(c) for c in categories]
    expected = [_number(categories[c]) for c in categories]
    expected.append(_number(reference.get("other", 0.0)))
    observed = [0.0] * (len(names) + 1)
    index = {name: i for i, name in enumerate(names)}
    for category, count in counts.items():
        observed[index.get(category, len(names))] += max(count, 0.0)
    share = shares(observed)
    return Comparison(
        psi=psi(share, expected),
        js=jensen_shannon(share, expected),
        samples=sum(observed),
    )


def _sequence(reference: Mapping[str, object], key: str) -> Sequence[object]:
    value = reference.get(key)
    if not isinstance(value, list | tuple):
        raise ReferenceMismatch(f"the reference has no {key}")
    return value


def _number(value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise ReferenceMismatch(f"{value!r} is not a number")
