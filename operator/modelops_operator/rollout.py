"""Serving a Model: the stable Deployment and its companions, and the canary before a promotion.

`step()` applies what the pure parts decide: `versions.choose_stable` and `versions.candidate` name
the versions, `canary.decide` moves the canary on with the latest analysis, `children` builds the
objects. A promotion moves stable to the canary's version; a rollback marks the version RolledBack;
either way the canary Deployment goes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from modelops_api import contract
from modelops_api.spec import ServingSpec
from modelops_operator import canary, children, credentials
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


def canary_analysis(results: Results | None, status: Mapping[str, Any]) -> canary.Analysis | None:
    """The latest analysis of the canary's version, if it is newer than the canary's last one."""
    if results is None or results.versions.get(children.CANARY) != status.get("version"):
        return None
    if results.at <= float(status.get("lastAnalysisAt") or 0):
        return None
    checks = results.by_track.get(children.CANARY, [])
    return canary.Analysis(
        outcomes={r.check: str(r.outcome) for r in checks},
        reasons={r.check: r.reason for r in checks if r.outcome != Outcome.PASS},
        outages=frozenset(r.check for r in checks if r.outage),
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

    if candidate is None:
        if current is not None:
            out.events.append(
                (
                    "Normal",
                    "CanaryRemoved",
                    f"canary {current['version']} removed: no longer a candidate",
                )
            )
        _remove_canary(kube, namespace, name)
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
            current = canary.start(candidate.name, now, base, spec)
            out.events.append(
                (
                    "Normal",
                    "CanaryStarted",
                    f"canary {candidate.name} at {current['weight']}% of traffic",
                )
            )
        decision = canary.decide(current, spec, now, canary_analysis(results, current), base, verb)
        current = {**decision.status, "message": decision.message, "reason": decision.reason}
        if decision.action == "promote":
            out.events.append(("Normal", "Promoted", decision.message))
            out.stable, current = candidate, None
            _remove_canary(kube, namespace, name)
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
            _remove_canary(kube, namespace, name)
        else:
            if decision.action == "advance":
                out.events.append(("Normal", "CanaryAdvanced", decision.message))
            kube.ensure(
                children.build_deployment(
                    model, serving, candidate, children.CANARY, int(current["replicas"]), settings
                )
            )
    out.canary = current

    if out.stable is not None:
        out.deployment = _serve_stable(kube, settings, model, serving, out.stable)
    return out


def _remove_canary(kube: Kube, namespace: str, model: str) -> None:
    if kube.seen("Deployment", namespace, children.deployment_name(model, children.CANARY)):
        kube.delete("Deployment", namespace, children.deployment_name(model, children.CANARY))


def _serve_stable(
    kube: Kube, settings: Settings, model: Body, serving: ServingSpec, stable: VersionInfo
) -> dict[str, Any]:
    """Applies the stable children; removes the optional ones no longer wanted."""
    namespace, name = model["metadata"]["namespace"], model["metadata"]["name"]
    kube.ensure(credentials.build_secret(model, settings.credentials_key))
    if settings.network_policies:
        kube.ensure(children.build_serving_policy(model))
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
    return {
        "ready_replicas": ready,
        "desired_replicas": desired,
        "deployment_available": available and ready > 0,
        "rolling_out": not updated or ready < desired,
    }
