"""The training step of a pass: supersede, create, and follow each running version's Job.

`versions.plan_training` decides; this step writes: an outdated running version is marked
Superseded and its Job deleted, a new ModelVersion is created, and each version in progress gets
its Job (created when missing) and the Job's progress or outcome in its status.

It trusts only what the operator made: a ModelVersion counts when its ownerReference is the
Model's UID (a hand-made one with the right `spec.model` and labels does not), and a training
result is read only from a pod whose ownerReference is the Job's UID. A write the API server
refuses ends the step (`Trained.failure`); the pass reports it and serves on with what it has.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from kubernetes.client.exceptions import ApiException

from modelops_api import contract
from modelops_operator import children, training, versions
from modelops_operator.objects import Body, owned_by
from modelops_operator.runtime.events import now
from modelops_operator.runtime.kube import Kube
from modelops_operator.runtime.store import Store
from modelops_operator.settings import Settings
from modelops_operator.status import Event
from modelops_operator.versions import TrainingPlan, VersionInfo

JOB_NAME = "batch.kubernetes.io/job-name"  # the label the Job controller puts on its pods


@dataclass
class Trained:
    """The Model's versions after the step (bodies and what the planners read of them), the plan
    it followed, its Events, and the API error that cut it short (if one did)."""

    bodies: dict[str, Body]
    infos: dict[str, VersionInfo]
    plan: TrainingPlan
    events: list[Event] = field(default_factory=list)
    failure: ApiException | None = None


def train(
    kube: Kube,
    store: Store,
    settings: Settings,
    model: Body,
    training_hash: str,
    trigger: str | None,
) -> Trained:
    meta = model["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    status: Mapping[str, object] = model.get("status") or {}
    bodies = {
        v["metadata"]["name"]: v
        for v in store.owned("ModelVersion", namespace, name)
        if owned_by(v, meta["uid"])
    }
    infos = {n: versions.version_info(v) for n, v in bodies.items()}
    plan = versions.plan_training(
        name,
        training_hash,
        list(infos.values()),
        (meta.get("annotations") or {}).get(contract.ANNOTATION_RETRAIN),
        str(status["retrainToken"]) if status.get("retrainToken") else None,
        trigger,
    )
    out = Trained(bodies, infos, plan)
    try:
        _write(kube, store, settings, model, training_hash, out)
    except ApiException as error:
        out.failure = error
    return out


def _write(
    kube: Kube, store: Store, settings: Settings, model: Body, training_hash: str, out: Trained
) -> None:
    meta, plan, bodies, infos = model["metadata"], out.plan, out.bodies, out.infos
    namespace = meta["namespace"]
    for old in plan.supersede:
        kube.delete("Job", namespace, old)
        patch = {
            "phase": contract.SUPERSEDED,
            "reason": "Superseded",
            "message": "a newer training spec replaced this one",
            "finishedAt": now(),
        }
        kube.patch_status("ModelVersion", namespace, old, patch)
        infos[old] = replace(infos[old], phase=contract.SUPERSEDED)
        out.events.append(("Normal", "TrainingSuperseded", f"{old} cancelled: the spec changed"))
    if plan.create and plan.reason:
        body = training.build_model_version(model, plan.create, plan.reason, training_hash)
        created = kube.create(body) or kube.get("ModelVersion", namespace, plan.create)
        if created is not None and not owned_by(created, meta["uid"]):
            raise _not_ours(created, meta["name"])
        if created is not None:
            bodies[plan.create] = created
            infos[plan.create] = versions.version_info(created)
            if plan.reason != contract.REASON_INITIAL:  # a new Model's training is no news
                out.events.append(
                    ("Normal", "TrainingStarted", f"{plan.create} created ({plan.reason})")
                )
    for vname, info in list(infos.items()):
        if info.in_progress:
            infos[vname] = _follow_job(kube, store, settings, model, bodies[vname], info)


def _not_ours(found: Body, model: str) -> ApiException:
    """The refusal for an object the operator must create that exists and is not the Model's:
    reported on the Model like any refused write, and retried."""
    error = ApiException(status=409, reason="Conflict")
    message = (
        f"{found.get('kind', 'object')} {found['metadata']['name']} exists and is not owned by "
        f"Model {model}; delete or rename it"
    )
    error.body = json.dumps({"message": message})
    return error


def _follow_job(
    kube: Kube, store: Store, settings: Settings, model: Body, version: Body, info: VersionInfo
) -> VersionInfo:
    """Makes sure an in-progress version has its Job, and records how the Job is doing."""
    meta = version["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    job = store.get("Job", namespace, name)
    patch: Body
    if job is not None and not owned_by(job, meta["uid"]):
        raise _not_ours(job, version["spec"]["model"])
    if job is None:
        # No status write: a version without a phase is Pending, and its training pod's start
        # (or the Job's end, for a training shorter than a pass) writes the next one.
        if settings.network_policies:
            kube.ensure(children.build_network_policy(namespace))
        kube.create(training.build_training_job(version, settings))
        return info
    if training.job_finished(job):
        pod = training.result_pod(_job_pods(store, job))
        if training.termination(pod) is None:
            # The pods watch has not delivered the pod's end yet (or the pod is gone): ask.
            pod = training.result_pod(_job_pods(store, job, kube))
        if training.result_lost(job, pod, version.get("status") or {}):
            # The pod that succeeded was deleted (evicted or drained while it finished), and
            # its result with it: the training runs again, once, as a new Job.
            kube.delete("Job", namespace, name)
            patch = {"phase": contract.TRAINING, "rerun": True, "message": training.RERUN}
            updated = kube.patch_status("ModelVersion", namespace, name, patch)
            return versions.version_info(updated or version)
        store_dir = training.model_store(settings, namespace, model["metadata"]["uid"])
        patch = training.outcome(job, pod, store_dir)
        patch["finishedAt"] = now()
    elif training.job_running(job):
        patch = {
            "phase": contract.TRAINING,
            "job": name,
            "message": "training",
            "startedAt": (job.get("status") or {}).get("startTime") or now(),
        }
    else:
        patch_or_none = _config_error(store, job)
        if patch_or_none is None:
            return info
        # The pod waits for a Secret that is not there: the version fails, naming it, and the
        # Job goes (its kubelet would retry until the Job's deadline).
        kube.delete("Job", namespace, name)
        patch = {**patch_or_none, "finishedAt": now()}
    current = version.get("status") or {}
    if any(current.get(k) != v for k, v in patch.items() if k not in ("finishedAt", "startedAt")):
        updated = kube.patch_status("ModelVersion", namespace, name, patch)
        return versions.version_info(updated or {**version, "status": {**current, **patch}})
    return info


def _config_error(store: Store, job: Body) -> Body | None:
    """A pending Job's version status when its pod cannot start for want of its configuration
    (`training.config_error`), once the Job is older than the grace."""
    at = datetime.datetime.now(datetime.UTC)
    if training.age(job, at) < training.CONFIG_ERROR_GRACE_SECONDS:
        return None
    return training.config_error(_job_pods(store, job), at, training.CONFIG_ERROR_GRACE_SECONDS)


def _job_pods(store: Store, job: Body, kube: Kube | None = None) -> list[Body]:
    """The Job's pods: as the training pods watch delivered them to the store, or, given `kube`,
    as the API server lists them."""
    meta = job["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    if kube is None:
        model = (meta.get("labels") or {}).get(contract.LABEL_MODEL) or ""
        pods = store.owned("Pod", namespace, model)
    else:
        pods = kube.list("Pod", namespace, {JOB_NAME: name})
    return [p for p in pods if owned_by(p, meta["uid"]) and _labels(p).get(JOB_NAME) == name]


def _labels(pod: Body) -> Mapping[str, str]:
    return (pod.get("metadata") or {}).get("labels") or {}
