"""A real Gateway API implementation for the sandbox: Traefik Proxy, routing HTTPRoutes by weight.

The binary is the Go-built one of `hack/tools` (component `traefik`). Traefik runs as a process on
this machine, as Prometheus does, with its Kubernetes Gateway provider: it watches GatewayClasses,
Gateways, HTTPRoutes, Services and EndpointSlices through the sandbox's admin kubeconfig (the
`KUBECONFIG` variable, which the provider reads; a cluster's Traefik would run in a pod under a
ServiceAccount with the Gateway API's read and status-write rights, which nothing here needs), and
forwards each request to an endpoint (a pod address on the node's bridge, which this machine
reaches) of the backend Service that the route's weights pick.

`GatewayServer.start()` installs the Gateway API CRDs of the pinned version
(`gateway_api.install_crds`), starts Traefik with one HTTP entryPoint on a free port of `address`,
applies the GatewayClass `traefik` and the Gateway `modelops` in `modelops-gateway` (one HTTP
listener `http` on that port), and waits until Traefik has accepted the Gateway and programmed
its listener. `url` is then the base URL that requests carry a route's `Host` header to. `stop()`
deletes the Gateway and its namespace and the GatewayClass when it created them, stops the
process group and removes the directory: no process, port or directory is left. The CRDs stay,
like the chart's.

    with GatewayServer(cluster.kubeconfig) as gateway:
        host = {"Host": "iris.ml.modelops.local"}
        requests.post(f"{gateway.url}/predict", json=rows, headers=host)
"""

from __future__ import annotations

import atexit
import contextlib
import json
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from modelops_sandbox import gateway_api, tools
from modelops_sandbox.controlplane import KubectlError, StartupError, free_port, run_kubectl
from modelops_sandbox.processes import LOG_TAIL_LINES, Lifecycle, Process, log_tail, spawn

GATEWAY_CLASS = "traefik"
CONTROLLER_NAME = "traefik.io/gateway-controller"
GATEWAY_NAME = "modelops"
GATEWAY_NAMESPACE = "modelops-gateway"
LISTENER = "http"
ENTRYPOINT = "web"
# Each Traefik serves the GatewayClass labelled with its name only: two sandboxes' (or a test's
# second) Traefik never fight over each other's Gateways.
CLASS_LABEL = "modelops.dev/gateway-class"


def static_config(address: str, port: int, gateway_class: str = GATEWAY_CLASS) -> dict[str, Any]:
    """Traefik's static configuration: one HTTP entryPoint, the Kubernetes Gateway provider for the
    GatewayClass labelled `gateway_class`, the Gateway's status address, logs on stdout; nothing
    phones home, no dashboard, no API."""
    return {
        "global": {"checkNewVersion": False, "sendAnonymousUsage": False},
        "entryPoints": {ENTRYPOINT: {"address": f"{address}:{port}"}},
        "providers": {
            "kubernetesGateway": {
                "labelSelector": f"{CLASS_LABEL}={gateway_class}",
                # The address the Gateway's status publishes (status.addresses).
                "statusAddress": {"ip": address},
                # Route changes are applied within this time (the default throttle is none, but
                # the watch's bursts are coalesced into one reload).
                "throttleDuration": "500ms",
            },
        },
        "log": {"level": "INFO", "format": "common"},
    }


def gateway_manifests(
    port: int,
    namespace: str = GATEWAY_NAMESPACE,
    name: str = GATEWAY_NAME,
    gateway_class: str = GATEWAY_CLASS,
) -> list[dict[str, Any]]:
    """The namespace, the GatewayClass Traefik controls, and the Gateway with one HTTP listener on
    `port` (the entryPoint's port: Traefik matches listeners to entryPoints by port), which admits
    routes from every namespace."""
    group = f"{gateway_api.GROUP}/v1"
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {
            "apiVersion": group,
            "kind": "GatewayClass",
            "metadata": {"name": gateway_class, "labels": {CLASS_LABEL: gateway_class}},
            "spec": {"controllerName": CONTROLLER_NAME},
        },
        {
            "apiVersion": group,
            "kind": "Gateway",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "gatewayClassName": gateway_class,
                "listeners": [
                    {
                        "name": LISTENER,
                        "protocol": "HTTP",
                        "port": port,
                        "allowedRoutes": {"namespaces": {"from": "All"}},
                    }
                ],
            },
        },
    ]


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    """The condition of type `kind` of an object (`status.conditions`) or of one of its status's
    entries (a listener's, a route parent's `conditions`), or {}."""
    conditions = (
        obj["conditions"] if "conditions" in obj else (obj.get("status") or {}).get("conditions")
    )
    for item in conditions or []:
        if item.get("type") == kind:
            return dict(item)
    return {}


def gateway_ready(gateway: dict[str, Any]) -> bool:
    """Accepted and Programmed, for the Gateway's current generation, and so is every listener."""
    generation = gateway.get("metadata", {}).get("generation")
    for kind in ("Accepted", "Programmed"):
        found = condition(gateway, kind)
        if found.get("status") != "True" or found.get("observedGeneration") != generation:
            return False
    listeners = (gateway.get("status") or {}).get("listeners") or []
    wanted = {item["name"] for item in gateway.get("spec", {}).get("listeners", [])}
    programmed = {
        item["name"] for item in listeners if condition(item, "Programmed").get("status") == "True"
    }
    return bool(wanted) and wanted <= programmed


class GatewayError(RuntimeError):
    """The Gateway was not accepted or programmed in time; the message says what it reported."""


