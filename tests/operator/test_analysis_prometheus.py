"""The analysis engine against a real Prometheus scraping stand-ins for serving pods.

Each stand-in is a small HTTP server on a loopback address of its own that serves what one serving
pod serves at /metrics, in the runtime's exposition format (prometheus_client writes it) with the
series names and labels of docs/serving.md: BentoML's request counter and duration histogram
without model labels (a static scrape config adds `namespace`, `pod`, `model`, `version`, `track`
as target labels, as the pod relabelling does in a cluster), and the runtime's own feature,
category, feedback and rejection series with `model`, `version`, `track`. Every series starts at
zero, is scraped at zero, then takes the values the test sets (and changes); the test computes what
the engine must conclude on its own, from those values.

Prometheus is the sandbox's `PrometheusServer` (the Go build); its pod discovery points at a
kubeconfig for a server that is not there (no pod is discovered, the static job does the work).
Why the numbers are exact: `increase()` extrapolates each series of one target by one factor (all
start at zero inside the window and share scrape timestamps), so shares, ratios and PSI are exact;
counts are scaled up by at most a scrape interval's worth, and the sample counts near minSamples
below leave room for it.
"""

from __future__ import annotations

import functools
import http.server
import importlib.util
import math
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import requests
import support
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from modelops_api.spec import ModelSpec, parse
from modelops_operator import canary
from modelops_operator.analysis import (
    Outcome,
    PrometheusClient,
    Target,
    TargetKey,
    analyse,
    stats,
    summarise,
)
from modelops_operator.analysis import client as client_module
from modelops_operator.analysis.client import Answer
from modelops_operator.analysis.model import Results
from modelops_operator.canary import CanarySpec
from modelops_operator.rollout import canary_analysis
from modelops_sandbox.processes import stop_group
from modelops_sandbox.prometheus import PrometheusServer

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

JOB = "modelops-analysis"
WINDOW = 600  # longer than the module runs: every series' zero sample is inside the window
DURATION_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    180.0,
    math.inf,
)
BENTO = {"service_name": "ModelService", "service_version": "not available"}
REFERENCE: dict[str, dict[str, Any]] = {
    "petal_length": {"edges": [1.0, 2.0, 3.0], "proportions": [0.1, 0.3, 0.4, 0.2]},
    "color": {"categories": {"red": 0.5, "green": 0.3, "blue": 0.2}, "other": 0.0},
}
CHECKS: dict[str, Any] = {
    "errorRate": {"max": 0.05},
    "latencyP95Seconds": {"max": 0.5},
    "drift": {"psi": {"max": 0.2}},
    "accuracy": {"min": 0.85},
}
REJECTS = {
    "name": "rejects",
    "query": (
        'sum(increase(modelops_rejected_total{namespace="$NAMESPACE", model="$MODEL", '
        'version="$VERSION", track="$TRACK", endpoint="predict"}[$WINDOW]))'
    ),
    "max": 10,
}

FRAUD_STABLE = TargetKey("shop", "fraud", "fraud-v1", "stable")
FRAUD_CANARY = TargetKey("shop", "fraud", "fraud-v2", "canary")
IRIS_STABLE = TargetKey("ml", "iris", "iris-v1", "stable")
IRIS_CANARY = TargetKey("ml", "iris", "iris-v2", "canary")
SPARSE = TargetKey("ml", "sparse", "sparse-v1", "stable")
RANKER_STABLE = TargetKey("shop", "ranker", "ranker-v1", "stable")
RANKER_CANARY = TargetKey("shop", "ranker", "ranker-v2", "canary")
SEARCH_STABLE = TargetKey("shop", "search", "search-v1", "stable")
SEARCH_CANARY = TargetKey("shop", "search", "search-v2", "canary")
CART_STABLE = TargetKey("shop", "cart", "cart-v1", "stable")
CART_CANARY = TargetKey("shop", "cart", "cart-v2", "canary")
# canaries judged against their stable track: one worse, one alike, one slower
WORSE_STABLE = TargetKey("ml", "churn", "churn-v1", "stable")
WORSE_CANARY = TargetKey("ml", "churn", "churn-v2", "canary")
ALIKE_STABLE = TargetKey("ml", "spam", "spam-v1", "stable")
ALIKE_CANARY = TargetKey("ml", "spam", "spam-v2", "canary")
SLOWER_STABLE = TargetKey("ml", "eta", "eta-v1", "stable")
SLOWER_CANARY = TargetKey("ml", "eta", "eta-v2", "canary")
# one pair per test (counters only grow, as a runtime's do: a test never takes a value back)
SINGLES = (
    FRAUD_STABLE,
    FRAUD_CANARY,
    IRIS_STABLE,
    IRIS_CANARY,
    SPARSE,
    RANKER_STABLE,
    RANKER_CANARY,
    SEARCH_STABLE,
    SEARCH_CANARY,
    CART_STABLE,
    CART_CANARY,
    WORSE_STABLE,
    WORSE_CANARY,
    ALIKE_STABLE,
    ALIKE_CANARY,
    SLOWER_STABLE,
    SLOWER_CANARY,
)
MANY = [TargetKey("bulk", f"m{i:02d}", f"m{i:02d}-v1", "stable") for i in range(27)]


