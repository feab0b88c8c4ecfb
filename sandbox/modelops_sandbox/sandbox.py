"""The sandbox: a whole modelops installation on this machine, set up as a platform team would.

A local cluster with one real node (`Cluster`: control plane, containerd, kubelet, kube-proxy, the
project's images built here), a real Prometheus that discovers the serving pods through the API
server and scrapes them by pod address, and the operator installed with its Helm chart: it runs
in its pod, from the operator image, under the chart's ServiceAccount, and reaches the API server
through the `kubernetes` Service. Prometheus stays a process on this machine (listening on the
node's bridge address, where the operator's pod reaches it): a cluster's Prometheus would run in
a pod, but nothing here depends on where it runs. The artifact store is, by default
(`artifacts="s3"`), a real S3 server (SeaweedFS, `objectstore.ObjectStore`), also a process on the
bridge address: the chart's `artifacts.uri` names its bucket and each namespace gets the Secret of
AWS_* keys that training, serving and cleanup pods take their credentials and endpoint from;
with `artifacts="pvc"` it is a ReadWriteMany claim in each namespace instead, bound by the node's
provisioner. With `gateway=True`, a real Gateway API implementation (Traefik,
`gateway.GatewayServer`) serves the Gateway `modelops-gateway/modelops` on the bridge address
(`gateway_url`), for Models whose `spec.serving.traffic.gateway` names it. Started in that order,
stopped in reverse. The demo and the end-to-end tests use it.

Given a running `cluster` (the tests share one), the sandbox starts only Prometheus and the
operator, and `stop()` removes what it added: its namespaces, the release, Prometheus. With
`kubeconfig`, an existing cluster of any kind is used instead: nothing is started; the operator is
installed there with the chart when `install_operator` (its nodes must have the images), and
`prometheus_url` names the Prometheus to read metrics from.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelops_api import contract
from modelops_sandbox import chart_monitoring, tools
from modelops_sandbox.cluster import Cluster
from modelops_sandbox.controlplane import KubectlError, run_kubectl
from modelops_sandbox.gateway import GatewayServer
from modelops_sandbox.network import GATEWAY
from modelops_sandbox.objectstore import ObjectStore
from modelops_sandbox.processes import Lifecycle
from modelops_sandbox.prometheus import PrometheusServer

REPO = tools.REPO
CHART = REPO / "charts" / "modelops"
ARTIFACTS_CLAIM = "modelops-artifacts"
# The S3 store: its bucket, the prefix artifacts.uri names in it, the Secret of its keys.
ARTIFACTS_BUCKET = "modelops"
ARTIFACTS_PREFIX = "artifacts"
ARTIFACTS_SECRET = "modelops-artifacts-s3"
OPERATOR_NAMESPACE = "modelops-system"
RELEASE = "modelops"


@dataclass
class Sandbox(Lifecycle):
    """Starts everything; `namespace` gets what the operator's pods need of the artifact store
    (`artifacts`: "s3", the S3 server's Secret; "pvc", the claim they mount).

    `operator_values` are the chart's values to set (`{"operator.resyncSeconds": "3600"}`).
    """

    namespace: str = "ml"
    progress: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)
    scrape_interval: str = "2s"
    operator_values: Mapping[str, str] = field(default_factory=dict)
    keep_dir: bool = False
    kubeconfig: Path | None = None
    prometheus_url: str | None = None
    install_operator: bool = True
    cluster: Cluster | None = None
    artifacts: str = "s3"
    gateway: bool = False
    prometheus: PrometheusServer | None = field(default=None, init=False)
    gateway_server: GatewayServer | None = field(default=None, init=False)
    objectstore: ObjectStore | None = field(default=None, init=False)
    directory: Path = field(init=False)
    _kubeconfig: Path = field(init=False)
    _owns_cluster: bool = field(default=False, init=False)
    _installed: bool = field(default=False, init=False)
    _namespaces: list[str] = field(default_factory=list, init=False)

    def start(self) -> Sandbox:
        try:
            if self.kubeconfig is not None:
                self.progress(f"using the cluster of {self.kubeconfig}")
                self._kubeconfig = self.kubeconfig
                self.directory = Path(tempfile.mkdtemp(prefix="modelops-sandbox-"))
            else:
                if self.cluster is None:
                    self.cluster = Cluster(progress=self.progress).start()
                    self._owns_cluster = True
                self._kubeconfig = self.cluster.kubeconfig
                # In the node's run directory: cleaning up after a killed run removes it too.
                self.directory = Path(
                    tempfile.mkdtemp(prefix="modelops-sandbox-", dir=self.cluster.run_dir)
                )
                self.progress("starting Prometheus (Kubernetes service discovery of the pods)")
                self.prometheus = PrometheusServer(
                    self._kubeconfig,
                    scrape_interval=self.scrape_interval,
                    progress=self.progress,
                    address=GATEWAY,
                    parent=self.cluster.run_dir,
                    # The chart's operator PodMonitor and alerts are added once it is installed.
                    enable_lifecycle=True,
                ).start()
                self.prometheus_url = self.prometheus.url
                if self.artifacts == "s3":
                    self._start_objectstore()
                if self.gateway:
                    self._start_gateway()
            if self.install_operator:
                self.install()
            self.create_namespace(self.namespace)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_objectstore(self) -> None:
        """The S3 server on the node's address, where pods reach it, with the artifacts' bucket."""
        self.progress("starting the S3 artifact store (SeaweedFS)")
        self.objectstore = ObjectStore(
            self.directory / "objectstore", address=GATEWAY, progress=self.progress
        ).start()
        self.objectstore.create_bucket(ARTIFACTS_BUCKET)

    def _start_gateway(self) -> None:
        """Traefik on the node's address and the Gateway it programs."""
        assert self.cluster is not None
        self.progress("starting the Gateway API implementation (Traefik)")
        self.gateway_server = GatewayServer(
            self._kubeconfig, address=GATEWAY, progress=self.progress, parent=self.cluster.run_dir
        ).start()

    @property
    def gateway_url(self) -> str:
        """The sandbox Gateway's base URL (`gateway=True`); a request names its route by `Host`."""
        if self.gateway_server is None:
            raise RuntimeError("the sandbox runs no gateway (Sandbox(gateway=True) starts one)")
        return self.gateway_server.url

    @property
    def artifacts_uri(self) -> str:
        """The store's root: the bucket's prefix, or the claim's mount path."""
        if self.objectstore is not None:
            return f"s3://{ARTIFACTS_BUCKET}/{ARTIFACTS_PREFIX}"
        return "file:///models"

    def helm(self, *args: str) -> str:
        helm = tools.ensure("helm")["helm"]
        result = subprocess.run(
            [str(helm), f"--kubeconfig={self._kubeconfig}", *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        if result.returncode != 0:
            raise KubectlError(f"helm {' '.join(args[:2])} failed: {result.stderr.strip()}")
        return result.stdout

    def install(self) -> None:
        """`helm install` of the chart, as the README's users run it; waits for the operator."""
        self.progress(
            f"installing the operator with Helm (release {RELEASE}, {OPERATOR_NAMESPACE})"
        )
        started = time.monotonic()
        # The images are on the node or nowhere: never a pull.
        values = {"image.pullPolicy": "Never", "runtime.pullPolicy": "Never"}
        if self.objectstore is not None:
            values["artifacts.uri"] = self.artifacts_uri
            values["artifacts.secretName"] = ARTIFACTS_SECRET
        values.update(self.operator_values)
        if self.prometheus_url:
            values.setdefault("prometheus.url", self.prometheus_url)
        sets = [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]
        self.helm(
            "upgrade",
            "--install",
            RELEASE,
            str(CHART),
            "--namespace",
            OPERATOR_NAMESPACE,
            "--create-namespace",
            # The chart's CRDs may be there already, left by another release (crds.keep).
            "--take-ownership",
            "--wait",
            "--timeout=5m",
            *sets,
        )
        self._installed = True
        self.progress(f"  operator running in its pod ({time.monotonic() - started:.1f}s)")
        if self.prometheus is not None and values.get("metrics.port") != "0":
            chart_monitoring.watch_operator(
                self.prometheus, self.helm, RELEASE, OPERATOR_NAMESPACE, CHART, values
            )
            self.progress("  Prometheus scrapes the operator and evaluates the chart's alerts")

    def operator_log(self, tail: int = 60) -> str:
        """The operator pod's log (its current container)."""
        result = self.kubectl_result(
            "logs", "-n", OPERATOR_NAMESPACE, f"deployment/{RELEASE}", f"--tail={tail}"
        )
        return result.stdout + result.stderr

    def create_namespace(self, name: str) -> None:
        """A namespace with the artifact store's Secret (S3), or its claim (the cluster's default
        StorageClass binds it)."""
        if not self.kubectl("get", "namespace", name, "--ignore-not-found").strip():
            self.kubectl("create", "namespace", name)
            self._namespaces.append(name)
        document = self._store_secret(name) if self.objectstore else self._claim(name)
        path = self.directory / f"store-{name}.json"
        # The Secret's keys are written for kubectl and removed at once: readable by root only.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(json.dumps(document))
        try:
            self.kubectl("apply", "-f", str(path))
        finally:
            path.unlink()

    def _store_secret(self, namespace: str) -> dict[str, Any]:
        """The S3 server's keys, endpoint and region, as the AWS_* variables botocore reads."""
        store = self.objectstore
        assert store is not None
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": ARTIFACTS_SECRET, "namespace": namespace},
            "type": "Opaque",
            "stringData": {
                "AWS_ACCESS_KEY_ID": store.access_key,
                "AWS_SECRET_ACCESS_KEY": store.secret_key,
                "AWS_ENDPOINT_URL": store.endpoint_url,
                "AWS_REGION": store.region,
            },
        }

    def _claim(self, namespace: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": ARTIFACTS_CLAIM, "namespace": namespace},
            "spec": {
                "accessModes": ["ReadWriteMany"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        }

    def kubectl(self, *args: str) -> str:
        return self.kubectl_result(*args, check=True).stdout

    def kubectl_result(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        """kubectl's whole answer (exit code, stdout, stderr); with `check`, a failure raises."""
        kubectl = tools.ensure("kubectl")["kubectl"]
        return run_kubectl(kubectl, self._kubeconfig, *args, check=check)

    @property
    def kubeconfig_path(self) -> Path:
        return self._kubeconfig

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        """The object as a dict; empty when it does not exist."""
        out = self.kubectl(
            "get", kind, name, "-n", namespace or self.namespace, "-o", "json", "--ignore-not-found"
        )
        result: dict[str, Any] = json.loads(out) if out.strip() else {}
        return result

    def service_url(self, model: str, namespace: str | None = None) -> str:
        """The model's Service, by cluster IP: kube-proxy spreads its requests over the ready
        serving pods of both tracks."""
        service = self.get("service", model, namespace)
        return f"http://{service['spec']['clusterIP']}:{service['spec']['ports'][0]['port']}"

    def feedback_token(self, model: str, namespace: str | None = None) -> str:
        """The Model's feedback token, read from its credentials Secret as any client that RBAC
        lets read it would (docs/serving.md, "Credentials")."""
        secret = self.get("secret", contract.credentials_secret(model), namespace)
        if not secret:
            raise KubectlError(f"no Secret {contract.credentials_secret(model)} (yet)")
        return base64.b64decode(secret["data"][contract.CREDENTIAL_TOKEN]).decode()

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
        """Stops the gateway, Prometheus and the cluster (the operator's pod with it), in that
        order; on a cluster that is not the sandbox's, removes its namespaces and the release
        instead."""
        if self.cluster is not None and not self._owns_cluster:
            self._remove_additions()
        if self.gateway_server is not None:
            self.gateway_server.stop()
            self.gateway_server = None
        if self.prometheus is not None:
            self.prometheus.stop()
            self.prometheus = None
        if self.objectstore is not None:
            self.objectstore.stop()
            self.objectstore = None
        if self.cluster is not None and self._owns_cluster:
            self.cluster.stop()
            self.cluster = None
        if hasattr(self, "directory") and not self.keep_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def _remove_additions(self) -> None:
        """Deletes the namespaces the sandbox created (and waits: their pods go first), then
        uninstalls the operator."""
        for name in self._namespaces:
            with contextlib.suppress(KubectlError):
                self.kubectl("delete", "namespace", name, "--wait=false")
        for name in self._namespaces:
            with contextlib.suppress(KubectlError):
                self.kubectl("wait", "--for=delete", f"namespace/{name}", "--timeout=120s")
        self._namespaces.clear()
        if self._installed:
            with contextlib.suppress(KubectlError):
                self.helm("uninstall", RELEASE, "--namespace", OPERATOR_NAMESPACE, "--wait")
            self._installed = False


def post_json(
    url: str, body: Any, timeout: float = 10.0, headers: dict[str, str] | None = None
) -> Any:
    """POSTs JSON and returns the JSON answer (raises on a non-2xx status)."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
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
