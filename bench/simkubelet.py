"""A simulated kubelet for the scale benchmark: one Node whose pods run nothing.

The one part of a cluster that cannot exist here at scale is a thousand containers, so this
stands in for the kubelet (as kwok does): it registers a Node with room for thousands of pods,
renews its Lease, and reports every pod the real scheduler binds to it as if its containers ran.
A training pod terminates at once with a successful `modelops train` result in its termination
message (docs/runtime-contract.md); any other pod runs and is Ready. A deleted pod is removed at
once. Everything else (API server, controllers, scheduler, operator) is real.
"""

from __future__ import annotations

import datetime
import ipaddress
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from modelops_api import contract
from modelops_training.result import fit_to_limit

log = logging.getLogger("simkubelet")
# Pod addresses come from a range nothing answers on (Prometheus' scrapes of them time out).
# Not loopback: Endpoints and EndpointSlices refuse loopback addresses.
POD_NETWORK = ipaddress.ip_network("10.244.0.0/16")
NODE_IP = "10.243.0.1"


def _now(micro: bool = False) -> str:
    moment = datetime.datetime.now(datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")


def training_result(model: str, version: str, store: str) -> str:
    """What `modelops train --artifacts STORE` writes to its termination message on success (same
    serialiser)."""
    return fit_to_limit(
        {
            "phase": contract.SUCCEEDED,
            "reason": "Trained",
            "message": "trained (simulated)",
            "model": model,
            "version": version,
            "tag": f"{model}:{version}",
            "artifact": f"{store}/{model}/{version}.bentomodel",
            "metrics": {"accuracy": 0.97, "f1_macro": 0.96},
        }
    )


def _container_statuses(pod: dict[str, Any], state: dict[str, Any], ready: bool) -> list[Any]:
    return [
        {
            "name": c["name"],
            "image": c.get("image", ""),
            "imageID": "",
            "ready": ready,
            "started": ready,
            "restartCount": 0,
            "state": state,
        }
        for c in pod["spec"]["containers"]
    ]


def pod_status(pod: dict[str, Any], ip: str) -> dict[str, Any]:
    """The status a kubelet would report once the pod's containers ran (or are running)."""
    labels = pod["metadata"].get("labels") or {}
    if labels.get(contract.LABEL_COMPONENT) == "training":
        args = pod["spec"]["containers"][0].get("args") or []
        message = training_result(
            labels.get(contract.LABEL_MODEL, ""),
            labels.get(contract.LABEL_VERSION, ""),
            args[args.index("--artifacts") + 1],
        )
        state = {
            "terminated": {
                "exitCode": 0,
                "reason": "Completed",
                "message": message,
                "startedAt": _now(),
                "finishedAt": _now(),
            }
        }
        return {
            "phase": "Succeeded",
            "startTime": _now(),
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": "False", "reason": "PodCompleted"}],
            "containerStatuses": _container_statuses(pod, state, False),
        }
    return {
        "phase": "Running",
        "startTime": _now(),
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "conditions": [
            {"type": "Initialized", "status": "True", "lastTransitionTime": _now()},
            {"type": "ContainersReady", "status": "True", "lastTransitionTime": _now()},
            {"type": "Ready", "status": "True", "lastTransitionTime": _now()},
        ],
        "containerStatuses": _container_statuses(pod, {"running": {"startedAt": _now()}}, True),
    }


class _Restart(Exception):
    """The watch has to start again."""


def watch_json(
    lister: Callable[..., Any],
    handle: Callable[[str, dict[str, Any]], object],
    stop: threading.Event,
    **params: Any,
) -> None:
    """Runs a watch of `lister` until `stop`, calling `handle(type, object)` per event. It reads
    the raw JSON lines: the client's models would cost more CPU than everything else here."""
    version = ""
    while not stop.is_set():
        try:
            response = lister(
                watch=True,
                resource_version=version,
                timeout_seconds=60,
                _preload_content=False,
                **params,
            )
            buffer = b""
            for chunk in response.stream(1 << 16):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in filter(None, lines):
                    event = json.loads(line)
                    if event["type"] == "ERROR":  # typically 410 Gone: start again from now
                        version = ""
                        raise _Restart
                    version = event["object"]["metadata"]["resourceVersion"]
                    handle(event["type"], event["object"])
                if stop.is_set():
                    return
        except _Restart:
            continue
        except (ApiException, urllib3.exceptions.HTTPError) as error:
            if not stop.is_set():
                log.warning("watch broken: %s", error)
                stop.wait(1)


RUN_ATTEMPTS = 5


class SimulatedKubelet:
    """Registers `node` and runs (in name only) every pod bound to it, until `stop()`."""

    def __init__(self, api_client: client.ApiClient, node: str = "sim-node", workers: int = 4):
        self.core = client.CoreV1Api(api_client)
        self.leases = client.CoordinationV1Api(api_client)
        self.node, self.workers = node, workers
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="simkubelet")
        self._handled: dict[str, float] = {}  # pod key -> when its start was asked for
        self._threads: list[threading.Thread] = []
        self._addresses = itertools.cycle(POD_NETWORK.hosts())
        # A pod's address, kept: a start asked again (still Pending after 30 s) must report the
        # same one, since two addresses in status.podIPs make the API server refuse the patch.
        self._ips: dict[str, str] = {}

    def start(self) -> SimulatedKubelet:
        self._register()
        for target in (self._heartbeat, self._watch):
            thread = threading.Thread(target=target, daemon=True, name=f"simkubelet-{target}")
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _register(self) -> None:
        resources = {"cpu": "1000", "memory": "4Ti", "pods": "20000", "ephemeral-storage": "10Ti"}
        self.core.create_node(
            {
                "metadata": {"name": self.node, "labels": {"kubernetes.io/hostname": self.node}},
                "spec": {},
            }
        )
        self.core.patch_node_status(
            self.node,
            {
                "status": {
                    "capacity": resources,
                    "allocatable": resources,
                    "addresses": [{"type": "InternalIP", "address": NODE_IP}],
                    "conditions": [self._ready_condition()],
                    "nodeInfo": {"kubeletVersion": "simulated", "architecture": "amd64"},
                }
            },
        )
        self.leases.create_namespaced_lease(
            "kube-node-lease",
            {
                "metadata": {"name": self.node},
                "spec": {
                    "holderIdentity": self.node,
                    "leaseDurationSeconds": 40,
                    "renewTime": _now(micro=True),
                },
            },
        )

    def _ready_condition(self) -> dict[str, str]:
        return {
            "type": "Ready",
            "status": "True",
            "reason": "KubeletReady",
            "message": "simulated kubelet",
            "lastHeartbeatTime": _now(),
            "lastTransitionTime": _now(),
        }

    def _heartbeat(self) -> None:
        """Renews the node's lease every 10 s and, every 30 s, starts the pods bound to the node
        that are still Pending: a pod whose start was lost under load (a watch event or a request
        that never arrived) is started then, as a real kubelet's resync would."""
        for tick in itertools.count(1):
            if self._stop.wait(10):
                return
            try:
                self.leases.patch_namespaced_lease(
                    self.node, "kube-node-lease", {"spec": {"renewTime": _now(micro=True)}}
                )
                if tick % 3 == 0:
                    self._start_pending()
            except (ApiException, urllib3.exceptions.HTTPError) as error:
                log.warning("heartbeat of %s: %s", self.node, error)

    def _start_pending(self) -> None:
        pending = self.core.list_pod_for_all_namespaces(
            field_selector=f"spec.nodeName={self.node},status.phase=Pending",
            _preload_content=False,
        )
        for pod in json.loads(pending.data)["items"]:
            meta = pod["metadata"]
            asked = self._handled.get(f"{meta['namespace']}/{meta['name']}/{meta['uid']}")
            if meta.get("deletionTimestamp") or (asked and time.monotonic() - asked < 30):
                continue  # being deleted, or its start may still be on its way
            self._pool.submit(self._run, pod)

    def _watch(self) -> None:
        watch_json(
            self.core.list_pod_for_all_namespaces,
            lambda type, pod: type != "DELETED" and self._seen(pod),
            self._stop,
            field_selector=f"spec.nodeName={self.node}",
        )

    def _seen(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        key = f"{meta['namespace']}/{meta['name']}/{meta['uid']}"
        if meta.get("deletionTimestamp"):
            if key + "/deleted" not in self._handled:
                self._handled[key + "/deleted"] = time.monotonic()
                self._pool.submit(self._delete, meta["namespace"], meta["name"])
        elif (pod.get("status") or {}).get("phase", "Pending") == "Pending" and (
            key not in self._handled
        ):
            self._handled[key] = time.monotonic()
            self._pool.submit(self._run, pod)

    def _run(self, pod: dict[str, Any]) -> None:
        """Reports the pod started; retried, since no later watch event would bring it back."""
        meta = pod["metadata"]
        key = f"{meta['namespace']}/{meta['name']}/{meta['uid']}"
        ip = self._ips.setdefault(key, str(next(self._addresses)))
        status = pod_status(pod, ip)
        for attempt in range(1, RUN_ATTEMPTS + 1):
            try:
                self.core.patch_namespaced_pod_status(
                    meta["name"], meta["namespace"], {"status": status}, _preload_content=False
                )
                return
            except ApiException as error:
                if error.status == 404:
                    return
                problem: object = error
            except urllib3.exceptions.HTTPError as error:  # a timeout or a reset under load
                problem = error
            log.warning(
                "pod %s/%s not started (attempt %d): %s",
                meta["namespace"], meta["name"], attempt, problem,
            )  # fmt: skip
            self._stop.wait(attempt)

    def _delete(self, namespace: str, name: str) -> None:
        try:
            self.core.delete_namespaced_pod(
                name, namespace, grace_period_seconds=0, _preload_content=False
            )
        except ApiException as error:
            if error.status != 404:
                log.warning("pod %s/%s not removed: %s", namespace, name, error.reason)