class Pod:
    """What one serving pod exports; `labelled` puts the four target labels on every series
    (a pod of the many-models exporter, whose target has no labels of its own)."""

    def __init__(self, key: TargetKey, labelled: bool = False) -> None:
        self.key = key
        self.labelled = labelled
        # as the runtime: /predict's 200 and 500 counts exist at zero from load; BentoML creates
        # every other code's counter, and every duration histogram, at its first request
        self.requests: dict[str, float] = {"200": 0, "500": 0, "400": 0, "503": 0}
        # observations per response code, per duration bucket index (non-cumulative)
        self.durations: dict[str, list[float]] = {
            c: [0.0] * len(DURATION_BUCKETS) for c in self.requests
        }
        self.bins: dict[str, list[float]] = {"petal_length": [0.0] * 4}
        self.categories: dict[str, dict[str, float]] = {
            "color": {"red": 0, "green": 0, "blue": 0, "__other__": 0}
        }
        self.feedback = {"correct": 0.0, "incorrect": 0.0}
        self.rejected = 0.0

    def own(self) -> dict[str, str]:
        k = self.key
        labels = {"model": k.model, "version": k.version, "track": k.track}
        return {"namespace": k.namespace, **labels} if self.labelled else labels

    def bento(self) -> dict[str, str]:
        return self.own() if self.labelled else {}

    def set_requests(
        self, ok: float, errors: float, rejected: float, slow: bool, unavailable: float = 0
    ) -> None:
        """Answered requests take 30 ms (fast) or 700 ms (slow); rejections 2 ms."""
        answered_bucket = DURATION_BUCKETS.index(1.0 if slow else 0.05)
        codes = (("200", ok), ("500", errors), ("400", rejected), ("503", unavailable))
        for code, n in codes:
            self.requests[code] = n
            durations = [0.0] * len(DURATION_BUCKETS)
            durations[0 if code == "400" else answered_bucket] = n
            self.durations[code] = durations
        self.rejected = rejected

    def families(self) -> list[Metric]:
        out: list[Metric] = []
        bento, own = self.bento(), self.own()
        total = CounterMetricFamily(
            "bentoml_service_request",
            "Total number of HTTP requests",
            labels=[*bento, "endpoint", *BENTO, "http_response_code"],
        )
        duration = HistogramMetricFamily(
            "bentoml_service_request_duration_seconds",
            "API HTTP request duration in seconds",
            labels=[*bento, "endpoint", *BENTO, "http_response_code"],
        )
        for code, n in self.requests.items():
            if n == 0 and code not in ("200", "500"):
                continue  # not born yet
            # The errors come through the Open Inference Protocol's infer: the checks count
            # both prediction endpoints.
            endpoint = "/v2/models/iris/infer" if code.startswith("5") else "/predict"
            total.add_metric([*bento.values(), endpoint, *BENTO.values(), code], n)
            if n == 0:
                continue
            cumulative, running = [], 0.0
            for bound, count in zip(DURATION_BUCKETS, self.durations[code], strict=True):
                running += count
                cumulative.append((floatToGoString(bound), running))
            sum_value = running * (0.7 if self.durations[code][7] else 0.03)
            duration.add_metric(
                [*bento.values(), endpoint, *BENTO.values(), code], cumulative, sum_value
            )
        # probes are counted too, under their own endpoint: the queries must leave them out
        total.add_metric([*bento.values(), "/readyz", *BENTO.values(), "503"], 1000)
        out += [total, duration]
        values = HistogramMetricFamily(
            "modelops_feature_value", "feature values", labels=[*own, "feature"]
        )
        for feature, bins in self.bins.items():
            edges = REFERENCE[feature]["edges"]
            cumulative, running = [], 0.0
            for bound, count in zip([*edges, math.inf], bins, strict=True):
                running += count
                cumulative.append((floatToGoString(bound), running))
            values.add_metric([*own.values(), feature], cumulative, running * 2.0)
        categories = CounterMetricFamily(
            "modelops_feature_category", "categories", labels=[*own, "feature", "category"]
        )
        for feature, counts in self.categories.items():
            for category, n in counts.items():
                categories.add_metric([*own.values(), feature, category], n)
        feedback = CounterMetricFamily("modelops_feedback", "feedback", labels=[*own, "outcome"])
        for outcome, n in self.feedback.items():
            feedback.add_metric([*own.values(), outcome], n)
        rejected = CounterMetricFamily(
            "modelops_rejected", "rejected", labels=[*own, "endpoint", "reason"]
        )
        rejected.add_metric([*own.values(), "predict", "wrong_type"], self.rejected)
        return [*out, values, categories, feedback, rejected]


