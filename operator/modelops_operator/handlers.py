"""The Kopf handlers: each one records what it saw in the store and says which Model to reconcile.

Every watched kind has one `on.event` handler: the Model itself, its ModelVersions, their training
Jobs and pods, and the serving children. Each keeps the object's latest body in the controller's
store and queues the owning Model when something a reconcile acts on changed (a Model's generation
or annotations, a version's phase, a training Job's start or end, a child's generation or
replicas); the operator's own status writes, training pods, and status noise that decides nothing,
queue nothing.
The queue runs each Model's reconciles one at a time. The handlers are coroutines: they only take a
short lock of the store or the queue, so Kopf runs them in its event loop instead of handing each
watch event to a thread of its executor. The periodic resync and the analysis passes run in
background threads of the controller (runtime/controller.py). With leader election the handlers run
on every replica, so a standby's store stays warm; only the leader's queue has workers
(runtime/leader.py).

No change-detection handler (`on.create`/`on.update`) and no Kopf timer: those would have Kopf
write its progress annotations on every Model, and a timer puts a finalizer on every Model, which
blocks deletion whenever the operator is not running.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from modelops_api import contract
from modelops_operator import training
from modelops_operator.runtime.controller import TRAINING_PODS, Controller


def _controller(memo: Any) -> Controller:
    controller: Controller = memo.controller
    return controller


class NoEssence(kopf.DiffBaseStorage):
    """Kopf's diff base for an operator without change-detecting handlers: none.

    Kopf builds an object's essence (a deep copy of its body) and clears it of progress fields on
    every watch event, whether a handler will compare it or not; with only event handlers nothing
    ever does, and at a thousand Models those copies were most of the operator's CPU."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    """Starts the controller before the watches start: it seeds the store and starts the queue and
    the background loops, or, with leader election, enters the election and does so once elected."""
    settings.persistence.diffbase_storage = NoEssence()
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=f"kopf.{contract.GROUP}"
    )
    # The operator posts its own Events; Kopf's only on trouble.
    settings.posting.level = logging.WARNING
    settings.execution.max_workers = 4
    if _controller(memo).settings.exact_namespaces:  # the operator runs with namespaced Roles only
        settings.scanning.disabled = True
    _controller(memo).start()


@kopf.on.cleanup()
def stop_background(memo: Any, **_: Any) -> None:
    _controller(memo).stop()


def _observe(
    memo: Any, kind: str, type: str, body: kopf.Body, model: str | None, state: Any
) -> None:
    """Stores the object; queues `model` when the object's relevant state differs from before
    (an object first seen in state None queues nothing), or when the object was deleted."""
    controller = _controller(memo)
    meta = body.get("metadata") or {}
    namespace, name = meta.get("namespace", ""), meta.get("name", "")
    key = (kind, namespace, name)
    seen: dict[tuple[str, str, str], Any] = memo.seen
    if type == "DELETED":
        controller.kube.forget(kind, namespace, name)
        seen.pop(key, None)
    else:
        controller.store.put(kind, body)
        if seen.get(key) == state:
            return
        seen[key] = state
    if model:
        controller.queue.add(namespace, model)


def _model_label(body: kopf.Body) -> str | None:
    value = ((body.get("metadata") or {}).get("labels") or {}).get(contract.LABEL_MODEL)
    return str(value) if value else None


def _model_state(body: kopf.Body) -> Any:
    """The spec (by generation), the user's annotations (retrain, canary commands), deletion."""
    meta = body.get("metadata") or {}
    annotations = {
        k: v
        for k, v in (meta.get("annotations") or {}).items()
        if k.startswith(f"{contract.GROUP}/")
    }
    return meta.get("generation"), tuple(sorted(annotations.items())), meta.get("deletionTimestamp")


@kopf.on.event(contract.GROUP, contract.VERSION, contract.MODELS)
async def model_event(type: str, body: kopf.Body, memo: Any, **_: Any) -> None:
    name = (body.get("metadata") or {}).get("name")
    _observe(memo, "Model", type, body, name, _model_state(body))


@kopf.on.event(contract.GROUP, contract.VERSION, contract.MODEL_VERSIONS)
async def version_event(type: str, body: kopf.Body, memo: Any, **_: Any) -> None:
    state = (body.get("status") or {}).get("phase")
    _observe(memo, "ModelVersion", type, body, (body.get("spec") or {}).get("model"), state)


def _job_state(body: kopf.Body) -> Any:
    """What a pass acts on: the training running (its version turns Training) or the Job
    finished (its result is read). None before either: the Job a pass has just created, and
    the counts of its pod starting, queue nothing."""
    running, finished = training.job_running(body), training.job_finished(body)
    return (running, finished) if running or finished else None


@kopf.on.event("batch", "v1", "jobs", labels=contract.MANAGED)
async def job_event(type: str, body: kopf.Body, memo: Any, **_: Any) -> None:
    _observe(memo, "Job", type, body, _model_label(body), _job_state(body))


@kopf.on.event("", "v1", "pods", labels=TRAINING_PODS)
async def training_pod_event(type: str, body: kopf.Body, memo: Any, **_: Any) -> None:
    """Keeps the training pods in the store for the passes their Job's events queue, and queues
    nothing itself: a pod's end is followed by its Job's (the Job controller counts a pod once
    it has ended), whose pass reads the result (the termination message) from the store, and a
    pod that cannot start for want of a Secret fails its version only after a grace
    (training.CONFIG_ERROR_GRACE_SECONDS), which the resync's passes see."""
    _observe(memo, "Pod", type, body, None, None)


def _serving_state(body: kopf.Body) -> Any:
    """Edits (a new generation) are put right; replica moves update availability."""
    status = body.get("status") or {}
    return (
        (body.get("metadata") or {}).get("generation"),
        status.get("readyReplicas"),
        status.get("availableReplicas"),
        status.get("updatedReplicas"),
    )


@kopf.on.event("apps", "v1", "deployments", labels=contract.MANAGED)
async def deployment_event(type: str, body: kopf.Body, memo: Any, **_: Any) -> None:
    _observe(memo, "Deployment", type, body, _model_label(body), _serving_state(body))


@kopf.on.event("", "v1", "services", labels=contract.MANAGED)
@kopf.on.event("autoscaling", "v2", "horizontalpodautoscalers", labels=contract.MANAGED)
@kopf.on.event("policy", "v1", "poddisruptionbudgets", labels=contract.MANAGED)
async def other_child_event(type: str, body: kopf.Body, memo: Any, **_: Any) -> None:
    _observe(memo, body.get("kind", ""), type, body, _model_label(body), _serving_state(body))
