"""The chart's operator PodMonitor and PrometheusRule, rendered by the real helm and given to the
real Prometheus as the sandbox does (`chart_monitoring.watch_operator`), against the session's
control plane.

As in test_prometheus.py the test plays the kubelet: the operator's pod is created with the labels
the chart gives it and a container port named `metrics`, its IP reported through pods/status as a
loopback address where a small server answers with exposition text in the operator's series names.
The translated job must scrape that pod alone (not a pod of another release, not its health port),
with the job label the alerts select, and the alerts must load and fire on the series.
"""

from __future__ import annotations

import functools
import http.server
import random
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import support
from kubernetes import client

from modelops_sandbox import chart_monitoring, tools
from modelops_sandbox.controlplane import ControlPlane
from modelops_sandbox.prometheus import (
    PrometheusServer,
    UnsupportedMonitor,
    pod_monitor_scrape_configs,
)

CHART = Path(__file__).resolve().parents[2] / "charts" / "modelops"
RELEASE = "modelops"
eventually = functools.partial(support.eventually, timeout=30.0, every=0.2)
ROLLED_BACK = (
    "# TYPE modelops_operator_canary_outcomes_total counter\n"
    'modelops_operator_canary_outcomes_total{namespace="shop",model="fraud",'
    'outcome="rolled_back",check="errorRate"} 1\n'
    'modelops_operator_canary_outcomes_total{namespace="shop",model="wine",'
    'outcome="promoted",check=""} 2\n'
)


class Exposition:
    """`body` on /metrics of a loopback address of its own (the pod's IP); never 0.0.0.0."""

    def __init__(self, body: str) -> None:
        payload = body.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.ip = f"127.0.{random.randint(1, 254)}.{random.randint(2, 254)}"
        self.server = http.server.ThreadingHTTPServer((self.ip, 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def helm(*args: str) -> str:
    binary = tools.ensure("helm")["helm"]
    return subprocess.run(
        [str(binary), *args], capture_output=True, text=True, timeout=120, check=True
    ).stdout


def operator_pod(name: str, labels: dict[str, str], metrics_port: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "containers": [
                {
                    "name": "operator",
                    "image": "modelops/operator:dev",
                    "ports": [
                        {"name": "health", "containerPort": 8080},
                        {"name": "metrics", "containerPort": metrics_port},
                    ],
                }
            ]
        },
    }


@pytest.fixture
def prometheus(control_plane: ControlPlane) -> Iterator[PrometheusServer]:
    with PrometheusServer(
        control_plane.kubeconfig, scrape_interval="1s", enable_lifecycle=True
    ) as p:
        yield p


@pytest.mark.integration
def test_the_operator_pod_is_scraped_as_its_podmonitor_says_and_the_alerts_fire(
    prometheus: PrometheusServer, kube_api: client.ApiClient, namespace: str
) -> None:
    rendered = chart_monitoring.watch_operator(
        prometheus, helm, RELEASE, namespace, CHART, {"image.pullPolicy": "Never"}
    )
    job = f"{namespace}/{RELEASE}-operator"
    labels = dict(rendered.pod_monitor["spec"]["selector"]["matchLabels"])
    core = client.CoreV1Api(kube_api)
    exposition = Exposition(ROLLED_BACK)
    other = Exposition("up_too 1\n")
    try:
        eventually(lambda: core.list_namespaced_service_account(namespace).items)
        pods = {
            "modelops-7d9f": (labels, exposition),
            # Another release's operator: same chart, another instance label.
            "other-5c6b": ({**labels, "app.kubernetes.io/instance": "other"}, other),
        }
        for name, (pod_labels, server) in pods.items():
            core.create_namespaced_pod(namespace, operator_pod(name, pod_labels, server.port))
            status = {"phase": "Running", "podIP": server.ip, "podIPs": [{"ip": server.ip}]}
            core.patch_namespaced_pod_status(name, namespace, {"status": status})

        def scraped() -> list[dict[str, Any]]:
            return [t for t in prometheus.targets() if t["labels"].get("job") == job]

        targets = eventually(lambda: [t for t in scraped() if t["health"] == "up"])
        assert len(scraped()) == 1, scraped()
        assert targets[0]["scrapeUrl"] == f"http://{exposition.ip}:{exposition.port}/metrics"
        assert {k: targets[0]["labels"][k] for k in ("namespace", "pod", "endpoint")} == {
            "namespace": namespace,
            "pod": "modelops-7d9f",
            "endpoint": "metrics",
        }
        assert targets[0]["scrapeInterval"] == "1s"

        rules = prometheus.api("/api/v1/rules")["groups"]
        names = {r["name"] for g in rules for r in g["rules"]}
        assert {"ModelopsCanaryRolledBack", "ModelopsOperatorDown"} <= names

        def firing() -> list[dict[str, str]]:
            alerts = prometheus.api("/api/v1/alerts")["alerts"]
            return [
                a["labels"]
                for a in alerts
                if a["state"] == "firing" and a["labels"]["alertname"] == "ModelopsCanaryRolledBack"
            ]

        # honor_labels: the Model's namespace, not the operator pod's.
        alert = eventually(firing)
        assert [(a["namespace"], a["model"], a["check"]) for a in alert] == [
            ("shop", "fraud", "errorRate")
        ]
    finally:
        exposition.close()
        other.close()


@pytest.mark.unit
def test_a_podmonitor_field_the_translation_does_not_follow_is_refused() -> None:
    monitor = {
        "metadata": {"name": "m", "namespace": "n"},
        "spec": {
            "selector": {"matchExpressions": [{"key": "a", "operator": "Exists"}]},
            "podMetricsEndpoints": [{"port": "metrics", "relabelings": []}],
        },
    }
    with pytest.raises(UnsupportedMonitor, match=r"relabelings.*matchExpressions"):
        pod_monitor_scrape_configs(monitor, Path("/kubeconfig"))
