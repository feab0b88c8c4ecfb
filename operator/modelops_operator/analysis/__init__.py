"""The analysis engine: built-in and custom checks of served models, from Prometheus, batched.

    from modelops_operator.analysis import PrometheusClient, Target, TargetKey, analyse, summarise

    client = PrometheusClient("http://prometheus:9090", timeout=10)
    results = analyse(client, [Target(TargetKey("ml", "iris", "iris-v4", "canary"), checks,
                                      reference)], window_seconds=60)
    summarise(results[key])          # passed / failed / inconclusive, worst drift, accuracy

Modules: `model` (the types), `queries` (PromQL builders), `psi` (PSI and JS), `stats` (the
one-sided tests of a canary against stable), `client` (the Prometheus client; every failure is an
answer), `checks` (one decision per check), `comparison` (a canary's checks against stable),
`engine` (one pass: batched queries, fan-out). docs/monitoring.md describes the checks and the
queries.
"""

from modelops_operator.analysis.client import (
    PrometheusClient,
    QueryClient,
    Sample,
    Unavailable,
    Vector,
)
from modelops_operator.analysis.engine import analyse, plan
from modelops_operator.analysis.model import (
    ACCURACY,
    CUSTOM_PREFIX,
    DRIFT,
    ERROR_RATE,
    LATENCY_P95,
    VS_STABLE,
    CheckResult,
    FeatureDrift,
    Outcome,
    Summary,
    Target,
    TargetKey,
    summarise,
)

__all__ = [
    "ACCURACY",
    "CUSTOM_PREFIX",
    "DRIFT",
    "ERROR_RATE",
    "LATENCY_P95",
    "VS_STABLE",
    "CheckResult",
    "FeatureDrift",
    "Outcome",
    "PrometheusClient",
    "QueryClient",
    "Sample",
    "Summary",
    "Target",
    "TargetKey",
    "Unavailable",
    "Vector",
    "analyse",
    "plan",
    "summarise",
]
