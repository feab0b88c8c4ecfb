"""A local Kubernetes cluster with one real node, as the demo and the node tests use it.

    with Cluster() as cluster:
        cluster.kubectl("get", "nodes")          # modelops-node Ready
        cluster.kubeconfig                        # admin kubeconfig for host clients

What starts, in order (and stops in reverse):

1. the machine's node lock (`machine.claim`), which first cleans up after a killed run, and the
   record of what the node will change (`machine.Footprint`);
2. the images (`images.ensure_all`: built only when their sources changed);
3. the bridge for pod addresses and its fence (`network`), the node's cgroup root nested below
   this process's cgroup (`cgroups`);
4. the control plane (`ControlPlane`) listening on the bridge address, so that the `kubernetes`
   Service reaches it from pods;
5. containerd, with the images imported; kubelet, until the Node is Ready and schedulable;
   kube-proxy; the hostPath provisioner behind the default StorageClass.

`stop()` drains the node (the pods are deleted through the API and the kubelet stops their
containers), stops the processes, then `machine.sweep` removes whatever is left and restores what
the components changed: no process, mount, link, iptables chain, cgroup, kernel setting or file
of the node remains.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from kubernetes import client, config

from modelops_sandbox import cgroups, images, machine, network, tools
from modelops_sandbox.containerd import Containerd
from modelops_sandbox.controlplane import ControlPlane, KubectlError
from modelops_sandbox.kubelet import (
    NODE_NAME,
    kube_proxy_config_path,
    kubelet_ports,
    start_kube_proxy,
    start_kubelet,
)
from modelops_sandbox.processes import Lifecycle, Process
from modelops_sandbox.provisioner import Provisioner

RUN_DIR = machine.RUN_ROOT / "node"
NODE_BINARIES = ("kubelet", "kube-proxy", "containerd", "containerd-shim-runc-v2", "ctr")


class NodeError(RuntimeError):
    """The node did not come up; the message carries the tail of the component's log."""


