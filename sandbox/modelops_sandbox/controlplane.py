"""A real, local Kubernetes control plane: etcd, kube-apiserver, controller-manager, scheduler.

The binaries are the Go-built ones of `hack/tools` (see `modelops_sandbox.tools`). Everything
listens on free ports of `address` (loopback unless a node's pods must reach the API server, see
`modelops_sandbox.cluster`), lives in one temporary directory (PKI, etcd data, kubeconfigs, logs)
and is gone after `stop()`: no process, no port, no directory. Tests start one per session; the
sandbox and the benchmarks start one per run.

    with ControlPlane() as cp:
        subprocess.run([cp.kubectl, "--kubeconfig", cp.kubeconfig, "get", "ns"])
"""

from __future__ import annotations

import atexit
import json
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from modelops_sandbox import kubeconfig, pki, tools
from modelops_sandbox.processes import LOG_TAIL_LINES, Lifecycle, Process, log_tail, spawn

SERVICE_CIDR = "10.0.0.0/16"  # room for thousands of Services (the scale benchmark)
SERVICE_IP = "10.0.0.1"


class KubectlError(RuntimeError):
    """kubectl exited non-zero; the message carries its stderr."""


class StartupError(RuntimeError):
    """A component did not become healthy; the message carries the tail of its log."""


