"""One reconcile of one Model: observe, plan with the pure functions, act, write status.

Every trigger (the Model itself, its versions, Jobs and serving children, the periodic resync) ends
here, serialised per Model, so the order of events never matters: each pass reads what is and moves
it one step towards what the spec asks.
"""

from __future__ import annotations

import datetime
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from modelops_operator import api, children, training, versions
from modelops_operator.kube import Body, Kube
from modelops_operator.settings import Settings
from modelops_operator.specs import spec_hash
from modelops_operator.status import Observed, model_status, transitions

log = logging.getLogger("modelops.reconcile")
EventSink = Callable[[Mapping[str, Any], str, str, str], None]

_locks: dict[tuple[str, str], threading.Lock] = {}
_locks_guard = threading.Lock()


def model_lock(namespace: str, name: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault((namespace, name), threading.Lock())


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Context:
    kube: Kube
    settings: Settings
    event: EventSink


def reconcile(ctx: Context, namespace: str, name: str) -> Body | None:
    """Reconciles the Model `namespace/name` (read fresh); its new status, or None when gone."""
    with model_lock(namespace, name):
        model = ctx.kube.get("Model", namespace, name)
        if model is None or model["metadata"].get("deletionTimestamp"):
            return None
        return _reconcile(ctx, model)


def _reconcile(ctx: Context, model: Body) -> Body:
    meta, spec = model["metadata"], model["spec"]
    namespace, name = meta["namespace"], meta["name"]
    status: Mapping[str, Any] = model.get("status") or {}
    training_hash = spec_hash(spec["training"])
    raw = {
        v["metadata"]["name"]: v
        for v in ctx.kube.list("ModelVersion", namespace, {api.LABEL_MODEL: name})
    }
    infos = {n: versions.version_info(v) for n, v in raw.items()}

    plan = versions.plan_training(
        name,
        training_hash,
        list(infos.values()),
        (meta.get("annotations") or {}).get(api.ANNOTATION_RETRAIN),
        status.get("retrainToken"),
    )
    for old in plan.supersede:
        ctx.kube.delete("Job", namespace, old)
        patch = {
            "phase": api.SUPERSEDED,
            "reason": "Superseded",
            "message": "a newer training spec replaced this one",
            "finishedAt": now(),
        }
        ctx.kube.patch_status("ModelVersion", namespace, old, patch)
        infos[old] = replace(infos[old], phase=api.SUPERSEDED)
        ctx.event(model, "Normal", "TrainingSuperseded", f"{old} cancelled: the spec changed")
    if plan.create and plan.reason:
        body = training.build_model_version(model, plan.create, plan.reason, training_hash)
        created = ctx.kube.create(body) or ctx.kube.get("ModelVersion", namespace, plan.create)
        if created is not None:
            raw[plan.create] = created
            infos[plan.create] = versions.version_info(created)
            ctx.event(model, "Normal", "TrainingStarted", f"{plan.create} created ({plan.reason})")

    for vname, info in list(infos.items()):
        if info.in_progress:
            infos[vname] = _sync_training(ctx, raw[vname], info)

    ordered = versions.sort_versions(infos.values())
    current = [v for v in ordered if v.spec_hash == training_hash and v.phase != api.SUPERSEDED]
    approved = [v for v in current if v.phase == api.SUCCEEDED]
    pinned = (spec.get("serving") or {}).get("version") or ""
    choice = versions.choose_stable(ordered, pinned, status.get("stableVersion"))

    observed = Observed(
        generation=meta.get("generation", 0),
        latest=current[-1] if current else None,
        trained=approved[-1] if approved else None,
        newest=ordered[-1] if ordered else None,
        stable=choice.version,
        pin_problem=choice.problem,
    )
    if choice.version is not None:
        observed = _serve(ctx, model, choice.version, observed)

    for doomed in versions.plan_history(
        ordered,
        ctx.settings.history_limit,
        [status.get("stableVersion"), choice.version.name if choice.version else None],
    ):
        ctx.kube.delete("ModelVersion", namespace, doomed)

    new_status = model_status(observed, status, now())
    if plan.retrain_token is not None:
        new_status["retrainToken"] = plan.retrain_token
    if _changed(status, new_status):
        ctx.kube.patch_status("Model", namespace, name, new_status)
        for kind, reason, message in transitions(status, new_status):
            ctx.event(model, kind, reason, message)
    return new_status


def _changed(before: Mapping[str, Any], after: Mapping[str, Any]) -> bool:
    return any(before.get(k) != v for k, v in after.items())


def _sync_training(ctx: Context, version: Body, info: versions.VersionInfo) -> versions.VersionInfo:
    """Makes sure an in-progress version has its Job, and records how the Job is doing."""
    meta = version["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    job = ctx.kube.get("Job", namespace, name)
    patch: Body
    if job is None:
        ctx.kube.create(training.build_spec_config_map(version))
        ctx.kube.create(training.build_training_job(version, ctx.settings))
        patch = {"phase": api.PENDING, "job": name, "message": "training Job created"}
    elif training.job_finished(job):
        pods = ctx.kube.list("Pod", namespace, {"batch.kubernetes.io/job-name": name})
        pods.sort(key=lambda p: p["metadata"].get("creationTimestamp") or "")
        patch = training.outcome(job, pods[-1] if pods else None)
        patch["finishedAt"] = now()
    elif training.job_started(job):
        patch = {
            "phase": api.TRAINING,
            "job": name,
            "message": "training",
            "startedAt": (job.get("status") or {}).get("startTime") or now(),
        }
    else:
        return info
    current = version.get("status") or {}
    if any(current.get(k) != v for k, v in patch.items() if k not in ("finishedAt", "startedAt")):
        updated = ctx.kube.patch_status("ModelVersion", namespace, name, patch)
        return versions.version_info(updated or {**version, "status": {**current, **patch}})
    return info


def _serve(ctx: Context, model: Body, stable: versions.VersionInfo, observed: Observed) -> Observed:
    """Applies the serving children for `stable`; removes the optional ones no longer wanted."""
    namespace, name = model["metadata"]["namespace"], model["metadata"]["name"]
    replicas = children.stable_replicas(model)
    deployment = ctx.kube.apply(
        children.build_deployment(model, stable, children.STABLE, replicas, ctx.settings)
    )
    ctx.kube.apply(children.build_service(model))
    for kind, body in (
        ("HorizontalPodAutoscaler", children.build_autoscaler(model)),
        ("PodDisruptionBudget", children.build_disruption_budget(model)),
    ):
        if body is not None:
            ctx.kube.apply(body)
        elif ctx.kube.get(kind, namespace, name) is not None:
            ctx.kube.delete(kind, namespace, name)
    return replace(observed, **deployment_state(deployment))


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
