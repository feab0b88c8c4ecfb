"""The sandbox: a whole modelops installation on one machine, with no container engine.

A real control plane, the node agent that runs pods as local processes (the one simulated part:
a kubelet's containers), a real Prometheus discovering and scraping the serving pods, and the
operator, started in that order and stopped in reverse. The demo and the end-to-end tests use it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from modelops_sandbox import tools
from modelops_sandbox.controlplane import ControlPlane, run_kubectl
from modelops_sandbox.nodeagent import AgentProcess, start_agent_process
from modelops_sandbox.operatorproc import OperatorProcess
from modelops_sandbox.prometheus import PrometheusServer

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS_CLAIM = "modelops-artifacts"


@dataclass
class ExistingCluster:
    """A cluster the sandbox does not start, reached through its kubeconfig."""

    kubeconfig: Path
    kubectl: Path = field(default_factory=lambda: tools.ensure("kubectl")["kubectl"])

    def kubectl_run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run_kubectl(self.kubectl, self.kubeconfig, *args, check=check)

    def stop(self) -> None:
        """Nothing to stop: the cluster is not ours."""


@dataclass
class Sandbox:
    """Starts everything; `namespace` gets the artifact-store claim the operator's pods mount.

    With `kubeconfig`, an existing cluster is used instead: nothing is started but the operator
    (when `start_operator`), and `prometheus_url` names the Prometheus to read metrics from.
    """

    namespace: str = "ml"
    progress: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)
    scrape_interval: str = "2s"
    operator_env: dict[str, str] = field(default_factory=dict)
    keep_dir: bool = False
    kubeconfig: Path | None = None
    prometheus_url: str | None = None
    start_operator: bool = True
    control_plane: ControlPlane | ExistingCluster = field(init=False)
    agent: AgentProcess | None = field(default=None, init=False)
    prometheus: PrometheusServer | None = field(default=None, init=False)
    operator: OperatorProcess | None = field(default=None, init=False)
    directory: Path = field(init=False)

    def start(self) -> Sandbox:
        self.directory = Path(tempfile.mkdtemp(prefix="modelops-sandbox-"))
        try:
            if self.kubeconfig is not None:
                self.control_plane = ExistingCluster(self.kubeconfig)
                self._start_existing()
            else:
                control_plane = ControlPlane(progress=self.progress, keep_dir=self.keep_dir)
                self.control_plane = control_plane
                self._start(control_plane)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_existing(self) -> None:
        self.progress(f"using the cluster of {self.kubeconfig}")
        self.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
        self.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        self.create_namespace(self.namespace)
        if self.start_operator:
            self.progress("starting the operator on this machine")
            env = {
                **({"MODELOPS_PROMETHEUS_URL": self.prometheus_url} if self.prometheus_url else {}),
                **self.operator_env,
            }
            self.operator = OperatorProcess(
                self.control_plane.kubeconfig, [], self.directory / "operator.log", env
            ).start()

    def _start(self, cp: ControlPlane) -> None:
        cp.start()
        cp.kubectl_run("apply", "--server-side", "-f", str(REPO / "crds"))
        cp.kubectl_run("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        self.progress("starting the node agent (pods run as local processes)")
        self.agent = start_agent_process(cp.kubeconfig, self.directory / "node")
        self.progress("starting Prometheus (Kubernetes service discovery of the serving pods)")
        self.prometheus = PrometheusServer(
            cp.kubeconfig, scrape_interval=self.scrape_interval, progress=self.progress
        ).start()
        self.create_namespace(self.namespace)
        self.progress("starting the operator")
        env = {"MODELOPS_PROMETHEUS_URL": self.prometheus.url, **self.operator_env}
        self.operator = OperatorProcess(
            cp.kubeconfig, [], self.directory / "operator.log", env
        ).start()

    def create_namespace(self, name: str) -> None:
        """A namespace with the artifact-store claim (the node agent provisions it locally)."""
        claim = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": ARTIFACTS_CLAIM, "namespace": name},
            "spec": {
                "accessModes": ["ReadWriteMany"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        }
        path = self.directory / f"claim-{name}.json"
        path.write_text(json.dumps(claim))
        if not self.kubectl("get", "namespace", name, "--ignore-not-found").strip():
            self.kubectl("create", "namespace", name)
        self.kubectl("apply", "-f", str(path))

    def kubectl(self, *args: str) -> str:
        return self.control_plane.kubectl_run(*args).stdout

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        """The object as a dict; empty when it does not exist."""
        out = self.kubectl(
            "get", kind, name, "-n", namespace or self.namespace, "-o", "json", "--ignore-not-found"
        )
        result: dict[str, Any] = json.loads(out) if out.strip() else {}
        return result

    def serving_pods(self, model: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Ready serving pods of `model`: name, address, track and version."""
        pods = json.loads(
            self.kubectl(
                "get",
                "pods",
                "-n",
                namespace or self.namespace,
                "-o",
                "json",
                "-l",
                f"modelops.dev/model={model},app.kubernetes.io/component=serving",
            )
        )["items"]
        ready = []
        for pod in pods:
            conditions = pod.get("status", {}).get("conditions") or []
            if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions) and not pod[
                "metadata"
            ].get("deletionTimestamp"):
                labels = pod["metadata"]["labels"]
                ready.append(
                    {
                        "name": pod["metadata"]["name"],
                        "ip": pod["status"]["podIP"],
                        "track": labels.get("modelops.dev/track"),
                        "version": labels.get("modelops.dev/version"),
                    }
                )
        return ready

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query of the sandbox's Prometheus, or of `prometheus_url`; [] without one."""
        if self.prometheus is not None:
            return self.prometheus.query(promql)
        if not self.prometheus_url:
            return []
        url = f"{self.prometheus_url.rstrip('/')}/api/v1/query?" + urllib.parse.urlencode(
            {"query": promql}
        )
        with urllib.request.urlopen(url, timeout=10) as response:
            return list(json.loads(response.read())["data"]["result"])

    def stop(self) -> None:
        """Stops the operator, Prometheus, the node agent and the control plane, in that order."""
        if self.operator is not None:
            self.operator.stop()
        if self.prometheus is not None:
            self.prometheus.stop()
        if self.agent is not None:
            self.agent.stop()
        if hasattr(self, "control_plane"):
            self.control_plane.stop()
        if not self.keep_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def post_json(url: str, body: Any, timeout: float = 10.0) -> Any:
    """POSTs JSON and returns the JSON answer (raises on a non-2xx status)."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def wait_for(
    check: Callable[[], Any],
    timeout: float,
    what: str,
    progress: Callable[[str], None] | None = None,
    every: float = 1.0,
) -> Any:
    """check()'s first truthy value; a TimeoutError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    last_said = started
    while True:
        value = check()
        if value:
            return value
        now = time.monotonic()
        if now > deadline:
            raise TimeoutError(f"{what}: not done after {timeout:.0f}s")
        if progress is not None and now - last_said >= 10:
            progress(f"  ... still waiting for {what} ({now - started:.0f}s)")
            last_said = now
        time.sleep(every)