class Exporter:
    """One /metrics endpoint on a loopback address of its own, serving one or more pods."""

    def __init__(self, pods: Sequence[Pod]) -> None:
        self.pods = list(pods)
        self.lock = threading.Lock()
        self.scrapes = 0
        exporter = self

        class Collector:
            def collect(self) -> Iterator[Metric]:
                for pod in exporter.pods:
                    yield from pod.families()

        registry = CollectorRegistry(auto_describe=False)
        registry.register(Collector())

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with exporter.lock:
                    body = generate_latest(registry)
                    exporter.scrapes += 1
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.ip = (
            f"127.{random.randint(100, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"
        )
        self.server = http.server.ThreadingHTTPServer((self.ip, 0), Handler)
        self.address = f"{self.ip}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def change(self, update: Callable[[], None]) -> int:
        """Applies `update` between two scrapes; returns the scrape count at that moment."""
        with self.lock:
            update()
            return self.scrapes

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def ingested(changed: Mapping[Exporter, int]) -> None:
    """Waits until Prometheus has ingested, from each exporter, a scrape taken after its change:
    the second scrape after it has begun, so the first has been stored."""
    eventually(lambda: all(e.scrapes >= seen + 2 for e, seen in changed.items()), timeout=20)


def traffic(
    ok: float, errors: float, rejected: float, slow: bool, unavailable: float = 0
) -> Callable[[Pod], None]:
    return lambda pod: pod.set_requests(ok, errors, rejected, slow, unavailable)


eventually = functools.partial(support.eventually, timeout=30.0, every=0.1)


def write_kubeconfig(directory: Path) -> Path:
    """For Prometheus' pod discovery, which needs one: a server that is not there."""
    kubeconfig = directory / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: none\n"
        "clusters: [{name: none, cluster: {server: 'https://127.0.0.1:9'}}]\n"
        "users: [{name: none, user: {}}]\n"
        "contexts: [{name: none, context: {cluster: none, user: none}}]\n"
    )
    return kubeconfig


def static_config(exporters: Sequence[Exporter]) -> dict[str, Any]:
    groups = []
    for exporter in exporters:
        labels: dict[str, str] = {}
        if len(exporter.pods) == 1 and not exporter.pods[0].labelled:
            key = exporter.pods[0].key
            labels = {
                "namespace": key.namespace,
                "pod": f"{key.version}-{key.track}-0",
                "model": key.model,
                "version": key.version,
                "track": key.track,
            }
        groups.append({"targets": [exporter.address], "labels": labels})
    return {
        "job_name": JOB,
        "scrape_interval": "1s",
        "honor_labels": True,
        "static_configs": groups,
    }


class Cluster:
    def __init__(self, prometheus: PrometheusServer, exporters: dict[TargetKey, Exporter]) -> None:
        self.prometheus = prometheus
        self.exporters = exporters
        self.pods = {pod.key: pod for e in set(exporters.values()) for pod in e.pods}

    def change(self, *updates: tuple[TargetKey, Callable[[Pod], None]]) -> None:
        """Applies each update to its pod, then waits until Prometheus has them all."""
        changed: dict[Exporter, int] = {}
        for key, update in updates:
            exporter = self.exporters[key]
            seen = exporter.change(lambda key=key, update=update: update(self.pods[key]))  # type: ignore[misc]
            changed.setdefault(exporter, seen)
        ingested(changed)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    kubeconfig = write_kubeconfig(Path(tmp_path_factory.mktemp("kube")))
    singles = [Exporter([Pod(k)]) for k in SINGLES]
    bulk = Exporter([Pod(k, labelled=True) for k in MANY])
    exporters = {e.pods[0].key: e for e in singles} | dict.fromkeys(MANY, bulk)
    everyone = [*singles, bulk]
    prometheus = PrometheusServer(
        kubeconfig, scrape_interval="1s", extra_scrape_configs=[static_config(everyone)]
    )
    try:
        prometheus.start()
        # every series is scraped at zero first, as a runtime's series are when its model loads
        eventually(lambda: len(prometheus.query(f'up{{job="{JOB}"}} == 1')) == len(everyone))
        ingested({e: e.change(lambda: None) for e in everyone})
        yield Cluster(prometheus, exporters)
    finally:
        prometheus.stop()
        for exporter in everyone:
            exporter.close()


def client_for(cluster: Cluster) -> PrometheusClient:
    return client_for_url(cluster.prometheus.url)


def client_for_url(url: str) -> PrometheusClient:
    return PrometheusClient(url, timeout=5)


def one(cluster: Cluster, key: TargetKey, checks: Mapping[str, Any], **kw: Any) -> dict[str, Any]:
    results = analyse(client_for(cluster), [Target(key, checks, REFERENCE)], WINDOW, **kw)
    return {r.check: r for r in results[key]}


# --- independent arithmetic -------------------------------------------------------------------


def expected_psi(counts: Sequence[float], proportions: Sequence[float]) -> float:
    total = sum(counts)
    out = 0.0
    for c, p in zip(counts, proportions, strict=True):
        a, e = max(c / total, 1e-4), max(p, 1e-4)
        out += (a - e) * math.log(a / e)
    return out


