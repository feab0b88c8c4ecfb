"""The operator's own metrics (runtime/metrics.py) and its JSON log lines.

The unit tests run the edges the metrics hang on (the controller's wrapper around a pass, the work
queue, the Event sink) with a registry of their own per test; one of them runs real passes
against the in-memory API server (tests/fake_kube.py). The integration test starts the operator
as the other operator tests do, applies a Model on the session's control plane and reads
`/metrics` over HTTP while the Model trains, is rejected and goes away.
"""

from __future__ import annotations

import datetime
import io
import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from fake_kube import FakeKube
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families
from support import (
    OperatorProcess,
    apply_squatted_model,
    eventually,
    finish_pod,
    training_result,
)

from modelops_api import contract
from modelops_operator.reconcile import Context, reconcile
from modelops_operator.run import JsonFormatter
from modelops_operator.runtime.controller import Controller
from modelops_operator.runtime.events import kube_event_sink
from modelops_operator.runtime.kube import Kube
from modelops_operator.runtime.metrics import Metrics, error_kind, failed_checks, serve
from modelops_operator.runtime.store import Store
from modelops_operator.runtime.workqueue import CURRENT, WorkQueue
from modelops_operator.settings import Settings
from modelops_sandbox.controlplane import ControlPlane, free_port

REPO = Path(__file__).resolve().parents[2]
NS, MODEL = "ml", "iris"
KEY = {"namespace": NS, "model": MODEL}
Body = dict[str, Any]


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def controller(
    reconcile: Callable[[str, str], object], metrics: Metrics, store: Store | None = None
) -> Controller:
    """A controller whose parts the wrapper around a pass does not touch are left out."""
    return Controller(
        cast(Kube, None),
        store or Store(),
        WorkQueue(),
        Settings(),
        reconcile,
        metrics=metrics,
    )


def status(**fields: Any) -> Body:
    return {"phase": contract.PHASE_SERVING, "stableVersion": "iris-v1", **fields}


# --- the registry --------------------------------------------------------------------------------


@pytest.mark.unit
def test_each_metrics_object_has_a_registry_of_its_own() -> None:
    first, second = Metrics(), Metrics()  # the global registry would refuse the second
    first.observe_reconcile(0.1)
    assert value(first, "modelops_operator_reconcile_total", result="ok") == 1
    assert value(second, "modelops_operator_reconcile_total", result="ok") is None
    names = {m.name for m in first.registry.collect()}
    ours = {n for n in names if n.startswith("modelops_operator_")}
    assert len(ours) == 14 and "modelops_operator_leader" in ours
    assert "process_resident_memory_bytes" in names  # the process's own, as usual


# --- passes --------------------------------------------------------------------------------------


@pytest.mark.unit
def test_a_pass_is_counted_by_result_and_timed() -> None:
    metrics = Metrics()
    answers: list[object] = [status(), RuntimeError("boom")]

    def reconcile(namespace: str, name: str) -> object:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    c = controller(reconcile, metrics)
    c.reconciling(NS, MODEL)
    with pytest.raises(RuntimeError):  # the queue still sees the failure, and retries it
        c.reconciling(NS, MODEL)

    assert value(metrics, "modelops_operator_reconcile_total", result="ok") == 1
    assert value(metrics, "modelops_operator_reconcile_total", result="error") == 1
    assert value(metrics, "modelops_operator_reconcile_errors_total", error="RuntimeError") == 1
    assert value(metrics, "modelops_operator_reconcile_duration_seconds_count") == 2


@pytest.mark.unit
def test_an_error_is_labelled_by_the_api_servers_status_or_its_class() -> None:
    from kubernetes.client.exceptions import ApiException

    from modelops_operator.reconcile import Reported

    try:
        raise Reported("ml/iris: 409 conflict") from ApiException(status=409, reason="Conflict")
    except Reported as error:
        assert error_kind(error) == "api_409"
    assert error_kind(ValueError("x")) == "ValueError"