@dataclass
class Cluster(Lifecycle):
    """A control plane and one real node on this machine (root only; one at a time)."""

    progress: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)
    startup_timeout: float = 120.0
    # Extra kube-apiserver flags (an audit log, say: `modelops_sandbox.audit.flags`).
    apiserver_args: Sequence[str] = ()
    control_plane: ControlPlane = field(init=False)
    containerd: Containerd | None = field(default=None, init=False)
    kubelet: Process | None = field(default=None, init=False)
    kube_proxy: Process | None = field(default=None, init=False)
    provisioner: Provisioner | None = field(default=None, init=False)
    api: client.ApiClient | None = field(default=None, init=False)
    cgroup_root: str = field(default="", init=False)
    kubelet_ports: tuple[int, int] = field(default=(0, 0), init=False)
    _lock: contextlib.ExitStack = field(default_factory=contextlib.ExitStack, init=False)
    _lock_file: IO[str] | None = field(default=None, init=False)

    @property
    def kubeconfig(self) -> Path:
        return self.control_plane.kubeconfig

    @property
    def run_dir(self) -> Path:
        return RUN_DIR

    def start(self) -> Cluster:
        started = time.monotonic()
        binaries = tools.ensure(*NODE_BINARIES)
        archives = images.ensure_all(self.progress)
        self._lock_file = self._lock.enter_context(machine.claim(RUN_DIR, self.progress))
        try:
            self._start(binaries, archives)
        except BaseException:
            self.progress(f"the node failed to start; its logs are in {self._save_logs()}")
            self.stop()
            raise
        self.progress(f"cluster with node {NODE_NAME} ready in {time.monotonic() - started:.1f}s")
        return self

    def _start(self, binaries: dict[str, Path], archives: dict[str, Path]) -> None:
        footprint = machine.Footprint.record(RUN_DIR)
        network.create(footprint)
        self.cgroup_root = cgroups.create_root(NODE_NAME, footprint)
        self.kubelet_ports = kubelet_ports()
        self.control_plane = ControlPlane(
            progress=self.progress,
            address=network.GATEWAY,
            apiserver_args=self.apiserver_args,
            parent=RUN_DIR,
        )
        self.control_plane.start()
        self.api = config.new_client_from_config(config_file=str(self.kubeconfig))  # type: ignore[no-untyped-call]

        cni_dir = RUN_DIR / "cni"
        network.cni_config(cni_dir / "net.d", cni_dir / "ipam")
        self.containerd = Containerd(
            RUN_DIR / "containerd",
            tools.cache_dir() / "containerd",
            binaries,
            cni_dir / "net.d",
            self.progress,
        ).start()
        self.containerd.remove_containers()
        for reference, archive in archives.items():
            began = time.monotonic()
            if self.containerd.import_image(archive, reference):
                self.progress(f"  imported {reference} in {time.monotonic() - began:.1f}s")
        self.start_kubelet()
        self.kube_proxy = start_kube_proxy(
            self.control_plane, binaries["kube-proxy"], RUN_DIR / "kube-proxy"
        )
        self._wait_kube_proxy()
        self.provisioner = Provisioner(self.api, RUN_DIR / "volumes", self.progress).start()

    def start_kubelet(self) -> None:
        """Starts kubelet (again, after `stop_kubelet`) and waits for the Node to be Ready."""
        assert self.containerd is not None
        # Before the start: under load, the kubelet registers and reports Ready before
        # start_kubelet returns, and reports again only minutes later.
        since = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=1)
        self.kubelet = start_kubelet(
            self.control_plane,
            tools.tool("kubelet").path,
            RUN_DIR / "kubelet",
            self.containerd.endpoint,
            self.cgroup_root,
            self.kubelet_ports,
        )
        self._wait_node_ready(since)

    def stop_kubelet(self) -> None:
        """Stops kubelet alone, as a node's agent restart does: containers keep running."""
        if self.kubelet is not None:
            self.kubelet.stop(15)
            self.kubelet = None

    def _wait_node_ready(self, since: datetime.datetime) -> None:
        """Until this kubelet has reported the Node Ready (a heartbeat since it started: a
        restarted one finds the Node Ready already) and the Node carries no NoSchedule taint
        (the node-lifecycle controller removes the `not-ready` one that admission puts on every
        new Node)."""
        core = client.CoreV1Api(self.api)
        deadline = time.monotonic() + self.startup_timeout
        missing = "the Node was never read"
        while time.monotonic() < deadline:
            assert self.kubelet is not None
            if not self.kubelet.alive():
                raise NodeError(f"kubelet exited:\n{self.kubelet.tail()}")
            try:
                node = core.read_node(NODE_NAME)
            except client.ApiException as error:
                missing = f"the Node could not be read: {error.status} {error.reason}"
            else:
                conditions = (node.status.conditions if node.status else None) or []
                ready = any(
                    c.type == "Ready"
                    and c.status == "True"
                    and c.last_heartbeat_time is not None
                    and c.last_heartbeat_time >= since.replace(microsecond=0)
                    for c in conditions
                )
                taints = (node.spec.taints if node.spec else None) or []
                taints = [t for t in taints if t.effect == "NoSchedule"]
                if not ready:
                    missing = f"no Ready heartbeat since the kubelet started: {conditions}"
                elif taints:
                    missing = f"still tainted {[t.key for t in taints]}"
                elif not self._kubelet_has_its_pods(core):
                    missing = "the kubelet does not know every pod bound to it yet"
                else:
                    self.progress(f"  node {NODE_NAME} is Ready")
                    return
            time.sleep(0.3)
        assert self.kubelet is not None
        raise NodeError(
            f"node {NODE_NAME} not Ready in {self.startup_timeout:.0f}s ({missing}):\n"
            f"{self.kubelet.tail()}"
        )

    def _kubelet_has_its_pods(self, core: client.CoreV1Api) -> bool:
        """Whether the kubelet knows every running pod bound to its node (a restarted one
        learns them from the API server a moment after it reports Ready)."""
        bound = core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={NODE_NAME}")
        running = {
            p.metadata.uid
            for p in bound.items
            if p.metadata and p.status and p.status.phase in ("Pending", "Running")
        }
        if not running:
            return True
        raw = self.control_plane.kubectl_run(
            "get", "--raw", f"/api/v1/nodes/{NODE_NAME}/proxy/pods", check=False
        )
        if raw.returncode != 0:
            return False
        known = {p["metadata"]["uid"] for p in json.loads(raw.stdout).get("items") or []}
        return running <= known

    def _wait_kube_proxy(self) -> None:
        """Until kube-proxy's health check answers 200: it has programmed the Services."""
        assert self.kube_proxy is not None
        url = f"http://127.0.0.1:{self.kube_proxy.ports[0]}/healthz"
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if not self.kube_proxy.alive():
                raise NodeError(f"kube-proxy exited:\n{self.kube_proxy.tail()}")
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
            time.sleep(0.2)
        raise NodeError(f"kube-proxy not healthy in {self.startup_timeout:.0f}s")

    def kubectl(self, *args: str, check: bool = True) -> str:
        return self.control_plane.kubectl_run(*args, check=check).stdout

    def drain(self, timeout: float = 90.0) -> None:
        """Deletes every pod on the node through the API server and waits until the kubelet has
        stopped them; controllers' replacements stay Pending on the cordoned node."""
        with contextlib.suppress(KubectlError):
            self.kubectl("cordon", NODE_NAME)
            self.kubectl(
                "delete", "pods", "--all", "--all-namespaces", "--grace-period=2", "--wait=false"
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                pods = json.loads(
                    self.kubectl(
                        "get",
                        "pods",
                        "-A",
                        "-o",
                        "json",
                        f"--field-selector=spec.nodeName={NODE_NAME}",
                    )
                )["items"]
            except (KubectlError, ValueError):
                return
            if not pods:
                return
            time.sleep(0.5)
        self.progress(f"  {len(pods)} pods still on the node after {timeout:.0f}s; killing them")

    def stop(self) -> None:
        """Drains and stops the node and the control plane, then puts the machine back."""
        if self.provisioner is not None:
            self.provisioner.stop()
            self.provisioner = None
        if self.kubelet is not None and self.kubelet.alive() and hasattr(self, "control_plane"):
            self.drain()
        for process in (self.kubelet, self.kube_proxy):
            if process is not None:
                process.stop(15)
        self.kubelet = self.kube_proxy = None
        if self.containerd is not None:
            self.containerd.stop()
            self.containerd = None
        if self.api is not None:
            self.api.close()  # type: ignore[no-untyped-call]
            self.api = None
        if hasattr(self, "control_plane"):
            self.control_plane.stop()
        if self._lock_file is not None:
            binary = tools.tool("kube-proxy").path
            machine.sweep(RUN_DIR, binary, kube_proxy_config_path(RUN_DIR / "kube-proxy"))
            self._lock_file = None
        self._lock.close()

    def _save_logs(self) -> Path:
        saved = tools.cache_dir() / "logs" / f"node-{time.strftime('%Y%m%d-%H%M%S')}"
        for log in RUN_DIR.glob("*/*.log"):
            target = saved / log.relative_to(RUN_DIR)
            target.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(OSError):
                target.write_bytes(log.read_bytes())
        return saved
