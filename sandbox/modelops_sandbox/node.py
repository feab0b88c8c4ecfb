"""The sandbox node as the API server sees it: the Node object, its Ready condition, its Lease.

A kubelet registers its Node with capacity, allocatable, addresses and conditions, renews a
Lease in `kube-node-lease` every 10 s (the node-lifecycle controller of kube-controller-manager
treats a renewed lease as a heartbeat, keeps the node Ready and removes the `not-ready` taint
the API server put on it at registration) and refreshes the Ready condition less often. The
sandbox agent does the same; on a clean stop it deletes the Node and its Lease.
"""

from __future__ import annotations

import os
import platform
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from kubernetes.client.exceptions import ApiException

from modelops_sandbox.kube import STRATEGIC, Kube, not_found

Obj = dict[str, Any]

LEASE_NAMESPACE = "kube-node-lease"
LEASE_SECONDS = 40
HOST_IP = "127.0.0.1"
MAX_PODS = 110
STATE_DIR_ANNOTATION = "modelops.dev/sandbox-state-dir"


def _micro_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() % 1 * 1e6):06d}Z"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _memory_kib() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 4 * 1024 * 1024


def resources(state_dir: Path) -> dict[str, str]:
    """Capacity (= allocatable): the machine's cores and memory, disk of the state dir, 110 pods."""
    disk = shutil.disk_usage(state_dir).total
    return {
        "cpu": str(os.cpu_count() or 1),
        "memory": f"{_memory_kib()}Ki",
        "ephemeral-storage": str(disk),
        "pods": str(MAX_PODS),
    }


def ready_conditions(ready: bool, reason: str, message: str) -> list[Obj]:
    now = _now()
    pressure = [
        ("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ]
    conditions = [
        {"type": kind, "status": "False", "reason": r, "message": m,
         "lastHeartbeatTime": now, "lastTransitionTime": now}
        for kind, r, m in pressure
    ]
    conditions.append({
        "type": "Ready", "status": "True" if ready else "False", "reason": reason,
        "message": message, "lastHeartbeatTime": now, "lastTransitionTime": now,
    })
    return conditions


def node_object(name: str, state_dir: Path, kubelet_version: str) -> Obj:
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    capacity = resources(state_dir)
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": arch,
                "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": arch,
                "modelops.dev/sandbox": "true",
            },
            # Where this node keeps its pods' logs and volumes: `modelops logs` finds them from a
            # pod's spec.nodeName without being told.
            "annotations": {STATE_DIR_ANNOTATION: str(state_dir)},
        },
        "spec": {},
        "status": {
            "capacity": capacity,
            "allocatable": dict(capacity),
            "addresses": [
                {"type": "InternalIP", "address": HOST_IP},
                {"type": "Hostname", "address": name},
            ],
            "conditions": ready_conditions(True, "KubeletReady", "sandbox node agent is ready"),
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
            "nodeInfo": {
                "machineID": uuid.uuid5(uuid.NAMESPACE_DNS, platform.node()).hex,
                "systemUUID": str(uuid.uuid5(uuid.NAMESPACE_DNS, name)),
                "bootID": str(uuid.uuid4()),
                "kernelVersion": platform.release(),
                "osImage": "modelops sandbox (local processes, images ignored)",
                "containerRuntimeVersion": "sandbox://0.1.0",
                "kubeletVersion": kubelet_version,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": arch,
            },
        },
    }


class NodeRegistration:
    """Registers one Node, keeps its Lease and Ready condition fresh, and removes it."""

    def __init__(self, kube: Kube, name: str, state_dir: Path) -> None:
        self.kube = kube
        self.name = name
        self.state_dir = state_dir
        self.allocatable: dict[str, str] = {}
        self.uid = ""

    def register(self) -> None:
        version = str(self.kube.get("/version").get("gitVersion", "v0.0.0"))
        node = node_object(self.name, self.state_dir, version)
        self.allocatable = dict(node["status"]["allocatable"])
        try:
            created = self.kube.request("POST", "/api/v1/nodes", node)
        except ApiException as error:
            if error.status != 409:
                raise
            created = self.kube.request(
                "PATCH", f"/api/v1/nodes/{self.name}", {"metadata": node["metadata"]},
                content_type=STRATEGIC,
            )
        self.uid = str(created["metadata"]["uid"])
        # The status of a create is kept for Nodes, but an existing Node needs it written.
        self.kube.request(
            "PATCH", f"/api/v1/nodes/{self.name}/status", {"status": node["status"]},
            content_type=STRATEGIC,
        )
        self.renew_lease()

    def _lease(self) -> Obj:
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self.name,
                "namespace": LEASE_NAMESPACE,
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Node", "name": self.name, "uid": self.uid}
                ],
            },
            "spec": {
                "holderIdentity": self.name,
                "leaseDurationSeconds": LEASE_SECONDS,
                "renewTime": _micro_now(),
            },
        }

    def renew_lease(self) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases"
        lease = self._lease()
        try:
            self.kube.request(
                "PATCH", f"{path}/{self.name}",
                {"spec": {"renewTime": lease["spec"]["renewTime"], "holderIdentity": self.name}},
                content_type=STRATEGIC,
            )
        except ApiException as error:
            if not not_found(error):
                raise
            self.kube.request("POST", path, lease)

    def heartbeat(self, ready: bool = True, reason: str = "KubeletReady",
                  message: str = "sandbox node agent is ready") -> None:
        """Refreshes the conditions' heartbeat (transition times only move on a change)."""
        current = self.kube.get(f"/api/v1/nodes/{self.name}")
        before = {c["type"]: c for c in current.get("status", {}).get("conditions") or []}
        conditions = ready_conditions(ready, reason, message)
        for c in conditions:
            old = before.get(c["type"])
            if old is not None and old.get("status") == c["status"]:
                c["lastTransitionTime"] = old.get("lastTransitionTime", c["lastTransitionTime"])
        self.kube.request(
            "PATCH", f"/api/v1/nodes/{self.name}/status", {"status": {"conditions": conditions}},
            content_type=STRATEGIC,
        )

    def deregister(self) -> None:
        """Deletes the Lease and the Node: pods still bound to it are the pod GC's business."""
        for path in (
            f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases/{self.name}",
            f"/api/v1/nodes/{self.name}",
        ):
            try:
                self.kube.request("DELETE", path)
            except ApiException as error:
                if not not_found(error):
                    raise