@pytest.mark.unit
def test_a_models_gauges_follow_its_status_and_go_with_it() -> None:
    metrics = Metrics()
    answers: list[Body | None] = [
        status(
            phase=contract.PHASE_CANARY,
            accuracy=0.93,
            drift=0.12,
            canary={"version": "iris-v2", "weight": 20},
        ),
        status(phase=contract.PHASE_SERVING, stableVersion="iris-v2", accuracy=0.95, canary=None),
        None,  # the Model was deleted
    ]
    c = controller(lambda namespace, name: answers.pop(0), metrics)
    # A second Model, whose series stay when the first goes.
    controller(lambda namespace, name: status(accuracy=0.5), metrics).reconciling(NS, "wine")

    c.reconciling(NS, MODEL)
    phase = "modelops_operator_model_phase"
    assert value(metrics, phase, namespace=NS, model=MODEL, phase="Canary") == 1
    assert value(metrics, phase, namespace=NS, model=MODEL, phase="Serving") == 0
    v1 = {"namespace": NS, "model": MODEL, "version": "iris-v1"}
    v2 = {"namespace": NS, "model": MODEL, "version": "iris-v2"}
    assert value(metrics, "modelops_operator_model_accuracy", **v1) == 0.93
    assert value(metrics, "modelops_operator_model_drift_psi", **v1) == 0.12
    assert value(metrics, "modelops_operator_model_canary_weight_percent", **v2) == 20

    c.reconciling(NS, MODEL)  # promoted: v2 is stable, no canary, drift not measured yet
    assert value(metrics, phase, namespace=NS, model=MODEL, phase="Canary") == 0
    assert value(metrics, phase, namespace=NS, model=MODEL, phase="Serving") == 1
    assert value(metrics, "modelops_operator_model_accuracy", **v1) is None
    assert value(metrics, "modelops_operator_model_accuracy", **v2) == 0.95
    assert value(metrics, "modelops_operator_model_drift_psi", **v1) is None
    assert value(metrics, "modelops_operator_model_canary_weight_percent", **v2) is None

    c.reconciling(NS, MODEL)
    text = "\n".join(f"{s.name}{s.labels}" for m in metrics.registry.collect() for s in m.samples)
    assert f"'model': '{MODEL}'" not in text
    assert value(metrics, "modelops_operator_model_accuracy", namespace=NS, model="wine",
                 version="iris-v1") == 0.5  # fmt: skip


def version(name: str, phase: str | None, started: str = "", finished: str = "") -> Body:
    body: Body = {
        "apiVersion": f"{contract.GROUP}/{contract.VERSION}",
        "kind": "ModelVersion",
        "metadata": {
            "name": name,
            "namespace": NS,
            "resourceVersion": str(time.monotonic_ns()),
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {contract.LABEL_MODEL: MODEL},
            "ownerReferences": [{"kind": "Model", "uid": "uid-iris", "controller": True}],
        },
        "spec": {"model": MODEL},
        "status": {},
    }
    if phase is not None:
        body["status"] = {"phase": phase, "startedAt": started, "finishedAt": finished}
    return body


@pytest.mark.unit
def test_a_training_is_counted_once_when_it_ends_and_not_what_ended_before() -> None:
    metrics, store = Metrics(), Store()
    store.put(
        "Model",
        {
            "kind": "Model",
            "metadata": {"name": MODEL, "namespace": NS, "uid": "uid-iris", "resourceVersion": "1"},
        },
    )
    store.put("ModelVersion", version("iris-v1", contract.SUCCEEDED, "", "2026-01-01T00:05:00Z"))
    store.put("ModelVersion", version("iris-v2", contract.TRAINING))
    c = controller(lambda namespace, name: status(), metrics, store)
    trainings = "modelops_operator_trainings_total"

    c.reconciling(NS, MODEL)  # the first look: v1 ended before this process saw it
    # Each outcome's series exists from the first look, at 0 (so increase() sees the first one).
    assert value(metrics, trainings, outcome="succeeded", **KEY) == 0
    assert value(metrics, trainings, outcome="failed", **KEY) == 0

    store.put(
        "ModelVersion",
        version("iris-v2", contract.REJECTED, "2026-01-01T01:00:00Z", "2026-01-01T01:02:00Z"),
    )
    c.reconciling(NS, MODEL)
    c.reconciling(NS, MODEL)  # counted once, however many passes see it
    assert value(metrics, trainings, outcome="rejected", **KEY) == 1
    assert value(metrics, trainings, outcome="succeeded", **KEY) == 0
    duration = "modelops_operator_training_duration_seconds"
    assert value(metrics, f"{duration}_sum", outcome="rejected") == 120
    assert value(metrics, f"{duration}_count", outcome="rejected") == 1

    # A hand-made version (not owned by the Model) is not one of its trainings.
    stranger = version("iris-v3", contract.FAILED, "", "2026-01-01T02:00:00Z")
    stranger["metadata"]["ownerReferences"] = []
    store.put("ModelVersion", stranger)
    store.put("ModelVersion", version("iris-v4", contract.FAILED, "", "2026-01-01T02:00:00Z"))
    c.reconciling(NS, MODEL)
    assert value(metrics, trainings, outcome="failed", **KEY) == 1  # v4 only
    # no startedAt: from the version's creation
    assert value(metrics, f"{duration}_sum", outcome="failed") == 7200


