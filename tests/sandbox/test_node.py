"""What only a real node proves: memory limits enforced, a kubelet restart survived, the images'
own defaults running as a pod runs them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelops_sandbox.cluster import Cluster
from modelops_sandbox.demo import Traffic, demo_model
from modelops_sandbox.images import ProjectImage
from modelops_sandbox.sandbox import Sandbox, wait_for

pytestmark = pytest.mark.e2e

RESTRICTED = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


@pytest.fixture(scope="module")
def sandbox(node_cluster: Cluster) -> Iterator[Sandbox]:
    """The artifact store is the node's claim here: the tests look at its files on the host."""
    with Sandbox(cluster=node_cluster, namespace="node-tests", artifacts="pvc") as s:
        yield s


def apply(sandbox: Sandbox, namespace: str, body: dict[str, Any]) -> None:
    manifest = sandbox.directory / f"{namespace}-{body['kind']}-{body['metadata']['name']}.json"
    manifest.write_text(json.dumps(body))
    sandbox.kubectl("apply", "-n", namespace, "-f", str(manifest))


def iris(replicas: int = 1, **training: Any) -> dict[str, Any]:
    body = demo_model()
    body["spec"]["serving"]["replicas"] = replicas
    body["spec"]["training"].update(training)
    return body


def test_a_training_over_its_memory_limit_is_oomkilled_and_reported(sandbox: Sandbox) -> None:
    ns = "oom"
    sandbox.create_namespace(ns)
    limits = {"memory": "48Mi"}
    apply(sandbox, ns, iris(resources={"requests": limits, "limits": limits}))

    def failed() -> dict[str, Any] | None:
        status = sandbox.get("modelversion", "iris-v1", ns).get("status") or {}
        return status if status.get("phase") == "Failed" else None

    status = wait_for(failed, 180, "the training to fail")
    assert status["reason"] == "OOMKilled" and "48Mi" in status["message"]
    job_pods = sandbox.kubectl(
        "get", "pods", "-n", ns, "-l", "batch.kubernetes.io/job-name=iris-v1", "-o", "json"
    )
    terminated = json.loads(job_pods)["items"][0]["status"]["containerStatuses"][0]["state"][
        "terminated"
    ]
    assert (terminated["reason"], terminated["exitCode"]) == ("OOMKilled", 137)
    model = sandbox.get("model", "iris", ns)["status"]
    assert model.get("stableVersion") is None
    trained = next(c for c in model["conditions"] if c["type"] == "Trained")
    assert trained["status"] == "False" and "OOMKilled" in trained["message"]


def test_serving_goes_on_while_the_kubelet_restarts(sandbox: Sandbox) -> None:
    ns = "restart"
    sandbox.create_namespace(ns)
    apply(sandbox, ns, iris())
    wait_for(
        lambda: (sandbox.get("model", "iris", ns).get("status") or {}).get("phase") == "Serving",
        240,
        "iris serving",
    )
    before = sandbox.serving_pods("iris", ns)
    traffic = Traffic(sandbox, namespace=ns)
    traffic.feedback = False
    cluster = sandbox.cluster
    assert cluster is not None
    cluster.stop_kubelet()
    try:
        answered = traffic.send(20)  # through the Service: kube-proxy and the containers go on
        assert answered["requests"] == 20 and answered["failed"] == answered["lost"] == 0
    finally:
        cluster.start_kubelet()
    # The same pods, never restarted; the node's agent back in charge of them (logs, exec).
    after = sandbox.serving_pods("iris", ns)
    assert [p["name"] for p in after] == [p["name"] for p in before]
    pod = json.loads(sandbox.kubectl("get", "pod", "-n", ns, after[0]["name"], "-o", "json"))
    assert pod["status"]["containerStatuses"][0]["restartCount"] == 0
    assert sandbox.kubectl("exec", "-n", ns, after[0]["name"], "--", "id", "-u").strip() == "65532"
    # A restarted kubelet probes readiness afresh, so the Model may show Deploying for one
    # readiness period; then it is Serving again, with the same pods.
    wait_for(
        lambda: (sandbox.get("model", "iris", ns).get("status") or {}).get("phase") == "Serving",
        60,
        "iris serving again",
    )
    assert [p["name"] for p in sandbox.serving_pods("iris", ns)] == [p["name"] for p in before]
    assert traffic.send(20)["failed"] == 0


def pod(name: str, image: str, **container: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "main",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "securityContext": RESTRICTED,
                    **container,
                }
            ],
        },
    }


def test_the_images_run_their_own_defaults(sandbox: Sandbox) -> None:
    """What the Dockerfiles name, run as a pod runs it: the runtime image's entrypoint and
    command, its user and the directories the operator mounts over; the operator image's default
    command, whose liveness endpoint answers on the port the image exposes."""
    ns = sandbox.namespace
    runtime, operator = ProjectImage("runtime").reference, ProjectImage("operator").reference
    apply(sandbox, ns, pod("runtime-defaults", runtime))
    script = "id -u; stat -c '%u %n' /home/bentoml /models; echo $BENTOML_HOME; bentoml --version"
    apply(sandbox, ns, pod("runtime-paths", runtime, command=["sh", "-c", script]))
    probe = {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1}
    operator_pod = pod("operator-defaults", operator, readinessProbe=probe)
    operator_pod["spec"]["automountServiceAccountToken"] = True  # in-cluster credentials
    apply(sandbox, ns, operator_pod)

    def phase(name: str) -> str:
        return str(sandbox.get("pod", name).get("status", {}).get("phase", ""))

    wait_for(lambda: phase("runtime-defaults") == "Succeeded", 60, "modelops --help")
    shown = sandbox.kubectl("logs", "-n", ns, "runtime-defaults")
    assert "Usage: modelops" in shown and "status" in shown, shown
    wait_for(lambda: phase("runtime-paths") == "Succeeded", 60, "the runtime's paths")
    lines = sandbox.kubectl("logs", "-n", ns, "runtime-paths").splitlines()
    assert lines[:4] == ["65532", "65532 /home/bentoml", "65532 /models", "/home/bentoml"]
    assert "bentoml" in lines[4].lower()

    def ready() -> bool:
        conditions = sandbox.get("pod", "operator-defaults").get("status", {}).get("conditions")
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions or [])

    wait_for(ready, 90, "the operator image's default command to serve its liveness")
    sandbox.kubectl("delete", "pods", "-n", ns, "--all", "--grace-period=1")


