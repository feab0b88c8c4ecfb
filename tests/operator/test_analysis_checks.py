"""Each check on values Prometheus should never send but can: +Inf, -Inf, NaN, and negative counts,
shares and quantiles. None of them may pass or fail a check: they are inconclusive, and the reason
says what Prometheus returned. A custom check keeps its negative values (the user's query may
well be negative) but not NaN or infinities."""

from __future__ import annotations

import math

import pytest

from modelops_operator.analysis import checks
from modelops_operator.analysis.client import Sample
from modelops_operator.analysis.model import CheckResult, Outcome

pytestmark = pytest.mark.unit

WINDOW = "the last 60s"
BAD = [math.inf, -math.inf, math.nan, -1.0]
SAID = {math.inf: "+Inf", -math.inf: "-Inf", -1.0: "negative"}
REFERENCE = {"x": {"edges": [1.0, 2.0], "proportions": [0.2, 0.3, 0.5]}}


def said(value: float) -> str:
    return "NaN" if math.isnan(value) else SAID[value]


def requests(ok: float, errors: float = 0.0) -> list[Sample]:
    return [
        Sample({"http_response_code": "200"}, ok),
        Sample({"http_response_code": "500"}, errors),
    ]


def assert_inconclusive(result: CheckResult, value: float) -> None:
    assert result.outcome is Outcome.INCONCLUSIVE, result
    assert said(value) in result.reason, result.reason
    assert "Prometheus returned" in result.reason, result.reason


@pytest.mark.parametrize("value", BAD)
@pytest.mark.parametrize("where", ["ok", "errors"])
def test_error_rate_on_a_bad_request_count_is_inconclusive(value: float, where: str) -> None:
    series = requests(value, 0.0) if where == "ok" else requests(1000.0, value)
    result = checks.error_rate({"max": 0.05}, series, WINDOW)
    assert_inconclusive(result, value)


@pytest.mark.parametrize("value", BAD)
def test_latency_on_a_bad_quantile_is_inconclusive(value: float) -> None:
    latency = [Sample({}, value)]
    result = checks.latency_p95({"max": 0.5}, latency, requests(1000.0), WINDOW)
    assert result.outcome is Outcome.INCONCLUSIVE, result
    assert said(value) in result.reason, result.reason


@pytest.mark.parametrize("value", BAD)
def test_latency_on_a_bad_request_count_is_inconclusive(value: float) -> None:
    result = checks.latency_p95({"max": 0.5}, [Sample({}, 0.1)], requests(value), WINDOW)
    assert_inconclusive(result, value)


@pytest.mark.parametrize("value", BAD)
@pytest.mark.parametrize("outcome", ["correct", "incorrect"])
def test_accuracy_on_a_bad_feedback_count_is_inconclusive(value: float, outcome: str) -> None:
    counts = {"correct": 900.0, "incorrect": 100.0, outcome: value}
    feedback = [Sample({"outcome": k}, v) for k, v in counts.items()]
    result = checks.accuracy({"min": 0.85}, feedback, WINDOW)
    assert_inconclusive(result, value)


@pytest.mark.parametrize("value", BAD)
def test_drift_on_a_bad_bucket_count_leaves_the_feature_out(value: float) -> None:
    buckets = [
        Sample({"feature": "x", "le": le}, count)
        for le, count in (("1.0", 200.0), ("2.0", value), ("+Inf", 1000.0))
    ]
    result = checks.drift({"psi": {"max": 0.2}}, REFERENCE, buckets, [], WINDOW)
    assert_inconclusive(result, value)
    assert "x: " in result.reason


@pytest.mark.parametrize("value", BAD)
def test_drift_on_a_bad_category_count_leaves_the_feature_out(value: float) -> None:
    reference = {"color": {"categories": {"red": 0.6, "blue": 0.4}, "other": 0.0}}
    categories = [
        Sample({"feature": "color", "category": c}, n) for c, n in (("red", 600.0), ("blue", value))
    ]
    result = checks.drift({"psi": {"max": 0.2}}, reference, [], categories, WINDOW)
    assert_inconclusive(result, value)


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_custom_on_nan_or_an_infinity_is_inconclusive(value: float) -> None:
    result = checks.custom({"name": "c", "min": -10, "max": 10}, [Sample({}, value)], "q")
    assert_inconclusive(result, value)


@pytest.mark.parametrize(("value", "outcome"), [(-5.0, Outcome.PASS), (-50.0, Outcome.FAIL)])
def test_custom_keeps_negative_values(value: float, outcome: Outcome) -> None:
    result = checks.custom({"name": "c", "min": -10, "max": 10}, [Sample({}, value)], "q")
    assert result.outcome is outcome
    assert result.value == value


def test_good_values_still_conclude() -> None:
    assert checks.error_rate({"max": 0.05}, requests(990.0, 10.0), WINDOW).outcome is Outcome.PASS
    latency = checks.latency_p95({"max": 0.5}, [Sample({}, 0.0)], requests(100.0), WINDOW)
    assert latency.outcome is Outcome.PASS
    feedback = [Sample({"outcome": "correct"}, 0.0), Sample({"outcome": "incorrect"}, 60.0)]
    assert checks.accuracy({"min": 0.85}, feedback, WINDOW).outcome is Outcome.FAIL
