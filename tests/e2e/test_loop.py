"""The loop end to end in the sandbox: real training Job, real serving pods, real Prometheus.

The node agent runs every pod as a local process (the one simulated part); the operator, the
control plane, `modelops train`, `bentoml serve` and Prometheus are the real programs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from modelops_sandbox.demo import prometheus_view, traffic
from modelops_sandbox.sandbox import REPO, Sandbox, wait_for


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(scrape_interval="1s", operator_env={"MODELOPS_RESYNC_SECONDS": "3600"}) as s:
        yield s


def status(sandbox: Sandbox) -> dict[str, Any]:
    return dict(sandbox.get("model", "iris").get("status") or {})


def version(sandbox: Sandbox, name: str) -> dict[str, Any]:
    return dict(sandbox.get("modelversion", name).get("status") or {})


def serving(sandbox: Sandbox, name: str) -> bool:
    s = status(sandbox)
    pods = sandbox.serving_pods("iris")
    return (
        s.get("stableVersion") == name
        and s.get("phase") == "Serving"
        and bool(pods)
        and all(p["version"] == name for p in pods)
    )


def test_train_serve_monitor_retrain_and_roll_back(sandbox: Sandbox) -> None:
    sandbox.kubectl("apply", "-n", sandbox.namespace, "-f", str(REPO / "examples" / "iris.yaml"))

    # Train: a real `modelops train` in a Job; its result comes back through the pod's status.
    wait_for(lambda: version(sandbox, "iris-v1").get("phase") == "Succeeded", 240, "iris-v1")
    v1 = version(sandbox, "iris-v1")
    assert v1["artifact"] == "file:///models/iris/iris-v1.bentomodel"
    assert v1["metrics"]["accuracy"] >= 0.9 and v1["rows"]["raw"] == 150

    # Serve: two real `bentoml serve` pods, each on its own address, Ready through /readyz.
    wait_for(lambda: serving(sandbox, "iris-v1"), 240, "iris-v1 serving")
    assert len(sandbox.serving_pods("iris")) == 2
    conditions = {c["type"]: c for c in status(sandbox)["conditions"]}
    assert conditions["Ready"]["status"] == "True"

    # Monitor: predictions and feedback reach Prometheus through pod discovery.
    outcome = traffic(sandbox, 20)
    assert outcome["rows"] == 100 and outcome["correct"] + outcome["incorrect"] == 100
    lines = wait_for(
        lambda: [x for x in prometheus_view(sandbox) if "live accuracy" in x],
        60,
        "feedback in Prometheus",
    )
    accuracy = float(lines[0].split(": ")[1].split()[0])
    assert accuracy == pytest.approx(outcome["correct"] / 100, abs=0.011)

    # Retrain by request: a new version trains and rolls out; the old one stays recorded.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "modelops_operator.cli",
            "retrain",
            "iris",
            "-n",
            sandbox.namespace,
            "--kubeconfig",
            str(sandbox.control_plane.kubeconfig),
        ],
        check=True,
    )
    wait_for(lambda: serving(sandbox, "iris-v2"), 240, "iris-v2 serving")
    assert (
        json.loads(
            sandbox.kubectl("get", "modelversion", "iris-v2", "-n", sandbox.namespace, "-o", "json")
        )["spec"]["reason"]
        == "manual"
    )

    # Roll back by pinning the first version.
    sandbox.kubectl(
        "patch",
        "model",
        "iris",
        "-n",
        sandbox.namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"serving": {"version": "iris-v1"}}}),
    )
    wait_for(lambda: serving(sandbox, "iris-v1"), 120, "rollback to iris-v1")
    events = sandbox.kubectl(
        "get", "events", "-n", sandbox.namespace, "--field-selector", "involvedObject.kind=Model"
    )
    assert "TrainingStarted" in events and "PhaseServing" in events