# --- Events --------------------------------------------------------------------------------------


class PostedEvents:
    """The one method of Kube the Event sink calls."""

    def __init__(self) -> None:
        self.posted: list[tuple[str, str]] = []
        self.done = threading.Event()

    def post_event(
        self, obj: Mapping[str, Any], event_type: str, reason: str, message: str, now: str
    ) -> None:
        self.posted.append((event_type, reason))
        if reason == "Last":
            self.done.set()


@pytest.mark.unit
def test_canary_outcomes_are_told_apart_from_the_events_the_sink_posts() -> None:
    metrics, kube = Metrics(), PostedEvents()
    post = kube_event_sink(cast(Kube, kube), metrics)
    model = {"metadata": {"name": MODEL, "namespace": NS}}
    post(model, "Normal", "Promoted", "iris-v2 passed all 3 steps; phase Canary -> Serving")
    post(model, "Warning", "RolledBack",
         "iris-v3 failed 2 analyses (threshold 2): latency, errorRate")  # fmt: skip
    post(model, "Warning", "RolledBack", "iris-v4 aborted")
    post(model, "Warning", "RolledBack", "no progress for 10m (no analysis)")
    # The condition's transition says the same rollback again: not a second one.
    post(model, "Warning", "RolledBack", "Degraded=True: still serving iris-v2; iris-v3 ...")
    post(model, "Normal", "Last", "")
    assert kube.done.wait(10)

    outcomes = "modelops_operator_canary_outcomes_total"
    assert value(metrics, outcomes, outcome="promoted", check="", **KEY) == 1
    assert value(metrics, outcomes, outcome="rolled_back", check="errorRate,latency", **KEY) == 1
    assert value(metrics, outcomes, outcome="rolled_back", check="", **KEY) == 2
    events = "modelops_operator_events_total"
    assert value(metrics, events, type="Warning", reason="RolledBack") == 4
    assert value(metrics, events, type="Normal", reason="Promoted") == 1
    assert len(kube.posted) == 6  # every Event is still posted


@pytest.mark.unit
def test_failed_checks_are_read_from_a_rollbacks_message() -> None:
    assert failed_checks("v2 failed 3 analyses (threshold 3): drift") == "drift"
    assert failed_checks("v2 failed 1 analyses (threshold 1): b, a; phase X -> Y") == "a,b"
    assert failed_checks("v2 aborted") == ""


# --- real passes ---------------------------------------------------------------------------------


def iris() -> Body:
    body: Body = yaml.safe_load((REPO / "examples" / "iris.yaml").read_text())
    body["metadata"]["namespace"] = NS
    return body


@pytest.mark.unit
def test_real_passes_move_the_counts_and_a_deleted_model_leaves_no_series() -> None:
    started = (datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=90)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    kube = FakeKube(Store(), namespace=NS, now=lambda: started)  # the Job started 90 s ago
    assert kube.store is not None
    metrics = Metrics()
    events: list[str] = []

    def sink(obj: Mapping[str, Any], event_type: str, reason: str, message: str) -> None:
        events.append(reason)
        metrics.observe_event(obj, event_type, reason, message)

    ctx = Context(kube, kube.store, Settings(), sink)
    c = Controller(kube, kube.store, WorkQueue(), Settings(), lambda ns, n: reconcile(ctx, ns, n),
                   metrics=metrics)  # fmt: skip
    kube.put(iris())

    c.reconciling(NS, MODEL)
    assert value(metrics, "modelops_operator_reconcile_total", result="ok") == 1
    phase = {"namespace": NS, "model": MODEL}
    assert value(metrics, "modelops_operator_model_phase", **phase, phase="Training") == 1
    assert events == []  # a new Model's first training is no news

    kube.start_job("iris-v1")
    kube.finish_job("iris-v1", json.loads(training_result(MODEL, "iris-v1", "Rejected")))
    c.reconciling(NS, MODEL)
    assert value(metrics, "modelops_operator_events_total", type="Warning",
                 reason="QualityGateMissed") == 1  # fmt: skip
    assert value(metrics, "modelops_operator_trainings_total", outcome="rejected", **KEY) == 1
    seconds = value(metrics, "modelops_operator_training_duration_seconds_sum", outcome="rejected")
    assert seconds is not None and 89 <= seconds < 150
    assert value(metrics, "modelops_operator_model_phase", **phase, phase="Failed") == 1

    kube.remove("Model", MODEL)
    assert c.reconciling(NS, MODEL) is None
    assert value(metrics, "modelops_operator_reconcile_total", result="ok") == 3
    assert value(metrics, "modelops_operator_model_phase", **phase, phase="Failed") is None
    assert value(metrics, "modelops_operator_model_phase", **phase, phase="Training") is None


