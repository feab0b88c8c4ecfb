"""The loop end to end on the real node: the operator installed with its chart and running in its
pod, training Jobs and serving Deployments of the runtime image, the model's Service routed by
kube-proxy, a real Prometheus and the operator's real analysis.
"""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from support import Node

from modelops_sandbox import audit
from modelops_sandbox.cluster import Cluster
from modelops_sandbox.demo import Traffic, demo_model, live_accuracy
from modelops_sandbox.sandbox import OPERATOR_NAMESPACE, Sandbox, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def started() -> datetime.datetime:
    """When this module's sandbox began: what the audit log holds from before (an earlier
    sandbox's operator refused its Lease as its chart was uninstalled) is not this one's."""
    return datetime.datetime.now(datetime.UTC)


@pytest.fixture(scope="module")
def sandbox(node_cluster: Cluster, started: datetime.datetime) -> Iterator[Sandbox]:
    values = {"operator.resyncSeconds": "3600"}
    with Sandbox(cluster=node_cluster, scrape_interval="1s", operator_values=values) as s:
        yield s


def status(sandbox: Sandbox) -> dict[str, Any]:
    return dict(sandbox.get("model", "iris").get("status") or {})


def version(sandbox: Sandbox, name: str) -> dict[str, Any]:
    return sandbox.get("modelversion", name)


def condition(sandbox: Sandbox, kind: str) -> dict[str, Any]:
    return next((c for c in status(sandbox).get("conditions", []) if c["type"] == kind), {})


def firing(sandbox: Sandbox, **labels: str) -> list[dict[str, str]]:
    """The labels of the alerts firing in the sandbox's Prometheus (the chart's rules) that carry
    `labels`."""
    assert sandbox.prometheus is not None
    alerts = sandbox.prometheus.api("/api/v1/alerts")["alerts"]
    return [
        a["labels"]
        for a in alerts
        if a["state"] == "firing" and all(a["labels"].get(k) == v for k, v in labels.items())
    ]


def serving(sandbox: Sandbox, name: str) -> bool:
    s = status(sandbox)
    pods = sandbox.serving_pods("iris")
    return (
        s.get("stableVersion") == name
        and s.get("phase") == "Serving"
        and bool(pods)
        and all(p["version"] == name for p in pods)
    )


