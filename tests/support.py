"""Helpers the tests share: waiting for a condition, the session's cluster with a real node, and
acting as the kubelet on the control plane that has none.

The operator's integration tests run on a control plane with no node: where a test needs a Pod to
have run, it writes the Pod's status exactly as a kubelet would (phase, container states, the
termination message, readiness), so that each outcome is exact. Nothing else is faked; the tests
that need pods to really run use the real node (`Node`).
"""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client

from modelops_api import contract
from modelops_sandbox import audit
from modelops_sandbox.cluster import Cluster
from modelops_sandbox.operatorproc import OperatorProcess

__all__ = [
    "Node",
    "OperatorProcess",
    "eventually",
    "finish_pod",
    "run_pod_ready",
    "training_result",
]

T = TypeVar("T")


class Node:
    """The session's cluster with a real node: `cluster()` starts it when it is not running,
    `release()` stops it (a test that needs the machine without a node calls it; the next
    `cluster()` starts a new one). Its API server audits the requests of every ServiceAccount
    (`audit_log`)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._cluster: Cluster | None = None
        self.audit_log = directory / "audit.log"

    def cluster(self) -> Cluster:
        if self._cluster is None:
            args, self.audit_log = audit.flags(self.directory, groups=["system:serviceaccounts"])
            self._cluster = Cluster(apiserver_args=args).start()
        return self._cluster

    def release(self) -> None:
        if self._cluster is not None:
            self._cluster.stop()
            self._cluster = None


def eventually(check: Callable[[], T], timeout: float = 60.0, every: float = 0.25) -> T:
    """check()'s first truthy value; fails with the last value after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"not true after {timeout}s: last value {value!r}")
        time.sleep(every)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def finish_pod(
    core: client.CoreV1Api,
    namespace: str,
    pod: str,
    container: str,
    exit_code: int,
    message: str,
) -> None:
    """Reports `container` of `pod` terminated with `exit_code` and a termination message."""
    phase = "Succeeded" if exit_code == 0 else "Failed"
    core.patch_namespaced_pod_status(
        pod,
        namespace,
        {
            "status": {
                "phase": phase,
                "startTime": _now(),
                "conditions": [{"type": "Ready", "status": "False", "reason": "PodCompleted"}],
                "containerStatuses": [
                    {
                        "name": container,
                        "ready": False,
                        "restartCount": 0,
                        "started": False,
                        "image": "modelops/runtime",
                        "imageID": "",
                        "state": {
                            "terminated": {
                                "exitCode": exit_code,
                                "reason": "Completed" if exit_code == 0 else "Error",
                                "message": message,
                                "startedAt": _now(),
                                "finishedAt": _now(),
                            }
                        },
                    }
                ],
            }
        },
    )


def run_pod_ready(
    core: client.CoreV1Api, namespace: str, pod: str, containers: list[tuple[str, str]]
) -> None:
    """Reports every container (name, image) of `pod` running and ready."""
    core.patch_namespaced_pod_status(
        pod,
        namespace,
        {
            "status": {
                "phase": "Running",
                "startTime": _now(),
                "podIP": "127.0.0.1",
                "conditions": [
                    {"type": "Ready", "status": "True", "lastTransitionTime": _now()},
                    {"type": "ContainersReady", "status": "True", "lastTransitionTime": _now()},
                ],
                "containerStatuses": [
                    {
                        "name": name,
                        "ready": True,
                        "restartCount": 0,
                        "started": True,
                        "image": image,
                        "imageID": "",
                        "state": {"running": {"startedAt": _now()}},
                    }
                    for name, image in containers
                ],
            }
        },
    )


def store_of(pod: Any) -> str:
    """The artifact store a training pod writes to: its `--artifacts` argument (the Model's own
    directory)."""
    args = list(pod.spec.containers[0].args or [])
    return str(args[args.index("--artifacts") + 1])


def training_result(
    model: str,
    version: str,
    phase: str = "Succeeded",
    store: str = "file:///models",
    **fields: Any,
) -> str:
    """A termination message as `modelops train --artifacts STORE` writes it
    (docs/runtime-contract.md)."""
    result: dict[str, Any] = {
        "phase": phase,
        "reason": "Trained",
        "message": "trained",
        "model": model,
        "version": version,
        "tag": f"{model}:{version}",
        "artifact": f"{store}/{model}/{version}.bentomodel",
        "metrics": {"accuracy": 0.97, "f1_macro": 0.96},
    }
    result.update(fields)
    return json.dumps(result)


FEEDBACK_TOKEN = "test-feedback-token"


def serving_credentials(directory: Path) -> dict[str, str]:
    """Writes the files a Model's serving Secret mounts (the token that `/feedback` needs, and a
    signing key) into `directory`; the environment that points a runtime at them."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / contract.CREDENTIAL_TOKEN).write_text(FEEDBACK_TOKEN)
    (directory / contract.CREDENTIAL_KEY).write_text(f"signing-key-of-{directory.name}")
    return {contract.ENV_CREDENTIALS: str(directory)}


def bearer() -> dict[str, str]:
    """The header of a caller that may give feedback and read the full /metadata."""
    return {"Authorization": f"Bearer {FEEDBACK_TOKEN}"}


ESTABLISHED = "jsonpath={.status.conditions[?(@.type=='Established')].status}"


def wait_established(kubectl: Callable[..., str], *crds: str, timeout: float = 60.0) -> None:
    """Waits until each CRD is Established. (`kubectl wait --for=condition=Established` fails at
    once, instead of waiting, when it reads a CRD whose status has no conditions yet.)"""

    def established(crd: str) -> bool:
        try:
            return kubectl("get", "crd", crd, "-o", ESTABLISHED) == "True"
        except Exception as error:  # jsonpath refuses a status with no conditions list yet
            if "not array or slice" in str(error):
                return False
            raise

    for crd in crds:
        eventually(lambda crd=crd: established(crd), timeout)


def apply_squatted_model(custom: Any, namespace: str, body: dict[str, Any], name: str) -> None:
    """Makes Model `name` (from `body`) after someone else made a ModelVersion under the name its
    first training needs (`<name>-v1`, not owned by it): every pass of that Model is refused."""
    from modelops_api import contract

    squatter = {
        "apiVersion": f"{contract.GROUP}/{contract.VERSION}",
        "kind": "ModelVersion",
        "metadata": {"name": f"{name}-v1", "namespace": namespace},
        "spec": {"model": name, "reason": "initial", "specHash": "sha256:" + "0" * 64,
                 "training": body["spec"]["training"]},
    }  # fmt: skip
    custom.create_namespaced_custom_object(
        contract.GROUP, contract.VERSION, namespace, "modelversions", squatter
    )
    model = {**body, "metadata": {"name": name, "namespace": namespace}}
    custom.create_namespaced_custom_object(
        contract.GROUP, contract.VERSION, namespace, "models", model
    )
