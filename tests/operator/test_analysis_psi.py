"""Drift arithmetic: per-bin counts from cumulative buckets, PSI with its floor, JS, categories."""

from __future__ import annotations

import math

import pytest

from modelops_operator.analysis import psi

pytestmark = pytest.mark.unit

INF = math.inf


def test_cumulative_buckets_become_per_bin_counts_lowest_first() -> None:
    # edges 1, 2, 3: bins (-inf,1], (1,2], (2,3], (3,inf)
    assert psi.bin_counts({1.0: 4, 2.0: 4, 3.0: 10, INF: 12}) == [4, 0, 6, 2]


def test_a_bucket_below_its_neighbour_counts_zero_not_negative() -> None:
    # increase() may correct a reset in one bucket and not the next: never a negative bin
    assert psi.bin_counts({1.0: 5, 2.0: 4, INF: 9}) == [5, 0, 4]


def test_no_inf_bucket_is_a_mismatch() -> None:
    with pytest.raises(psi.ReferenceMismatch):
        psi.bin_counts({1.0: 3})


def test_psi_by_hand() -> None:
    # (0.5-0.25) ln(0.5/0.25) + (0.5-0.75) ln(0.5/0.75) = 0.25 ln 2 + 0.25 ln 1.5
    assert psi.psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(
        0.25 * math.log(2) + 0.25 * math.log(1.5)
    )


def test_same_shares_have_no_drift_and_psi_is_symmetric() -> None:
    assert psi.psi([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0
    a, e = [0.1, 0.6, 0.3], [0.3, 0.3, 0.4]
    assert psi.psi(a, e) == pytest.approx(psi.psi(e, a))


def test_an_empty_bin_is_floored_at_epsilon_so_psi_stays_finite() -> None:
    value = psi.psi([0.0, 1.0], [0.5, 0.5])
    eps = psi.EPSILON
    expected = (eps - 0.5) * math.log(eps / 0.5) + 0.5 * math.log(1.0 / 0.5)
    assert value == pytest.approx(expected)
    assert math.isfinite(value) and value > 4  # large: a whole bin vanished


def test_bins_must_match_the_reference() -> None:
    with pytest.raises(psi.ReferenceMismatch):
        psi.psi([0.5, 0.5], [0.2, 0.3, 0.5])


def test_jensen_shannon_is_zero_for_equal_one_for_disjoint_and_symmetric() -> None:
    assert psi.jensen_shannon([1, 2, 3], [2, 4, 6]) == pytest.approx(0.0)  # same shares
    assert psi.jensen_shannon([1, 0], [0, 1]) == pytest.approx(1.0)
    a, e = [0.1, 0.6, 0.3], [0.3, 0.3, 0.4]
    assert psi.jensen_shannon(a, e) == pytest.approx(psi.jensen_shannon(e, a))
    assert 0 < psi.jensen_shannon(a, e) < 1


def test_numeric_feature_against_its_reference() -> None:
    reference = {"edges": [1.0, 2.0, 3.0], "proportions": [0.25, 0.25, 0.25, 0.25]}
    found = psi.numeric({1.0: 10, 2.0: 30, 3.0: 60, INF: 100}, reference)
    observed = [0.1, 0.2, 0.3, 0.4]
    expected = sum((a - 0.25) * math.log(a / 0.25) for a in observed)
    assert found.psi == pytest.approx(expected)
    assert found.samples == 100
    assert found.js == pytest.approx(psi.jensen_shannon(observed, [0.25] * 4))


def test_bucket_bounds_written_by_prometheus_client_equal_the_edges() -> None:
    # `le` is the float's shortest repr; parsed back it is the same float
    reference = {"edges": [0.1, 2.5e21], "proportions": [0.3, 0.3, 0.4]}
    cumulative = {float("0.1"): 3, float("2.5e+21"): 6, INF: 10}
    assert psi.numeric(cumulative, reference).psi == pytest.approx(0.0)


@pytest.mark.parametrize(
    ("cumulative", "reference"),
    [
        ({1.0: 1, 2.5: 2, INF: 3}, {"edges": [1.0, 2.0], "proportions": [0.3, 0.3, 0.4]}),
        ({1.0: 1, INF: 3}, {"edges": [1.0, 2.0], "proportions": [0.3, 0.3, 0.4]}),
        ({1.0: 1, INF: 3}, {"edges": [1.0], "proportions": [1.0]}),  # n edges need n+1 shares
        ({1.0: 0, INF: 0}, {"edges": [1.0], "proportions": [0.5, 0.5]}),  # nothing observed
        ({1.0: 1, INF: 3}, {"proportions": [0.5, 0.5]}),
    ],
)
def test_numeric_mismatches_are_reported_not_guessed(
    cumulative: dict[float, float], reference: dict[str, object]
) -> None:
    with pytest.raises(psi.ReferenceMismatch):
        psi.numeric(cumulative, reference)


def test_categories_with_other_and_an_unknown_category_counted_as_other() -> None:
    reference = {"categories": {"red": 0.5, "blue": 0.4}, "other": 0.1}
    found = psi.categorical({"red": 50, "blue": 30, "__other__": 15, "green": 5}, reference)
    observed, expected = [0.5, 0.3, 0.2], [0.5, 0.4, 0.1]
    assert found.psi == pytest.approx(
        sum((a - e) * math.log(a / e) for a, e in zip(observed, expected, strict=True))
    )
    assert found.samples == 100


def test_a_reference_category_never_seen_is_an_empty_bin() -> None:
    reference = {"categories": {"red": 0.5, "blue": 0.5}, "other": 0.0}
    found = psi.categorical({"red": 10}, reference)
    eps = psi.EPSILON
    expected = 0.5 * math.log(1 / 0.5) + (eps - 0.5) * math.log(eps / 0.5) + 0.0
    assert found.psi == pytest.approx(expected)
