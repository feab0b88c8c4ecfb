"""The one-sided tests of a canary against stable, table-driven: values worked out by hand (the
formulas of docs/monitoring.md, written out below) and scipy's for the same data (scipy is in
the development environment, not in the operator's image, which is why `stats` uses `math`)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from modelops_operator.analysis import stats

pytestmark = pytest.mark.unit

# (bad canary, canary, bad stable, stable)
TABLES = [
    (10, 500, 1, 500),
    (30, 1000, 10, 1000),
    (50, 1000, 60, 1000),
    (100, 900, 100, 8100),
    (4, 200, 0, 200),
    (6, 300, 0, 300),
    (10, 500, 4, 4500),
    (0, 100, 0, 100),
    (100, 100, 100, 100),
    (3, 1000, 30, 9000),
]


def test_z_by_hand() -> None:
    # 10/500 vs 1/500: pooled p = 11/1000; |delta| = 0.018 less Yates' 0.5 * (2/500) = 0.016;
    # se = sqrt(0.011 * 0.989 * 2/500) = 0.0065967; z = 2.42548; P(Z > z) = 0.0076439
    test = stats.z_test(10, 500, 1, 500)
    assert test.statistic == pytest.approx(2.42548, rel=1e-5)
    assert test.p_value == pytest.approx(0.0076439, rel=1e-4)
    assert stats.proportions(10, 500, 1, 500).method == "z-test"  # every expected cell >= 5.5


def test_fisher_by_hand() -> None:
    # 4/200 vs 0/200: the 4 failures all on the canary's side, if the tracks were alike:
    # C(200, 4) / C(400, 4) = (200*199*198*197) / (400*399*398*397)
    by_hand = (200 * 199 * 198 * 197) / (400 * 399 * 398 * 397)
    test = stats.proportions(4, 200, 0, 200)  # expected cells of 2: Fisher's test
    assert test.method == "Fisher's exact test"
    assert test.p_value == pytest.approx(by_hand, rel=1e-9)


@pytest.mark.parametrize("table", TABLES, ids=[str(t) for t in TABLES])
def test_z_test_is_the_continuity_corrected_chi_square_signed(
    table: tuple[int, int, int, int],
) -> None:
    a, n1, b, n2 = table
    test = stats.z_test(a, n1, b, n2)
    if a + b in (0, n1 + n2):
        assert (test.statistic, test.p_value) == (0.0, 1.0)  # nothing tells the tracks apart
        return
    chi2 = scipy_stats.chi2_contingency([[a, n1 - a], [b, n2 - b]], correction=True)[0]
    assert test.statistic**2 == pytest.approx(chi2, rel=1e-9, abs=1e-12)
    assert math.copysign(1, test.statistic) == math.copysign(1, a / n1 - b / n2) or chi2 == 0
    assert test.p_value == pytest.approx(scipy_stats.norm.sf(test.statistic), rel=1e-9)


@pytest.mark.parametrize("table", TABLES, ids=[str(t) for t in TABLES])
def test_fisher_agrees_with_scipy(table: tuple[int, int, int, int]) -> None:
    a, n1, b, n2 = table
    expected = scipy_stats.fisher_exact([[a, n1 - a], [b, n2 - b]], alternative="greater")
    assert stats.fisher(a, n1, b, n2).p_value == pytest.approx(expected.pvalue, rel=1e-9)


@pytest.mark.parametrize(
    ("table", "method"),
    [
        ((10, 500, 1, 500), "z-test"),
        ((30, 1000, 10, 1000), "z-test"),
        ((4, 200, 0, 200), "Fisher's exact test"),
        ((10, 500, 4, 4500), "Fisher's exact test"),  # 14 failures, 1/10 on the canary: 1.4
        ((100, 900, 100, 8100), "z-test"),
    ],
)
def test_the_normal_approximation_only_where_every_expected_cell_is_five(
    table: tuple[int, int, int, int], method: str
) -> None:
    assert stats.proportions(*table).method == method


def test_a_canary_better_than_stable_is_never_worse() -> None:
    assert stats.proportions(1, 500, 10, 500).p_value > 0.99
    assert stats.proportions(0, 500, 4, 500).p_value == 1.0


def test_proportions_refuse_impossible_tables() -> None:
    with pytest.raises(ValueError, match="observations"):
        stats.proportions(0, 0, 1, 10)
    with pytest.raises(ValueError, match="between 0"):
        stats.proportions(11, 10, 1, 10)


def test_mann_whitney_by_hand() -> None:
    # canary: 2 in bin 2; stable: 2 in bin 1. U = 2 * 2 = 4, mean 2; ties: two bins of 2,
    # sum(t^3 - t) = 12; variance = 4/12 * (5 - 12 / (4 * 3)) = 4/3; z = (4 - 2 - 0.5) / sqrt(4/3)
    test = stats.mann_whitney([0, 2], [2, 0])
    assert test.statistic == pytest.approx(1.5 / math.sqrt(4 / 3), rel=1e-12)
    assert test.p_value == pytest.approx(0.0969, abs=1e-4)


HISTOGRAMS = [
    ([0, 5, 20, 10, 3], [2, 10, 15, 5, 0]),
    ([100, 50, 0, 0], [100, 50, 0, 0]),
    ([0, 0, 30, 300], [0, 10, 300, 20]),
    ([40, 260, 0, 0, 0, 0], [0, 300, 0, 0, 0, 0]),
    ([7, 0, 0, 1], [1, 0, 0, 7]),
]


@pytest.mark.parametrize(("canary", "stable"), HISTOGRAMS, ids=[str(h) for h in HISTOGRAMS])
def test_mann_whitney_agrees_with_scipy_on_the_observations(
    canary: list[int], stable: list[int]
) -> None:
    # each observation as its bin's index: every one of a bin ties with the rest of the bin
    xs = np.repeat(np.arange(len(canary)), canary)
    ys = np.repeat(np.arange(len(stable)), stable)
    expected = scipy_stats.mannwhitneyu(
        xs, ys, alternative="greater", method="asymptotic", use_continuity=True
    )
    test = stats.mann_whitney(canary, stable)
    assert test.p_value == pytest.approx(expected.pvalue, rel=1e-9)


def test_mann_whitney_with_every_observation_in_one_bin_tells_nothing() -> None:
    assert stats.mann_whitney([0, 50, 0], [0, 70, 0]).p_value == 1.0


def test_mann_whitney_refuses_different_bins_or_no_observations() -> None:
    with pytest.raises(ValueError, match="same bins"):
        stats.mann_whitney([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="observations"):
        stats.mann_whitney([0, 0], [1, 2])


@pytest.mark.parametrize(("stable_per_canary", "needed"), [(9, 75), (1, 226)])
def test_the_samples_a_2_percent_canary_needs_against_stables_0_1_percent(
    stable_per_canary: int, needed: int
) -> None:
    # whole requests at exactly 2% and 0.1%: the smallest canary count from which the
    # comparison fails at 95% confidence (docs/monitoring.md quotes these), for a canary at a
    # tenth of the traffic (9 stable requests per canary request) and at half of it
    def fails(n: int) -> bool:
        stable = stable_per_canary * n
        return stats.proportions(round(0.02 * n), n, round(0.001 * stable), stable).p_value < 0.05

    assert not fails(needed - 1)
    assert all(fails(n) for n in range(needed, 3000))
