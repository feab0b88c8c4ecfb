"""The sandbox's Prometheus finds pods through the real API server and scrapes what they serve.

The session's control plane has no node, so the test acts as the kubelet: it creates a Pod, serves
Prometheus text on a loopback address of its own, and reports that address as the pod's IP through
the pods/status subresource. One Prometheus serves the whole module; the tests that stop one start
their own.
"""

from __future__ import annotations

import functools
import http.server
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import support
from kubernetes import client

from modelops_sandbox.controlplane import ControlPlane, StartupError
from modelops_sandbox.prometheus import JOB_NAME, PrometheusServer

pytestmark = pytest.mark.integration

SCRAPE_INTERVAL = 1.0
RUNTIME_LABELS = {
    "modelops.dev/model": "iris",
    "modelops.dev/version": "iris-v1",
    "modelops.dev/track": "stable",
}

eventually = functools.partial(support.eventually, timeout=30.0, every=0.1)


class Exporter:
    """A pod's metrics endpoint: Prometheus text on one loopback address, counting its scrapes."""

    def __init__(self, body: str, path: str = "/metrics") -> None:
        self.body = body.encode()
        self.path = path
        self.scrapes = 0
        exporter = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != exporter.path:
                    self.send_error(404)
                    return
                exporter.scrapes += 1
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(exporter.body)))
                self.end_headers()
                self.wfile.write(exporter.body)

            def log_message(self, *args: Any) -> None:
                pass

        # A loopback address of its own stands for the pod's IP; never 0.0.0.0.
        self.ip = f"127.0.{random.randint(1, 254)}.{random.randint(2, 254)}"
        self.server = http.server.ThreadingHTTPServer((self.ip, 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def exporters() -> Iterator[Callable[..., Exporter]]:
    started: list[Exporter] = []

    def start(body: str, path: str = "/metrics") -> Exporter:
        started.append(Exporter(body, path))
        return started[-1]

    yield start
    for exporter in started:
        exporter.close()


@pytest.fixture(scope="module")
def prometheus(control_plane: ControlPlane) -> Iterator[PrometheusServer]:
    with PrometheusServer(control_plane.kubeconfig, scrape_interval=f"{SCRAPE_INTERVAL:g}s") as p:
        yield p


@pytest.fixture
def core(kube_api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(kube_api)


def create_pod(
    core: client.CoreV1Api,
    namespace: str,
    name: str,
    annotations: dict[str, str],
    labels: dict[str, str] | None = None,
) -> None:
    """A pod with two containers (the annotated port decides, not the containers' ports)."""
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}, "annotations": annotations},
        "spec": {
            "containers": [
                {"name": "runtime", "image": "modelops:dev", "ports": [{"containerPort": 3000}]},
                {"name": "sidecar", "image": "modelops:dev"},
            ]
        },
    }
    # Admission wants the namespace's default service account, which a controller creates.
    eventually(lambda: core.list_namespaced_service_account(namespace).items)
    core.create_namespaced_pod(namespace, pod)


def set_status(
    core: client.CoreV1Api, namespace: str, name: str, phase: str, ip: str | None = None
) -> None:
    """What the kubelet reports: the phase and, once it has one, the pod's IP."""
    status: dict[str, Any] = {"phase": phase}
    if ip is not None:
        status |= {"podIP": ip, "podIPs": [{"ip": ip}]}
    core.patch_namespaced_pod_status(name, namespace, {"status": status})


def scrape_annotations(exporter: Exporter, path: str | None = None) -> dict[str, str]:
    annotations = {"prometheus.io/scrape": "true", "prometheus.io/port": str(exporter.port)}
    if path is not None:
        annotations["prometheus.io/path"] = path
    return annotations


def active(prometheus: PrometheusServer, namespace: str) -> list[dict[str, Any]]:
    return [t for t in prometheus.targets() if t["labels"].get("namespace") == namespace]


def dropped_pods(prometheus: PrometheusServer, namespace: str) -> set[str]:
    return {
        t["discoveredLabels"].get("__meta_kubernetes_pod_name", "")
        for t in prometheus.targets("dropped")
        if t["discoveredLabels"].get("__meta_kubernetes_namespace") == namespace
    }