def host_path(sandbox: Sandbox, namespace: str, uri: str) -> Path:
    """Where the node keeps `uri`, a file:///models/... path on the namespace's artifact claim."""
    claim = json.loads(
        sandbox.kubectl("get", "pvc", "modelops-artifacts", "-n", namespace, "-o", "json")
    )
    volume = sandbox.get("pv", claim["spec"]["volumeName"], "")
    return Path(volume["spec"]["hostPath"]["path"]) / uri.removeprefix("file:///models/")


def test_a_deleted_models_archives_leave_the_store(sandbox: Sandbox) -> None:
    """Training writes to the Model's own directory (namespace, then UID); deleting the Model
    runs the runtime image's cleanup Job, which removes that directory from the claim."""
    ns = "store"
    sandbox.create_namespace(ns)
    apply(sandbox, ns, iris())

    def trained() -> dict[str, Any] | None:
        status = sandbox.get("modelversion", "iris-v1", ns).get("status") or {}
        return status if status.get("phase") in ("Succeeded", "Failed") else None

    status = wait_for(trained, 240, "iris-v1 trained")
    uid = sandbox.get("model", "iris", ns)["metadata"]["uid"]
    assert status["artifact"] == f"file:///models/{ns}/{uid}/iris/iris-v1.bentomodel", status
    directory = host_path(sandbox, ns, f"file:///models/{ns}/{uid}")
    assert (directory / "iris" / "iris-v1.bentomodel").is_file()

    sandbox.kubectl("delete", "model", "iris", "-n", ns, "--wait=true")

    def cleaned() -> dict[str, Any] | None:
        jobs = json.loads(
            sandbox.kubectl(
                "get", "jobs", "-n", ns, "-l", "app.kubernetes.io/component=cleanup", "-o", "json"
            )
        )["items"]
        done = [j for j in jobs if (j.get("status") or {}).get("succeeded")]
        return done[0] if done else None

    job = wait_for(cleaned, 180, "the cleanup Job to succeed")
    assert not directory.exists()
    assert "ownerReferences" not in job["metadata"]


def test_an_evicted_training_is_retried_not_failed(sandbox: Sandbox) -> None:
    """A training pod evicted through the Eviction API (as a node drain does) is replaced by the
    Job without counting as a failure: the version still trains (backoffLimit is 0)."""
    ns = "evict"
    sandbox.create_namespace(ns)
    body = iris(
        dataset={"uri": "synthetic:classification?rows=1000000&features=20", "target": "target"},
        estimator={"class": "sklearn.linear_model.LogisticRegression", "params": {}},
        validation={"testSize": 0.2, "randomState": 42},
        resources={"limits": {"memory": "3Gi"}},
    )
    apply(sandbox, ns, body)
    selector = "batch.kubernetes.io/job-name=iris-v1"

    def running_pod() -> str | None:
        pods = json.loads(sandbox.kubectl("get", "pods", "-n", ns, "-l", selector, "-o", "json"))
        running = [p for p in pods["items"] if p["status"].get("phase") == "Running"]
        return running[0]["metadata"]["name"] if running else None

    first = wait_for(running_pod, 180, "the training pod to run")
    eviction = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": first, "namespace": ns},
    }
    manifest = sandbox.directory / "eviction.json"
    manifest.write_text(json.dumps(eviction))
    sandbox.kubectl(
        "create", "--raw", f"/api/v1/namespaces/{ns}/pods/{first}/eviction", "-f", str(manifest)
    )

    def finished() -> dict[str, Any] | None:
        status = sandbox.get("modelversion", "iris-v1", ns).get("status") or {}
        return status if status.get("phase") in ("Succeeded", "Rejected", "Failed") else None

    status = wait_for(finished, 300, "iris-v1 to finish after the eviction")
    pods = json.loads(sandbox.kubectl("get", "pods", "-n", ns, "-l", selector, "-o", "json"))
    seen = [
        (p["metadata"]["name"], p["metadata"]["creationTimestamp"], p["status"].get("phase"),
         [c.get("type") for c in p["status"].get("conditions") or []],
         [cs.get("state") for cs in p["status"].get("containerStatuses") or []])
        for p in pods["items"]
    ]  # fmt: skip
    if status["phase"] not in ("Succeeded", "Rejected"):
        print("PODS", json.dumps(seen, indent=1))
        print("JOB", json.dumps(sandbox.get("job", "iris-v1", ns).get("status"), indent=1))
        print(sandbox.operator_log(80))
    assert status["phase"] in ("Succeeded", "Rejected"), status
    job = sandbox.get("job", "iris-v1", ns)
    assert job["status"].get("failed", 0) == 0 and job["status"].get("succeeded") == 1, job
    pods = json.loads(sandbox.kubectl("get", "pods", "-n", ns, "-l", selector, "-o", "json"))
    done = [p["metadata"]["name"] for p in pods["items"] if p["status"]["phase"] == "Succeeded"]
    assert done and first not in done  # a replacement trained: the evicted pod did not finish
