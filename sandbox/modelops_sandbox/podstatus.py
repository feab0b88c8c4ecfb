"""A Pod's status as a kubelet reports it, built from what the sandbox agent knows (pure).

The agent keeps one `ContainerView` per container (state, lastState, restarts, readiness); the
functions here turn those into `status.phase`, the conditions and the container statuses, the
way the kubelet's status manager does: phase from the containers and the restart policy,
conditions whose `lastTransitionTime` only moves when their status does.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]


def now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class ContainerView:
    """What the agent knows about one container: `state`/`last_state` are Kubernetes
    ContainerState objects (`{"waiting": ...}`, `{"running": ...}`, `{"terminated": ...}`)."""

    name: str
    image: str
    state: Obj = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: Obj = field(default_factory=dict)
    restart_count: int = 0
    ready: bool = False
    started: bool = False
    container_id: str = ""
    final: bool = False  # terminated and will not run again
    sidecar: bool = False  # an init container with restartPolicy Always

    @property
    def exit_code(self) -> int | None:
        terminated = self.state.get("terminated")
        return None if terminated is None else int(terminated.get("exitCode", 0))

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0

    @property
    def initialized(self) -> bool:
        """Done as an init container: succeeded, or for a sidecar started (or stopped at the
        end of the pod)."""
        return (self.started or self.final) if self.sidecar else self.succeeded


def container_status(view: ContainerView) -> Obj:
    status: Obj = {
        "name": view.name,
        "state": view.state,
        "lastState": view.last_state,
        "ready": view.ready,
        "restartCount": view.restart_count,
        "image": view.image,
        "imageID": f"sandbox://{view.image}",
        "started": view.started,
    }
    if view.container_id:
        status["containerID"] = view.container_id
    return status


def phase(init: Sequence[ContainerView], containers: Sequence[ContainerView]) -> str:
    """Pending until the init containers succeed and the sidecars start (Failed if one failed
    for good); Succeeded or Failed once every container is final, whatever the sidecars did;
    Running while any runs or is being restarted."""
    for view in init:
        if view.initialized:
            continue
        if view.final:
            return "Failed"
        return "Pending"
    if containers and all(v.final for v in containers):
        return "Succeeded" if all(v.succeeded for v in containers) else "Failed"
    if any("running" in v.state or "terminated" in v.state or v.restart_count for v in containers):
        return "Running"
    return "Pending"


def _condition(
    kind: str, ok: bool, previous: Mapping[str, Obj], now: str, reason: str = "", message: str = ""
) -> Obj:
    status = "True" if ok else "False"
    before = previous.get(kind)
    changed = before is None or before.get("status") != status
    since = now if before is None or changed else before.get("lastTransitionTime", now)
    condition: Obj = {
        "type": kind,
        "status": status,
        "lastProbeTime": None,
        "lastTransitionTime": since,
    }
    if not ok and reason:
        condition["reason"] = reason
        condition["message"] = message
    return condition


def conditions(
    pod: Obj,
    pod_phase: str,
    init: Sequence[ContainerView],
    containers: Sequence[ContainerView],
    sandbox_ready: bool,
    now: str,
) -> list[Obj]:
    """PodReadyToStartContainers, Initialized, ContainersReady, Ready and the scheduler's
    PodScheduled (kept as it is); readinessGates must hold for Ready."""
    previous = {c["type"]: c for c in (pod.get("status") or {}).get("conditions") or []}
    incomplete = [v.name for v in init if not v.initialized]
    unready = [v.name for v in init if v.sidecar and not v.ready]
    unready += [v.name for v in containers if not v.ready]
    completed = pod_phase == "Succeeded"
    if pod_phase == "Succeeded":
        ready_reason, ready_message = "PodCompleted", ""
    else:
        ready_reason = "ContainersNotReady"
        ready_message = f"containers with unready status: [{' '.join(unready)}]"
    gates = [g["conditionType"] for g in (pod.get("spec") or {}).get("readinessGates") or []]
    gates_open = [g for g in gates if (previous.get(g) or {}).get("status") != "True"]
    result = [
        _condition("PodReadyToStartContainers", sandbox_ready, previous, now),
        _condition(
            "Initialized",
            not incomplete,
            previous,
            now,
            "ContainersNotInitialized",
            f"containers with incomplete status: [{' '.join(incomplete)}]",
        ),
        _condition("ContainersReady", not unready and not completed, previous, now,
                   ready_reason, ready_message),
    ]
    if not unready and gates_open and not completed:
        ready_reason = "ReadinessGatesNotReady"
        ready_message = f"corresponding condition of pod readiness gate {gates_open[0]!r} " \
            "does not exist or is not True"
    result.append(
        _condition("Ready", not unready and not gates_open and not completed, previous, now,
                   ready_reason, ready_message)
    )
    if pod_phase == "Succeeded":
        for c in result[2:]:
            c["reason"] = "PodCompleted"
            c.pop("message", None)
    if "PodScheduled" in previous:
        result.insert(0, previous["PodScheduled"])
    return result


def pod_status(
    pod: Obj,
    init: Sequence[ContainerView],
    containers: Sequence[ContainerView],
    pod_ip: str,
    host_ip: str,
    start_time: str,
    sandbox_ready: bool,
    now: str,
    pod_phase: str | None = None,
    reason: str = "",
    message: str = "",
) -> Obj:
    """The whole `status` the agent writes through the pods/status subresource."""
    current = pod_phase or phase(init, containers)
    status: Obj = {
        "phase": current,
        "conditions": conditions(pod, current, init, containers, sandbox_ready, now),
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": start_time,
        "containerStatuses": [container_status(v) for v in containers],
    }
    if init:
        status["initContainerStatuses"] = [container_status(v) for v in init]
    if reason:
        status["reason"] = reason
        status["message"] = message
    return status
