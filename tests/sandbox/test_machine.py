"""A real node changes the machine (kernel settings, iptables, mounts, links, cgroups, files):
after a stop, and after a run killed with SIGKILL once the next one has started, the machine is
as it was. These tests stop the session's node first and take the machine to themselves."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import Node

from modelops_sandbox import machine
from modelops_sandbox.cluster import RUN_DIR, Cluster

pytestmark = pytest.mark.e2e

WEB = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      securityContext: {runAsNonRoot: true, runAsUser: 65532}
      containers:
        - name: web
          image: docker.io/modelops/runtime:0.1.0
          imagePullPolicy: Never
          command: [python, -m, http.server, "8000", --directory, /tmp]
          volumeMounts: [{name: tmp, mountPath: /tmp}]
          readinessProbe: {httpGet: {path: /, port: 8000}, periodSeconds: 1}
      volumes: [{name: tmp, emptyDir: {}}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8000}]
"""


@pytest.fixture
def idle_machine(node: Node) -> Iterator[dict[str, Any]]:
    """The machine with no node of this project on it; its snapshot."""
    node.release()
    yield machine.snapshot()


def test_a_stopped_node_leaves_the_machine_as_it_was(
    idle_machine: dict[str, Any], tmp_path: Path
) -> None:
    cluster = Cluster().start()
    try:
        manifest = tmp_path / "web.yaml"
        manifest.write_text(WEB)
        cluster.kubectl("apply", "-f", str(manifest))
        cluster.kubectl("rollout", "status", "deployment/web", "--timeout=120s")
        during = machine.snapshot()
        changed = machine.differences(idle_machine, during)
        # What a running node changes, so that the comparison below has something to miss.
        for part in ("links: + modelops0", "mounts: +", "cgroups: +", "iptables: +"):
            assert any(line.startswith(part) for line in changed), (part, changed)
    finally:
        cluster.stop()
    assert machine.differences(idle_machine, machine.snapshot()) == []


def test_a_killed_demo_is_cleaned_up_by_the_next_start(idle_machine: dict[str, Any]) -> None:
    """`make demo` killed with SIGKILL in the middle of the loop: nothing of it stops cleanly
    (the shims and containers outlive it); the next node's start puts the machine back."""
    demo = subprocess.Popen(
        [sys.executable, "-m", "modelops_sandbox.demo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    seen: list[str] = []
    try:
        assert demo.stdout is not None
        deadline = time.monotonic() + 300
        for line in demo.stdout:
            seen.append(line)
            if "model Training" in line or "model Deploying" in line or time.monotonic() > deadline:
                break
        assert any("model " in line for line in seen), "".join(seen[-30:])
        time.sleep(3)  # a training pod running in its container
    finally:
        os.killpg(demo.pid, signal.SIGKILL)
        demo.wait()
    time.sleep(1)
    left = machine.differences(idle_machine, machine.snapshot())
    assert any(line.startswith("links: + modelops0") for line in left), left
    assert RUN_DIR.exists()

    with machine.claim(RUN_DIR, lambda line: None):  # what the next start does first
        pass
    assert machine.differences(idle_machine, machine.snapshot()) == []