def expected_p95(observations_per_bucket: Sequence[float]) -> float:
    """Prometheus' histogram_quantile on classic buckets: linear inside the bucket of the rank."""
    total = sum(observations_per_bucket)
    rank = 0.95 * total
    below, lower = 0.0, 0.0
    for bound, count in zip(DURATION_BUCKETS, observations_per_bucket, strict=True):
        if below + count >= rank and count > 0:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * (rank - below) / count
        below += count
        lower = bound
    return math.nan


# --- the tests --------------------------------------------------------------------------------


def test_error_rate_passes_then_fails_when_5xx_grow(cluster: Cluster) -> None:
    cluster.change(
        (FRAUD_STABLE, traffic(ok=198, errors=2, rejected=5, slow=False)),
        (FRAUD_CANARY, traffic(ok=100, errors=3, rejected=500, slow=False)),
    )
    checks = {"errorRate": {"max": 0.05}}
    stable, canary = one(cluster, FRAUD_STABLE, checks), one(cluster, FRAUD_CANARY, checks)
    assert stable["errorRate"].outcome is Outcome.PASS
    assert stable["errorRate"].value == pytest.approx(2 / 200, rel=1e-9)
    # 500 rejected bodies are the client's errors: neither errors nor dilution
    assert canary["errorRate"].outcome is Outcome.PASS
    assert canary["errorRate"].value == pytest.approx(3 / 103, rel=1e-9)

    # a burst of 503s between two scrapes: BentoML's series for the code is born holding them
    burst = traffic(ok=100, errors=30, rejected=500, slow=False, unavailable=7)
    cluster.change((FRAUD_CANARY, burst))
    canary = one(cluster, FRAUD_CANARY, checks)
    assert canary["errorRate"].outcome is Outcome.FAIL
    assert canary["errorRate"].value == pytest.approx(37 / 137, rel=1e-9)  # the 7 are counted
    assert canary["errorRate"].samples == pytest.approx(137, rel=1e-9)


def test_latency_p95_of_answered_predict_requests(cluster: Cluster) -> None:
    cluster.change(
        (RANKER_STABLE, traffic(ok=200, errors=0, rejected=50, slow=False)),
        (RANKER_CANARY, traffic(ok=100, errors=10, rejected=500, slow=True)),
    )
    checks = {"latencyP95Seconds": {"max": 0.5}}
    stable, canary = one(cluster, RANKER_STABLE, checks), one(cluster, RANKER_CANARY, checks)
    fast, slow = [0.0] * 16, [0.0] * 16
    fast[DURATION_BUCKETS.index(0.05)] = 200
    slow[DURATION_BUCKETS.index(1.0)] = 110
    assert stable["latencyP95Seconds"].outcome is Outcome.PASS
    assert stable["latencyP95Seconds"].value == pytest.approx(expected_p95(fast), rel=1e-9)
    assert canary["latencyP95Seconds"].outcome is Outcome.FAIL
    assert canary["latencyP95Seconds"].value == pytest.approx(expected_p95(slow), rel=1e-9)


def test_drift_psi_above_and_below_the_threshold(cluster: Cluster) -> None:
    def stable(p: Pod) -> None:
        p.bins["petal_length"] = [22, 58, 82, 38]
        p.categories["color"] = {"red": 104, "green": 56, "blue": 40, "__other__": 0}

    def canary(p: Pod) -> None:
        p.bins["petal_length"] = [80, 60, 40, 20]
        p.categories["color"] = {"red": 40, "green": 60, "blue": 40, "__other__": 60}

    cluster.change((IRIS_STABLE, stable), (IRIS_CANARY, canary))
    checks = {"drift": {"psi": {"max": 0.2}}}
    calm, drifted = (
        one(cluster, IRIS_STABLE, checks)["drift"],
        one(cluster, IRIS_CANARY, checks)["drift"],
    )

    ref_numeric = REFERENCE["petal_length"]["proportions"]
    ref_colors = [0.5, 0.3, 0.2, 0.0]
    calm_psi = {
        "petal_length": expected_psi([22, 58, 82, 38], ref_numeric),
        "color": expected_psi([104, 56, 40, 0], ref_colors),
    }
    drift_psi = {
        "petal_length": expected_psi([80, 60, 40, 20], ref_numeric),
        "color": expected_psi([40, 60, 40, 60], ref_colors),
    }
    assert max(calm_psi.values()) < 0.2 < max(drift_psi.values())
    assert calm.outcome is Outcome.PASS
    assert {f.feature: f.psi for f in calm.features} == pytest.approx(calm_psi, rel=1e-9)
    assert drifted.outcome is Outcome.FAIL
    assert {f.feature: f.psi for f in drifted.features} == pytest.approx(drift_psi, rel=1e-9)
    assert drifted.value == pytest.approx(max(drift_psi.values()), rel=1e-9)
    worst = max(drift_psi, key=lambda f: drift_psi[f])
    assert summarise([drifted]).drift_feature == worst