# --- the queue and the leader --------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.unit
def test_the_queue_reports_its_depth_and_how_long_each_model_waited() -> None:
    metrics, clock = Metrics(), Clock()
    queue = WorkQueue(workers=1, clock=clock, metrics=metrics)
    queue.add(NS, "a")
    queue.add(NS, "b")
    queue.add(NS, "a")  # already waiting: not twice
    assert value(metrics, "modelops_operator_workqueue_depth") == 2
    clock.now += 3
    seen: list[str | None] = []
    queue.start(lambda namespace, name: seen.append(repr(CURRENT.get())))
    try:
        eventually(lambda: queue.done == 2, timeout=10, every=0.01)
    finally:
        queue.stop()
    assert value(metrics, "modelops_operator_workqueue_depth") == 0
    assert value(metrics, "modelops_operator_workqueue_wait_seconds_count") == 2
    assert value(metrics, "modelops_operator_workqueue_wait_seconds_sum") == 6
    assert seen == [repr((NS, "a")), repr((NS, "b"))]  # the worker names the Model it runs
    assert CURRENT.get() is None


@pytest.mark.unit
def test_the_leader_gauge_is_one_once_this_replica_acts() -> None:
    kube = FakeKube(Store(), namespace=NS)
    assert kube.store is not None
    metrics = Metrics()
    c = Controller(kube, kube.store, WorkQueue(workers=1), Settings(), lambda ns, n: None,
                   metrics=metrics)  # fmt: skip
    assert value(metrics, "modelops_operator_leader") == 0
    c.start()  # no election: it acts at once
    try:
        assert value(metrics, "modelops_operator_leader") == 1
    finally:
        c.stop()

    class Standby:
        leading = False

        def start(self, on_elected: Callable[[], object]) -> None:
            pass

        def stop(self) -> None:
            pass

    standby = Controller(kube, kube.store, WorkQueue(workers=1), Settings(), lambda ns, n: None,
                         elector=cast(Any, Standby()), metrics=Metrics())  # fmt: skip
    standby.start()
    assert standby.metrics is not None
    assert value(standby.metrics, "modelops_operator_leader") == 0


# --- the server ----------------------------------------------------------------------------------


@pytest.mark.unit
def test_the_metrics_are_served_over_http_and_a_taken_port_costs_only_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = Metrics()
    metrics.observe_reconcile(0.2)
    port = free_port()
    server = serve(metrics, port, "127.0.0.1")
    assert server is not None
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
        assert 'modelops_operator_reconcile_total{result="ok"} 1.0' in text
        with caplog.at_level(logging.ERROR, "modelops.metrics"):
            assert serve(Metrics(), port, "127.0.0.1") is None
        assert "metrics not served" in caplog.text
    finally:
        server.shutdown()
        server.server_close()


# --- JSON logs -----------------------------------------------------------------------------------


def json_lines(emit: Callable[[logging.Logger], None]) -> list[dict[str, Any]]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("modelops.test-json")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    try:
        emit(logger)
    finally:
        logger.removeHandler(handler)
    return [json.loads(line) for line in out.getvalue().splitlines()]


@pytest.mark.unit
def test_a_json_log_line_is_one_object_naming_the_model_of_the_pass() -> None:
    def emit(logger: logging.Logger) -> None:
        logger.info("outside %s", "any pass")
        token = CURRENT.set((NS, MODEL))
        try:
            logger.warning("inside\na pass")
            try:
                raise ValueError("boom")
            except ValueError:
                logger.exception("failed")
        finally:
            CURRENT.reset(token)
        # Kopf's per-object loggers carry the object's reference.
        ref = {"kind": "Job", "namespace": NS, "name": "iris-v1", "uid": "u"}
        logger.info("job event", extra={"k8s_ref": ref})

    outside, inside, failed, kopf = json_lines(emit)
    assert set(outside) == {"time", "level", "logger", "message"}
    assert outside["message"] == "outside any pass"
    assert (outside["level"], outside["logger"]) == ("INFO", "modelops.test-json")
    assert outside["time"].endswith("Z")
    datetime.datetime.fromisoformat(outside["time"])
    assert inside["message"] == "inside\na pass"  # still one line
    assert (inside["namespace"], inside["model"], inside["level"]) == (NS, MODEL, "WARNING")
    assert failed["model"] == MODEL and "ValueError: boom" in failed["exception"]
    assert (kopf["kind"], kopf["namespace"], kopf["name"]) == ("Job", NS, "iris-v1")
    assert "model" not in kopf


