"""Helpers the tests share: waiting for a condition, and acting as the kubelet where none runs.

The integration tier has a real control plane but no node: where a test needs a Pod to have run,
it writes the Pod's status exactly as a kubelet would (phase, container states, the termination
message, readiness). Nothing else is faked.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client

from modelops_sandbox.controlplane import free_port

T = TypeVar("T")


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


def training_result(model: str, version: str, phase: str = "Succeeded", **fields: Any) -> str:
    """A termination message as `modelops train` writes it (docs/runtime-contract.md)."""
    result: dict[str, Any] = {
        "phase": phase,
        "reason": "Trained",
        "message": "trained",
        "model": model,
        "version": version,
        "tag": f"{model}:{version}",
        "artifact": f"file:///models/{model}/{version}.bentomodel",
        "metrics": {"accuracy": 0.97, "f1_macro": 0.96},
    }
    result.update(fields)
    return json.dumps(result)


class OperatorProcess:
    """`modelops operator` as a subprocess, watching the given namespaces (globs allowed)."""

    def __init__(
        self,
        kubeconfig: Path,
        namespaces: list[str],
        log: Path,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.kubeconfig, self.namespaces, self.log = kubeconfig, namespaces, log
        self.extra_env = dict(extra_env or {})
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        args = [
            sys.executable,
            "-m",
            "modelops_operator.cli",
            "operator",
            "--liveness",
            f"http://127.0.0.1:{free_port()}/healthz",
        ]
        for namespace in self.namespaces:
            args += ["--namespace", namespace]
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), **self.extra_env}
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    def kill(self) -> None:
        """Stops it the hard way, as a node failure or an OOM kill would."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
