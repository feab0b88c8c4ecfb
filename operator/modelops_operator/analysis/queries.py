"""PromQL for the checks: one query per kind per window, covering every model at once.

Each built-in query aggregates `by (namespace, model, version, track, ...)` and selects the
runtime's series with `model!=""` (every modelops runtime's series carry it; BentoML's through the
scrape's pod-label relabelling), never one model's name, so one query serves any number of models
and the engine fans the answer out by those four labels. An optional namespace matcher (a regex of
the namespaces the targets live in, bounded by namespaces, not models) keeps a namespaced operator
to its own namespaces. docs/monitoring.md shows every query verbatim.

Custom checks are the user's PromQL, evaluated per target after placeholder substitution
(`custom()`); they are the only queries whose number grows with the models that declare them.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping

from modelops_operator.analysis.model import TargetKey

# The prediction endpoints: /predict and the Open Inference Protocol's infer (BentoML labels a
# request with its path); both are served by one function, so the checks count both.
PREDICT_ENDPOINTS = "/predict|/v2/models/[^/]+(/versions/[^/]+)?/infer"
TARGET_LABELS = ("namespace", "model", "version", "track")
BY = ", ".join(TARGET_LABELS)

# The kinds of batched query; each check needs one or more of them.
REQUESTS = "requests"  # errorRate; the sample count of latencyP95Seconds
LATENCY = "latency"  # latencyP95Seconds
FEATURE_BUCKETS = "featureBuckets"  # drift of numeric features
FEATURE_CATEGORIES = "featureCategories"  # drift of categorical features
FEEDBACK = "feedback"  # accuracy
LATENCY_BUCKETS = "latencyBuckets"  # latencyP95Seconds.vsStable
KINDS = (REQUESTS, LATENCY, FEATURE_BUCKETS, FEATURE_CATEGORIES, FEEDBACK, LATENCY_BUCKETS)

PLACEHOLDERS = ("NAMESPACE", "MODEL", "VERSION", "TRACK", "WINDOW")
_PLACEHOLDER = re.compile(r"\$(" + "|".join(PLACEHOLDERS) + r")\b")


def window(seconds: int) -> str:
    """A PromQL range: `[300s]`'s inside."""
    if seconds <= 0:
        raise ValueError(f"a window must be positive, got {seconds}")
    return f"{int(seconds)}s"


def _regex_literal(name: str) -> str:
    """One alternative of a PromQL regex in a double-quoted string: metacharacters escaped."""
    out = []
    for c in name:
        if c.isalnum() or c in "-_":
            out.append(c)
        else:
            out.append("\\\\" + c)  # RE2 escape, its backslash escaped in the PromQL string
    return "".join(out)


def _string_literal(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def selector(namespaces: Collection[str] | None, *matchers: str) -> str:
    """The label matchers of every built-in query: the given ones, `model!=""`, namespaces."""
    parts = [*matchers, 'model!=""']
    if namespaces:
        alternatives = "|".join(_regex_literal(n) for n in sorted(set(namespaces)))
        parts.append(f'namespace=~"{alternatives}"')
    return "{" + ", ".join(parts) + "}"


def counted_since(series: str, seconds: int) -> str:
    """The increase of counter `series` over the window, counting a series born inside the window
    from zero.

    BentoML creates a request series at the first request with its response code (the runtime
    creates only its own series, and `/predict`'s 200 and 500 counts, at zero), so the first
    sample Prometheus sees of, say, the first 503s or of the duration histogram already holds
    them, and `increase()`, which starts at the first sample, would miss them: a canary's first
    burst of errors would be invisible. A series that had no sample at the window's start was born
    inside it, and its whole value is the window's increase.
    """
    w = window(seconds)
    return (
        f"(increase({series}[{w}]) and {series} offset {w}) "
        f"or ({series} unless {series} offset {w})"
    )


def requests(seconds: int, namespaces: Collection[str] | None = None) -> str:
    """Predict requests in the window by response code: errors are the 5xx, 4xx are left out."""
    match = selector(namespaces, f'endpoint=~"{PREDICT_ENDPOINTS}"')
    counted = counted_since(f"bentoml_service_request_total{match}", seconds)
    return f"sum by ({BY}, http_response_code) ({counted})"


def latency_buckets(seconds: int, namespaces: Collection[str] | None = None) -> str:
    """Cumulative duration bucket counts of the predict requests that were not refused as bad
    input (4xx) in the window: what a comparison of a canary's latency with stable's reads."""
    match = selector(namespaces, f'endpoint=~"{PREDICT_ENDPOINTS}"', 'http_response_code!~"4.."')
    counted = counted_since(f"bentoml_service_request_duration_seconds_bucket{match}", seconds)
    return f"sum by ({BY}, le) ({counted})"


def latency_p95(seconds: int, namespaces: Collection[str] | None = None) -> str:
    """p95 of the predict requests that were not refused as bad input (4xx)."""
    return f"histogram_quantile(0.95, {latency_buckets(seconds, namespaces)})"


def feature_buckets(seconds: int, namespaces: Collection[str] | None = None) -> str:
    """Cumulative bucket counts of every numeric feature in the window."""
    return (
        f"sum by ({BY}, feature, le) "
        f"(increase(modelops_feature_value_bucket{selector(namespaces)}[{window(seconds)}]))"
    )


def feature_categories(seconds: int, namespaces: Collection[str] | None = None) -> str:
    """Counts per category (reference categories and `__other__`) of every categorical feature."""
    return (
        f"sum by ({BY}, feature, category) "
        f"(increase(modelops_feature_category_total{selector(namespaces)}[{window(seconds)}]))"
    )


def feedback(seconds: int, namespaces: Collection[str] | None = None) -> str:
    """Classifier feedback in the window by outcome (`correct`, `incorrect`)."""
    return (
        f"sum by ({BY}, outcome) "
        f"(increase(modelops_feedback_total{selector(namespaces)}[{window(seconds)}]))"
    )


BUILDERS = {
    REQUESTS: requests,
    LATENCY: latency_p95,
    FEATURE_BUCKETS: feature_buckets,
    FEATURE_CATEGORIES: feature_categories,
    FEEDBACK: feedback,
    LATENCY_BUCKETS: latency_buckets,
}


def batch(
    kinds: Collection[str], seconds: int, namespaces: Collection[str] | None = None
) -> dict[str, str]:
    """The queries of one window, by kind, in the order of `KINDS`."""
    return {kind: BUILDERS[kind](seconds, namespaces) for kind in KINDS if kind in kinds}


def custom(query: str, key: TargetKey, seconds: int) -> str:
    """A custom check's query for one target: `$NAMESPACE`, `$MODEL`, `$VERSION`, `$TRACK` become
    the target's label values (escaped for a double-quoted PromQL string), `$WINDOW` the window
    (`300s`); anything else is left as written."""
    values: Mapping[str, str] = {
        "NAMESPACE": _string_literal(key.namespace),
        "MODEL": _string_literal(key.model),
        "VERSION": _string_literal(key.version),
        "TRACK": _string_literal(key.track),
        "WINDOW": window(seconds),
    }
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], query)