def test_train_serve_detect_drift_retrain_canary_promote_and_pin(
    sandbox: Sandbox, node: Node, started: datetime.datetime
) -> None:
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
    pod = json.loads(
        sandbox.kubectl(
            "get",
            "pods",
            "-n",
            sandbox.namespace,
            "-o",
            "json",
            "-l",
            "batch.kubernetes.io/job-name=iris-v1",
        )
    )["items"][0]
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
    logs = sandbox.kubectl("logs", "-n", sandbox.namespace, pod["metadata"]["name"])
    assert '"phase": "Succeeded"' in logs or '"phase":"Succeeded"' in logs, logs[-2000:]
    # In the S3 store, in the Model's own directory: namespace, then the Model's UID.
    uid = sandbox.get("Model", "iris")["metadata"]["uid"]
    archive = f"{sandbox.artifacts_uri}/{sandbox.namespace}/{uid}/iris/iris-v1.bentomodel"
    assert v1["artifact"] == archive
    assert sandbox.objectstore is not None
    assert sandbox.objectstore.filesystem().size(archive) > 0
    assert v1["metrics"]["accuracy"] >= 0.9 and v1["rows"]["raw"] == 150

    # Serve: two `bentoml serve` pods of the runtime image, Ready through /readyz.
    wait_for(lambda: serving(sandbox, "iris-v1"), 240, "iris-v1 serving")
    pods = sandbox.serving_pods("iris")
    assert len(pods) == 2
    assert condition(sandbox, "Ready")["status"] == "True"
    # The serving pod runs as uid 65532 on a read-only root: only its mounted paths are writable.
    write = "import sys; open(sys.argv[1], 'w').write('x')"
    exec_in = ("exec", "-n", sandbox.namespace, pods[0]["name"], "-c", "serve", "--")
    sandbox.kubectl(*exec_in, "python", "-c", write, "/tmp/written")
    refused = sandbox.kubectl_result(*exec_in, "python", "-c", write, "/opt/modelops/written")
    assert refused.returncode != 0 and "Read-only file system" in refused.stderr
    assert sandbox.kubectl(*exec_in, "id", "-u").strip() == "65532"

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

        # Drift: shifted inputs push PSI over its threshold; two analyses later, a retrain. Their
        # ground truth flows, and serving records the labelled rows in the store.
        traffic.shift = 1.5
        wait_for(lambda: version(sandbox, "iris-v2"), 240, "a retrain on drift")
        assert version(sandbox, "iris-v2")["spec"]["reason"] == "drift"
        drifted = condition(sandbox, "Drifted")
        assert drifted["status"] == "True" and "petal" in drifted["message"]  # a shifted feature
        assert status(sandbox)["monitoring"]["lastRetrain"]["reason"] == "drift"
        # The retrain learns from the dataset and the labelled production rows; v1 had none.
        sources = wait_for(
            lambda: version(sandbox, "iris-v2").get("status", {}).get("sources"), 300, "iris-v2"
        )
        assert sources["dataset"]["rows"] == 150 and sources["production"]["rows"] > 0, sources
        assert v1["sources"]["production"]["rows"] == 0

        # Canary: still shifted; the new version runs beside stable, then is promoted.
        canary = wait_for(lambda: status(sandbox).get("canary"), 240, "the canary")
        assert canary["version"] == "iris-v2" and status(sandbox)["stableVersion"] == "iris-v1"
        # The operator's own series, scraped off its pod as the chart's PodMonitor says.
        wait_for(
            lambda: sandbox.query(
                f'modelops_operator_model_canary_weight_percent{{namespace="{sandbox.namespace}",'
                'model="iris",version="iris-v2"}'
            ),
            30,
            "the canary's weight scraped from the operator",
        )
        tracks = wait_for(
            lambda: {p["track"] for p in sandbox.serving_pods("iris")} == {"stable", "canary"},
            120,
            "canary pods ready",
        )
        assert tracks
        # One Service, both tracks: kube-proxy spreads the requests over every ready pod.
        answered = dict(traffic.versions)
        wait_for(
            lambda: all(traffic.versions[v] > answered.get(v, 0) for v in ("iris-v1", "iris-v2")),
            60,
            "answers of both versions through the Service",
        )
        # On the shifted inputs, the version trained on them is the better one.
        def both_scored() -> dict[str, float] | None:
            accuracy = live_accuracy(sandbox, min_items=30)
            return accuracy if {"iris-v1", "iris-v2"} <= set(accuracy) else None

        both = wait_for(both_scored, 120, "live accuracy of both versions")
        assert both["iris-v2"] > both["iris-v1"] + 0.2, both
        wait_for(lambda: serving(sandbox, "iris-v2"), 300, "the canary promoted")
    finally:
        traffic.stop()
    assert traffic.counts["failed"] == 0  # no request was answered with an error
    assert traffic.counts["lost"] <= traffic.counts["requests"] / 100  # only pods going away

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

    # The operator did all of it under its chart's ServiceAccount, refused nothing by RBAC.
    time.sleep(2)  # the audit log is written in batches
    operator = f"system:serviceaccount:{OPERATOR_NAMESPACE}:"
    assert audit.denied(node.audit_log, operator, since=started) == []

    # The store's secret key is in its Secret only: never in a status, an Event or a pod's log.
    said = [
        sandbox.kubectl("get", "models,modelversions,events", "-n", sandbox.namespace, "-oyaml"),
        sandbox.operator_log(tail=-1),
        *(
            sandbox.kubectl_result("logs", "-n", sandbox.namespace, pod, "--all-containers").stdout
            for pod in sandbox.kubectl(
                "get", "pods", "-n", sandbox.namespace, "-o", "name"
            ).split()
        ),
    ]
    assert sandbox.objectstore.secret_key not in "".join(said)


def model_in(sandbox: Sandbox, namespace: str, name: str) -> dict[str, Any]:
    return dict(sandbox.get("model", name, namespace).get("status") or {})


def second_model(sandbox: Sandbox, namespace: str, **canary: Any) -> dict[str, Any]:
    """iris in a namespace of its own, serving iris-v1, monitored every 5 s."""
    sandbox.create_namespace(namespace)
    body = demo_model()
    body["spec"]["serving"]["replicas"] = 1
    body["spec"]["serving"]["canary"].update(interval="5s", steps=[50], **canary)
    body["spec"]["monitoring"].update(interval="5s")
    manifest = sandbox.directory / f"{namespace}.json"
    manifest.write_text(json.dumps(body))
    sandbox.kubectl("apply", "-n", namespace, "-f", str(manifest))
    wait_for(
        lambda: model_in(sandbox, namespace, "iris").get("phase") == "Serving",
        240,
        f"iris serving in {namespace}",
    )
    return body


