"""The engine's fan-out and outcomes, against a fake client answering canned vectors (no
Prometheus: tests/operator/test_analysis_prometheus.py runs the same engine on a real one),
and the client's mapping of every failure to an `Unavailable` answer (a fake transport)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from typing import Any

import pytest
import requests

from modelops_operator.analysis import (
    CheckResult,
    Outcome,
    PrometheusClient,
    Sample,
    Target,
    TargetKey,
    Unavailable,
    Vector,
    analyse,
    summarise,
)
from modelops_operator.analysis import client as client_module
from modelops_operator.analysis.client import Answer

pytestmark = pytest.mark.unit

STABLE = TargetKey("ml", "iris", "iris-v1", "stable")
CANARY = TargetKey("ml", "iris", "iris-v2", "canary")
OTHER = TargetKey("team", "fraud", "fraud-v7", "stable")
REFERENCE = {
    "x": {"edges": [1.0, 2.0], "proportions": [0.2, 0.3, 0.5]},
    "color": {"categories": {"red": 0.6, "blue": 0.4}, "other": 0.0},
}


def labels(key: TargetKey, **extra: str) -> dict[str, str]:
    return {
        "namespace": key.namespace,
        "model": key.model,
        "version": key.version,
        "track": key.track,
        **extra,
    }


def s(key: TargetKey, value: float, **extra: str) -> Sample:
    return Sample(labels(key, **extra), value)


class FakeClient:
    """Answers by the metric a query reads; records every query and its time."""

    def __init__(self, answers: Mapping[str, Answer], custom: Mapping[str, Answer] | None = None):
        self.answers = dict(answers)
        self.custom = dict(custom or {})
        self.sent: list[tuple[str, float | None]] = []

    def query(self, promql: str, at: float | None = None) -> Answer:
        self.sent.append((promql, at))
        if promql in self.custom:
            return self.custom[promql]
        for metric, answer in self.answers.items():
            if metric in promql:
                return answer
        return Vector(())


def requests_of(key: TargetKey, ok: float, errors: float = 0, rejected: float = 0) -> list[Sample]:
    return [
        s(key, ok, http_response_code="200"),
        s(key, errors, http_response_code="500"),
        s(key, rejected, http_response_code="400"),
    ]


def by_check(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.check: r for r in results}


def run(
    answers: Mapping[str, Answer],
    checks: Mapping[str, Any],
    keys: tuple[TargetKey, ...] = (STABLE,),
    reference: Mapping[str, Any] | None = None,
    custom: Mapping[str, Answer] | None = None,
) -> tuple[dict[TargetKey, dict[str, CheckResult]], FakeClient]:
    client = FakeClient(answers, custom)
    targets = [Target(k, checks, reference) for k in keys]
    out = analyse(client, targets, 300, at=1000.0)
    return {k: by_check(v) for k, v in out.items()}, client


# --- error rate -------------------------------------------------------------------------------


def test_one_answer_fans_out_to_every_target() -> None:
    answer = Vector(
        (
            *requests_of(STABLE, ok=99, errors=1),
            *requests_of(CANARY, ok=80, errors=20),
            *requests_of(OTHER, ok=100),
        )
    )
    out, client = run(
        {"bentoml_service_request_total": answer},
        {"errorRate": {"max": 0.05}},
        keys=(STABLE, CANARY, OTHER),
    )
    assert len(client.sent) == 1
    assert out[STABLE]["errorRate"].outcome is Outcome.PASS
    assert out[STABLE]["errorRate"].value == pytest.approx(0.01)
    assert out[CANARY]["errorRate"].outcome is Outcome.FAIL
    assert out[CANARY]["errorRate"].value == pytest.approx(0.2)
    assert "20 of 100" in out[CANARY]["errorRate"].reason
    assert out[OTHER]["errorRate"].value == 0


def test_rejected_client_input_is_not_a_model_error() -> None:
    # 400s neither count as errors nor dilute the share of 5xx among answered requests
    answer = Vector(tuple(requests_of(STABLE, ok=45, errors=5, rejected=1000)))
    out, _ = run({"bentoml_service_request_total": answer}, {"errorRate": {"max": 0.05}})
    result = out[STABLE]["errorRate"]
    assert result.value == pytest.approx(0.1) and result.samples == 50
    assert result.outcome is Outcome.FAIL


def test_a_value_equal_to_the_threshold_passes() -> None:
    answer = Vector(tuple(requests_of(STABLE, ok=95, errors=5)))
    out, _ = run({"bentoml_service_request_total": answer}, {"errorRate": {"max": 0.05}})
    assert out[STABLE]["errorRate"].outcome is Outcome.PASS


def test_too_few_requests_is_inconclusive_even_when_all_failed() -> None:
    answer = Vector(tuple(requests_of(STABLE, ok=0, errors=19)))
    out, _ = run({"bentoml_service_request_total": answer}, {"errorRate": {"max": 0.05}})
    result = out[STABLE]["errorRate"]  # CRD default minSamples 20
    assert result.outcome is Outcome.INCONCLUSIVE
    assert "19" in result.reason and "minSamples 20" in result.reason
    assert result.value == 1.0 and result.samples == 19  # still shown, not acted on


def test_min_samples_from_the_spec() -> None:
    answer = Vector(tuple(requests_of(STABLE, ok=100)))
    out, _ = run(
        {"bentoml_service_request_total": answer},
        {"errorRate": {"max": 0.05, "minSamples": 500}},
    )
    assert out[STABLE]["errorRate"].outcome is Outcome.INCONCLUSIVE


def test_no_series_and_nan_are_inconclusive() -> None:
    out, _ = run(
        {"bentoml_service_request_total": Vector(tuple(requests_of(CANARY, ok=100)))},
        {"errorRate": {"max": 0.05}},
    )
    assert out[STABLE]["errorRate"].outcome is Outcome.INCONCLUSIVE
    assert "no /predict request series" in out[STABLE]["errorRate"].reason
    nan = Vector((s(STABLE, math.nan, http_response_code="200"),))
    out, _ = run({"bentoml_service_request_total": nan}, {"errorRate": {"max": 0.05}})
    assert out[STABLE]["errorRate"].outcome is Outcome.INCONCLUSIVE
    assert "NaN" in out[STABLE]["errorRate"].reason


# --- latency ----------------------------------------------------------------------------------


def test_latency_p95_with_the_request_count_as_its_samples() -> None:
    answers = {
        "bentoml_service_request_total": Vector(tuple(requests_of(STABLE, ok=100, rejected=7))),
        "histogram_quantile": Vector((s(STABLE, 0.8),)),
    }
    out, client = run(answers, {"latencyP95Seconds": {"max": 0.5}})
    result = out[STABLE]["latencyP95Seconds"]
    assert result.outcome is Outcome.FAIL and result.value == 0.8 and result.samples == 100
    assert len(client.sent) == 2


def test_latency_nan_and_few_requests_are_inconclusive() -> None:
    answers: dict[str, Answer] = {
        "bentoml_service_request_total": Vector(tuple(requests_of(STABLE, ok=0))),
        "histogram_quantile": Vector((s(STABLE, math.nan),)),
    }
    out, _ = run(answers, {"latencyP95Seconds": {"max": 0.5}})
    assert "NaN" in out[STABLE]["latencyP95Seconds"].reason
    answers["bentoml_service_request_total"] = Vector(tuple(requests_of(STABLE, ok=5)))
    answers["histogram_quantile"] = Vector((s(STABLE, 9.0),))
    out, _ = run(answers, {"latencyP95Seconds": {"max": 0.5}})
    assert out[STABLE]["latencyP95Seconds"].outcome is Outcome.INCONCLUSIVE


# --- drift ------------------------------------------------------------------------------------


def drift_answers(key: TargetKey, bins: list[float], colors: dict[str, float]) -> dict[str, Vector]:
    cumulative = [sum(bins[: i + 1]) for i in range(len(bins))]
    buckets = [
        s(key, c, feature="x", le=le)
        for c, le in zip(cumulative, ["1.0", "2.0", "+Inf"], strict=True)
    ]
    categories = [s(key, n, feature="color", category=c) for c, n in colors.items()]
    return {
        "modelops_feature_value_bucket": Vector(tuple(buckets)),
        "modelops_feature_category_total": Vector(tuple(categories)),
    }


def manual_psi(observed: list[float], expected: list[float]) -> float:
    total = sum(observed)
    return sum(
        (max(a / total, 1e-4) - max(e, 1e-4)) * math.log(max(a / total, 1e-4) / max(e, 1e-4))
        for a, e in zip(observed, expected, strict=True)
    )


def test_drift_is_the_max_psi_over_features() -> None:
    answers = drift_answers(STABLE, [20, 30, 50], {"red": 20, "blue": 80, "__other__": 0})
    out, client = run(answers, {"drift": {"psi": {"max": 0.2}}}, reference=REFERENCE)
    result = out[STABLE]["drift"]
    assert len(client.sent) == 2
    assert result.outcome is Outcome.FAIL
    assert result.value == pytest.approx(manual_psi([20, 80, 0], [0.6, 0.4, 0.0]))
    assert {f.feature: f.psi for f in result.features}["x"] == pytest.approx(0.0)
    summary = summarise(list(out[STABLE].values()))
    assert summary.failed == ("drift",) and summary.drift_feature == "color"


def test_drift_without_a_reference_is_inconclusive() -> None:
    answers = drift_answers(STABLE, [20, 30, 50], {"red": 60, "blue": 40})
    out, _ = run(answers, {"drift": {"psi": {"max": 0.2}}}, reference=None)
    assert out[STABLE]["drift"].outcome is Outcome.INCONCLUSIVE
    assert "no reference" in out[STABLE]["drift"].reason


def test_features_without_enough_values_or_with_other_bins_are_left_out_and_named() -> None:
    reference = {
        **REFERENCE,
        "y": {"edges": [5.0], "proportions": [0.5, 0.5]},  # served with other bounds
        "z": {"edges": [1.0], "proportions": [0.5, 0.5]},  # no series at all
    }
    answers = drift_answers(STABLE, [20, 30, 50], {"red": 6, "blue": 4})
    wrong = Vector(
        (
            *answers["modelops_feature_value_bucket"].samples,
            s(STABLE, 50, feature="y", le="4.0"),
            s(STABLE, 100, feature="y", le="+Inf"),
        )
    )
    answers["modelops_feature_value_bucket"] = wrong
    out, _ = run(answers, {"drift": {"psi": {"max": 0.2}}}, reference=reference)
    result = out[STABLE]["drift"]
    assert result.outcome is Outcome.PASS
    assert [f.feature for f in result.features] == ["x"]
    assert "color: 10 values < minSamples 100" in result.reason
    assert "y: bucket bounds" in result.reason and "z: no series" in result.reason


def test_drift_with_no_comparable_feature_is_inconclusive() -> None:
    answers = drift_answers(STABLE, [2, 3, 5], {"red": 6, "blue": 4})
    out, _ = run(answers, {"drift": {"psi": {"max": 0.2}}}, reference=REFERENCE)
    assert out[STABLE]["drift"].outcome is Outcome.INCONCLUSIVE
    assert out[STABLE]["drift"].samples == 10


# --- accuracy ---------------------------------------------------------------------------------


def feedback(key: TargetKey, correct: float, incorrect: float) -> list[Sample]:
    return [s(key, correct, outcome="correct"), s(key, incorrect, outcome="incorrect")]


def test_accuracy_from_feedback_counters() -> None:
    answer = Vector((*feedback(STABLE, 90, 10), *feedback(CANARY, 40, 20), *feedback(OTHER, 3, 1)))
    out, client = run(
        {"modelops_feedback_total": answer}, {"accuracy": {"min": 0.85}}, (STABLE, CANARY, OTHER)
    )
    assert len(client.sent) == 1
    assert out[STABLE]["accuracy"].outcome is Outcome.PASS
    assert out[STABLE]["accuracy"].value == pytest.approx(0.9)
    assert out[CANARY]["accuracy"].outcome is Outcome.FAIL
    assert out[OTHER]["accuracy"].outcome is Outcome.INCONCLUSIVE  # 4 < minSamples 50
    assert summarise(list(out[OTHER].values())).accuracy is None  # not acted on, not shown


def test_no_feedback_series_is_inconclusive() -> None:
    out, _ = run({}, {"accuracy": {"min": 0.85}})
    assert out[STABLE]["accuracy"].outcome is Outcome.INCONCLUSIVE
    assert "no feedback series" in out[STABLE]["accuracy"].reason


# --- custom -----------------------------------------------------------------------------------


def test_custom_checks_substitute_the_target_and_need_one_value() -> None:
    spec = {"name": "rejects", "query": 'rejects{model="$MODEL",version="$VERSION"}', "max": 5}
    custom = {
        'rejects{model="iris",version="iris-v1"}': Vector((Sample({}, 3.0),)),
        'rejects{model="iris",version="iris-v2"}': Vector((Sample({}, 7.0),)),
        'rejects{model="fraud",version="fraud-v7"}': Vector((Sample({"a": "1"}, 1), Sample({}, 2))),
    }
    out, _ = run({}, {"custom": [spec]}, (STABLE, CANARY, OTHER), custom=custom)
    assert out[STABLE]["custom:rejects"].outcome is Outcome.PASS
    assert out[CANARY]["custom:rejects"].outcome is Outcome.FAIL
    assert out[CANARY]["custom:rejects"].samples is None
    assert out[OTHER]["custom:rejects"].outcome is Outcome.INCONCLUSIVE
    assert "2 series" in out[OTHER]["custom:rejects"].reason


def test_the_same_custom_text_is_sent_once_per_pass() -> None:
    spec = {"name": "up", "query": "min(up)", "min": 1}
    out, client = run(
        {},
        {"custom": [spec]},
        (STABLE, CANARY, OTHER),
        custom={"min(up)": Vector((Sample({}, 1.0),))},
    )
    assert [q for q, _ in client.sent] == ["min(up)"]
    assert all(out[k]["custom:up"].outcome is Outcome.PASS for k in (STABLE, CANARY, OTHER))


# --- Prometheus unavailable -------------------------------------------------------------------

ALL = {
    "errorRate": {"max": 0.05},
    "latencyP95Seconds": {"max": 0.5},
    "drift": {"psi": {"max": 0.2}},
    "accuracy": {"min": 0.85},
    "custom": [{"name": "c", "query": "vector(1)", "max": 2}],
}


class DownClient:
    def __init__(self, answer: Answer | Exception) -> None:
        self.answer = answer
        self.sent = 0

    def query(self, promql: str, at: float | None = None) -> Answer:
        self.sent += 1
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@pytest.mark.parametrize("kind", [client_module.UNREACHABLE, client_module.TIMEOUT])
def test_an_outage_makes_every_check_inconclusive_after_one_query(kind: str) -> None:
    down = DownClient(Unavailable(kind, "connection refused"))
    out = analyse(down, [Target(STABLE, ALL, REFERENCE), Target(CANARY, ALL, REFERENCE)], 60)
    assert down.sent == 1
    for results in out.values():
        assert len(results) == 5
        assert all(r.outcome is Outcome.INCONCLUSIVE for r in results)
        assert all(f"Prometheus unavailable ({kind})" in r.reason for r in results)


def test_a_query_error_spoils_only_its_own_checks() -> None:
    client = FakeClient(
        {
            "modelops_feedback_total": Unavailable(client_module.QUERY_ERROR, "HTTP 400: parse"),
            "bentoml_service_request_total": Vector(tuple(requests_of(STABLE, ok=100))),
        }
    )
    out = by_check(analyse(client, [Target(STABLE, ALL, REFERENCE)], 60)[STABLE])
    assert out["accuracy"].outcome is Outcome.INCONCLUSIVE and "HTTP 400" in out["accuracy"].reason
    assert out["errorRate"].outcome is Outcome.PASS
    assert len(client.sent) == 6  # five kinds and the custom query, all sent


def test_a_client_that_raises_still_yields_inconclusive() -> None:
    out = analyse(DownClient(RuntimeError("boom")), [Target(STABLE, ALL, REFERENCE)], 60)
    assert all(r.outcome is Outcome.INCONCLUSIVE for r in out[STABLE])


def test_every_query_of_a_pass_is_evaluated_at_one_instant() -> None:
    client = FakeClient({})
    analyse(client, [Target(STABLE, ALL, REFERENCE)], 60)
    assert len({at for _, at in client.sent}) == 1


def test_the_query_count_is_the_same_for_3_and_30_targets() -> None:
    counts = []
    for n in (3, 30):
        client = FakeClient({})
        targets = [
            Target(
                TargetKey("ml", f"m{i}", "v1", "stable"),
                {k: v for k, v in ALL.items() if k != "custom"},
                REFERENCE,
            )
            for i in range(n)
        ]
        analyse(client, targets, 60)
        counts.append(len(client.sent))
    assert counts == [5, 5]


def test_status_forms_are_json() -> None:
    out, _ = run({}, ALL, reference=REFERENCE)
    results = list(out[STABLE].values())
    json.dumps([r.as_status() for r in results])
    assert summarise(results).as_status()["inconclusive"] == [r.check for r in results]


# --- a canary against stable ------------------------------------------------------------------

VERSUS = {"errorRate": {"max": 0.05, "vsStable": {"confidence": 0.95, "minSamples": 200}}}


def versus(
    answers: Mapping[str, Answer], checks: Mapping[str, Any]
) -> tuple[dict[TargetKey, dict[str, CheckResult]], FakeClient]:
    """Analyses stable and the canary, whose baseline is stable, as the operator does."""
    client = FakeClient(answers)
    targets = [Target(STABLE, checks), Target(CANARY, checks, baseline=STABLE)]
    out = analyse(client, targets, 300, at=1000.0)
    return {k: by_check(v) for k, v in out.items()}, client


def test_a_canary_worse_than_stable_fails_the_comparison_within_every_absolute_threshold() -> None:
    answer = Vector(
        (*requests_of(STABLE, ok=4995, errors=5), *requests_of(CANARY, ok=490, errors=10))
    )
    out, client = versus({"bentoml_service_request_total": answer}, VERSUS)
    assert len(client.sent) == 1  # stable's counts come from the same answer
    assert out[CANARY]["errorRate"].outcome is Outcome.PASS  # 2% <= 5%
    compared = out[CANARY]["errorRate.vsStable"]
    assert compared.outcome is Outcome.FAIL
    assert compared.value is not None and compared.value < 0.05
    assert compared.threshold == "p >= 0.05 vs stable" and compared.samples == 500
    assert compared.reason.startswith(
        "canary 10 of 500 /predict requests failed (2%) vs stable 5 of 5000 (0.1%) in the last "
        f"300s: p = {compared.value:.3g} < 0.05 (Fisher's exact test): the canary is worse"
    )
    # stable has no baseline: its own analysis has no comparison
    assert set(out[STABLE]) == {"errorRate"}


def test_a_canary_like_stable_passes_the_comparison() -> None:
    answer = Vector(
        (*requests_of(STABLE, ok=4995, errors=5), *requests_of(CANARY, ok=499, errors=1))
    )
    out, _ = versus({"bentoml_service_request_total": answer}, VERSUS)
    compared = out[CANARY]["errorRate.vsStable"]
    assert compared.outcome is Outcome.PASS, compared.reason
    assert "the canary is not worse" in compared.reason


def test_too_few_requests_on_either_track_is_inconclusive_naming_it() -> None:
    answer = Vector((*requests_of(STABLE, ok=150), *requests_of(CANARY, ok=400, errors=200)))
    out, _ = versus({"bentoml_service_request_total": answer}, VERSUS)
    compared = out[CANARY]["errorRate.vsStable"]
    assert compared.outcome is Outcome.INCONCLUSIVE
    assert compared.reason == (
        "stable 150 /predict requests < minSamples 200 per track in the last 300s"
    )
    answer = Vector(tuple(requests_of(CANARY, ok=400, errors=200)))
    out, _ = versus({"bentoml_service_request_total": answer}, VERSUS)
    assert out[CANARY]["errorRate.vsStable"].reason == "no /predict request series of stable"


def test_an_outage_leaves_the_comparison_inconclusive_as_an_outage() -> None:
    out, _ = versus(
        {"bentoml_service_request_total": Unavailable("unreachable", "refused")}, VERSUS
    )
    compared = out[CANARY]["errorRate.vsStable"]
    assert compared.outcome is Outcome.INCONCLUSIVE and compared.outage


def test_accuracy_against_stable() -> None:
    checks = {"accuracy": {"min": 0.8, "vsStable": {"minSamples": 100}}}
    answer = Vector(
        (
            s(STABLE, 960, outcome="correct"),
            s(STABLE, 40, outcome="incorrect"),
            s(CANARY, 170, outcome="correct"),
            s(CANARY, 30, outcome="incorrect"),
        )
    )
    out, _ = versus({"modelops_feedback_total": answer}, checks)
    assert out[CANARY]["accuracy"].outcome is Outcome.PASS  # 85% >= 80%
    compared = out[CANARY]["accuracy.vsStable"]
    assert compared.outcome is Outcome.FAIL
    assert compared.reason.startswith(
        "canary 170 of 200 feedback items correct (85%) vs stable 960 of 1000 (96%)"
    )


def buckets(key: TargetKey, per_bin: list[float]) -> list[Sample]:
    bounds = ("0.025", "0.05", "0.1", "+Inf")
    running, out = 0.0, []
    for bound, count in zip(bounds, per_bin, strict=True):
        running += count
        out.append(s(key, running, le=bound))
    return out


def test_latency_against_stable_reads_the_buckets_only_when_asked() -> None:
    checks: dict[str, Any] = {"latencyP95Seconds": {"max": 0.5, "vsStable": {}}}
    answers: dict[str, Answer] = {
        "histogram_quantile": Vector((s(STABLE, 0.05), s(CANARY, 0.09))),
        "bentoml_service_request_duration_seconds_bucket": Vector(
            (*buckets(STABLE, [100, 800, 100, 0]), *buckets(CANARY, [0, 100, 200, 0]))
        ),
        "bentoml_service_request_total": Vector(
            (*requests_of(STABLE, ok=1000), *requests_of(CANARY, ok=300))
        ),
    }
    out, client = versus(answers, checks)
    assert len(client.sent) == 3  # requests, p95, and the buckets
    assert out[CANARY]["latencyP95Seconds"].outcome is Outcome.PASS
    compared = out[CANARY]["latencyP95Seconds.vsStable"]
    assert compared.outcome is Outcome.FAIL, compared.reason
    assert compared.reason.startswith(
        "canary 300 /predict requests, median <= 0.1s, vs stable 1000, median <= 0.05s"
    )
    assert "Mann-Whitney U test" in compared.reason
    # without vsStable, or without a baseline, no bucket query is sent
    _, client = versus(answers, {"latencyP95Seconds": {"max": 0.5}})
    assert len(client.sent) == 2
    client = FakeClient(answers)
    analyse(client, [Target(STABLE, checks)], 300, at=1000.0)
    assert len(client.sent) == 2


def test_latency_buckets_that_differ_between_tracks_are_inconclusive() -> None:
    checks: dict[str, Any] = {"latencyP95Seconds": {"max": 0.5, "vsStable": {"minSamples": 20}}}
    canary = [s(CANARY, 100, le="0.05"), s(CANARY, 300, le="+Inf")]
    answers: dict[str, Answer] = {
        "histogram_quantile": Vector((s(STABLE, 0.05), s(CANARY, 0.09))),
        "bentoml_service_request_duration_seconds_bucket": Vector(
            (*buckets(STABLE, [100, 800, 100, 0]), *canary)
        ),
        "bentoml_service_request_total": Vector(
            (*requests_of(STABLE, ok=1000), *requests_of(CANARY, ok=300))
        ),
    }
    out, _ = versus(answers, checks)
    compared = out[CANARY]["latencyP95Seconds.vsStable"]
    assert compared.outcome is Outcome.INCONCLUSIVE
    assert "buckets differ" in compared.reason


# --- the client: every failure is an answer ---------------------------------------------------


class Canned(requests.adapters.BaseAdapter):
    """A transport answering one canned response (or raising one exception) per request."""

    def __init__(self, status: int = 200, body: bytes = b"", error: Exception | None = None):
        super().__init__()
        self.status, self.body, self.error = status, body, error
        self.requests: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self.requests.append(request)
        if self.error is not None:
            raise self.error
        response = requests.Response()
        response.status_code = self.status
        response._content = self.body
        response.request = request
        response.url = request.url or ""
        return response

    def close(self) -> None:
        pass


def canned_client(adapter: Canned) -> PrometheusClient:
    session = requests.Session()
    client = PrometheusClient("http://prometheus.test:9090", timeout=3, session=session)
    # over the adapter the library mounted for its URL (requests picks the longest prefix)
    session.mount("http://prometheus.test:9090", adapter)
    return client


def body(data: Any, status: str = "success") -> bytes:
    return json.dumps({"status": status, "data": data}).encode()


def test_client_reads_vectors_and_scalars_and_sends_its_timeout() -> None:
    vector = {
        "resultType": "vector",
        "result": [
            {"metric": {"a": "1"}, "value": [1, "0.5"]},
            {"metric": {}, "value": [1, "NaN"]},
        ],
    }
    adapter = Canned(body=body(vector))
    answer = canned_client(adapter).query("x", at=12.5)
    assert isinstance(answer, Vector)
    assert answer.samples[0] == Sample({"a": "1"}, 0.5) and math.isnan(answer.samples[1].value)
    assert "timeout=3s" in (adapter.requests[0].url or "")
    assert "time=12.500" in (adapter.requests[0].url or "")
    scalar = canned_client(Canned(body=body({"resultType": "scalar", "result": [1, "4"]}))).query(
        "4"
    )
    assert scalar == Vector((Sample({}, 4.0),))


@pytest.mark.parametrize(
    ("adapter", "kind", "words"),
    [
        (
            Canned(400, body(None, "error")[:-1] + b', "error": "parse error at char 3"}'),
            client_module.QUERY_ERROR,
            "parse error at char 3",
        ),
        (Canned(503, b"overloaded"), client_module.UNREACHABLE, "HTTP 503"),
        (Canned(403, b"forbidden"), client_module.HTTP_ERROR, "HTTP 403"),
        (Canned(200, b"<html>proxy</html>"), client_module.BAD_ANSWER, "not a query result"),
        (
            Canned(200, b'{"status": "error", "error": "x"}'),
            client_module.BAD_ANSWER,
            "not a query result",
        ),
        (
            Canned(200, body({"resultType": "matrix", "result": [{"metric": {}, "values": []}]})),
            client_module.BAD_ANSWER,
            "not an instant vector",
        ),
        (Canned(error=requests.ConnectionError("refused")), client_module.UNREACHABLE, "refused"),
        (Canned(error=requests.ReadTimeout("slow")), client_module.TIMEOUT, "within 3s"),
        (Canned(error=OSError("odd")), client_module.BAD_ANSWER, "odd"),
    ],
)
def test_client_failures_are_unavailable_answers(adapter: Canned, kind: str, words: str) -> None:
    answer = canned_client(adapter).query("up")
    assert isinstance(answer, Unavailable)
    assert answer.kind == kind and words in answer.reason
    assert len(adapter.requests) == 1


def test_client_on_a_closed_port_is_unreachable_without_retries() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    answer = PrometheusClient(f"http://127.0.0.1:{port}", timeout=2).query("up")
    assert isinstance(answer, Unavailable) and answer.kind == client_module.UNREACHABLE
    # prometheus-api-client's default retries (3, back-off 1 s) would take seconds
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_prometheus_answering_5xx_is_down_and_the_pass_stops(status: int) -> None:
    adapter = Canned(status, b'{"status":"error","errorType":"unavailable","error":"overloaded"}')
    answer = canned_client(adapter).query("up")
    assert isinstance(answer, Unavailable) and answer.kind == client_module.UNREACHABLE
    assert f"HTTP {status}" in answer.reason and "overloaded" in answer.reason
    out = analyse(canned_client(adapter), [Target(STABLE, ALL, REFERENCE)], 60)
    assert len(adapter.requests) == 2  # the query above, then the pass's first: nothing after it
    assert all(f"({client_module.UNREACHABLE})" in r.reason for r in out[STABLE])


@pytest.mark.parametrize("status", [400, 404, 422])
def test_a_4xx_spoils_only_its_own_query(status: int) -> None:
    adapter = Canned(status, b'{"status":"error","errorType":"bad_data","error":"parse error"}')
    answer = canned_client(adapter).query("up")
    assert isinstance(answer, Unavailable) and answer.kind != client_module.UNREACHABLE
    analyse(canned_client(adapter), [Target(STABLE, ALL, REFERENCE)], 60)
    assert len(adapter.requests) == 1 + 6  # five kinds and the custom query, all sent
