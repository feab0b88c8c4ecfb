"""Serving a Model: the stable Deployment and its companions, and the canary before a promotion.

`step()` applies what the pure parts decide: `versions.choose_stable` and `versions.candidate` name
the versions, `canary.decide` moves the canary on with the latest analysis, `children` builds the
objects. A promotion moves stable to the canary's version, and the canary Deployment goes once the
stable Deployment has rolled that version out (`handing_over`); a rollback marks the version
RolledBack and the canary Deployment goes at once. With `spec.serving.traffic` the HTTPRoute
(`routing`) moves the canary's share by its weights: it sends the step's share to the canary once a
canary pod is ready, keeps it while a promotion hands over, and sends everything to stable before
the canary Deployment goes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from modelops_api import contract
from modelops_api.spec import ServingSpec, TrafficSpec
from modelops_operator import canary, children, credentials, routing
from modelops_operator.analysis.model import Outcome, Results
from modelops_operator.objects import Body
from modelops_operator.runtime.kube import Kube
from modelops_operator.settings import Settings
from modelops_operator.versions import VersionInfo

log = logging.getLogger("modelops.rollout")


@dataclass
class RolloutResult:
    """What a rollout step did, for the status and the Events."""

    stable: VersionInfo | None
    canary: dict[str, Any] | None = None
    rolled_back: str = ""  # why the canary was rolled back in this step
    rolled_back_reason: str = ""
    deployment: dict[str, Any] = field(default_factory=dict)
    events: list[tuple[str, str, str]] = field(default_factory=list)
    command_handled: str | None = None
    url: str | None = None  # where the Gateway API router serves the model


def canary_analysis(results: Results | None, status: Mapping[str, Any]) -> canary.Analysis | None:
    """The latest analysis of the canary's version, if it is newer than the canary's last one."""
    if results is None or results.versions.get(children.CANARY) != status.get("version"):
        return None
    if results.at <= float(status.get("lastAnalysisAt") or 0):
        return None
    checks = results.by_track.get(children.CANARY, [])
    shown = [r.as_status() for r in checks]  # finite values, rounded as the stable's
    return canary.Analysis(
        outcomes={r.check: str(r.outcome) for r in checks},
        reasons={r.check: r.reason for r in checks if r.outcome != Outcome.PASS},
        outages=frozenset(r.check for r in checks if r.outage),
        values={s["check"]: s["value"] for s in shown if "value" in s},
        samples={s["check"]: s["samples"] for s in shown if "samples" in s},
    )


def command(model: Mapping[str, Any], handled: str | None) -> tuple[str | None, str | None]:
    """A new canary command from the annotation (`promote/<token>` ...): (verb, value)."""
    value = (model["metadata"].get("annotations") or {}).get(contract.ANNOTATION_CANARY)
    if not value or value == handled:
        return None, None
    verb = value.split("/", 1)[0]
    return (verb if verb in contract.CANARY_COMMANDS else None), value


def step(
    kube: Kube,
    settings: Settings,
    model: Body,
    serving: ServingSpec,
    stable: VersionInfo | None,
    candidate: VersionInfo | None,
    results: Results | None,
    now: float,
) -> RolloutResult:
    status: Mapping[str, Any] = model.get("status") or {}
    namespace, name = model["metadata"]["namespace"], model["metadata"]["name"]
    out = RolloutResult(stable=stable)
    current: dict[str, Any] | None = dict(status["canary"]) if status.get("canary") else None
    verb, value = command(model, status.get("canaryCommand"))
    out.command_handled = value
    gateway = serving.gateway
    canary_ready = False

    if candidate is None:
        if current is not None:
            out.events.append(
                (
                    "Normal",
                    "CanaryRemoved",
                    f"canary {current['version']} removed: no longer a candidate",
                )
            )
            _remove_canary(kube, model, serving, stable)
    else:
        spec = serving.canary
        base = children.least_replicas(serving)
        if current is None or current.get("version") != candidate.name:
            if current is not None:
                out.events.append(
                    (
                        "Normal",
                        "CanaryReplaced",
                        f"{candidate.name} replaces canary {current['version']}",
                    )
                )
            current = canary.start(candidate.name, now, base, spec, gateway)
            out.events.append(
                (
                    "Normal",
                    "CanaryStarted",
                    f"canary {candidate.name} at {current['weight']}% of traffic",
                )
            )
        current = canary.at_step(current, spec, base, gateway)
        analysis = canary_analysis(results, current)
        decision = canary.decide(current, spec, now, analysis, base, verb, gateway)
        current = {**decision.status, "message": decision.message, "reason": decision.reason}
        if decision.action == "promote":
            out.events.append(("Normal", "Promoted", decision.message))
            # The canary Deployment serves on until the stable one has rolled its version out.
            out.stable, current = candidate, None
        elif decision.action == "rollback":
            out.events.append(("Warning", "RolledBack", decision.message))
            kube.patch_status(
                "ModelVersion",
                namespace,
                candidate.name,
                {
                    "phase": contract.ROLLED_BACK,
                    "reason": decision.reason,
                    "message": decision.message,
                },
            )
            out.rolled_back, out.rolled_back_reason = decision.message, decision.reason
            current = None
            _remove_canary(kube, model, serving, stable)
        else:
            if decision.action == "advance":
                out.events.append(("Normal", "CanaryAdvanced", decision.message))
            deployment = kube.ensure(
                children.build_deployment(
                    model, serving, candidate, children.CANARY, int(current["replicas"]), settings
                )
            )
            canary_ready = int((deployment.get("status") or {}).get("readyReplicas") or 0) > 0
    out.canary = current

    handover = False
    if out.stable is not None:
        out.deployment = _serve_stable(kube, settings, model, serving, out.stable)
    if current is None:  # a canary Deployment left: a promotion's hands over, any other goes
        left = kube.seen("Deployment", namespace, children.deployment_name(name, children.CANARY))
        handover = out.stable is not None and handing_over(left, out.stable, out.deployment)
        if left is not None and not handover:
            _remove_canary(kube, model, serving, out.stable)
    if out.stable is not None and serving.traffic is not None:
        weight = int(current["weight"]) if current is not None and canary_ready else None
        if handover:
            weight = _routed_weight(kube, namespace, name)  # the route stays as it is
        out.url = _route(kube, model, serving.traffic, weight)
    if serving.traffic is None and (status.get("url") or _routed(kube, namespace, name)):
        _remove_route(kube, namespace, name)
    return out


def handing_over(
    canary_deployment: Mapping[str, Any] | None,
    stable: VersionInfo,
    stable_state: Mapping[str, Any],
) -> bool:
    """Whether a canary Deployment left after its canary ended still serves the promoted version
    while the stable Deployment rolls that version out. Then it stays, and the route with it:
    the promoted version never loses its share to the one it replaced, nor the Model the canary's
    pods, until the stable Deployment serves it with every replica (as Flagger promotes). A stable
    rollout past its progress deadline (say, no room for its new pods) ends the handover: the
    canary's pods go and free their room."""
    if canary_deployment is None:
        return False
    labels = canary_deployment.get("metadata", {}).get("labels") or {}
    return (
        labels.get(contract.LABEL_VERSION) == stable.name
        and bool(stable_state["rolling_out"])
        and not stable_state.get("stalled")
    )