# --- the operator process ------------------------------------------------------------------------


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(port: int, name: str, **labels: str) -> float | None:
    return scrape(port).get((name, frozenset(labels.items())))


@pytest.mark.integration
def test_the_operator_serves_its_metrics_while_a_model_trains_and_goes(
    control_plane: ControlPlane,
    crds: Path,
    kube_api: client.ApiClient,
    namespace_factory: Callable[[str], str],
    tmp_path: Path,
) -> None:
    ns = namespace_factory("metrics-")
    port = free_port()
    log = tmp_path / "operator.log"
    env = {
        "MODELOPS_METRICS_PORT": str(port),
        "MODELOPS_LOG_FORMAT": "json",
        "MODELOPS_RESYNC_SECONDS": "3600",
    }
    process = OperatorProcess(control_plane.kubeconfig, [ns], log, env).start()
    custom, core = client.CustomObjectsApi(kube_api), client.CoreV1Api(kube_api)
    try:
        process.wait_ready()
        ok = "modelops_operator_reconcile_total"
        assert sample(port, ok, result="ok") is None  # nothing reconciled yet
        eventually(lambda: sample(port, "modelops_operator_leader") == 1)

        body = iris()
        body["metadata"]["namespace"] = ns
        custom.create_namespaced_custom_object(contract.GROUP, contract.VERSION, ns, "models", body)
        eventually(lambda: (sample(port, ok, result="ok") or 0) >= 1)
        phase = {"namespace": ns, "model": MODEL}
        eventually(lambda: sample(port, "modelops_operator_model_phase", **phase,
                                  phase="Training") == 1)  # fmt: skip
        assert (sample(port, "modelops_operator_workqueue_wait_seconds_count") or 0) >= 1

        # The kubelet's part: the training pod ends, rejected by its quality gate.
        def pod() -> Any:
            pods = core.list_namespaced_pod(
                ns, label_selector="batch.kubernetes.io/job-name=iris-v1"
            ).items
            return pods[0] if pods else None

        name = eventually(pod).metadata.name
        result = training_result(MODEL, "iris-v1", "Rejected", reason=contract.GATE_MISSED)
        finish_pod(core, ns, name, contract.TRAINING_CONTAINER, 0, result)
        trainings = "modelops_operator_trainings_total"
        mine = {"namespace": ns, "model": MODEL}
        eventually(lambda: sample(port, trainings, outcome="rejected", **mine) == 1)
        eventually(lambda: sample(port, "modelops_operator_model_phase", **phase,
                                  phase="Failed") == 1)  # fmt: skip

        custom.delete_namespaced_custom_object(contract.GROUP, contract.VERSION, ns, "models",
                                               MODEL)  # fmt: skip
        eventually(
            lambda: (
                not any(
                    dict(labels).get("model") == MODEL and dict(labels).get("namespace") == ns
                    for _, labels in scrape(port)
                )
            )
        )
        # The Model's counters went with it (label sets stay bounded as Models come and go).
        assert sample(port, trainings, outcome="rejected", **mine) is None

        # A version someone else made under the name the next training needs: every pass is
        # refused (409, not the Model's), counted as such and logged with the Model's name.
        apply_squatted_model(custom, ns, body, "broken")
        errors = "modelops_operator_reconcile_errors_total"
        eventually(lambda: (sample(port, errors, error="api_409") or 0) >= 1)
        assert (sample(port, ok, result="error") or 0) >= 1
    finally:
        process.stop()
        print(process.tail())

    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert lines and all({"time", "level", "logger", "message"} <= set(e) for e in lines)
    failures = [e for e in lines if e["message"].startswith(f"reconcile of {ns}/broken failed")]
    assert failures and failures[0]["level"] == "ERROR" and "exception" in failures[0]
    assert (failures[0]["namespace"], failures[0]["model"]) == (ns, "broken")