def test_accuracy_from_feedback_counters(cluster: Cluster) -> None:
    def good(p: Pod) -> None:
        p.feedback = {"correct": 90, "incorrect": 10}

    def bad(p: Pod) -> None:
        p.feedback = {"correct": 45, "incorrect": 30}

    cluster.change((IRIS_STABLE, good), (IRIS_CANARY, bad))
    checks = {"accuracy": {"min": 0.85}}
    stable, canary = one(cluster, IRIS_STABLE, checks), one(cluster, IRIS_CANARY, checks)
    assert stable["accuracy"].outcome is Outcome.PASS
    assert stable["accuracy"].value == pytest.approx(0.9, rel=1e-9)
    assert canary["accuracy"].outcome is Outcome.FAIL
    assert canary["accuracy"].value == pytest.approx(0.6, rel=1e-9)


def test_too_few_samples_is_inconclusive_for_every_check(cluster: Cluster) -> None:
    def trickle(p: Pod) -> None:
        p.set_requests(ok=2, errors=3, rejected=0, slow=True)  # 60 % errors, 5 requests
        p.bins["petal_length"] = [10, 0, 0, 0]
        p.categories["color"]["__other__"] = 10
        p.feedback = {"correct": 0, "incorrect": 4}

    cluster.change((SPARSE, trickle))
    results = one(cluster, SPARSE, CHECKS)
    assert set(results) == set(CHECKS)
    for result in results.values():
        assert result.outcome is Outcome.INCONCLUSIVE, result
    assert "< minSamples 20" in results["errorRate"].reason
    assert "< minSamples 100" in results["drift"].reason
    assert "< minSamples 50" in results["accuracy"].reason


def test_a_target_without_series_is_inconclusive_not_failed(cluster: Cluster) -> None:
    ghost = TargetKey("ml", "iris", "iris-v9", "canary")
    results = one(cluster, ghost, CHECKS)
    assert all(r.outcome is Outcome.INCONCLUSIVE for r in results.values())
    assert "no /predict request series" in results["errorRate"].reason
    assert "no series" in results["drift"].reason


def test_custom_check_scoped_by_placeholders(cluster: Cluster) -> None:
    cluster.change(
        (SEARCH_STABLE, traffic(ok=200, errors=0, rejected=4, slow=False)),
        (SEARCH_CANARY, traffic(ok=200, errors=0, rejected=40, slow=False)),
    )
    checks = {"custom": [REJECTS]}
    stable, canary = one(cluster, SEARCH_STABLE, checks), one(cluster, SEARCH_CANARY, checks)
    assert stable["custom:rejects"].outcome is Outcome.PASS
    assert canary["custom:rejects"].outcome is Outcome.FAIL
    assert canary["custom:rejects"].value == pytest.approx(40, rel=0.2)
    unscoped = {"custom": [{**REJECTS, "query": "sum by (model) (modelops_rejected_total)"}]}
    result = one(cluster, SEARCH_STABLE, unscoped)["custom:rejects"]
    assert result.outcome is Outcome.INCONCLUSIVE and "one value per target" in result.reason


# --- a canary against stable, over the same window --------------------------------------------


def iris_canary_checks() -> dict[str, Any]:
    """The canary's checks of examples/iris.yaml (every one but drift, as the operator analyses a
    canary), with errorRate and latencyP95Seconds also judged against stable (the defaults)."""
    example = yaml.safe_load((ROOT / "examples" / "iris.yaml").read_text())
    checks = example["spec"]["monitoring"]["checks"]
    checks["errorRate"]["vsStable"] = {}
    checks["latencyP95Seconds"]["vsStable"] = {}
    spec = parse(ModelSpec, example["spec"], "spec")
    return {k: v for k, v in spec.monitoring.checks.wire().items() if k != "drift"}


def canary_pass(
    cluster: Cluster, stable: TargetKey, canary: TargetKey, checks: Mapping[str, Any], at: float
) -> Results:
    """One analysis of the canary beside stable, as the analysis loop makes it (at Prometheus'
    now), kept under the canary state machine's clock `at`."""
    targets = [Target(canary, checks, baseline=stable)]
    results = analyse(client_for(cluster), targets, WINDOW)
    return Results(at, {"canary": results[canary]}, {"canary": canary.version})


def served(ok: float, errors: float, correct: float, incorrect: float) -> Callable[[Pod], None]:
    def update(pod: Pod) -> None:
        pod.set_requests(ok, errors, rejected=0, slow=False)
        pod.feedback = {"correct": correct, "incorrect": incorrect}

    return update


CANARY_SPEC = CanarySpec(steps=(10, 50), interval="60s", threshold=2, progress_deadline="15m")


