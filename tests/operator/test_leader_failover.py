"""Two operator processes with leader election against the real control plane: one leads, the other
stands by, and killing the leader mid-canary hands over within about a lease duration, with no
second version, Job or canary step.

Short durations keep it fast: a 4 s Lease, renewed within 2 s, tried every 0.5 s (the chart uses
client-go's 15/10/2). The canary's analysis is a custom check against a stand-in Prometheus that
answers every query with 0, so the canary passes each step on its own clock (10 s per step); the
test plays the kubelet for the training pods, as test_operator.py does.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from support import OperatorProcess, eventually, finish_pod, store_of, training_result

from modelops_sandbox.controlplane import ControlPlane

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
GROUP, VERSION = "modelops.dev", "v1alpha1"
LEASE = "modelops"
DURATION, RENEW, RETRY = 4, 2.0, 0.5


class _Answer(http.server.BaseHTTPRequestHandler):
    """Prometheus, for a custom check: every instant query is one sample of value 0."""

    def _answer(self) -> None:
        body = json.dumps(
            {
                "status": "success",
                "data": {
                    "resultType": "vector",
                    "result": [{"metric": {}, "value": [time.time(), "0"]}],
                },
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def prometheus() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


class World:
    """The namespace of the Models and of the Lease, as the tests read and change it."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.ns = namespace
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.leases = client.CoordinationV1Api(api)

    def lease(self) -> Any:
        try:
            return self.leases.read_namespaced_lease(LEASE, self.ns)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def holder(self) -> str:
        lease = self.lease()
        return (lease.spec.holder_identity or "") if lease is not None else ""

    def apply_model(self, body: dict[str, Any]) -> None:
        try:
            current = self.model()
        except ApiException as error:
            if error.status != 404:
                raise
            self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, "models", body)
            return
        meta = {**body["metadata"], "resourceVersion": current["metadata"]["resourceVersion"]}
        self.custom.replace_namespaced_custom_object(
            GROUP, VERSION, self.ns, "models", "iris", {**body, "metadata": meta}
        )

    def model(self) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, "models", "iris")

    def canary(self) -> dict[str, Any]:
        return dict(self.model().get("status", {}).get("canary") or {})

    def versions(self) -> list[str]:
        items = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.ns, "modelversions")
        return sorted(v["metadata"]["name"] for v in items["items"])

    def jobs(self) -> list[str]:
        return sorted(j.metadata.name for j in self.batch.list_namespaced_job(self.ns).items)

    def finish_training(self, version: str) -> None:
        def pod() -> Any:
            pods = self.core.list_namespaced_pod(
                self.ns, label_selector=f"batch.kubernetes.io/job-name={version}"
            ).items
            return pods[0] if pods else None

        found = eventually(pod)
        result = training_result("iris", version, store=store_of(found))
        finish_pod(self.core, self.ns, found.metadata.name, "train", 0, result)

    def exists(self, read: Callable[[str, str], Any], name: str) -> bool:
        try:
            read(name, self.ns)
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        return True

    def reasons(self) -> list[str]:
        events = self.core.list_namespaced_event(
            self.ns, field_selector="involvedObject.name=iris,involvedObject.kind=Model"
        ).items
        return [e.reason for e in events]


def iris(estimators: int) -> dict[str, Any]:
    body = yaml.safe_load((REPO / "examples" / "iris.yaml").read_text())
    spec = body["spec"]
    spec["training"]["estimator"]["params"]["n_estimators"] = estimators
    spec["serving"]["canary"] = {
        "steps": [10, 50],
        "interval": "10s",
        "threshold": 2,
        "progressDeadline": "10m",
    }
    spec["monitoring"] = {
        "interval": "10s",
        "checks": {"custom": [{"name": "up", "query": "vector(0)", "max": 1}]},
    }
    return dict(body)


