"""The Gateway API traffic router, pure and pass by pass: the route's weights at each canary step
and without a canary, the canary's own replica rule, the default hostname, the spec's bounds in
either mode; then whole reconcile passes (tests/fake_kube.py, as test_reconcile_pass.py does):
the route follows the canary from its first ready pod through its steps to the promotion, sends
nothing to a canary before a canary pod is ready, and goes with its Services when the Model
leaves the router; the replica mode makes no request for it."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from test_reconcile_pass import (
    CANARY,
    MODEL,
    NS,
    PASSING,
    STABLE,
    World,
    iris,
    make_world,
    with_estimators,
)

from modelops_api import contract
from modelops_api.spec import ModelSpec, ServingSpec, SpecError, TrafficSpec, parse
from modelops_operator import routing
from modelops_operator.canary import at_step, split
from modelops_operator.canary import start as start_canary
from modelops_operator.rollout import handing_over
from modelops_operator.versions import VersionInfo

pytestmark = pytest.mark.unit

GATEWAY = {"gateway": {"name": "modelops", "namespace": "modelops-gateway", "sectionName": "http"}}
MODEL_BODY: dict[str, Any] = {
    "apiVersion": f"{contract.GROUP}/{contract.VERSION}",
    "kind": "Model",
    "metadata": {"name": "iris", "namespace": "ml", "uid": "u-1"},
}


def traffic(**fields: Any) -> TrafficSpec:
    return parse(TrafficSpec, {**copy.deepcopy(GATEWAY), **fields}, "traffic")


# --- pure builders ------------------------------------------------------------------------------


@pytest.mark.parametrize(("step", "expected"), [(5, (95, 5)), (25, (75, 25)), (50, (50, 50))])
def test_the_route_gives_the_canary_exactly_its_step(step: int, expected: tuple[int, int]) -> None:
    assert routing.weights(step) == expected
    route = routing.build_route(MODEL_BODY, traffic(), step)
    backends = route["spec"]["rules"][0]["backendRefs"]
    assert [(b["name"], b["weight"]) for b in backends] == [
        ("iris-stable", expected[0]),
        ("iris-canary", expected[1]),
    ]
    assert {b["port"] for b in backends} == {contract.SERVING_PORT}
    assert routing.canary_weight(route) == step


def test_a_route_without_a_canary_backend_has_no_canary_weight() -> None:
    assert routing.canary_weight(routing.build_route(MODEL_BODY, traffic(), None)) is None


@pytest.mark.parametrize(
    ("version", "rolling_out", "hands_over"),
    [("iris-v2", True, True), ("iris-v2", False, False), ("iris-v3", True, False)],
)
def test_a_promoted_canary_hands_over_only_while_the_stable_rolls_its_version_out(
    version: str, rolling_out: bool, hands_over: bool
) -> None:
    left = {"metadata": {"labels": {contract.LABEL_VERSION: version}}}
    stable = VersionInfo(name="iris-v2", index=2, spec_hash="h", reason="", phase="Succeeded")
    assert handing_over(left, stable, {"rolling_out": rolling_out}) is hands_over
    assert handing_over(None, stable, {"rolling_out": rolling_out}) is False
    stalled = {"rolling_out": True, "stalled": True}  # no room for the stable's new pods
    assert handing_over(left, stable, stalled) is False


def test_without_a_canary_everything_goes_to_stable() -> None:
    assert routing.weights(None) == (100, 0)
    backends = routing.build_route(MODEL_BODY, traffic(), None)["spec"]["rules"][0]["backendRefs"]
    assert [(b["name"], b["weight"]) for b in backends] == [("iris-stable", 100)]


def test_a_weight_outside_a_percentage_is_refused() -> None:
    with pytest.raises(ValueError, match="percentage"):
        routing.weights(101)


@pytest.mark.parametrize(
    ("stable", "step", "pods"),
    [(2, 5, 1), (2, 25, 1), (2, 50, 1), (2, 99, 2), (3, 50, 2), (10, 25, 3), (1, 1, 1),
     (100, 99, 99)],
)  # fmt: skip
def test_the_gateway_canary_runs_ceil_of_its_share_of_stable(
    stable: int, step: int, pods: int
) -> None:
    assert split(stable, step, gateway=True) == (pods, step)


def test_the_replica_router_keeps_its_ratio() -> None:
    # One canary pod beside two stable ones is a third of the traffic, whatever the step asks.
    assert split(2, 10) == (1, 33)
    assert split(2, 50) == (2, 50)


def test_a_gateway_canary_follows_the_spec_of_its_step() -> None:
    spec = parse(ModelSpec, {**iris()["spec"]}, "spec").serving.canary
    status = start_canary("iris-v2", 0.0, 2, spec, gateway=True)
    assert (status["weight"], status["replicas"]) == (10, 1)
    edited = spec.model_copy(update={"steps": (30, 60)})
    assert {k: at_step(status, edited, 4, True)[k] for k in ("weight", "replicas")} == {
        "weight": 30,
        "replicas": 2,
    }
    assert at_step(status, edited, 4, False) == status  # the replica router is left alone


def test_the_hostname_defaults_to_the_model_and_its_namespace() -> None:
    assert routing.hostname(MODEL_BODY, traffic()) == "iris.ml.modelops.local"
    assert routing.url(MODEL_BODY, traffic()) == "http://iris.ml.modelops.local"
    given = traffic(hostname="predict.example.com")
    assert routing.build_route(MODEL_BODY, given, None)["spec"]["hostnames"] == [
        "predict.example.com"
    ]


def test_the_route_attaches_to_the_gateway_and_belongs_to_the_model() -> None:
    route = routing.build_route(MODEL_BODY, traffic(), 10)
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert (route["kind"], route["metadata"]["name"]) == ("HTTPRoute", "iris")
    assert route["spec"]["parentRefs"] == [
        {
            "group": "gateway.networking.k8s.io",
            "kind": "Gateway",
            "name": "modelops",
            "namespace": "modelops-gateway",
            "sectionName": "http",
        }
    ]
    assert route["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    # Without a namespace the Gateway is the Model's neighbour; without a section, any listener.
    bare = parse(TrafficSpec, {"gateway": {"name": "gw"}}, "traffic")
    assert routing.build_route(MODEL_BODY, bare, None)["spec"]["parentRefs"] == [
        {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw", "namespace": "ml"}
    ]


def test_each_track_service_selects_its_tracks_pods() -> None:
    for track in routing.TRACKS:
        service = routing.build_track_service(MODEL_BODY, track)
        assert service["metadata"]["name"] == f"iris-{track}"
        assert service["spec"]["selector"] == {
            contract.LABEL_MODEL: "iris",
            contract.LABEL_COMPONENT: "serving",
            contract.LABEL_TRACK: track,
        }
        assert service["spec"]["ports"][0]["port"] == contract.SERVING_PORT


# --- the spec -----------------------------------------------------------------------------------


def serving(**fields: Any) -> ServingSpec:
    return parse(ServingSpec, fields, "spec.serving")


def test_gateway_steps_up_to_99_are_accepted_where_the_replica_ratio_refuses_them() -> None:
    steps = {"steps": [5, 25, 50, 99]}
    assert serving(replicas=100, canary=steps, traffic=GATEWAY).gateway
    with pytest.raises(SpecError, match="9900 canary pods"):
        serving(replicas=100, canary=steps)
    with pytest.raises(SpecError, match="198 canary pods"):
        serving(autoscaling={"minReplicas": 200, "maxReplicas": 300}, canary=steps, traffic=GATEWAY)


@pytest.mark.parametrize(
    "bad",
    [
        {"gateway": {"name": "modelops"}, "hostname": "Iris.example.com"},
        {"gateway": {"name": "modelops"}, "hostname": "iris_model.local"},
        {"gateway": {"name": "modelops"}, "hostname": "-iris.local"},
        {"gateway": {"name": ""}},
        {"gateway": {"name": "modelops", "namespace": "a.b"}},
        {"hostname": "iris.local"},  # a router needs its Gateway
        {"gateway": {"name": "modelops"}, "port": 80},
    ],
)
def test_bad_traffic_specs_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(SpecError):
        serving(traffic=bad)


# --- whole passes -------------------------------------------------------------------------------


def gateway_iris(steps: list[int], **serving_fields: Any) -> dict[str, Any]:
    return iris(
        canary={"steps": steps, "interval": "1m", "threshold": 2, "progressDeadline": "15m"},
        traffic=copy.deepcopy(GATEWAY),
        **serving_fields,
    )


def backends(world: World) -> list[tuple[str, int]]:
    route = world.kube.object("HTTPRoute", MODEL)
    assert route is not None
    return [(b["name"], b["weight"]) for b in route["spec"]["rules"][0]["backendRefs"]]


def test_the_route_follows_the_canary_through_its_steps_to_the_promotion() -> None:
    world = make_world()
    body = gateway_iris([5, 25, 50])
    world.serve_v1(body)
    assert backends(world) == [("iris-stable", 100)]
    assert world.status()["url"] == f"http://{MODEL}.{NS}.modelops.local"
    assert {"iris-stable", "iris-canary", MODEL} <= set(world.kube.names("Service"))
    world.quiet()

    world.kube.put(with_estimators(body, 5))
    world.run()
    world.train(f"{MODEL}-v2")
    world.run()
    canary = world.status()["canary"]
    assert (canary["weight"], canary["replicas"]) == (5, 1)
    deployment = world.deployment(CANARY)
    assert deployment is not None and deployment["spec"]["replicas"] == 1
    assert backends(world) == [("iris-stable", 100)]  # no canary pod is ready yet
    world.kube.make_ready(CANARY)
    world.run()
    assert backends(world) == [("iris-stable", 95), ("iris-canary", 5)]
    world.quiet()

    for weight in (25, 50):
        world.analyse_canary(PASSING)
        assert world.status()["canary"]["weight"] == weight
        assert backends(world) == [("iris-stable", 100 - weight), ("iris-canary", weight)]
        deployment = world.deployment(CANARY)
        assert deployment is not None and deployment["spec"]["replicas"] == 1  # ceil(2w/100)
        assert world.events.of("CanaryAdvanced")[1].endswith(f"({weight}% of traffic)")

    # Promoted: the stable Deployment rolls iris-v2 out while the canary's pod keeps its share;
    # once every stable replica serves iris-v2, everything goes to stable and the canary goes.
    world.analyse_canary(PASSING)
    assert world.status()["stableVersion"] == f"{MODEL}-v2"
    assert backends(world) == [("iris-stable", 50), ("iris-canary", 50)]
    assert world.deployment(CANARY) is not None
    world.run()
    assert backends(world) == [("iris-stable", 50), ("iris-canary", 50)]
    # The operator restarts mid-handover: its store has no route (routes are not watched), and
    # it reads the canary's weight back instead of sending everything to the old stable pods.
    world.ctx.store.forget("HTTPRoute", NS, MODEL)
    world.run()
    assert ("GET", f"/apis/gateway.networking.k8s.io/v1/namespaces/{NS}/httproutes/{MODEL}") in (
        world.kube.calls()
    )
    assert backends(world) == [("iris-stable", 50), ("iris-canary", 50)]
    world.kube.make_ready(STABLE)
    world.run()
    assert backends(world) == [("iris-stable", 100)]
    assert world.deployment(CANARY) is None
    stable = world.deployment(STABLE)
    assert stable is not None and stable["spec"]["replicas"] == 2  # the canary never took any


def test_leaving_the_router_removes_the_route_its_services_and_the_url() -> None:
    world = make_world()
    body = gateway_iris([10, 50])
    world.serve_v1(body)
    assert world.kube.object("HTTPRoute", MODEL) is not None

    plain = copy.deepcopy(body)
    del plain["spec"]["serving"]["traffic"]
    world.kube.put(plain)
    world.run()
    assert world.kube.object("HTTPRoute", MODEL) is None
    assert set(world.kube.names("Service")) == {MODEL}
    assert "url" not in world.status()
    world.quiet()


def test_the_replica_mode_never_asks_for_a_route() -> None:
    world = make_world()
    calls: list[tuple[str, str]] = []

    def run() -> None:
        world.run()
        calls.extend(world.kube.calls())

    world.kube.put(iris())
    run()
    world.train(f"{MODEL}-v1")
    run()
    world.kube.make_ready(STABLE)
    run()
    world.kube.put(with_estimators(iris(), 5))
    run()
    world.train(f"{MODEL}-v2")
    run()
    world.kube.make_ready(CANARY)
    run()
    assert world.status()["canary"]["weight"] == 33
    assert world.kube.object("HTTPRoute", MODEL) is None
    assert "url" not in world.status()
    assert calls and not any("httproutes" in path for _, path in calls)
    assert set(world.kube.names("Service")) == {MODEL}
