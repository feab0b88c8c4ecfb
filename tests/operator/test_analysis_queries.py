"""The PromQL the analysis sends: one query per kind per window for any number of models."""

from __future__ import annotations

import pytest

from modelops_operator.analysis import queries
from modelops_operator.analysis.engine import kinds, plan
from modelops_operator.analysis.model import Target, TargetKey

pytestmark = pytest.mark.unit

ALL_CHECKS = {
    "errorRate": {"max": 0.05},
    "latencyP95Seconds": {"max": 0.5},
    "drift": {"psi": {"max": 0.2}},
    "accuracy": {"min": 0.85},
}


def targets(n: int, namespaces: int = 1, checks: dict[str, object] | None = None) -> list[Target]:
    return [
        Target(
            TargetKey(f"ns{i % namespaces}", f"model{i}", f"model{i}-v1", "stable"),
            checks if checks is not None else ALL_CHECKS,
        )
        for i in range(n)
    ]


def test_the_queries_verbatim() -> None:
    # docs/monitoring.md shows these; a change here is a change of the documented contract
    endpoints = 'endpoint=~"/predict|/v2/models/[^/]+(/versions/[^/]+)?/infer"'
    requests = f'bentoml_service_request_total{{{endpoints}, model!="", namespace=~"ml"}}'
    assert queries.requests(300, ["ml"]) == (
        "sum by (namespace, model, version, track, http_response_code) "
        f"((increase({requests}[300s]) and {requests} offset 300s) "
        f"or ({requests} unless {requests} offset 300s))"
    )
    buckets = (
        "bentoml_service_request_duration_seconds_bucket"
        f'{{{endpoints}, http_response_code!~"4..", model!=""}}'
    )
    assert queries.latency_p95(300) == (
        "histogram_quantile(0.95, sum by (namespace, model, version, track, le) "
        f"((increase({buckets}[300s]) and {buckets} offset 300s) "
        f"or ({buckets} unless {buckets} offset 300s)))"
    )
    # a canary's latency against stable: the same buckets, not reduced to a quantile
    assert queries.latency_buckets(300) == (
        "sum by (namespace, model, version, track, le) "
        f"((increase({buckets}[300s]) and {buckets} offset 300s) "
        f"or ({buckets} unless {buckets} offset 300s))"
    )
    assert queries.feature_buckets(60) == (
        "sum by (namespace, model, version, track, feature, le) "
        '(increase(modelops_feature_value_bucket{model!=""}[60s]))'
    )
    assert queries.feature_categories(60) == (
        "sum by (namespace, model, version, track, feature, category) "
        '(increase(modelops_feature_category_total{model!=""}[60s]))'
    )
    assert queries.feedback(60) == (
        "sum by (namespace, model, version, track, outcome) "
        '(increase(modelops_feedback_total{model!=""}[60s]))'
    )


def test_the_number_of_queries_does_not_grow_with_models() -> None:
    few, many = plan(targets(3), 60), plan(targets(3000), 60)
    assert len(few) == len(many) == 5
    assert few == many  # the same text: no model is named in any query
    assert not any("model0" in q for q in many)


def test_namespaces_are_one_regex_matcher_sorted_and_deduplicated() -> None:
    (first, *_) = plan(targets(30, namespaces=3), 60)
    assert 'namespace=~"ns0|ns1|ns2"' in first


def test_a_regex_metacharacter_in_a_namespace_is_escaped() -> None:
    assert 'namespace=~"a\\\\.b"' in queries.selector(["a.b"])


def test_targets_are_grouped_by_window() -> None:
    group = targets(4)
    windowed = [Target(t.key, t.checks, window_seconds=300) for t in targets(4)]
    sent = plan(group + windowed, 60)
    assert len(sent) == 10
    assert sum("[60s]" in q for q in sent) == 5 and sum("[300s]" in q for q in sent) == 5


def test_only_the_kinds_the_checks_need_are_queried() -> None:
    key = TargetKey("ml", "m", "v", "stable")
    assert kinds(Target(key, {"errorRate": {"max": 0.1}})) == {queries.REQUESTS}
    assert kinds(Target(key, {"latencyP95Seconds": {"max": 1}})) == {
        queries.REQUESTS,
        queries.LATENCY,
    }
    assert kinds(Target(key, {"drift": {"psi": {"max": 0.2}}})) == {
        queries.FEATURE_BUCKETS,
        queries.FEATURE_CATEGORIES,
    }
    assert kinds(Target(key, {"accuracy": {"min": 0.9}})) == {queries.FEEDBACK}
    assert kinds(Target(key, {"custom": [{"name": "x", "query": "1", "max": 1}]})) == set()
    assert plan(targets(5, checks={"accuracy": {"min": 0.9}}), 60) == [
        queries.feedback(60, ["ns0"])
    ]


def test_custom_placeholders_become_the_target_labels_and_window() -> None:
    key = TargetKey("ml", "iris", "iris-v4", "canary")
    query = (
        'sum(rate(modelops_rejected_total{namespace="$NAMESPACE", model="$MODEL", '
        'version="$VERSION", track="$TRACK", reason="unscorable"}[$WINDOW]))'
    )
    assert queries.custom(query, key, 120) == (
        'sum(rate(modelops_rejected_total{namespace="ml", model="iris", '
        'version="iris-v4", track="canary", reason="unscorable"}[120s]))'
    )


def test_custom_text_other_than_placeholders_is_left_as_written() -> None:
    key = TargetKey("ml", "iris", "v1", "stable")
    assert queries.custom("$MODELS + $OTHER + vector(1)", key, 60) == "$MODELS + $OTHER + vector(1)"
    quoted = TargetKey("ml", 'a"b', "v1", "stable")
    assert queries.custom('x{model="$MODEL"}', quoted, 60) == 'x{model="a\\"b"}'


def test_a_window_must_be_positive() -> None:
    with pytest.raises(ValueError):
        queries.window(0)


def test_comparisons_with_stable_add_one_query_at_most_whatever_the_models() -> None:
    versus = {
        "errorRate": {"max": 0.05, "vsStable": {}},
        "latencyP95Seconds": {"max": 0.5, "vsStable": {}},
        "accuracy": {"min": 0.85, "vsStable": {}},
    }

    def canaries(n: int) -> list[Target]:
        out = []
        for i in range(n):
            stable = TargetKey("ml", f"model{i}", f"model{i}-v1", "stable")
            canary = TargetKey("ml", f"model{i}", f"model{i}-v2", "canary")
            out += [Target(stable, versus), Target(canary, versus, baseline=stable)]
        return out

    few, many = plan(canaries(3), 60), plan(canaries(1000), 60)
    assert few == many and len(few) == 4  # requests, p95, feedback, and the latency buckets
    assert queries.latency_buckets(60, ["ml"]) in few
    # the stable version's own analysis has no baseline: no bucket query for it
    stable = Target(TargetKey("ml", "m", "m-v1", "stable"), versus)
    assert queries.LATENCY_BUCKETS not in kinds(stable)