def run_kubectl(
    kubectl: Path, kubeconfig: Path, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Runs `kubectl` against `kubeconfig`; with `check`, a failure carries kubectl's stderr."""
    result = subprocess.run(
        [str(kubectl), f"--kubeconfig={kubeconfig}", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if check and result.returncode != 0:
        raise KubectlError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


@dataclass
class ControlPlane(Lifecycle):
    """Starts and stops one control plane. `progress` receives one line per step."""

    progress: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)
    keep_dir: bool = False
    startup_timeout: float = 90.0
    # Where the API server listens and what it advertises. On loopback the `kubernetes` Service
    # gets no endpoints (it cannot point at 127.0.0.1); on a node's bridge address it does, so
    # in-pod clients reach the API server through it.
    address: str = "127.0.0.1"
    # Where its temporary directory goes (a node's run directory, so that cleaning up after a
    # killed run removes it too); the system's temporary directory by default.
    parent: Path | None = None
    # Extra kube-apiserver flags (the scale benchmark adds an audit log).
    apiserver_args: Sequence[str] = ()
    # Request rate of kube-controller-manager and kube-scheduler. Their defaults (20 and 50 per
    # second) are sized for shared clusters; one local control plane can afford more, and at a
    # thousand Models those limits, not the operator, would set the pace.
    client_qps: int = 200
    directory: Path = field(init=False)
    kubeconfig: Path = field(init=False)
    server: str = field(init=False)
    version: str = field(init=False)
    binaries: dict[str, Path] = field(init=False)
    processes: list[Process] = field(default_factory=list, init=False)
    pki: pki.Pki = field(init=False)

    @property
    def kubectl(self) -> Path:
        return self.binaries["kubectl"]

    @property
    def pids(self) -> list[int]:
        return [p.popen.pid for p in self.processes]

    @property
    def ports(self) -> list[int]:
        return [port for p in self.processes for port in p.ports]

    def start(self) -> ControlPlane:
        started = time.monotonic()
        self.binaries = tools.ensure(
            "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"
        )
        self.version = tools.tool("kube-apiserver").version
        if self.parent is not None:
            self.parent.mkdir(parents=True, exist_ok=True)
        self.directory = Path(tempfile.mkdtemp(prefix="modelops-controlplane-", dir=self.parent))
        atexit.register(self.stop)
        try:
            self._start_all()
        except BaseException:
            self.progress(
                f"control plane failed to start; component logs kept in {self._save_logs()}"
            )
            self.stop()
            raise
        self.progress(
            f"control plane {self.version} ready in {time.monotonic() - started:.1f}s "
            f"at {self.server} (kubeconfig {self.kubeconfig})"
        )
        return self

    def _start_all(self) -> None:
        d = self.directory
        (d / "logs").mkdir()
        self.pki = p = pki.generate(d / "pki", SERVICE_IP, (self.address,))

        client, peer = free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{client}"
        self._spawn(
            "etcd",
            [client, peer],
            [
                f"--data-dir={d / 'etcd'}",
                "--name=default",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=default=http://127.0.0.1:{peer}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        self._wait("etcd", f"{etcd_url}/health", lambda body: '"health":"true"' in body)

        port = free_port(self.address)
        self.server = f"https://{self.address}:{port}"
        if self.address.startswith("127."):
            # The `kubernetes` Service cannot point at a loopback address; clients reach the API
            # server through their kubeconfig instead.
            endpoints = ["--endpoint-reconciler-type=none"]
        else:
            endpoints = [
                f"--kubelet-client-certificate={p.kubelet_client.cert}",
                f"--kubelet-client-key={p.kubelet_client.key}",
                f"--kubelet-certificate-authority={p.ca.cert}",
                "--kubelet-preferred-address-types=InternalIP",
            ]
        self._spawn(
            "kube-apiserver",
            [port],
            [
                f"--etcd-servers={etcd_url}",
                f"--bind-address={self.address}",
                f"--advertise-address={self.address}",
                f"--secure-port={port}",
                f"--cert-dir={d / 'pki'}",
                f"--tls-cert-file={p.apiserver.cert}",
                f"--tls-private-key-file={p.apiserver.key}",
                f"--client-ca-file={p.ca.cert}",
                f"--service-account-key-file={p.service_account_pub}",
                f"--service-account-signing-key-file={p.service_account_key}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=Node,RBAC",
                "--allow-privileged=true",
                *endpoints,
                "--profiling=false",
                "--v=1",
                *self.apiserver_args,
            ],
        )
        self._wait("kube-apiserver", f"{self.server}/readyz", lambda body: body.strip() == "ok")

        self.kubeconfig = kubeconfig.write(d / "admin.kubeconfig", self.server, p.ca, p.admin)
        kcm_config = kubeconfig.write(
            d / "controller-manager.kubeconfig", self.server, p.ca, p.controller_manager
        )
        sched_config = kubeconfig.write(d / "scheduler.kubeconfig", self.server, p.ca, p.scheduler)

        kcm_port = free_port()
        self._spawn(
            "kube-controller-manager",
            [kcm_port],
            [
                f"--kubeconfig={kcm_config}",
                "--bind-address=127.0.0.1",
                f"--secure-port={kcm_port}",
                f"--cert-dir={d / 'pki' / 'kcm'}",
                f"--service-account-private-key-file={p.service_account_key}",
                f"--root-ca-file={p.ca.cert}",
                "--use-service-account-credentials=true",
                f"--kube-api-qps={self.client_qps}",
                f"--kube-api-burst={2 * self.client_qps}",
                "--leader-elect=false",
                "--profiling=false",
                "--v=1",
            ],
        )
        sched_port = free_port()
        self._spawn(
            "kube-scheduler",
            [sched_port],
            [
                f"--kubeconfig={sched_config}",
                "--bind-address=127.0.0.1",
                f"--secure-port={sched_port}",
                f"--cert-dir={d / 'pki' / 'scheduler'}",
                f"--kube-api-qps={self.client_qps}",
                f"--kube-api-burst={2 * self.client_qps}",
                "--leader-elect=false",
                "--profiling=false",
                "--v=1",
            ],
        )
        healthy = lambda body: body.strip() == "ok"  # noqa: E731
        self._wait("kube-controller-manager", f"https://127.0.0.1:{kcm_port}/healthz", healthy)
        self._wait("kube-scheduler", f"https://127.0.0.1:{sched_port}/healthz", healthy)

    def _spawn(self, name: str, ports: list[int], args: list[str]) -> None:
        log = self.directory / "logs" / f"{name}.log"
        argv = [str(self.binaries[name]), *args]
        self.processes.append(spawn(name, argv, log, ports, cwd=self.directory))

    def _ssl_context(self) -> ssl.SSLContext:
        if not hasattr(self, "pki"):
            return ssl.create_default_context()
        context = ssl.create_default_context(cafile=str(self.pki.ca.cert))
        context.load_cert_chain(str(self.pki.admin.cert), str(self.pki.admin.key))
        return context

    def _wait(self, name: str, url: str, ready: Callable[[str], bool]) -> None:
        """Polls `url` until `ready(body)`; fails early, with the log tail, if the process exits."""
        process = next(p for p in self.processes if p.name == name)
        context = self._ssl_context()
        if url.startswith("https://127.0.0.1") and name != "kube-apiserver":
            # kube-controller-manager and kube-scheduler serve with self-signed certificates.
            context = ssl._create_unverified_context()
        deadline = time.monotonic() + self.startup_timeout
        last = ""
        while time.monotonic() < deadline:
            if not process.alive():
                raise StartupError(
                    self._failure(process, f"exited with {process.popen.returncode}")
                )
            try:
                with urllib.request.urlopen(url, timeout=2, context=context) as response:
                    body = response.read().decode(errors="replace")
                    if ready(body):
                        self.progress(f"  {name} is healthy")
                        return
                    last = body[:200]
            except (urllib.error.URLError, OSError) as error:
                last = str(error)
            time.sleep(0.2)
        raise StartupError(
            self._failure(process, f"not healthy after {self.startup_timeout}s (last: {last})")
        )

    def _failure(self, process: Process, what: str) -> str:
        tail = log_tail(process.log)
        return f"{process.name} {what}; last {LOG_TAIL_LINES} lines of its log:\n{tail}"

    def _save_logs(self) -> Path:
        saved = tools.cache_dir() / "logs" / f"controlplane-{time.strftime('%Y%m%d-%H%M%S')}"
        shutil.copytree(self.directory / "logs", saved, dirs_exist_ok=True)
        return saved

    def stop(self) -> None:
        """Stops every component (newest first) and removes the directory. Safe to call twice."""
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()
        atexit.unregister(self.stop)
        directory = getattr(self, "directory", None)
        if directory is not None and not self.keep_dir:
            shutil.rmtree(directory, ignore_errors=True)

    def kubectl_run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Runs the pinned kubectl here; a failure carries kubectl's stderr."""
        return run_kubectl(self.kubectl, self.kubeconfig, *args, check=check)

    def server_version(self) -> str:
        result = self.kubectl_run("version", "-o", "json")
        return str(json.loads(result.stdout)["serverVersion"]["gitVersion"])
