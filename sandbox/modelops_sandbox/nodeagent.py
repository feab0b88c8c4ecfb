"""The sandbox's node agent: a kubelet stand-in that runs pods as local processes.

No container engine exists on the development machines, so this agent plays the kubelet of one
Node: it registers the Node (capacity, addresses, Ready condition) and renews its Lease, watches
the pods bound to it (`spec.nodeName`) and runs their containers as processes of this project's
Python environment. **The image is ignored**: the runtime (training and serving) is installed
locally, and a container's command is resolved against this environment's `bin` first. It is the
one simulated part of the sandbox; the API server, scheduler and controllers around it are real.

Each pod gets its own loopback address (`modelops_sandbox.addresses`), its volumes as local
directories (`modelops_sandbox.volumes`) and its paths rewritten (`modelops_sandbox.podspec`),
claims bound by a small provisioner (`modelops_sandbox.provisioner`), its processes, probes,
restarts and status run by a `modelops_sandbox.podworker.PodWorker`, and its logs under
`<state>/logs` (`modelops_sandbox.logs`). docs/sandbox.md states the rules.

    python -m modelops_sandbox.nodeagent --kubeconfig K --state-dir D [--node-name N]

In Python: `NodeAgent(kubeconfig, state_dir).start()` ... `.stop()` in-process, or
`start_agent_process(kubeconfig, state_dir)` for a subprocess that is Ready when it returns.
On stop the agent ends every pod process (SIGTERM, then SIGKILL after the grace period, at most
`stop_grace` seconds), reports those pods Failed, and deletes its Node and Lease.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from kubernetes.client.exceptions import ApiException

from modelops_sandbox.addresses import DEFAULT_NETWORK, AddressPool
from modelops_sandbox.kube import MERGE, Kube
from modelops_sandbox.node import HOST_IP, NodeRegistration
from modelops_sandbox.podstatus import now_rfc3339
from modelops_sandbox.podworker import PodWorker
from modelops_sandbox.processes import die_with_parent
from modelops_sandbox.provisioner import Provisioner
from modelops_sandbox.reaper import Reaper

Obj = dict[str, Any]

DEFAULT_NODE = "sandbox-node"
LEASE_EVERY = 10.0
CONDITIONS_EVERY = 60.0
WATCH_SECONDS = 60
PROVISION_EVERY = 1.0
EVENT_WINDOW = 600.0


def _stderr(line: str) -> None:
    print(f"[nodeagent {time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)


@dataclass
class NodeAgent:
    """One node: `start()` registers it and runs its pods; `stop()` ends them and deregisters."""

    kubeconfig: Path | str
    state_dir: Path | str
    node_name: str = DEFAULT_NODE
    progress: Any = _stderr
    restart_backoff: float = 10.0
    stop_grace: float = 10.0
    pod_network: str = DEFAULT_NETWORK
    provision: bool = True
    kube: Kube = field(init=False)
    addresses: AddressPool = field(init=False)
    reaper: Reaper = field(init=False)
    allocatable: dict[str, str] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir).resolve()
        self._workers: dict[str, PodWorker] = {}
        self._finished: set[str] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._events: queue.Queue[Obj | None] = queue.Queue()
        self._node: NodeRegistration | None = None
        self._provisioner: Provisioner | None = None

    @property
    def state(self) -> Path:
        return Path(self.state_dir)

    def say(self, line: str) -> None:
        self.progress(line)

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> NodeAgent:
        self.state.mkdir(parents=True, exist_ok=True)
        self.kube = Kube(self.kubeconfig)
        self.addresses = AddressPool(self.pod_network)
        self.reaper = Reaper(self.state / "process-groups")
        self.reaper.start()
        self._node = NodeRegistration(self.kube, self.node_name, self.state)
        self._node.register()
        self.allocatable = self._node.allocatable
        loops = [(self._heartbeat, "heartbeat"), (self._watch, "watch"),
                 (self._post_events, "events")]
        if self.provision:
            self._provisioner = Provisioner(self.kube, self.state, self.say)
            self._provisioner.install()
            loops.append((self._provision, "provisioner"))
        for target, name in loops:
            thread = threading.Thread(target=target, name=f"nodeagent-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self.say(f"node {self.node_name} registered; state in {self.state}; pods get addresses "
                 f"from {self.pod_network}")
        return self

    def stop(self) -> None:
        """Ends every pod process, reports the pods Failed, deletes the Node and its Lease."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        with self._lock:
            workers = list(self._workers.values())
        for worker in workers:
            worker.shutdown(self.stop_grace)
        for worker in workers:
            worker.join(self.stop_grace + 15)
        self.reaper.stop()
        self._events.put(None)
        try:
            if self._provisioner is not None:
                self._provisioner.uninstall()
            if self._node is not None:
                self._node.deregister()
        except Exception as error:
            self.say(f"could not delete node {self.node_name}: {error}")
        self.kube.close()
        for thread in self._threads:
            thread.join(5)
        self.say(f"node {self.node_name} stopped")

    def __enter__(self) -> NodeAgent:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def process_ids(self) -> list[int]:
        """Pids of the container processes running now (each leads its own process group)."""
        with self._lock:
            return [pid for w in self._workers.values() for pid in w.pids()]

    def pod_addresses(self) -> dict[str, str]:
        return self.addresses.in_use()

    def forget(self, worker: PodWorker) -> None:
        with self._lock:
            if self._workers.get(worker.uid) is worker:
                del self._workers[worker.uid]
            self._finished.add(worker.uid)

    # --- the node -----------------------------------------------------------------------------

    def _heartbeat(self) -> None:
        assert self._node is not None
        last_conditions = time.monotonic()
        while not self._stopping.wait(LEASE_EVERY):
            try:
                self._node.renew_lease()
                if time.monotonic() - last_conditions >= CONDITIONS_EVERY:
                    self._node.heartbeat()
                    last_conditions = time.monotonic()
            except Exception as error:
                self.say(f"heartbeat failed: {error}")

    def _provision(self) -> None:
        assert self._provisioner is not None
        while not self._stopping.wait(PROVISION_EVERY):
            try:
                self._provisioner.sync()
            except Exception as error:  # retried at the next pass
                self.say(f"provisioning failed: {error}")

    # --- the pods -----------------------------------------------------------------------------

    def _watch(self) -> None:
        path = "/api/v1/pods"
        selector = {"fieldSelector": f"spec.nodeName={self.node_name}"}
        version: str | None = None
        while not self._stopping.is_set():
            try:
                if version is None:
                    listed = self.kube.get(path, selector)
                    version = str(listed["metadata"]["resourceVersion"])
                    self._sync(listed.get("items") or [])
                query = {**selector, "resourceVersion": version, "allowWatchBookmarks": "true",
                         "timeoutSeconds": WATCH_SECONDS}
                for event in self.kube.watch(path, query, WATCH_SECONDS + 30):
                    if self._stopping.is_set():
                        return
                    kind, obj = event.get("type"), event.get("object") or {}
                    if kind == "ERROR":
                        if obj.get("code") == 410:
                            self.say("watch expired (410 Gone); listing again")
                            version = None
                            break
                        raise RuntimeError(f"watch error: {obj.get('message')}")
                    version = str(obj["metadata"]["resourceVersion"])
                    if kind in ("ADDED", "MODIFIED"):
                        self._dispatch(obj)
                    elif kind == "DELETED":
                        self._deleted(obj)
            except ApiException as error:
                if error.status == 410:
                    version = None
                    continue
                if not self._stopping.is_set():
                    self.say(f"watch failed ({error.status} {error.reason}); retrying")
                    self._stopping.wait(1.0)
            except Exception as error:
                if not self._stopping.is_set():
                    self.say(f"watch failed ({error!r}); retrying")
                    self._stopping.wait(1.0)

    def _sync(self, pods: list[Obj]) -> None:
        seen = {p["metadata"]["uid"] for p in pods}
        with self._lock:
            missing = [w for uid, w in self._workers.items() if uid not in seen]
        for worker in missing:
            worker.mark_gone()
        for pod in pods:
            self._dispatch(pod)

    def _dispatch(self, pod: Obj) -> None:
        uid = pod["metadata"]["uid"]
        terminal = (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")
        with self._lock:
            worker = self._workers.get(uid)
            if worker is not None:
                worker.update(pod)
                return
            start = not (terminal or uid in self._finished or self._stopping.is_set())
            if start:
                worker = PodWorker(self, pod)
                self._workers[uid] = worker
        if worker is not None:
            worker.start()
        elif terminal and pod["metadata"].get("deletionTimestamp"):
            # Nothing runs any more: a finished pod is deleted as soon as it is asked to be.
            self.delete_now(pod)

    def _deleted(self, pod: Obj) -> None:
        uid = pod["metadata"]["uid"]
        with self._lock:
            worker = self._workers.get(uid)
        if worker is not None:
            worker.mark_gone()
        else:
            shutil.rmtree(self.state / "pods" / uid, ignore_errors=True)

    def delete_now(self, pod: Obj) -> None:
        meta = pod["metadata"]
        try:
            self.kube.request(
                "DELETE", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}",
                {"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}})
        except ApiException as error:
            if error.status not in (404, 409):
                self.say(f"could not delete pod {meta['namespace']}/{meta['name']}: {error}")

    # --- events -------------------------------------------------------------------------------

    def event(self, pod: Obj, reason: str, message: str, kind: str = "Normal") -> None:
        """Records a core/v1 Event about the pod, as a kubelet does (best effort, in order)."""
        meta = pod["metadata"]
        now = now_rfc3339()
        self._events.put({
            "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:16]}",
                         "namespace": meta["namespace"]},
            "involvedObject": {"kind": "Pod", "apiVersion": "v1", "namespace": meta["namespace"],
                               "name": meta["name"], "uid": meta["uid"]},
            "reason": reason, "message": message, "type": kind,
            "source": {"component": "kubelet", "host": self.node_name},
            "reportingComponent": "kubelet", "reportingInstance": self.node_name,
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        })

    def _post_events(self) -> None:
        """Posts events in order; a repeat of the same pod, reason and message within
        EVENT_WINDOW seconds raises the first one's count instead, as a kubelet's event
        correlator does (a failing probe makes one event, not one per period)."""
        seen: dict[tuple[str, str, str], tuple[str, int, float]] = {}
        while True:
            item = self._events.get()
            if item is None:
                return
            namespace = item["metadata"]["namespace"]
            key = (item["involvedObject"]["uid"], item["reason"], item["message"])
            now = time.monotonic()
            with contextlib.suppress(Exception):
                if key in seen and now - seen[key][2] < EVENT_WINDOW:
                    name, count, first = seen[key]
                    self.kube.request(
                        "PATCH", f"/api/v1/namespaces/{namespace}/events/{name}",
                        {"count": count + 1, "lastTimestamp": item["lastTimestamp"]},
                        content_type=MERGE)
                    seen[key] = (name, count + 1, first)
                    continue
                self.kube.request("POST", f"/api/v1/namespaces/{namespace}/events", item)
                seen[key] = (item["metadata"]["name"], 1, now)
            if len(seen) > 4096:
                seen = {k: v for k, v in seen.items() if now - v[2] < EVENT_WINDOW}


# ---------------------------------------------------------------------------------------------
# As a subprocess.


@dataclass
class AgentProcess:
    """A node agent running as a subprocess (`start_agent_process`)."""

    popen: subprocess.Popen[bytes]
    node_name: str
    state_dir: Path
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM: the agent ends its pods and deregisters; SIGKILL if it takes too long (its
        pods' processes then die with it)."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        return int(self.popen.returncode)


def start_agent_process(
    kubeconfig: Path | str,
    state_dir: Path | str,
    node_name: str = DEFAULT_NODE,
    timeout: float = 60.0,
    extra_args: list[str] | None = None,
) -> AgentProcess:
    """Starts `python -m modelops_sandbox.nodeagent` (dying with its parent) and returns once its
    Node is Ready and free of the not-ready taint, so the scheduler binds pods to it. Its stderr
    goes to `<state_dir>/nodeagent.log`."""
    state = Path(state_dir).resolve()
    state.mkdir(parents=True, exist_ok=True)
    log = state / "nodeagent.log"
    with log.open("ab") as out:
        popen = subprocess.Popen(
            [sys.executable, "-m", "modelops_sandbox.nodeagent", "--kubeconfig", str(kubeconfig),
             "--state-dir", str(state), "--node-name", node_name, *(extra_args or [])],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent)
    agent = AgentProcess(popen, node_name, state, log)
    kube = Kube(kubeconfig)
    try:
        deadline = time.monotonic() + timeout
        while not node_schedulable(kube, node_name):
            if not agent.alive():
                raise RuntimeError(f"node agent exited with {popen.returncode}:\n"
                                   + log.read_text(errors="replace")[-4000:])
            if time.monotonic() > deadline:
                agent.stop()
                raise RuntimeError(f"node {node_name} not Ready after {timeout:g}s:\n"
                                   + log.read_text(errors="replace")[-4000:])
            time.sleep(0.2)
    finally:
        kube.close()
    return agent


def node_schedulable(kube: Kube, node_name: str) -> bool:
    """The Node is Ready and carries no NoSchedule/NoExecute taint."""
    try:
        node = kube.get(f"/api/v1/nodes/{node_name}")
    except ApiException:
        return False
    conditions = node.get("status", {}).get("conditions") or []
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
    taints = [t for t in node.get("spec", {}).get("taints") or []
              if t.get("effect") in ("NoSchedule", "NoExecute")]
    return ready and not taints


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m modelops_sandbox.nodeagent",
        description="Runs the pods bound to one Node as local processes (images are ignored).")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--state-dir", required=True,
                        help="volumes, logs and per-pod directories live here")
    parser.add_argument("--node-name", default=DEFAULT_NODE)
    parser.add_argument("--pod-network", default=DEFAULT_NETWORK,
                        help="pods get addresses from this part of 127.0.0.0/8")
    parser.add_argument("--restart-backoff", type=float, default=10.0,
                        help="first crash-loop back-off in seconds (doubles up to 300)")
    parser.add_argument("--stop-grace", type=float, default=10.0,
                        help="at most this many seconds for pods to end when the agent stops")
    parser.add_argument("--no-provisioner", dest="provision", action="store_false",
                        help="do not install the default StorageClass sandbox-local nor bind "
                             "its claims to local directories")
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    agent = NodeAgent(args.kubeconfig, args.state_dir, args.node_name,
                      restart_backoff=args.restart_backoff, stop_grace=args.stop_grace,
                      pod_network=args.pod_network, provision=args.provision)
    agent.start()
    _stderr(json.dumps({"ready": True, "node": args.node_name, "hostIP": HOST_IP}))
    while not stop.wait(1.0):
        pass
    agent.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
