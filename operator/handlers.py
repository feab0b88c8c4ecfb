"""The Kopf handlers: each one only says which Model to reconcile; `reconcile` does the work.

Triggers: the Model itself (create, resume, spec or annotation update), and the objects it owns:
its ModelVersions, their training Jobs, and the serving children (deleted or edited by hand, or
changing availability). The periodic resync and the analysis passes run in the
background threads of `reconcile.Context` (no Kopf timer: a timer would put a finalizer on every
Model, and a finalizer blocks deletion whenever the operator is not running).
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from modelops_operator import api
from modelops_operator.reconcile import Context, reconcile

MANAGED = {api.LABEL_MANAGED_BY: api.MANAGED_BY}
log = logging.getLogger("modelops.handlers")


def _ctx(memo: Any) -> Context:
    context: Context = memo.context
    return context


# Kopf's own progress lives in annotations under a prefix of its own: Kopf leaves every annotation
# under its storage prefix out of the diff it triggers handlers on, and a user's
# `modelops.dev/retrain` must trigger one.
KOPF_PREFIX = f"kopf.{api.GROUP}"


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    """Kopf keeps its progress on the objects, no external store."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=KOPF_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=KOPF_PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{KOPF_PREFIX}/finalizer"
    settings.posting.level = logging.INFO
    settings.execution.max_workers = 8
    namespaces = _ctx(memo).settings.namespaces
    if namespaces and not any(set("*?[!") & set(n) for n in namespaces):
        # Exact namespaces need no discovery: the operator runs with namespaced Roles only.
        settings.scanning.disabled = True
    _ctx(memo).start_background()


@kopf.on.cleanup()
def stop_background(memo: Any, **_: Any) -> None:
    _ctx(memo).stop_background()


@kopf.on.resume(api.GROUP, api.VERSION, api.MODELS)
@kopf.on.create(api.GROUP, api.VERSION, api.MODELS)
@kopf.on.update(api.GROUP, api.VERSION, api.MODELS)
def model_changed(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    reconcile(_ctx(memo), namespace or "", name)


def _trigger(
    memo: Any, kind: str, type: str, body: kopf.Body, model: str | None, state: Any
) -> None:
    """Reconciles `model` when the owned object's relevant state differs from the last one seen."""
    meta = body.get("metadata") or {}
    key = (kind, meta.get("namespace", ""), meta.get("name", ""))
    seen: dict[tuple[str, str, str], Any] = memo.seen
    if type == "DELETED":
        seen.pop(key, None)
    elif seen.get(key) == state:
        return
    else:
        seen[key] = state
    if model:
        reconcile(_ctx(memo), key[1], model)


def _model_label(body: kopf.Body) -> str | None:
    value = ((body.get("metadata") or {}).get("labels") or {}).get(api.LABEL_MODEL)
    return str(value) if value else None


@kopf.on.event(api.GROUP, api.VERSION, api.MODEL_VERSIONS)
def version_event(type: str, body: kopf.Body, memo: Any, **_: Any) -> None:
    state = (body.get("status") or {}).get("phase")
    _trigger(memo, "ModelVersion", type, body, (body.get("spec") or {}).get("model"), state)


@kopf.on.event("batch", "v1", "jobs", labels=MANAGED)
def job_event(type: str, body: kopf.Body, memo: Any, **_: Any) -> None:
    status = body.get("status") or {}
    state = (
        status.get("active"),
        status.get("succeeded"),
        status.get("failed"),
        tuple(c.get("type") for c in status.get("conditions") or []),
    )
    _trigger(memo, "Job", type, body, _model_label(body), state)


def _serving_state(body: kopf.Body) -> Any:
    """Edits (a new generation) are put right; replica moves update availability."""
    status = body.get("status") or {}
    return (
        (body.get("metadata") or {}).get("generation"),
        status.get("readyReplicas"),
        status.get("availableReplicas"),
        status.get("updatedReplicas"),
    )


@kopf.on.event("apps", "v1", "deployments", labels=MANAGED)
def deployment_event(type: str, body: kopf.Body, memo: Any, **_: Any) -> None:
    _trigger(memo, "Deployment", type, body, _model_label(body), _serving_state(body))


@kopf.on.event("", "v1", "services", labels=MANAGED)
@kopf.on.event("autoscaling", "v2", "horizontalpodautoscalers", labels=MANAGED)
@kopf.on.event("policy", "v1", "poddisruptionbudgets", labels=MANAGED)
def other_child_event(type: str, body: kopf.Body, memo: Any, **_: Any) -> None:
    _trigger(memo, body.get("kind", ""), type, body, _model_label(body), _serving_state(body))