def test_a_canary_with_2_percent_errors_against_stables_0_1_is_rolled_back(
    cluster: Cluster,
) -> None:
    checks = iris_canary_checks()
    status: dict[str, Any] = canary.start(WORSE_CANARY.version, 0.0, 9, CANARY_SPEC)
    # one canary pod beside nine stable ones, about a tenth of the traffic; errors 2% and 0.1%;
    # 200 canary requests per interval, the default minSamples: the fewest that conclude
    analyses = []
    for tick, (n_stable, n_canary) in enumerate(((2000, 200), (4000, 400)), start=1):
        cluster.change(
            (WORSE_STABLE, served(n_stable * 0.999, n_stable * 0.001, 95 * tick, 5 * tick)),
            (WORSE_CANARY, served(n_canary * 0.98, n_canary * 0.02, 95 * tick, 5 * tick)),
        )
        results = canary_pass(cluster, WORSE_STABLE, WORSE_CANARY, checks, tick * 60.0)
        found = {r.check: r for r in results.by_track["canary"]}
        for check in ("errorRate", "latencyP95Seconds", "accuracy", "latencyP95Seconds.vsStable"):
            assert found[check].outcome is Outcome.PASS, found[check].reason  # 2% <= 5% ...
        compared = found["errorRate.vsStable"]
        assert compared.outcome is Outcome.FAIL, compared.reason
        assert compared.samples == pytest.approx(n_canary, rel=0.05)
        assert f"canary {round(compared.samples * 0.02)} of {compared.samples:.0f}" in (
            compared.reason
        )
        assert "(2%) vs stable" in compared.reason and "(0.1%)" in compared.reason
        assert compared.value is not None and compared.value < 0.05
        assert f"p = {compared.value:.3g} < 0.05" in compared.reason
        analysis = canary_analysis(results, status)
        assert analysis is not None
        decision = canary.decide(status, CANARY_SPEC, tick * 60.0, analysis, 9)
        status = decision.status
        analyses.append((decision.action, decision.reason, decision.message))
    assert analyses[0][:2] == ("wait", "CheckFailed")
    assert analyses[1][:2] == ("rollback", "CanaryFailed")
    assert analyses[1][2].endswith("(threshold 2): errorRate.vsStable")
    reasons = status["lastAnalysis"]["reasons"]
    assert set(reasons) == {"errorRate.vsStable"}
    assert reasons["errorRate.vsStable"] == compared.reason  # the last analysis's: 400 requests


def test_a_canary_like_stable_is_promoted(cluster: Cluster) -> None:
    checks = iris_canary_checks()
    status: dict[str, Any] = canary.start(ALIKE_CANARY.version, 0.0, 9, CANARY_SPEC)
    actions = []
    # 0.5% errors on both tracks; 200 canary requests in the first interval: minSamples, no more
    for tick, (n_stable, n_canary) in enumerate(((1800, 200), (3600, 400)), start=1):
        cluster.change(
            (ALIKE_STABLE, served(n_stable * 0.995, n_stable * 0.005, 95 * tick, 5 * tick)),
            (ALIKE_CANARY, served(n_canary * 0.995, n_canary * 0.005, 95 * tick, 5 * tick)),
        )
        results = canary_pass(cluster, ALIKE_STABLE, ALIKE_CANARY, checks, tick * 60.0)
        found = {r.check: r for r in results.by_track["canary"]}
        assert all(r.outcome is Outcome.PASS for r in found.values()), found
        assert found["errorRate.vsStable"].samples == pytest.approx(n_canary, rel=0.05)
        analysis = canary_analysis(results, status)
        assert analysis is not None
        decision = canary.decide(status, CANARY_SPEC, tick * 60.0, analysis, 9)
        status = decision.status
        actions.append(decision.action)
    assert actions == ["advance", "promote"]


def test_a_canary_slower_than_stable_within_its_p95_threshold_fails(cluster: Cluster) -> None:
    def spread(per_bucket: dict[float, float]) -> Callable[[Pod], None]:
        def update(pod: Pod) -> None:
            pod.set_requests(sum(per_bucket.values()), 0, rejected=0, slow=False)
            pod.durations["200"] = [per_bucket.get(b, 0.0) for b in DURATION_BUCKETS]

        return update

    cluster.change(
        (SLOWER_STABLE, spread({0.025: 300, 0.05: 600, 0.1: 100})),
        # a fifth of the canary's requests over 50 ms, a tenth of stable's
        (SLOWER_CANARY, spread({0.025: 60, 0.05: 180, 0.1: 60})),
    )
    checks = {"latencyP95Seconds": {"max": 0.5, "vsStable": {"minSamples": 200}}}
    results = canary_pass(cluster, SLOWER_STABLE, SLOWER_CANARY, checks, 60.0)
    found = {r.check: r for r in results.by_track["canary"]}
    assert found["latencyP95Seconds"].outcome is Outcome.PASS  # p95 under 0.1s
    compared = found["latencyP95Seconds.vsStable"]
    assert compared.outcome is Outcome.FAIL, compared.reason
    # Mann-Whitney on the bins the test served (shares are exact; counts to a scrape's worth)
    expected = stats.mann_whitney([60, 180, 60], [300, 600, 100])
    assert compared.value is not None and compared.value < 1e-4
    assert math.log10(compared.value) == pytest.approx(math.log10(expected.p_value), rel=0.1)
    # the medians cannot tell the tracks apart; the ranks can
    assert compared.reason.startswith(
        "canary 300 /predict requests, median <= 0.05s, vs stable 1000, median <= 0.05s"
    )


