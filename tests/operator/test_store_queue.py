"""The operator's store, its work queue, `Kube.ensure`, and the settling of monitoring values."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from support import eventually

from modelops_api import contract
from modelops_operator.monitoring_state import settled
from modelops_operator.runtime import kube
from modelops_operator.runtime.kube import Kube
from modelops_operator.runtime.store import Store
from modelops_operator.runtime.workqueue import BACKGROUND_MAX_WAIT, WorkQueue
from modelops_operator.training import memory_limit

pytestmark = pytest.mark.unit


def obj(kind: str, name: str, rv: int, model: str = "iris", **extra: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": "ml",
            "resourceVersion": str(rv),
            "labels": {contract.LABEL_MODEL: model},
            "managedFields": [{"manager": "x"}],
        },
        **extra,
    }


# --- store ------------------------------------------------------------------------------------


def test_store_keeps_the_newest_and_drops_managed_fields() -> None:
    store = Store()
    store.put("Model", obj("Model", "iris", 5, spec={"a": 1}))
    kept = store.put("Model", obj("Model", "iris", 4, spec={"a": 0}))  # a late watch event
    assert kept["spec"] == {"a": 1}
    assert "managedFields" not in kept["metadata"]
    store.put("Model", obj("Model", "iris", 6, spec={"a": 2}))
    assert store.get("Model", "ml", "iris")["spec"] == {"a": 2}  # type: ignore[index]


def test_store_keeps_only_the_state_of_children() -> None:
    store = Store()
    body = obj("Deployment", "iris-stable", 1, spec={"replicas": 2, "template": {}}, status={})
    kept = store.put("Deployment", body)
    assert kept["spec"] == {"replicas": 2} and kept["status"] == {}


def test_store_keeps_a_training_pods_state_and_memory_limit_only() -> None:
    """An OOMKilled training's reason names its memory limit, read from the stored pod's spec;
    the rest of the spec (the bulk of a pod) is not kept."""
    resources = {"limits": {"memory": "48Mi"}}
    container = {
        "name": contract.TRAINING_CONTAINER,
        "resources": resources,
        "env": [{"name": "A"}],
    }
    spec = {"containers": [container], "volumes": [{"name": "spec"}], "nodeName": "node-1"}
    status = {"phase": "Succeeded", "containerStatuses": [{"name": contract.TRAINING_CONTAINER}]}
    kept = Store().put("Pod", obj("Pod", "iris-v1-abc", 1, spec=spec, status=status))
    assert memory_limit(kept) == "48Mi"
    assert kept["spec"] == {
        "containers": [{"name": contract.TRAINING_CONTAINER, "resources": resources}]
    }
    assert kept["status"] == status


def test_store_indexes_by_model_and_forgets() -> None:
    store = Store()
    for i, model in ((1, "iris"), (2, "iris"), (3, "wine")):
        store.put("ModelVersion", {**obj("ModelVersion", f"v{i}", i), "spec": {"model": model}})
    assert [v["metadata"]["name"] for v in store.owned("ModelVersion", "ml", "iris")] == [
        "v1",
        "v2",
    ]
    store.forget("ModelVersion", "ml", "v1")
    assert [v["metadata"]["name"] for v in store.owned("ModelVersion", "ml", "iris")] == ["v2"]
    assert store.names("ModelVersion") == [("ml", "v2"), ("ml", "v3")]


# --- Kube.ensure --------------------------------------------------------------------------------


class Recording(Kube):
    """Kube whose API server is a dict: records each request and answers like an apply would."""

    def __init__(self, store: Store) -> None:
        super().__init__(None, store)  # type: ignore[arg-type]
        self.calls: list[str] = []

    def request(self, method: str, url: str, body: Any = None, **_: Any) -> dict[str, Any]:
        self.calls.append(method)
        return {**body, "metadata": {**body["metadata"], "generation": 1, "resourceVersion": "9"}}


def deployment(image: str) -> dict[str, Any]:
    return {
        "kind": "Deployment",
        "metadata": {"name": "iris-stable", "namespace": "ml"},
        "spec": {"template": {"image": image}},
    }


def test_ensure_applies_once_until_the_body_or_the_object_changes() -> None:
    store = Store()
    kube = Recording(store)
    kube.ensure(deployment("a"))
    kube.ensure(deployment("a"))
    assert kube.calls == ["PATCH"]  # nothing to change: no request
    kube.ensure(deployment("b"))
    assert kube.calls == ["PATCH", "PATCH"]  # a new body
    edited = store.get("Deployment", "ml", "iris-stable")
    assert edited is not None
    store.put("Deployment", {**edited, "metadata": {**edited["metadata"], "generation": 2}})
    kube.ensure(deployment("b"))
    assert kube.calls == ["PATCH", "PATCH", "PATCH"]  # edited by someone else: put right


# --- work queue -------------------------------------------------------------------------------


def test_queue_coalesces_a_burst_and_reruns_a_model_added_while_running() -> None:
    started, release = threading.Event(), threading.Event()
    runs: list[tuple[str, str]] = []

    def work(namespace: str, name: str) -> None:
        runs.append((namespace, name))
        if len(runs) == 1:
            started.set()
            release.wait(5)

    queue = WorkQueue(workers=2)
    queue.start(work)
    try:
        queue.add("ml", "iris")
        assert started.wait(5)
        for _ in range(10):  # a burst while the first run is going on
            queue.add("ml", "iris")
        release.set()
        eventually(lambda: queue.done == 2 and queue.pending() == 0, timeout=5)
        time.sleep(0.2)
        assert runs == [("ml", "iris"), ("ml", "iris")]
    finally:
        queue.stop()


@contextlib.contextmanager
def busy_queue(clock: Callable[[], float] = time.monotonic) -> Iterator[tuple[WorkQueue, Busy]]:
    """A one-worker queue whose worker runs the Model "busy" until `Busy.ran()` lets it go."""
    busy = Busy()
    queue = WorkQueue(workers=1, clock=clock)
    queue.start(busy.work)
    try:
        queue.add("ml", "busy")
        assert busy.started.wait(5)
        yield queue, busy
    finally:
        busy.release.set()
        queue.stop()


class Busy:
    def __init__(self) -> None:
        self.started, self.release = threading.Event(), threading.Event()
        self.runs: list[str] = []

    def work(self, namespace: str, name: str) -> None:
        self.runs.append(name)
        if name == "busy":
            self.started.set()
            self.release.wait(5)

    def ran(self, queue: WorkQueue) -> list[str]:
        """The Models run, in order, once "busy" is let go and the queue is empty."""
        self.release.set()
        eventually(lambda: queue.pending() == 0, timeout=5)
        time.sleep(0.2)
        return self.runs


def test_queue_runs_changed_models_before_periodic_passes() -> None:
    """A Model that changed waits for no periodic pass queued before it; one queued for both
    runs once, in the first lane; the background lane runs in its order once the first is empty."""
    with busy_queue() as (queue, busy):
        for name in ("a1", "a2", "both", "a3"):  # a new analysis for each, in this order
            queue.add_background("ml", name)
        queue.add("ml", "changed")
        queue.add("ml", "both")
        queue.add_background("ml", "changed")  # still in the first lane
        assert queue.depth() == 5
        assert busy.ran(queue) == ["busy", "changed", "both", "a1", "a2", "a3"]


def test_a_periodic_pass_that_waited_long_goes_before_changes() -> None:
    """A steady stream of changes does not hold a Model's analysis back for ever: once it has
    waited BACKGROUND_MAX_WAIT it goes before the first lane."""
    now = [0.0]
    with busy_queue(clock=lambda: now[0]) as (queue, busy):
        queue.add_background("ml", "analysed")
        now[0] = BACKGROUND_MAX_WAIT - 1
        queue.add("ml", "changed")
        queue.add_background("ml", "fresh")
        now[0] = BACKGROUND_MAX_WAIT  # "analysed" has waited the most, "fresh" 1 s
        queue.add("ml", "changed-later")
        assert busy.ran(queue) == ["busy", "analysed", "changed", "changed-later", "fresh"]


def test_queue_retries_a_failed_reconcile() -> None:
    attempts: list[float] = []

    def work(namespace: str, name: str) -> None:
        attempts.append(time.monotonic())
        if len(attempts) < 2:
            raise RuntimeError("API server away")

    queue = WorkQueue(workers=1)
    queue.start(work)
    try:
        queue.add("ml", "iris")
        eventually(lambda: len(attempts) == 2, timeout=5)
        assert attempts[1] - attempts[0] >= 0.9  # the first retry waits a second
    finally:
        queue.stop()


# --- settled monitoring values ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("new", "kept"),
    [
        ({"check": "accuracy", "outcome": "Pass", "value": 0.95}, True),
        ({"check": "accuracy", "outcome": "Pass", "value": 0.86}, True),  # within 10%
        ({"check": "accuracy", "outcome": "Pass", "value": 0.80}, False),
        ({"check": "accuracy", "outcome": "Fail", "value": 0.95}, False),
        ({"check": "accuracy", "outcome": "Pass"}, False),
    ],
)
def test_settled_keeps_the_previous_values_unless_something_moved(
    new: dict[str, Any], kept: bool
) -> None:
    previous = {"check": "accuracy", "outcome": "Pass", "value": 0.9}
    assert (settled(previous, new) is previous) is kept
    assert settled(None, new) is new


def test_a_write_into_a_terminating_namespace_is_told_from_an_rbac_refusal() -> None:
    terminating = ApiException(status=403, reason="Forbidden")
    terminating.body = json.dumps(
        {
            "kind": "Status",
            "code": 403,
            "reason": "Forbidden",
            "details": {"causes": [{"reason": "NamespaceTerminating", "field": "metadata"}]},
        }
    )
    rbac = ApiException(status=403, reason="Forbidden")
    rbac.body = json.dumps({"kind": "Status", "code": 403, "reason": "Forbidden"})
    assert kube.namespace_terminating(terminating)
    assert not kube.namespace_terminating(rbac)
    assert not kube.namespace_terminating(ApiException(status=404, reason="NotFound"))


def test_a_hung_api_server_fails_the_request_instead_of_holding_it() -> None:
    """An API server that accepts a connection and never answers: the call fails after the read
    timeout, so the queue's worker is free to retry (and the Model says why)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        configuration = client.Configuration()
        configuration.host = f"http://127.0.0.1:{server.getsockname()[1]}"
        silent = Kube(client.ApiClient(configuration), timeout=(1.0, 0.5))
        started = time.monotonic()
        with pytest.raises(urllib3.exceptions.HTTPError):  # a read timeout, maybe after retries
            silent.get("Model", "ml", "iris")
        assert time.monotonic() - started < 5
