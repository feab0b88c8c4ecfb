"""The chart's alerts and Grafana dashboard, evaluated by the real Prometheus (the sandbox's build).

The rules and the dashboard are the ones `helm template` renders (alerts.enabled, dashboard.enabled,
short `for`s and window through values): the PrometheusRule's `spec.groups` is written as
Prometheus's rule file, and the ConfigMap's JSON is the dashboard; no expression is copied here.
Prometheus scrapes, every second:

- a real operator process (`OperatorProcess`, its own metrics port) watching a namespace of the
  session's control plane, the kubelet's part played by the test as in test_operator_metrics.py;
- a small HTTP server serving exposition text in the operator's series names, for what the real
  operator cannot be driven into in seconds here (a canary needs serving pods and analyses);
- for the dashboard, a real `bentoml serve` of the serving runtime with a built iris model
  (`Runtime` of tests/operator/test_analysis_prometheus.py), given the target labels a pod gets.

Proven on the real operator: ModelopsTrainingFailed (a training rejected by its quality gate),
ModelopsModelFailed (the Model nothing serves), ModelopsOperatorNotReconciling (Models exist and no
pass in the window: the operator's resync is an hour here), ModelopsReconcileErrors (every pass
refused with a 409) and ModelopsOperatorDown (the process stopped). Proven on exposition text:
ModelopsCanaryRolledBack, ModelopsModelDegraded and ModelopsModelDrifting, each beside a healthy
Model (Serving, low PSI, promoted canaries) that fires nothing. A real canary rolled back by the
operator on the real node fires ModelopsCanaryRolledBack in tests/loop/test_loop.py, where the
sandbox's Prometheus scrapes the operator's pod and evaluates these rules.

The tests share one module fixture and run in file order: the operator is stopped last.
"""

from __future__ import annotations

import http.server
import importlib.util
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from kubernetes import client
from support import (
    OperatorProcess,
    apply_squatted_model,
    bearer,
    eventually,
    finish_pod,
    training_result,
)

from modelops_api import contract
from modelops_sandbox import tools
from modelops_sandbox.controlplane import ControlPlane
from modelops_sandbox.prometheus import PrometheusServer

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "modelops"
OPERATOR_JOB = "modelops-operator"
EXPOSITION_JOB = "modelops-exposition"
RUNTIME_JOB = "modelops-runtime"
WINDOW = "20s"
FOR = "3s"
ALERTS = (
    "ModelopsCanaryRolledBack",
    "ModelopsTrainingFailed",
    "ModelopsModelFailed",
    "ModelopsModelDegraded",
    "ModelopsModelDrifting",
    "ModelopsOperatorDown",
    "ModelopsOperatorNotReconciling",
    "ModelopsReconcileErrors",
)
MODEL = "iris"
# the target labels a PodMonitor gives the operator's pod (its series' own win: honor_labels)
OPERATOR_POD = {"namespace": "modelops-system", "pod": "modelops-operator-0"}