@dataclass
class GatewayServer(Lifecycle):
    """Starts and stops Traefik and the Gateway it serves. `progress` receives one line per step."""

    kubeconfig: Path | str
    address: str = "127.0.0.1"
    namespace: str = GATEWAY_NAMESPACE
    name: str = GATEWAY_NAME
    gateway_class: str = GATEWAY_CLASS
    startup_timeout: float = 60.0
    keep_dir: bool = False
    progress: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)
    parent: Path | None = None  # where its temporary directory goes; the system's by default
    directory: Path = field(init=False)
    port: int = field(init=False)
    process: Process | None = field(default=None, init=False)
    _created: list[tuple[str, str, str | None]] = field(default_factory=list, init=False)

    @property
    def url(self) -> str:
        """The Gateway's base URL; a request picks its route by its `Host` header."""
        return f"http://{self.address}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.popen.pid if self.process else None

    @property
    def config_file(self) -> Path:
        return self.directory / "traefik.yml"

    @property
    def log(self) -> Path:
        return self.directory / "traefik.log"

    def start(self) -> GatewayServer:
        started = time.monotonic()
        binaries = tools.ensure("traefik", "kubectl")
        self.directory = Path(tempfile.mkdtemp(prefix="modelops-gateway-", dir=self.parent))
        atexit.register(self.stop)
        try:
            gateway_api.install_crds(binaries["kubectl"], Path(self.kubeconfig))
            self.port = free_port(self.address)
            self.config_file.write_text(
                yaml.safe_dump(
                    static_config(self.address, self.port, self.gateway_class), sort_keys=False
                )
            )
            self._apply(binaries["kubectl"])
            self.process = spawn(
                "traefik",
                [str(binaries["traefik"]), f"--configFile={self.config_file}"],
                self.log,
                [self.port],
                env={"PATH": "/usr/bin:/bin", "KUBECONFIG": str(Path(self.kubeconfig).resolve())},
                cwd=self.directory,
            )
            self._wait_ready(binaries["kubectl"])
        except BaseException:
            self.progress(f"traefik failed to start; its log is kept in {self._save_log()}")
            self.stop()
            raise
        self.progress(
            f"gateway {self.namespace}/{self.name} programmed by traefik in "
            f"{time.monotonic() - started:.1f}s at {self.url}"
        )
        return self

    def kubectl(self, kubectl: Path, *args: str, check: bool = True) -> str:
        return run_kubectl(kubectl, Path(self.kubeconfig), *args, check=check).stdout

    def _apply(self, kubectl: Path) -> None:
        """Creates what is missing and sets the Gateway's listener to this run's port; remembers
        what it created, which `stop()` deletes."""
        manifests = gateway_manifests(self.port, self.namespace, self.name, self.gateway_class)
        for manifest in manifests:
            kind, name = manifest["kind"], manifest["metadata"]["name"]
            namespace = manifest["metadata"].get("namespace")
            where = ["-n", namespace] if namespace else []
            exists = self.kubectl(
                kubectl, "get", kind, name, *where, "--ignore-not-found", "-o", "name"
            ).strip()
            if not exists:
                self._created.append((kind, name, namespace))
        path = self.directory / "gateway.json"
        path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": manifests}))
        self.kubectl(
            kubectl,
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=modelops-sandbox",
            "-f",
            str(path),
        )

    def gateway(self, kubectl: Path | None = None) -> dict[str, Any]:
        """The Gateway object, as the API server has it."""
        out = self.kubectl(
            kubectl or tools.ensure("kubectl")["kubectl"],
            "get",
            "gateway",
            self.name,
            "-n",
            self.namespace,
            "-o",
            "json",
        )
        result: dict[str, Any] = json.loads(out)
        return result

    def _wait_ready(self, kubectl: Path) -> None:
        """Until the entryPoint accepts connections and the Gateway is Programmed; fails early,
        with the log tail, if the process exits."""
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout
        gateway: dict[str, Any] = {}
        while time.monotonic() < deadline:
            if not self.process.alive():
                raise StartupError(self._failure(f"exited with {self.process.popen.returncode}"))
            if self._listening():
                gateway = self.gateway(kubectl)
                if gateway_ready(gateway):
                    return
            time.sleep(0.2)
        conditions = (gateway.get("status") or {}).get("conditions") or "no status"
        raise GatewayError(
            self._failure(f"gateway not programmed after {self.startup_timeout}s: {conditions}")
        )

    def _listening(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection((self.address, self.port), 1):
            return True
        return False

    def _failure(self, what: str) -> str:
        return f"traefik {what}; last {LOG_TAIL_LINES} lines of its log:\n{log_tail(self.log)}"

    def _save_log(self) -> Path:
        saved = tools.cache_dir() / "logs" / f"traefik-{time.strftime('%Y%m%d-%H%M%S')}"
        saved.mkdir(parents=True, exist_ok=True)
        if getattr(self, "directory", None) is not None and self.log.exists():
            shutil.copy2(self.log, saved / self.log.name)
        return saved

    def stop(self) -> None:
        """Deletes what `start()` created in the cluster, stops the process group and removes the
        directory. Safe to call twice; a cluster that is gone already is not an error."""
        if self._created:
            kubectl = tools.tool("kubectl").path
            for kind, name, namespace in reversed(self._created):
                where = ["-n", namespace] if namespace else []
                with contextlib.suppress(KubectlError, OSError):
                    self.kubectl(
                        kubectl,
                        "delete",
                        kind,
                        name,
                        *where,
                        "--ignore-not-found",
                        "--wait=false",
                        "--request-timeout=10s",
                    )
            self._created.clear()
        if self.process is not None:
            self.process.stop()
            self.process = None
        atexit.unregister(self.stop)
        directory = getattr(self, "directory", None)
        if directory is not None and not self.keep_dir:
            shutil.rmtree(directory, ignore_errors=True)