def retrain_with(
    sandbox: Sandbox, namespace: str, body: dict[str, Any], estimator: dict[str, Any]
) -> None:
    """A new training spec (no quality gate): its version trains, passes, and starts a canary."""
    body["spec"]["training"]["estimator"] = estimator
    body["spec"]["training"]["validation"].pop("gates", None)
    manifest = sandbox.directory / f"{namespace}.json"
    manifest.write_text(json.dumps(body))
    sandbox.kubectl("apply", "-n", namespace, "-f", str(manifest))
    wait_for(
        lambda: (
            (model_in(sandbox, namespace, "iris").get("canary") or {}).get("version") == "iris-v2"
        ),
        240,
        f"the canary of iris-v2 in {namespace}",
    )


def test_a_canary_that_fails_live_accuracy_is_rolled_back(sandbox: Sandbox) -> None:
    """A stump passes training (no gate) but answers badly: its live accuracy, from feedback,
    fails the canary's analysis twice and the operator rolls it back by itself."""
    ns = "bad-canary"
    body = second_model(sandbox, ns)
    traffic = Traffic(sandbox, namespace=ns).start()
    try:
        retrain_with(
            sandbox,
            ns,
            body,
            {"class": "sklearn.tree.DecisionTreeClassifier", "params": {"max_depth": 1}},
        )
        wait_for(
            lambda: version_in(sandbox, ns, "iris-v2").get("phase") == "RolledBack",
            180,
            "the rollback of iris-v2",
        )
    finally:
        traffic.stop()
    status = model_in(sandbox, ns, "iris")
    assert status["stableVersion"] == "iris-v1" and status.get("canary") is None
    message = version_in(sandbox, ns, "iris-v2")["message"]
    assert "accuracy" in message and "threshold 2" in message
    wait_for(
        lambda: {p["version"] for p in sandbox.serving_pods("iris", ns)} == {"iris-v1"},
        60,
        "the canary pods gone",
    )
    # The chart's rollback alert fires for this Model, naming the failed check, from the counter
    # the operator's pod serves.
    alerts = wait_for(
        lambda: firing(sandbox, alertname="ModelopsCanaryRolledBack", namespace=ns),
        30,
        "ModelopsCanaryRolledBack",
    )
    assert [a["model"] for a in alerts] == ["iris"]
    assert "accuracy" in alerts[0]["check"].split(","), alerts
    # The first test's Model (drifted, retrained, promoted, pinned back: healthy) fires nothing,
    # though its series are there.
    if sandbox.get("model", "iris"):
        assert sandbox.query(
            f'modelops_operator_model_phase{{namespace="{sandbox.namespace}",model="iris",'
            'phase="Serving"} == 1'
        )
        assert firing(sandbox, namespace=sandbox.namespace) == []


def version_in(sandbox: Sandbox, namespace: str, name: str) -> dict[str, Any]:
    return dict(sandbox.get("modelversion", name, namespace).get("status") or {})


def test_a_prometheus_outage_neither_rolls_back_nor_promotes(sandbox: Sandbox) -> None:
    """With Prometheus gone, every analysis of the canary is inconclusive: it stays where it is,
    with no failed check, and the status says why. (Last in the module: Prometheus stays down.)"""
    ns = "outage"
    body = second_model(sandbox, ns, progressDeadline="10m")
    traffic = Traffic(sandbox, namespace=ns).start()
    try:
        assert sandbox.prometheus is not None
        sandbox.prometheus.stop()
        retrain_with(
            sandbox,
            ns,
            body,
            {
                "class": "sklearn.ensemble.RandomForestClassifier",
                "params": {"n_estimators": 20, "random_state": 1},
            },
        )

        def inconclusive() -> dict[str, Any] | None:
            canary = model_in(sandbox, ns, "iris").get("canary") or {}
            return canary if canary.get("reason") == "AnalysisInconclusive" else None

        first = wait_for(inconclusive, 120, "an inconclusive analysis")
        assert "unreachable" in first["message"] or "refused" in first["message"]
        time.sleep(20)  # four more intervals of 5 s without Prometheus
    finally:
        traffic.stop()
    status = model_in(sandbox, ns, "iris")
    canary = status["canary"]
    assert canary["version"] == "iris-v2" and canary["step"] == 0 and canary["failedChecks"] == 0
    assert status["stableVersion"] == "iris-v1" and status["phase"] == "Canary"
    assert version_in(sandbox, ns, "iris-v2")["phase"] == "Succeeded"