class CountingSession(requests.Session):
    """Counts the HTTP requests prometheus-api-client sends."""

    count = 0

    def request(self, *args: Any, **kwargs: Any) -> Any:
        self.count += 1
        return super().request(*args, **kwargs)


def test_the_number_of_queries_is_the_same_for_3_and_30_targets(cluster: Cluster) -> None:
    def busy(p: Pod) -> None:
        p.set_requests(ok=100, errors=1, rejected=0, slow=False)
        p.bins["petal_length"] = [10, 30, 40, 20]
        p.categories["color"] = {"red": 50, "green": 30, "blue": 20, "__other__": 0}
        p.feedback = {"correct": 95, "incorrect": 5}

    cluster.change(*((k, busy) for k in MANY))
    few = [FRAUD_STABLE, FRAUD_CANARY, IRIS_STABLE]
    counts, outcomes = [], {}
    for keys in (few, few + MANY):
        session = CountingSession()
        client = PrometheusClient(cluster.prometheus.url, timeout=5, session=session)
        results = analyse(client, [Target(k, CHECKS, REFERENCE) for k in keys], WINDOW)
        counts.append(session.count)
        outcomes = {k: {r.check: r.outcome for r in results[k]} for k in keys}
    assert counts == [5, 5]
    for key in MANY:  # every one of the 27 got its own numbers out of the shared answers
        assert outcomes[key] == dict.fromkeys(CHECKS, Outcome.PASS), key


class StopAfterFirst:
    """A client that stops Prometheus right after its first answer: mid-analysis."""

    def __init__(self, inner: PrometheusClient, prometheus: PrometheusServer) -> None:
        self.inner, self.prometheus, self.sent = inner, prometheus, 0

    def query(self, promql: str, at: float | None = None) -> Answer:
        answer = self.inner.query(promql, at)
        self.sent += 1
        if self.sent == 1:
            self.prometheus.stop()
        return answer


def test_prometheus_stopped_mid_analysis_is_inconclusive_never_failed(cluster: Cluster) -> None:
    # runs last: it stops the module's Prometheus
    cluster.change((CART_CANARY, traffic(ok=100, errors=30, rejected=0, slow=True)))
    targets = [
        Target(k, {**CHECKS, "custom": [REJECTS]}, REFERENCE) for k in (CART_STABLE, CART_CANARY)
    ]
    stopping = StopAfterFirst(client_for(cluster), cluster.prometheus)
    results = analyse(stopping, targets, WINDOW)
    canary = {r.check: r for r in results[CART_CANARY]}
    assert canary["errorRate"].outcome is Outcome.FAIL  # answered before the stop
    for check in ("latencyP95Seconds", "drift", "accuracy", "custom:rejects"):
        assert canary[check].outcome is Outcome.INCONCLUSIVE
        assert "Prometheus unavailable (unreachable)" in canary[check].reason
    assert stopping.sent == 2  # the first failure ends the pass: the rest is not sent

    session = CountingSession()
    client = PrometheusClient(cluster.prometheus.url, timeout=5, session=session)
    started = time.monotonic()
    results = analyse(client, targets, WINDOW)
    assert time.monotonic() - started < 5
    assert session.count == 1
    for key, checks in results.items():
        assert len(checks) == 5, key
        for result in checks:
            assert result.outcome is Outcome.INCONCLUSIVE
            assert f"({client_module.UNREACHABLE})" in result.reason
        assert summarise(checks).failed == ()


# --- with the real serving runtime ------------------------------------------------------------