def test_one_of_two_replicas_acts_and_the_other_takes_over_mid_canary(
    control_plane: ControlPlane,
    crds: Path,
    kube_api: client.ApiClient,
    namespace_factory: Callable[[str], str],
    prometheus: str,
    tmp_path: Path,
) -> None:
    ns = namespace_factory("lead-")
    world = World(kube_api, ns)
    env = {
        "MODELOPS_LEADER_ELECTION": "true",
        "MODELOPS_LEADER_ELECTION_NAMESPACE": ns,
        "MODELOPS_LEADER_ELECTION_LEASE": LEASE,
        "MODELOPS_LEADER_ELECTION_LEASE_SECONDS": str(DURATION),
        "MODELOPS_LEADER_ELECTION_RENEW_SECONDS": str(RENEW),
        "MODELOPS_LEADER_ELECTION_RETRY_SECONDS": str(RETRY),
        "MODELOPS_PROMETHEUS_URL": prometheus,
        "MODELOPS_RESYNC_SECONDS": "3600",  # what happens comes from events and the election
    }
    operators = {
        name: OperatorProcess(
            control_plane.kubeconfig, [ns], tmp_path / f"{name}.log", {**env, "POD_NAME": name}
        )
        for name in ("op-a", "op-b")
    }
    try:
        for process in operators.values():  # both at once: they race for the new Lease
            process.start()
        for process in operators.values():
            process.wait_ready()
        holder = eventually(world.holder)
        leader_name = holder.split("_")[0]
        (standby_name,) = set(operators) - {leader_name}
        leader, standby = operators[leader_name], operators[standby_name]

        # One holds the Lease and keeps it; the other stands by.
        time.sleep(4 * RETRY)
        lease = world.lease()
        assert (lease.spec.holder_identity, lease.spec.lease_transitions) == (holder, 0)
        assert lease.spec.lease_duration_seconds == DURATION

        # The leader trains v1, serves it, trains v2 and starts its canary.
        world.apply_model(iris(100))
        eventually(lambda: world.jobs() == ["iris-v1"])
        world.finish_training("iris-v1")
        eventually(lambda: world.exists(world.apps.read_namespaced_deployment, "iris-stable"))
        world.apply_model(iris(5))
        eventually(lambda: world.jobs() == ["iris-v1", "iris-v2"])
        world.finish_training("iris-v2")
        before = eventually(world.canary)
        assert (before["version"], before["step"]) == ("iris-v2", 0)
        eventually(lambda: world.exists(world.apps.read_namespaced_deployment, "iris-canary"))
        assert "standing by" in standby.tail(400) and "acting:" not in standby.tail(400)
        assert "acting: " in leader.tail(400)

        # Kill -9 the leader mid-canary, and make a change a leader would put right at once.
        leader.kill()
        killed, killed_at = time.monotonic(), time.time()
        world.core.delete_namespaced_service("iris", ns)
        while not world.holder().startswith(f"{standby_name}_"):
            # Nobody acts while the dead leader's Lease lasts: the Service stays deleted.
            assert not world.exists(world.core.read_namespaced_service, "iris")
            assert time.monotonic() - killed < 3 * DURATION, "no takeover"
            time.sleep(0.05)
        failover = time.monotonic() - killed
        eventually(lambda: world.exists(world.core.read_namespaced_service, "iris"), timeout=30)
        first_action = time.monotonic() - killed
        print(
            f"\nfailover: Lease taken over {failover:.2f}s after kill -9 (lease {DURATION}s, "
            f"retry {RETRY}s); first action (the Service put back) after {first_action:.2f}s"
        )
        # The standby saw the last renewal at most a retry period before the kill, and tries every
        # retry period: the takeover comes one lease duration later, give or take that.
        assert DURATION - 2 * RETRY <= failover <= DURATION + 2 * RETRY + 1.0
        assert world.lease().spec.lease_transitions == 1

        # The same canary goes on from its status: its next step, then its promotion.
        advanced = eventually(lambda: (c := world.canary()) and c["step"] == 1 and c, timeout=60)
        assert advanced["startedAt"] == before["startedAt"]
        assert advanced["stepStartedAt"] > killed_at  # stepped by the new leader
        promoted = eventually(
            lambda: (s := world.model()["status"]).get("stableVersion") == "iris-v2" and s,
            timeout=60,
        )
        assert not promoted.get("canary")
        # Events are posted by a thread of their own after the status write: waited for.
        reasons = eventually(lambda: (r := world.reasons()).count("Promoted") and r, timeout=30)
        for reason in ("CanaryStarted", "CanaryAdvanced", "Promoted"):
            assert reasons.count(reason) == 1, (reason, reasons)
        # Nothing made twice: the versions and Jobs are the two trainings.
        assert world.versions() == ["iris-v1", "iris-v2"]
        assert world.jobs() == ["iris-v1", "iris-v2"]
        assert "acting: " in standby.tail(400)
    finally:
        for process in operators.values():
            process.stop()
            print(f"--- {process.log.name}\n{process.tail(40)}")