def render() -> list[dict[str, Any]]:
    helm = tools.ensure("helm")["helm"]
    values = {
        "alerts.enabled": "true",
        "dashboard.enabled": "true",
        "alerts.operatorJob": OPERATOR_JOB,
        "alerts.window": WINDOW,
        **{f"alerts.for.{name}": FOR for name in ALERTS},
    }
    args = [str(helm), "template", "t", str(CHART), "--kube-version", "1.30.0"]
    for key, value in values.items():
        args += ["--set", f"{key}={value}"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=120, check=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def test_the_chart_lints_with_alerts_and_dashboard_and_refuses_a_bad_duration() -> None:
    helm = str(tools.ensure("helm")["helm"])
    on = ["--set", "alerts.enabled=true", "--set", "dashboard.enabled=true"]
    lint = [helm, "lint", "--strict", str(CHART), "--kube-version", "1.30.0", *on]
    result = subprocess.run(lint, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    bad = [*lint, "--set", "alerts.for.ModelopsModelDegraded=soon"]
    result = subprocess.run(bad, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "ModelopsModelDegraded" in result.stdout + result.stderr


class Exposition:
    """Serves `text` on /metrics from a daemon thread."""

    def __init__(self) -> None:
        self.text = ""
        exposition = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = exposition.text.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def exposition_text(ns: str, bad: bool) -> str:
    """Two Models of namespace shop: `wine` healthy throughout, `fraud` healthy then (bad)
    Degraded, drifting and just rolled back; and the gauges the dashboard reads for ns/iris that
    the real operator sets only for a Model that serves (accuracy, drift, canary weight)."""
    phase = "Degraded" if bad else "Serving"
    iris = f'namespace="{ns}",model="iris",version="iris-v7"'
    lines = [
        "# TYPE modelops_operator_model_phase gauge",
        *(
            f'modelops_operator_model_phase{{namespace="shop",model="fraud",phase="{p}"}} '
            f"{int(p == phase)}"
            for p in ("Serving", "Degraded")
        ),
        'modelops_operator_model_phase{namespace="shop",model="wine",phase="Serving"} 1',
        'modelops_operator_model_phase{namespace="shop",model="wine",phase="Degraded"} 0',
        "# TYPE modelops_operator_model_drift_psi gauge",
        'modelops_operator_model_drift_psi{namespace="shop",model="fraud",version="fraud-v1"} '
        f"{0.45 if bad else 0.05}",
        'modelops_operator_model_drift_psi{namespace="shop",model="wine",version="wine-v1"} 0.1',
        f"modelops_operator_model_drift_psi{{{iris}}} 0.08",
        "# TYPE modelops_operator_model_accuracy gauge",
        f"modelops_operator_model_accuracy{{{iris}}} 0.95",
        "# TYPE modelops_operator_model_canary_weight_percent gauge",
        f'modelops_operator_model_canary_weight_percent{{namespace="{ns}",model="iris",'
        'version="iris-v8"} 20',
        "# TYPE modelops_operator_canary_outcomes_total counter",
        f'modelops_operator_canary_outcomes_total{{namespace="{ns}",model="iris",outcome="promoted",'
        'check=""} 3',
    ]
    if bad:  # born at its first rollback, as the operator's counter is
        lines.append(
            'modelops_operator_canary_outcomes_total{namespace="shop",model="fraud",'
            'outcome="rolled_back",check="errorRate"} 1'
        )
    return "\n".join(lines) + "\n"


@dataclass
class Stack:
    prometheus: PrometheusServer
    exposition: Exposition
    operator: OperatorProcess
    namespace: str
    dashboard: dict[str, Any]
    tmp: Path

    def alerts(self, state: str = "firing") -> list[dict[str, str]]:
        data = self.prometheus.api("/api/v1/alerts")
        return [a["labels"] for a in data["alerts"] if a["state"] == state]

    def firing(self, name: str, **labels: str) -> list[dict[str, str]]:
        return [
            a
            for a in self.alerts()
            if a["alertname"] == name and all(a.get(k) == v for k, v in labels.items())
        ]

    def wait_evaluations(self, seconds: float = 6.0) -> None:
        """Long enough for several scrapes and rule evaluations, and every `for` (3 s)."""
        time.sleep(seconds)


@pytest.fixture(scope="module")
def stack(
    control_plane: ControlPlane,
    crds: Path,
    kube_api: client.ApiClient,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("alerts")
    documents = render()
    rule = next(d for d in documents if d["kind"] == "PrometheusRule")
    rules = tmp / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    configmap = next(
        d
        for d in documents
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard")
    )
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(configmap["data"]["modelops.json"])

    core = client.CoreV1Api(kube_api)
    ns = f"alerts-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    exposition = Exposition()
    exposition.text = exposition_text(ns, bad=False)
    operator = OperatorProcess(
        control_plane.kubeconfig, [ns], tmp / "operator.log", {"MODELOPS_RESYNC_SECONDS": "3600"}
    )
    jobs = [
        {
            "job_name": OPERATOR_JOB,
            "scrape_interval": "1s",
            "honor_labels": True,
            "static_configs": [
                {"targets": [f"127.0.0.1:{operator.metrics_port}"], "labels": OPERATOR_POD}
            ],
        },
        {
            "job_name": EXPOSITION_JOB,
            "scrape_interval": "1s",
            "honor_labels": True,
            "static_configs": [
                {
                    "targets": [f"127.0.0.1:{exposition.port}"],
                    "labels": {"namespace": "modelops-system", "pod": "exposition-0"},
                }
            ],
        },
    ]
    prometheus = PrometheusServer(
        control_plane.kubeconfig,
        scrape_interval="1s",
        evaluation_interval="1s",
        extra_scrape_configs=jobs,
        rule_files=[rules],
        enable_lifecycle=True,
    )
    try:
        prometheus.start()
        groups = prometheus.api("/api/v1/rules")["groups"]
        loaded = {r["name"] for g in groups for r in g["rules"]}
        assert loaded == set(ALERTS), loaded
        operator.start()
        operator.wait_ready()
        eventually(lambda: prometheus.query(f'up{{job="{OPERATOR_JOB}"}} == 1'))
        eventually(lambda: prometheus.query(f'up{{job="{EXPOSITION_JOB}"}} == 1'))
        yield Stack(prometheus, exposition, operator, ns, dashboard, tmp)
    finally:
        operator.stop()
        prometheus.stop()
        exposition.close()
        core.delete_namespace(ns)


def test_model_alerts_fire_on_a_bad_model_and_not_on_a_healthy_one(stack: Stack) -> None:
    """Exposition text: `fraud` turns Degraded, drifts (PSI 0.45 > 0.2) and has a canary rolled
    back; `wine` stays Serving at PSI 0.1 and promoted canaries fire nothing."""
    stack.wait_evaluations()
    assert [a for a in stack.alerts("firing") + stack.alerts("pending")
            if a.get("namespace") == "shop" or a.get("pod") == "exposition-0"] == []  # fmt: skip

    stack.exposition.text = exposition_text(stack.namespace, bad=True)
    eventually(lambda: stack.firing("ModelopsModelDegraded", namespace="shop", model="fraud"))
    eventually(lambda: stack.firing("ModelopsModelDrifting", namespace="shop", model="fraud",
                                    version="fraud-v1"))  # fmt: skip
    rolled = eventually(
        lambda: stack.firing("ModelopsCanaryRolledBack", namespace="shop", model="fraud")
    )
    assert [a["check"] for a in rolled] == ["errorRate"]
    assert not [a for a in stack.alerts() if a.get("model") == "wine"]
    data = stack.prometheus.api("/api/v1/alerts")["alerts"]
    degraded = next(a for a in data if a["labels"]["alertname"] == "ModelopsModelDegraded")
    assert "shop/fraud" in degraded["annotations"]["summary"]
    assert "shop/fraud" in degraded["annotations"]["description"]


def test_operator_alerts_fire_on_the_real_operator(
    stack: Stack, kube_api: client.ApiClient
) -> None:
    """A training rejected by its quality gate, the Model Failed, no pass for the window, then a
    Model whose every pass is refused (409)."""
    ns, prometheus = stack.namespace, stack.prometheus
    custom, core = client.CustomObjectsApi(kube_api), client.CoreV1Api(kube_api)
    # Healthy: up, reconciling, no Model yet, no error.
    stack.wait_evaluations()
    operator_alerts = [a for a in stack.alerts("firing") if a.get("pod") != "exposition-0"]
    assert [a for a in operator_alerts if a.get("namespace") != "shop"] == []

    body = yaml.safe_load((REPO / "examples" / "iris.yaml").read_text())
    body["metadata"]["namespace"] = ns
    custom.create_namespaced_custom_object(contract.GROUP, contract.VERSION, ns, "models", body)

    def pod() -> Any:
        pods = core.list_namespaced_pod(
            ns, label_selector="batch.kubernetes.io/job-name=iris-v1"
        ).items
        return pods[0] if pods else None

    name = eventually(pod).metadata.name
    eventually(lambda: prometheus.query(
        f'modelops_operator_model_phase{{namespace="{ns}", phase="Training"}} == 1'))  # fmt: skip
    assert not stack.firing("ModelopsTrainingFailed") and not stack.firing("ModelopsModelFailed")
    result = training_result(MODEL, "iris-v1", "Rejected", reason=contract.GATE_MISSED)
    finish_pod(core, ns, name, contract.TRAINING_CONTAINER, 0, result)

    training = eventually(lambda: stack.firing("ModelopsTrainingFailed", outcome="rejected"))
    assert (training[0]["namespace"], training[0]["model"]) == (ns, MODEL)
    eventually(lambda: stack.firing("ModelopsModelFailed", namespace=ns, model=MODEL))
    # The Model is Failed and nothing changes: no pass for the window (resync is an hour here).
    eventually(lambda: stack.firing("ModelopsOperatorNotReconciling"), timeout=90)
    assert not stack.firing("ModelopsReconcileErrors")

    # A version someone else made under the name the next training needs: every pass is refused.
    apply_squatted_model(custom, ns, body, "broken")
    eventually(lambda: stack.firing("ModelopsReconcileErrors"), timeout=90)
    eventually(lambda: not stack.firing("ModelopsOperatorNotReconciling"), timeout=60)


def analysis_tests() -> Any:
    """tests/operator/test_analysis_prometheus.py, loaded by path for its `Runtime` and model
    builders (its tests are not collected from here)."""
    name = "analysis_prometheus_helpers"
    if name in sys.modules:
        return sys.modules[name]
    path = REPO / "tests" / "operator" / "test_analysis_prometheus.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_every_dashboard_query_answers(stack: Stack) -> None:
    """Every target of every panel, its variables substituted (namespace and model of the real
    operator's Model), returns samples from the real operator, the real runtime and, for the
    gauges of a serving Model and a canary, the exposition text."""
    helpers = analysis_tests()
    built = helpers.serving_builders().iris_classifier(stack.tmp, version="iris-v7")
    runtime = helpers.Runtime(stack.tmp, built)
    prometheus = stack.prometheus
    try:
        runtime.wait_ready()
        prometheus.extra_scrape_configs = [
            *prometheus.extra_scrape_configs,
            {
                "job_name": RUNTIME_JOB,
                "scrape_interval": "1s",
                "honor_labels": True,
                "static_configs": [
                    {
                        "targets": [f"127.0.0.1:{runtime.port}"],
                        "labels": {
                            "namespace": stack.namespace,
                            "pod": "iris-0",
                            "model": MODEL,
                            "version": "iris-v7",
                            "track": "stable",
                        },
                    }
                ],
            },
        ]
        prometheus.write_config()
        prometheus.reload()
        eventually(lambda: prometheus.query(f'up{{job="{RUNTIME_JOB}"}} == 1'))
        from sklearn.datasets import load_iris

        iris = load_iris()
        rows = built.frame.iloc[:60].to_numpy().tolist()
        labels = [str(iris.target_names[t]) for t in iris.target[:60]]
        with requests.Session() as http:
            for start in range(0, len(rows), 5):
                answer = http.post(f"{runtime.url}/predict", json={"rows": rows[start : start + 5]},
                                   timeout=30)  # fmt: skip
                assert answer.status_code == 200, answer.text
                items = [{"request_id": answer.json()["request_id"], "row": i,
                          "truth": labels[start + i]} for i in range(5)]  # fmt: skip
                scored = http.post(f"{runtime.url}/feedback", json={"items": items},
                                   headers=bearer(), timeout=30)  # fmt: skip
                assert scored.status_code == 200, scored.text
        answered = f'sum(bentoml_service_request_total{{job="{RUNTIME_JOB}", endpoint="/predict"}})'
        eventually(lambda: prometheus.query(f"{answered} >= 12"))
        time.sleep(3)  # a few scrapes after the last request: rates over them are not empty

        variables = {"$namespace": stack.namespace, "$model": MODEL, "$__rate_interval": "1m"}
        results: dict[str, str] = {}
        for panel in stack.dashboard["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"]
                for variable, value in variables.items():
                    expr = expr.replace(variable, value)
                assert "$" not in expr, expr
                try:
                    samples = prometheus.query(expr)
                    results[f"{panel['title']}/{target['refId']}"] = (
                        f"{len(samples)} series" if samples else f"EMPTY: {expr}"
                    )
                except Exception as error:  # every failure is listed
                    results[f"{panel['title']}/{target['refId']}"] = f"ERROR {error}: {expr}"
        print(json.dumps(results, indent=1))
        bad = {k: v for k, v in results.items() if v.startswith(("EMPTY", "ERROR"))}
        assert not bad, json.dumps(bad, indent=1)
        assert len(results) >= 15
    finally:
        runtime.stop()


def test_operator_down_fires_when_the_operator_stops(stack: Stack) -> None:
    assert not stack.firing("ModelopsOperatorDown")
    stack.operator.stop()
    down = eventually(lambda: stack.firing("ModelopsOperatorDown"), timeout=60)
    assert down[0]["job"] == OPERATOR_JOB