def serving_builders() -> Any:
    """tests/serving/serving_models.py (the serving tests' contract-following model builders),
    loaded by path without putting that folder, and its conftest, on sys.path."""
    if "serving_models" in sys.modules:
        return sys.modules["serving_models"]
    path = Path(__file__).resolve().parent.parent / "serving" / "serving_models.py"
    spec = importlib.util.spec_from_file_location("serving_models", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["serving_models"] = module
    spec.loader.exec_module(module)
    return module


class Runtime:
    """`bentoml serve` of the serving runtime for one built model, in its own process group."""

    def __init__(self, workdir: Path, built: Any) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        home = workdir / "bentoml-home"
        home.mkdir()
        self.log = workdir / "runtime.log"
        env = {
            **os.environ,
            "BENTOML_HOME": str(home),
            "BENTOML_DO_NOT_TRACK": "true",
            "MODELOPS_HOST": "127.0.0.1",
            "MODELOPS_ARTIFACT": built.archive.as_uri(),
            "MODELOPS_MODEL": built.model,
            "MODELOPS_VERSION": built.version,
            "MODELOPS_TRACK": "stable",
            **support.serving_credentials(workdir / "credentials"),
        }
        bentoml = Path(sys.executable).parent / "bentoml"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [
                    str(bentoml),
                    "serve",
                    "modelops_serving.service:ModelService",
                    "--port",
                    str(self.port),
                ],
                cwd=workdir,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"bentoml serve exited:\n{self.log.read_text()[-3000:]}")
            try:
                if requests.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        pytest.fail(f"not ready in {timeout}s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        stop_group(self.process, 20)


def test_a_real_runtime_scraped_by_prometheus(tmp_path: Path) -> None:
    """One real `bentoml serve` of a contract-following iris model (built by the serving tests'
    builder), scraped with the target labels a pod gets: the engine reads BentoML's series and the
    runtime's own by the names docs/serving.md gives, and concludes what the test computes from
    the rows and feedback it sent, against the reference the runtime reports in /metadata."""
    import numpy as np
    from sklearn.datasets import load_iris

    serving_models = serving_builders()

    built = serving_models.iris_classifier(tmp_path, version="iris-v7")
    runtime = Runtime(tmp_path, built)
    prometheus: PrometheusServer | None = None
    try:
        runtime.wait_ready()
        key = TargetKey("ml", "iris", "iris-v7", "stable")
        job = {
            "job_name": JOB,
            "scrape_interval": "1s",
            "honor_labels": True,
            "static_configs": [
                {
                    "targets": [f"127.0.0.1:{runtime.port}"],
                    "labels": {
                        "namespace": "ml",
                        "pod": "iris-0",
                        "model": "iris",
                        "version": "iris-v7",
                        "track": "stable",
                    },
                }
            ],
        }
        prometheus = PrometheusServer(
            write_kubeconfig(tmp_path), scrape_interval="1s", extra_scrape_configs=[job]
        )
        prometheus.start()
        assert prometheus is not None
        server = prometheus
        # the model's series exist at zero from load: wait for a scrape of them
        eventually(lambda: server.query('modelops_feedback_total{model="iris"}'))

        # setosa and versicolor only (the first 100 rows): petals shorter than in training
        iris = load_iris()
        frame = built.frame.iloc[:100]
        rows = frame.to_numpy().tolist()
        labels = [str(iris.target_names[t]) for t in iris.target[:100]]
        correct = incorrect = 0
        with requests.Session() as http:
            for start in range(0, len(rows), 5):  # 20 requests of 5 rows
                answer = http.post(
                    f"{runtime.url}/predict", json={"rows": rows[start : start + 5]}, timeout=30
                )
                assert answer.status_code == 200, answer.text
                rid = answer.json()["request_id"]
                items = [
                    {"request_id": rid, "row": i, "truth": labels[start + i]}
                    for i in range(len(rows[start : start + 5]))
                ]
                scored = http.post(
                    f"{runtime.url}/feedback",
                    json={"items": items},
                    headers=support.bearer(),
                    timeout=30,
                ).json()
                correct, incorrect = correct + scored["correct"], incorrect + scored["incorrect"]
            for _ in range(4):  # bad bodies: the client's errors, not the model's
                assert (
                    http.post(f"{runtime.url}/predict", json={"rows": []}, timeout=30).status_code
                    == 400
                )
            metadata = http.get(f"{runtime.url}/metadata", headers=support.bearer(), timeout=30)
            reference = metadata.json()["reference"]
        eventually(
            lambda: [
                r
                for r in server.query('sum(modelops_feedback_total{model="iris"})')
                if float(r["value"][1]) == correct + incorrect
            ]
        )
        eventually(
            lambda: [
                r
                for r in server.query(
                    'sum(bentoml_service_request_total{endpoint="/predict", model="iris"})'
                )
                if float(r["value"][1]) == 24
            ]
        )

        checks = {
            "errorRate": {"max": 0.05, "minSamples": 10},
            "latencyP95Seconds": {"max": 10.0, "minSamples": 10},
            "drift": {"psi": {"max": 0.2}, "minSamples": 50},
            "accuracy": {"min": 0.85, "minSamples": 50},
        }
        results = analyse(client_for_url(server.url), [Target(key, checks, reference)], WINDOW)
        out = {r.check: r for r in results[key]}
        assert out["errorRate"].outcome is Outcome.PASS and out["errorRate"].value == 0
        assert out["errorRate"].samples == pytest.approx(20, rel=0.2)  # the 4 bad bodies left out
        assert out["latencyP95Seconds"].outcome is Outcome.PASS
        assert out["accuracy"].outcome is Outcome.PASS
        assert out["accuracy"].value == pytest.approx(correct / (correct + incorrect), rel=1e-9)
        expected = {}
        for feature in frame.columns:
            edges = reference[feature]["edges"]
            bins = np.bincount(
                np.searchsorted(edges, frame[feature].to_numpy(), side="left"),
                minlength=len(edges) + 1,
            )
            expected[feature] = expected_psi(bins.tolist(), reference[feature]["proportions"])
        assert {f.feature: f.psi for f in out["drift"].features} == pytest.approx(
            expected, rel=1e-9
        )
        assert max(expected.values()) > 0.2
        assert out["drift"].outcome is Outcome.FAIL
        assert summarise([out["drift"]]).drift_feature == max(expected, key=lambda f: expected[f])
    finally:
        if prometheus is not None:
            prometheus.stop()
        runtime.stop()