def test_a_running_annotated_pod_is_discovered_labelled_and_scraped(
    prometheus: PrometheusServer,
    core: client.CoreV1Api,
    namespace: str,
    exporters: Callable[..., Exporter],
) -> None:
    exporter = exporters(
        "modelops_probe 42\n"
        # The runtime labels its own series; with honor_labels its value beats the pod label's.
        'modelops_probe_labelled{version="iris-v1-from-runtime"} 7\n'
    )
    create_pod(core, namespace, "iris-stable", scrape_annotations(exporter), RUNTIME_LABELS)
    reported = time.monotonic()
    set_status(core, namespace, "iris-stable", "Running", exporter.ip)

    targets = eventually(lambda: [t for t in active(prometheus, namespace) if t["health"] == "up"])
    print(f"pod discovered and scraped {time.monotonic() - reported:.1f}s after Running")
    assert len(targets) == 1, "one target per pod, not one per container"
    target = targets[0]
    assert target["scrapeUrl"] == f"http://{exporter.address}/metrics"
    assert {k: target["labels"][k] for k in ("namespace", "pod", "model", "version", "track")} == {
        "namespace": namespace,
        "pod": "iris-stable",
        "model": "iris",
        "version": "iris-v1",
        "track": "stable",
    }

    selector = f'namespace="{namespace}"'
    (sample,) = eventually(lambda: prometheus.query(f"modelops_probe{{{selector}}}"))
    assert sample["value"][1] == "42"
    assert sample["metric"] | {"__name__": "", "instance": ""} == {
        "__name__": "",
        "instance": "",
        "job": JOB_NAME,
        "namespace": namespace,
        "pod": "iris-stable",
        "model": "iris",
        "version": "iris-v1",
        "track": "stable",
    }
    (own,) = eventually(lambda: prometheus.query(f"modelops_probe_labelled{{{selector}}}"))
    assert own["metric"]["version"] == "iris-v1-from-runtime"
    assert "exported_version" not in own["metric"]
    assert own["metric"]["model"] == "iris"  # filled in from the pod label


def test_a_pod_without_the_annotation_is_discovered_but_not_scraped(
    prometheus: PrometheusServer,
    core: client.CoreV1Api,
    namespace: str,
    exporters: Callable[..., Exporter],
) -> None:
    quiet = exporters("modelops_probe 1\n")
    # Every annotation but the scrape switch.
    annotations = scrape_annotations(quiet)
    del annotations["prometheus.io/scrape"]
    create_pod(core, namespace, "unannotated", annotations, RUNTIME_LABELS)
    set_status(core, namespace, "unannotated", "Running", quiet.ip)
    # The switch is the exact string "true".
    capital = exporters("modelops_probe 1\n")
    annotations = scrape_annotations(capital) | {"prometheus.io/scrape": "True"}
    create_pod(core, namespace, "capitalised", annotations, RUNTIME_LABELS)
    set_status(core, namespace, "capitalised", "Running", capital.ip)
    loud = exporters("modelops_probe 2\n")
    create_pod(core, namespace, "annotated", scrape_annotations(loud), RUNTIME_LABELS)
    set_status(core, namespace, "annotated", "Running", loud.ip)

    eventually(lambda: {"unannotated", "capitalised"} <= dropped_pods(prometheus, namespace))
    eventually(lambda: loud.scrapes >= 3)  # three scrape intervals have passed
    assert [t["labels"]["pod"] for t in active(prometheus, namespace)] == ["annotated"]
    assert quiet.scrapes == capital.scrapes == 0
    values = [s["value"][1] for s in prometheus.query(f'modelops_probe{{namespace="{namespace}"}}')]
    assert values == ["2"]


def test_a_pod_is_scraped_only_once_running_with_an_ip(
    prometheus: PrometheusServer,
    core: client.CoreV1Api,
    namespace: str,
    exporters: Callable[..., Exporter],
) -> None:
    exporter = exporters("modelops_probe 3\n", path="/custom/metrics")
    markers = iter(range(1, 10))

    def discovery_caught_up() -> None:
        """A new unannotated pod shows among the dropped targets only after every earlier event."""
        marker = f"marker-{next(markers)}"
        create_pod(core, namespace, marker, {})
        set_status(core, namespace, marker, "Running", "127.0.0.1")
        eventually(lambda: marker in dropped_pods(prometheus, namespace))

    create_pod(core, namespace, "starting", scrape_annotations(exporter, "/custom/metrics"))
    discovery_caught_up()
    assert active(prometheus, namespace) == []  # Pending

    set_status(core, namespace, "starting", "Running")
    discovery_caught_up()
    assert active(prometheus, namespace) == []  # Running, but no IP yet

    set_status(core, namespace, "starting", "Running", exporter.ip)
    (target,) = eventually(
        lambda: [t for t in active(prometheus, namespace) if t["health"] == "up"]
    )
    assert target["scrapeUrl"] == f"http://{exporter.address}/custom/metrics"
    assert exporter.scrapes > 0

    # A pod that stops running is no longer a target.
    set_status(core, namespace, "starting", "Succeeded", exporter.ip)
    eventually(lambda: active(prometheus, namespace) == [])


