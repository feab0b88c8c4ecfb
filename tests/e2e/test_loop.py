"""The loop end to end in the sandbox: real training Jobs, real serving pods, real Prometheus,
the operator's real analysis.

The node agent runs every pod as a local process (the one simulated part); the operator, the
control plane, `modelops train`, `bentoml serve` and Prometheus are the real programs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from modelops_sandbox.demo import Traffic, demo_model
from modelops_sandbox.sandbox import Sandbox, wait_for


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(scrape_interval="1s", operator_env={"MODELOPS_RESYNC_SECONDS": "3600"}) as s:
        yield s


def status(sandbox: Sandbox) -> dict[str, Any]:
    return dict(sandbox.get("model", "iris").get("status") or {})


def version(sandbox: Sandbox, name: str) -> dict[str, Any]:
    return sandbox.get("modelversion", name)


def condition(sandbox: Sandbox, kind: str) -> dict[str, Any]:
    return next((c for c in status(sandbox).get("conditions", []) if c["type"] == kind), {})


def serving(sandbox: Sandbox, name: str) -> bool:
    s = status(sandbox)
    pods = sandbox.serving_pods("iris")
    return (
        s.get("stableVersion") == name
        and s.get("phase") == "Serving"
        and bool(pods)
        and all(p["version"] == name for p in pods)
    )


def test_train_serve_detect_drift_retrain_canary_promote_and_pin(sandbox: Sandbox) -> None:
    manifest = sandbox.directory / "iris.json"
    manifest.write_text(json.dumps(demo_model()))
    sandbox.kubectl("apply", "-n", sandbox.namespace, "-f", str(manifest))

    # Train: a real `modelops train` in a Job; its result comes back through the pod's status.
    wait_for(
        lambda: version(sandbox, "iris-v1").get("status", {}).get("phase") == "Succeeded",
        240,
        "iris-v1 trained",
    )
    v1 = version(sandbox, "iris-v1")["status"]
    assert v1["artifact"] == "file:///models/iris/iris-v1.bentomodel"
    assert v1["metrics"]["accuracy"] >= 0.9 and v1["rows"]["raw"] == 150

    # Serve: two real `bentoml serve` pods on their own addresses, Ready through /readyz.
    wait_for(lambda: serving(sandbox, "iris-v1"), 240, "iris-v1 serving")
    assert len(sandbox.serving_pods("iris")) == 2
    assert condition(sandbox, "Ready")["status"] == "True"

    traffic = Traffic(sandbox).start()
    try:
        # Monitor: the operator's analysis reads the runtime's series back from Prometheus.
        wait_for(
            lambda: condition(sandbox, "Drifted").get("status") == "False",
            120,
            "a drift analysis within the reference",
        )
        checks = {c["check"]: c for c in status(sandbox)["monitoring"]["checks"]}
        assert checks["accuracy"]["outcome"] == "pass" and checks["errorRate"]["outcome"] == "pass"
        assert status(sandbox)["accuracy"] > 0.9  # live accuracy, from feedback

        # Drift: shifted inputs push PSI over its threshold; two analyses later, a retrain.
        traffic.shift, traffic.feedback = 1.5, False
        wait_for(lambda: version(sandbox, "iris-v2"), 240, "a retrain on drift")
        assert version(sandbox, "iris-v2")["spec"]["reason"] == "drift"
        assert condition(sandbox, "Drifted")["status"] == "True"
        assert status(sandbox)["monitoring"]["lastRetrain"]["reason"] == "drift"

        # Canary: inputs back to normal; the new version runs beside stable, then is promoted.
        traffic.shift, traffic.feedback = 0.0, True
        canary = wait_for(lambda: status(sandbox).get("canary"), 240, "the canary")
        assert canary["version"] == "iris-v2" and status(sandbox)["stableVersion"] == "iris-v1"
        tracks = wait_for(
            lambda: {p["track"] for p in sandbox.serving_pods("iris")} == {"stable", "canary"},
            120,
            "canary pods ready",
        )
        assert tracks
        wait_for(lambda: serving(sandbox, "iris-v2"), 300, "the canary promoted")
    finally:
        traffic.stop()
    assert traffic.counts["errors"] == 0

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
    for reason in ("TrainingStarted", "CanaryStarted", "Promoted", "DriftDetected"):
        assert reason in events
