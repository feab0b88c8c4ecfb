"""Pure builders of the Gateway API traffic router: one Service per track and the HTTPRoute.

With `spec.serving.traffic` the canary's share is a weight of the Model's HTTPRoute, exact to the
percent whatever the replica counts: the route sends `100 - w` percent of the requests for its
hostname to the `<model>-stable` Service and `w` to `<model>-canary` at a canary step of `w`, and
all of them to stable when no canary runs. Each track's Service selects that track's pods; the
Model's own Service (every track, children.build_service) stays for in-cluster clients, which keep
the replica-ratio split. A Gateway API implementation and its Gateway do the routing; the operator
writes only the route and the two Services.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelops_api import contract
from modelops_api.spec import TrafficSpec
from modelops_operator.children import CANARY, STABLE, meta, service_labels
from modelops_operator.objects import Body

GATEWAY_API = "gateway.networking.k8s.io/v1"
HOST_SUFFIX = "modelops.local"
TRACKS = (STABLE, CANARY)


def track_service_name(model: str, track: str) -> str:
    return f"{model}-{track}"


def hostname(model: Mapping[str, Any], traffic: TrafficSpec) -> str:
    """The route's host: the spec's, or `<model>.<namespace>.modelops.local`."""
    if traffic.hostname:
        return traffic.hostname
    return f"{model['metadata']['name']}.{model['metadata']['namespace']}.{HOST_SUFFIX}"


def url(model: Mapping[str, Any], traffic: TrafficSpec) -> str:
    """Where the route serves the model (status.url)."""
    return f"http://{hostname(model, traffic)}"


def weights(canary_weight: int | None) -> tuple[int, int]:
    """The (stable, canary) weights of the route: (100 - w, w) at a canary step of w, (100, 0)
    when no canary runs."""
    if canary_weight is None:
        return 100, 0
    if not 0 <= canary_weight <= 100:
        raise ValueError(f"a canary weight is a percentage, not {canary_weight}")
    return 100 - canary_weight, canary_weight


def canary_weight(route: Mapping[str, Any]) -> int | None:
    """The canary's weight in a route `build_route` made (None: no canary backend)."""
    canary = track_service_name(route["metadata"]["name"], CANARY)
    for rule in route.get("spec", {}).get("rules") or []:
        for backend in rule.get("backendRefs") or []:
            if backend.get("name") == canary:
                return int(backend.get("weight", 1))
    return None


def build_track_service(model: Mapping[str, Any], track: str) -> Body:
    """The Service of one track's pods, the route's backend for that track."""
    name = model["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(model, track_service_name(name, track), {contract.LABEL_TRACK: track}),
        "spec": {
            "selector": {**service_labels(name), contract.LABEL_TRACK: track},
            "ports": [
                {
                    "name": "http",
                    "port": contract.SERVING_PORT,
                    "targetPort": "http",
                    "protocol": "TCP",
                }
            ],
        },
    }


def build_route(
    model: Mapping[str, Any], traffic: TrafficSpec, canary_weight: int | None
) -> Body:
    """The Model's HTTPRoute: its hostname on the Gateway, to the stable Service, and to the
    canary Service at `canary_weight` percent while a canary runs (None: no canary, no backend)."""
    name = model["metadata"]["name"]
    stable, canary = weights(canary_weight)
    parent: Body = {
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
        "name": traffic.gateway.name,
        "namespace": traffic.gateway.namespace or model["metadata"]["namespace"],
    }
    if traffic.gateway.section_name:
        parent["sectionName"] = traffic.gateway.section_name
    backends = [_backend(name, STABLE, stable)]
    if canary_weight is not None:
        backends.append(_backend(name, CANARY, canary))
    return {
        "apiVersion": GATEWAY_API,
        "kind": "HTTPRoute",
        "metadata": meta(model, name, {}),
        "spec": {
            "parentRefs": [parent],
            "hostnames": [hostname(model, traffic)],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": backends,
                }
            ],
        },
    }


def _backend(model: str, track: str, weight: int) -> Body:
    return {
        "group": "",
        "kind": "Service",
        "name": track_service_name(model, track),
        "port": contract.SERVING_PORT,
        "weight": weight,
    }