def _routed_weight(kube: Kube, namespace: str, name: str) -> int | None:
    """The canary's weight in the route (None: no route, or no canary backend in it): as this
    operator last wrote it, or, when it has not written it since it started (routes are not
    watched), as the API server has it: one read per pass, during a handover only."""
    route = kube.seen("HTTPRoute", namespace, name)
    if route is None and kube.store is not None:
        route = kube.get("HTTPRoute", namespace, name)
    return routing.canary_weight(route) if route is not None else None


def _remove_canary(
    kube: Kube, model: Body, serving: ServingSpec, stable: VersionInfo | None
) -> None:
    """Deletes the canary Deployment; with the Gateway API router, after the route has stopped
    sending it requests."""
    namespace, name = model["metadata"]["namespace"], model["metadata"]["name"]
    deployment = children.deployment_name(name, children.CANARY)
    if not kube.seen("Deployment", namespace, deployment):
        return
    if serving.traffic is not None and stable is not None:
        _route(kube, model, serving.traffic, None)
    kube.delete("Deployment", namespace, deployment)


def _route(kube: Kube, model: Body, traffic: TrafficSpec, weight: int | None) -> str:
    """Applies the tracks' Services and the HTTPRoute at the canary's `weight` (None: all to
    stable); the route's URL. Unchanged objects cost no request (`Kube.ensure`)."""
    for track in routing.TRACKS:
        kube.ensure(routing.build_track_service(model, track))
    kube.ensure(routing.build_route(model, traffic, weight))
    return routing.url(model, traffic)


def _routed(kube: Kube, namespace: str, name: str) -> bool:
    """Whether the store holds the Model's HTTPRoute (never a request: the route is unwatched,
    so only a route this operator wrote since it started is known here)."""
    return kube.store is not None and kube.seen("HTTPRoute", namespace, name) is not None


def _remove_route(kube: Kube, namespace: str, name: str) -> None:
    """The Model left the Gateway API router: its route and the tracks' Services go."""
    kube.delete("HTTPRoute", namespace, name)
    for track in routing.TRACKS:
        service = routing.track_service_name(name, track)
        if kube.seen("Service", namespace, service) is not None:
            kube.delete("Service", namespace, service)


def _serve_stable(
    kube: Kube, settings: Settings, model: Body, serving: ServingSpec, stable: VersionInfo
) -> dict[str, Any]:
    """Applies the stable children; removes the optional ones no longer wanted."""
    namespace, name = model["metadata"]["namespace"], model["metadata"]["name"]
    kube.ensure(credentials.build_secret(model, settings.credentials_key))
    if settings.network_policies:
        kube.ensure(children.build_network_policy(namespace))
    deployment = kube.ensure(
        children.build_deployment(
            model, serving, stable, children.STABLE, children.stable_replicas(serving), settings
        )
    )
    kube.ensure(children.build_service(model))
    for kind, body in (
        ("HorizontalPodAutoscaler", children.build_autoscaler(model, serving)),
        ("PodDisruptionBudget", children.build_disruption_budget(model, serving)),
    ):
        if body is not None:
            kube.ensure(body)
        elif kube.seen(kind, namespace, name) is not None:
            kube.delete(kind, namespace, name)
    return deployment_state(deployment)


def deployment_state(deployment: Mapping[str, Any]) -> dict[str, Any]:
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    desired = int(spec.get("replicas", 1))
    available = any(
        c.get("type") == "Available" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    updated = status.get("updatedReplicas", 0) == desired and status.get(
        "observedGeneration", 0
    ) >= deployment.get("metadata", {}).get("generation", 0)
    ready = int(status.get("readyReplicas", 0))
    stalled = any(
        c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded"
        for c in status.get("conditions") or []
    )
    return {
        "ready_replicas": ready,
        "desired_replicas": desired,
        "deployment_available": available and ready > 0,
        "rolling_out": not updated or ready < desired,
        "stalled": stalled,  # the Deployment's progressDeadlineSeconds passed
    }