def test_deleting_the_pod_removes_the_target_and_its_series(
    prometheus: PrometheusServer,
    core: client.CoreV1Api,
    namespace: str,
    exporters: Callable[..., Exporter],
) -> None:
    exporter = exporters("modelops_probe 4\n")
    create_pod(core, namespace, "doomed", scrape_annotations(exporter), RUNTIME_LABELS)
    set_status(core, namespace, "doomed", "Running", exporter.ip)
    query = f'modelops_probe{{namespace="{namespace}"}}'
    eventually(lambda: prometheus.query(query))

    core.delete_namespaced_pod("doomed", namespace, grace_period_seconds=0)
    eventually(lambda: active(prometheus, namespace) == [])
    # The target's series are marked stale at once rather than lingering for five minutes.
    eventually(lambda: prometheus.query(query) == [], timeout=10)


def test_extra_static_scrape_configs_and_reload(
    control_plane: ControlPlane, exporters: Callable[..., Exporter]
) -> None:
    static = exporters("modelops_static_probe 5\n")
    later = exporters("modelops_static_probe 6\n")
    job = {"job_name": "static", "static_configs": [{"targets": [static.address]}]}
    with PrometheusServer(
        control_plane.kubeconfig,
        scrape_interval="1s",
        extra_scrape_configs=[job],
        enable_lifecycle=True,
    ) as prom:
        eventually(lambda: prom.query('modelops_static_probe{job="static"}'))
        job["static_configs"] = [{"targets": [later.address]}]
        prom.write_config()
        prom.reload()
        eventually(lambda: prom.query('modelops_static_probe{job="static"} == 6'))


def test_it_listens_only_on_127_0_0_1(prometheus: PrometheusServer) -> None:
    assert prometheus.pid is not None
    listening = [
        c.laddr
        for c in psutil.Process(prometheus.pid).net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    ]
    assert [(a.ip, a.port) for a in listening] == [("127.0.0.1", prometheus.port)]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.2", prometheus.port), timeout=2).close()


def test_stop_leaves_no_process_port_or_directory(control_plane: ControlPlane) -> None:
    started = time.monotonic()
    prom = PrometheusServer(control_plane.kubeconfig).start()
    print(f"prometheus started in {time.monotonic() - started:.2f}s")
    pid, port, directory = prom.pid, prom.port, prom.directory
    assert pid is not None and psutil.pid_exists(pid)
    assert (directory / "prometheus.yml").exists()
    assert listening_on(port)

    prom.stop()
    prom.stop()  # twice is fine
    assert not psutil.pid_exists(pid)
    assert not directory.exists()
    # Nothing listens on the port (connections of the readiness checks may linger in TIME_WAIT).
    assert not listening_on(port)


def listening_on(port: int) -> bool:
    return any(
        c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN
        for c in psutil.net_connections("inet")
    )


def gone(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def test_prometheus_dies_with_the_process_that_started_it(control_plane: ControlPlane) -> None:
    script = (
        "import sys, time\n"
        "from modelops_sandbox.prometheus import PrometheusServer\n"
        "p = PrometheusServer(sys.argv[1], progress=lambda line: None).start()\n"
        "print(p.pid, p.directory, flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script, str(control_plane.kubeconfig)],
        stdout=subprocess.PIPE,
        text=True,
    )
    directory = ""
    try:
        assert parent.stdout is not None
        pid_text, directory = parent.stdout.readline().split()
        pid = int(pid_text)
        assert psutil.pid_exists(pid)
        parent.kill()  # no atexit, no stop(): only the death signal can end Prometheus
        parent.wait()
        eventually(lambda: gone(pid))
    finally:
        parent.kill()
        parent.wait()
        shutil.rmtree(directory, ignore_errors=True)


def test_a_failed_start_reports_the_log_and_leaves_nothing(control_plane: ControlPlane) -> None:
    clash = {"job_name": JOB_NAME, "static_configs": [{"targets": ["127.0.0.1:9"]}]}
    lines: list[str] = []
    prom = PrometheusServer(
        control_plane.kubeconfig, extra_scrape_configs=[clash], progress=lines.append
    )
    with pytest.raises(StartupError, match="exited with") as error:
        prom.start()
    # The log tail names what is wrong.
    assert "multiple scrape configs with job name" in str(error.value)
    assert prom.process is None
    assert not prom.directory.exists()
    # The whole log is kept outside the removed directory; this test removes its copy.
    (line,) = lines
    kept = Path(line.rsplit(" ", 1)[-1])
    assert "multiple scrape configs" in (kept / "prometheus.log").read_text()
    shutil.rmtree(kept)
