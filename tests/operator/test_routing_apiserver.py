"""The Gateway API traffic router against the real control plane, with the Gateway API CRDs of
the pinned version installed (modelops_sandbox.gateway_api): the API server accepts the HTTPRoute
the operator writes, the route's weights follow the canary's step (here moved by editing the
steps, since a step forward needs a passing analysis of real traffic: tests/loop covers that on
the real node), a promotion sends everything back to stable, and the garbage collector deletes
the route with its Model. The Model's CRD validates the router's fields and its canary bound.

No Gateway or gateway controller runs here: the route is accepted and stays unattached, which is
all the operator's part needs. As in test_operator.py, the tests play the kubelet.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from support import OperatorProcess, eventually
from test_operator import GROUP, VERSION, Cluster, iris, with_estimators

from modelops_sandbox import gateway_api
from modelops_sandbox.controlplane import ControlPlane

pytestmark = pytest.mark.integration

GATEWAY = {"gateway": {"name": "modelops", "namespace": "modelops-gateway", "sectionName": "http"}}
ROUTES = ("gateway.networking.k8s.io", "v1", "httproutes")


@pytest.fixture(scope="module")
def gateway_crds(control_plane: ControlPlane) -> list[str]:
    return gateway_api.install_crds(control_plane.kubectl, control_plane.kubeconfig)


@pytest.fixture(scope="module")
def router_operator(
    control_plane: ControlPlane,
    crds: Path,
    gateway_crds: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    process = OperatorProcess(control_plane.kubeconfig, ["rt-*"], log).start()
    yield process
    process.stop()
    print(process.tail())


@pytest.fixture
def cluster(
    kube_api: client.ApiClient,
    namespace_factory: Callable[[str], str],
    router_operator: OperatorProcess,
) -> Cluster:
    return Cluster(kube_api, namespace_factory("rt-"))


def route(cluster: Cluster) -> dict[str, Any] | None:
    try:
        found = cluster.custom.get_namespaced_custom_object(
            *ROUTES[:2], cluster.ns, ROUTES[2], "iris"
        )
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    return dict(found)


def env(cluster: Cluster, deployment: str) -> dict[str, str]:
    found = cluster.deployment(deployment)
    return {e.name: e.value for e in found.spec.template.spec.containers[0].env} if found else {}


def weights(cluster: Cluster) -> list[tuple[str, int]]:
    found = route(cluster)
    if found is None:
        return []
    return [(b["name"], b["weight"]) for b in found["spec"]["rules"][0]["backendRefs"]]


def gateway_iris(steps: list[int]) -> dict[str, Any]:
    return iris(
        canary={"steps": steps, "interval": "1m", "threshold": 2, "progressDeadline": "15m"},
        traffic=copy.deepcopy(GATEWAY),
    )


def test_the_operator_routes_the_canary_through_the_gateway_api(cluster: Cluster) -> None:
    body = gateway_iris([5, 25, 50])
    cluster.apply_model(body)
    cluster.finish_training("iris", "iris-v1")
    eventually(lambda: cluster.deployment("iris-stable"))
    cluster.serve_ready("iris-stable")

    eventually(lambda: weights(cluster) == [("iris-stable", 100)])
    accepted = route(cluster)
    assert accepted is not None
    assert accepted["spec"]["hostnames"] == [f"iris.{cluster.ns}.modelops.local"]
    assert accepted["spec"]["parentRefs"] == [
        {
            "group": "gateway.networking.k8s.io",
            "kind": "Gateway",
            "name": "modelops",
            "namespace": "modelops-gateway",
            "sectionName": "http",
        }
    ]
    owner = accepted["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("Model", "iris")
    status = eventually(lambda: (s := cluster.model("iris").get("status", {})).get("url") and s)
    assert status["url"] == f"http://iris.{cluster.ns}.modelops.local"
    for track in ("stable", "canary"):
        service = cluster.core.read_namespaced_service(f"iris-{track}", cluster.ns)
        assert service.spec.selector["modelops.dev/track"] == track

    # A new version: its canary gets the step's 5% once its pod is ready, from one pod.
    cluster.apply_model(with_estimators(body, 5))
    cluster.finish_training("iris", "iris-v2")
    eventually(lambda: cluster.deployment("iris-canary"))
    assert cluster.deployment("iris-canary").spec.replicas == 1
    cluster.serve_ready("iris-canary")
    eventually(lambda: weights(cluster) == [("iris-stable", 95), ("iris-canary", 5)])
    assert cluster.model("iris")["status"]["canary"]["weight"] == 5

    # The step's share moves the route (steps edited: the canary's first step is now 25%).
    cluster.apply_model(with_estimators(gateway_iris([25, 50]), 5))
    eventually(lambda: weights(cluster) == [("iris-stable", 75), ("iris-canary", 25)])
    assert cluster.model("iris")["status"]["canary"]["weight"] == 25
    assert cluster.deployment("iris-stable").spec.replicas == 2

    # Promoted by hand: the stable Deployment rolls iris-v2 out while the canary keeps its share;
    # once it serves with every replica, everything goes to stable and the canary Deployment goes.
    cluster.custom.patch_namespaced_custom_object(
        GROUP, VERSION, cluster.ns, "models", "iris",
        {"metadata": {"annotations": {"modelops.dev/canary": f"promote/{uuid.uuid4().hex[:8]}"}}},
    )  # fmt: skip
    eventually(lambda: cluster.model("iris")["status"].get("stableVersion") == "iris-v2")
    eventually(lambda: env(cluster, "iris-stable")["MODELOPS_VERSION"] == "iris-v2")
    assert weights(cluster) == [("iris-stable", 75), ("iris-canary", 25)]
    assert cluster.deployment("iris-canary") is not None
    cluster.serve_ready("iris-stable")
    eventually(lambda: weights(cluster) == [("iris-stable", 100)])
    eventually(lambda: cluster.deployment("iris-canary") is None)

    # The route belongs to the Model: the garbage collector takes it with the Model.
    cluster.custom.delete_namespaced_custom_object(GROUP, VERSION, cluster.ns, "models", "iris")
    eventually(lambda: route(cluster) is None, timeout=60)


def test_leaving_the_router_deletes_the_route(cluster: Cluster) -> None:
    body = gateway_iris([10, 50])
    cluster.apply_model(body)
    cluster.finish_training("iris", "iris-v1")
    eventually(lambda: route(cluster))
    plain = copy.deepcopy(body)
    del plain["spec"]["serving"]["traffic"]
    cluster.apply_model(plain)
    eventually(lambda: route(cluster) is None)
    eventually(lambda: "url" not in cluster.model("iris").get("status", {}))


def _dry_run(cluster: Cluster, serving: dict[str, Any]) -> None:
    body = iris(**serving)
    cluster.custom.create_namespaced_custom_object(
        GROUP, VERSION, cluster.ns, "models", body, dry_run="All"
    )


def test_the_crd_bounds_the_canary_by_the_router_and_checks_the_hostname(
    cluster: Cluster,
) -> None:
    steps = {"steps": [5, 25, 50, 99]}
    _dry_run(cluster, {"replicas": 100, "canary": steps, "traffic": GATEWAY})
    with pytest.raises(ApiException) as refused:
        _dry_run(cluster, {"replicas": 100, "canary": steps})
    assert refused.value.status == 422 and "more than 100 pods" in str(refused.value.body)
    bad_host = {"gateway": {"name": "modelops"}, "hostname": "Iris_Model"}
    with pytest.raises(ApiException) as refused:
        _dry_run(cluster, {"traffic": bad_host})
    assert refused.value.status == 422 and "hostname" in str(refused.value.body)
