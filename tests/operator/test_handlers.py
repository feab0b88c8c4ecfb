"""The watch handlers: which events queue a pass over their Model, and which only keep the object.

A pass costs the operator CPU at every Model's rollout, so an event queues one only when it
changes something a pass acts on; everything is kept in the store either way.
"""

from __future__ import annotations

import asyncio
from typing import Any

import kopf
import pytest
from kubernetes import client

from modelops_api import contract
from modelops_operator import handlers
from modelops_operator.runtime.controller import TRAINING_PODS
from modelops_operator.runtime.kube import Kube
from modelops_operator.runtime.store import Store

pytestmark = pytest.mark.unit


class Queued:
    """Records the Models a handler queues, in place of the controller's work queue."""

    def __init__(self) -> None:
        self.models: list[tuple[str, str]] = []

    def add(self, namespace: str, name: str) -> None:
        self.models.append((namespace, name))


class Controller:
    def __init__(self) -> None:
        self.store = Store()
        self.kube = Kube(client.ApiClient(), self.store)
        self.queue = Queued()


def memo() -> kopf.Memo:
    return kopf.Memo(controller=Controller(), seen={})


def watched(kind: str, name: str, labels: dict[str, str], status: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": "ml",
            "labels": {**labels, contract.LABEL_MODEL: "iris"},
        },
        "status": status,
    }


def job(**status: Any) -> dict[str, Any]:
    return watched("Job", "iris-v1", contract.MANAGED, status)


def training_pod(**status: Any) -> dict[str, Any]:
    return watched("Pod", "iris-v1-abcde", TRAINING_PODS, status)


def deliver(handler: Any, m: kopf.Memo, type: str, body: dict[str, Any]) -> list[tuple[str, str]]:
    """Runs the handler on one watch event; the Models it queued."""
    queued: Queued = m.controller.queue
    before = len(queued.models)
    asyncio.run(handler(type=type, body=kopf.Body(body), memo=m))
    return queued.models[before:]


def kept(m: kopf.Memo, kind: str, name: str) -> dict[str, Any]:
    """The object's status as the store keeps it; {} when the store has forgotten it."""
    body = m.controller.store.get(kind, "ml", name)
    return {} if body is None else dict(body.get("status") or {})


COMPLETE = [{"type": "Complete", "status": "True"}]


def test_a_job_queues_its_model_when_it_runs_and_when_it_ends_only() -> None:
    m = memo()
    assert deliver(handlers.job_event, m, "ADDED", job()) == []  # a pass just created it
    assert deliver(handlers.job_event, m, "MODIFIED", job(active=1, ready=0)) == []
    assert kept(m, "Job", "iris-v1") == {"active": 1, "ready": 0}
    assert deliver(handlers.job_event, m, "MODIFIED", job(active=1, ready=1)) == [("ml", "iris")]
    # counts that decide nothing
    assert deliver(handlers.job_event, m, "MODIFIED", job(active=1, ready=1, terminating=0)) == []
    done = job(succeeded=1, conditions=COMPLETE)
    assert deliver(handlers.job_event, m, "MODIFIED", done) == [("ml", "iris")]
    assert deliver(handlers.job_event, m, "MODIFIED", {**done, "spec": {"suspend": False}}) == []
    assert deliver(handlers.job_event, m, "DELETED", done) == [("ml", "iris")]
    assert kept(m, "Job", "iris-v1") == {}


def test_a_job_that_fails_or_loses_its_running_pod_queues_its_model() -> None:
    m = memo()
    deliver(handlers.job_event, m, "ADDED", job(active=1, ready=1))
    assert deliver(handlers.job_event, m, "MODIFIED", job(active=1, ready=0, failed=1)) == [
        ("ml", "iris")
    ]
    failed = job(failed=2, conditions=[{"type": "Failed", "status": "True"}])
    assert deliver(handlers.job_event, m, "MODIFIED", failed) == [("ml", "iris")]


def test_training_pods_are_kept_for_their_jobs_passes_and_queue_nothing() -> None:
    m = memo()
    waiting = {"state": {"waiting": {"reason": "CreateContainerConfigError"}}}
    ended = {"state": {"terminated": {"exitCode": 0, "message": '{"phase": "Succeeded"}'}}}
    for type, status in [
        ("ADDED", {"phase": "Pending"}),
        ("MODIFIED", {"phase": "Pending", "containerStatuses": [waiting]}),
        ("MODIFIED", {"phase": "Running"}),
        ("MODIFIED", {"phase": "Succeeded", "containerStatuses": [ended]}),
    ]:
        assert deliver(handlers.training_pod_event, m, type, training_pod(**status)) == []
        assert kept(m, "Pod", "iris-v1-abcde")["phase"] == status["phase"]
    assert deliver(handlers.training_pod_event, m, "DELETED", training_pod()) == []
    assert kept(m, "Pod", "iris-v1-abcde") == {}
