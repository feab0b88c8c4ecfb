"""The operator's own Prometheus metrics, `modelops_operator_*`, and the HTTP server serving them.

The runtime's metrics (the serving pods' predictions, feedback, inputs) are what the checks query;
these are about the operator: how its passes go, how long Models wait for one, what its trainings
and canaries ended with, and what each Model's status says. They are observed at the edges only,
never by the planners: the controller wraps each pass (its result and duration, the status it
returned, the Model's ModelVersions in the store afterwards), the work queue reports its depth and
how long a Model waited, and the Event sink shows each Event the operator posts (a canary's
promotion or rollback is an Event of the pass that decided it).

Every series lives in a `Metrics` object's own registry, not prometheus_client's global one, so
that a process (or a test) may have several; the process's own series (process_*, python_*) are
added to it. `serve` exposes one on `/metrics` (any path answers)
from a small prometheus_client HTTP server in a daemon thread.

Label sets stay bounded: the per-Model gauges carry namespace, model and version only, a Model's
series are removed when it is deleted (its pass returns None), and a series whose version changed
(a new stable version, the next canary) is replaced, not kept beside the new one. Training
outcomes are counted once per ModelVersion that this process saw finish: the versions already
finished when it first reconciled a Model are taken as counted (by the replica that saw them
finish), so a restart or a new leader counts nothing twice.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)

from modelops_api import contract
from modelops_operator.objects import ModelKey

log = logging.getLogger("modelops.metrics")

PREFIX: Final = "modelops_operator"
OK: Final = "ok"
ERROR: Final = "error"
# The ModelVersion phases that end a training, and the outcome each is counted as.
OUTCOMES: Final = {
    contract.SUCCEEDED: "succeeded",
    contract.REJECTED: "rejected",
    contract.FAILED: "failed",
    contract.SUPERSEDED: "superseded",
}
PHASES: Final = (
    contract.PHASE_TRAINING,
    contract.PHASE_DEPLOYING,
    contract.PHASE_SERVING,
    contract.PHASE_CANARY,
    contract.PHASE_ROLLING_BACK,
    contract.PHASE_DEGRADED,
    contract.PHASE_FAILED,
)
PROMOTED: Final = "promoted"
ROLLED_BACK: Final = "rolled_back"
# A condition's transition Event ("Degraded=True: ...", status.transitions) may carry the reason
# RolledBack too; only the rollout's own Event counts as a rollback.
_CONDITION_EVENT = re.compile(r"^[A-Za-z]+=(True|False|Unknown): ")
# The message of a rollback after failed analyses (canary.decide): "... (threshold N): a, b".
_FAILED_CHECKS = re.compile(r"failed \d+ analyses \(threshold \d+\): (?P<checks>[^;]+)")

RECONCILE_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
WAIT_BUCKETS: Final = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300)
TRAINING_BUCKETS: Final = (10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400)


def error_kind(error: BaseException) -> str:
    """A bounded label for why a pass failed: the API server's status code for a refused call
    (`api_409`), else the class of the error (a pass's report carries its cause)."""
    cause = error.__cause__ if error.__cause__ is not None else error
    status = getattr(cause, "status", None)
    if isinstance(status, int) and type(cause).__name__ == "ApiException":
        return f"api_{status}"
    return type(cause).__name__


def failed_checks(message: str) -> str:
    """The checks a rollback's message names as failed, sorted and comma-separated; "" when it
    names none (aborted by hand, progress deadline)."""
    match = _FAILED_CHECKS.search(message)
    if match is None:
        return ""
    return ",".join(sorted(c.strip() for c in match.group("checks").split(",") if c.strip()))


def _seconds_between(start: object, end: object) -> float | None:
    try:
        began = datetime.datetime.fromisoformat(str(start))
        ended = datetime.datetime.fromisoformat(str(end))
    except ValueError:
        return None
    seconds = (ended - began).total_seconds()
    return seconds if seconds >= 0 else None


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


@dataclass
class _ModelSeries:
    """The label values of a Model's per-version gauges as last set (None: not set)."""

    accuracy: tuple[str, ...] | None = None
    drift: tuple[str, ...] | None = None
    canary: tuple[str, ...] | None = None
    phase: str | None = None
    # (outcome, check) of the Model's canary outcomes counted so far
    canary_outcomes: set[tuple[str, str]] = field(default_factory=set)


class Metrics:
    """The operator's series in a registry of their own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        # The process's own (process_*: memory, CPU, open files; python_*), as a default
        # prometheus_client registry has them.
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            r.register(collector)
        self.reconciles = Counter(
            f"{PREFIX}_reconcile", "Passes over a Model, by result (ok, error).", ["result"],
            registry=r,
        )  # fmt: skip
        self.reconcile_errors = Counter(
            f"{PREFIX}_reconcile_errors",
            "Failed passes, by error: api_<status> for a call the API server refused, else the "
            "error's class. The queue retries each one.",
            ["error"],
            registry=r,
        )
        self.reconcile_seconds = Histogram(
            f"{PREFIX}_reconcile_duration_seconds", "How long a pass over a Model took.",
            buckets=RECONCILE_BUCKETS, registry=r,
        )  # fmt: skip
        self.queue_depth = Gauge(
            f"{PREFIX}_workqueue_depth",
            "Models waiting for a worker (not those being reconciled, nor retries not yet due).",
            registry=r,
        )
        self.queue_wait = Histogram(
            f"{PREFIX}_workqueue_wait_seconds",
            "How long a Model waited in the queue, from being queued to its pass starting.",
            buckets=WAIT_BUCKETS, registry=r,
        )  # fmt: skip
        self.trainings = Counter(
            f"{PREFIX}_trainings",
            "Trainings ended, by outcome: succeeded, rejected (missed a quality gate), failed, "
            "superseded (cancelled by a newer spec).",
            ["namespace", "model", "outcome"],
            registry=r,
        )
        self.training_seconds = Histogram(
            f"{PREFIX}_training_duration_seconds",
            "How long a training took, from its Job's start (or the version's creation) to its "
            "end, by outcome.",
            ["outcome"],
            buckets=TRAINING_BUCKETS,
            registry=r,
        )
        self.canaries = Counter(
            f"{PREFIX}_canary_outcomes",
            "Canaries ended, by outcome (promoted, rolled_back) and, for a rollback after failed "
            "analyses, the checks that failed (comma-separated; empty otherwise).",
            ["namespace", "model", "outcome", "check"],
            registry=r,
        )
        self.events = Counter(
            f"{PREFIX}_events", "Events the operator posted on Models, by type and reason.",
            ["type", "reason"], registry=r,
        )  # fmt: skip
        self.phase = Gauge(
            f"{PREFIX}_model_phase",
            "1 for the phase in a Model's status, 0 for the others.",
            ["namespace", "model", "phase"],
            registry=r,
        )
        self.accuracy = Gauge(
            f"{PREFIX}_model_accuracy",
            "status.accuracy: the live accuracy from feedback, else the stable version's "
            "training accuracy.",
            ["namespace", "model", "version"],
            registry=r,
        )
        self.drift = Gauge(
            f"{PREFIX}_model_drift_psi",
            "status.drift: the largest feature PSI of the stable version.",
            ["namespace", "model", "version"],
            registry=r,
        )
        self.canary_weight = Gauge(
            f"{PREFIX}_model_canary_weight_percent",
            "The share of traffic the running canary version gets, while one runs.",
            ["namespace", "model", "version"],
            registry=r,
        )
        self.leader = Gauge(
            f"{PREFIX}_leader",
            "1 on the replica that acts (holds the Lease, or runs without leader election).",
            registry=r,
        )
        self._lock = threading.Lock()
        self._models: dict[ModelKey, _ModelSeries] = {}
        self._finished: dict[ModelKey, set[str]] = {}  # finished versions seen, per Model

    # --- what the controller, the queue and the Event sink report ---------------------------

    def observe_reconcile(self, seconds: float, error: BaseException | None = None) -> None:
        self.reconcile_seconds.observe(seconds)
        self.reconciles.labels(ERROR if error is not None else OK).inc()
        if error is not None:
            self.reconcile_errors.labels(error_kind(error)).inc()

    def observe_wait(self, seconds: float) -> None:
        self.queue_wait.observe(max(0.0, seconds))

    def track_queue(self, depth: Callable[[], int]) -> None:
        """The queue's depth, read at each scrape."""
        self.queue_depth.set_function(lambda: float(depth()))

    def track_leader(self, leading: Callable[[], bool]) -> None:
        """Whether this replica acts, read at each scrape."""
        self.leader.set_function(lambda: 1.0 if leading() else 0.0)

    def observe_event(
        self, obj: Mapping[str, Any], event_type: str, reason: str, message: str
    ) -> None:
        """An Event the operator posts: counted, and a canary's end told apart."""
        self.events.labels(event_type, reason).inc()
        if _CONDITION_EVENT.match(message):
            return
        if reason == "Promoted":
            labels = (PROMOTED, "")
        elif reason == "RolledBack":
            labels = (ROLLED_BACK, failed_checks(message))
        else:
            return
        meta = obj.get("metadata") or {}
        key = (str(meta.get("namespace", "")), str(meta.get("name", "")))
        with self._lock:
            self._models.setdefault(key, _ModelSeries()).canary_outcomes.add(labels)
        self.canaries.labels(*key, *labels).inc()

    def observe_status(self, key: ModelKey, status: Mapping[str, Any] | None) -> None:
        """The status a pass returned; None: the Model is gone, and its series with it."""
        with self._lock:
            if status is None:
                self._forget(key)
                return
            series = self._models.setdefault(key, _ModelSeries())
            namespace, name = key
            phase = status.get("phase")
            if isinstance(phase, str) and phase != series.phase:
                for known in {*PHASES, phase, *([series.phase] if series.phase else [])}:
                    self.phase.labels(namespace, name, known).set(1.0 if known == phase else 0.0)
                series.phase = phase
            stable = str(status.get("stableVersion") or "")
            series.accuracy = self._set(
                self.accuracy, series.accuracy, key, stable, _number(status.get("accuracy"))
            )
            series.drift = self._set(
                self.drift, series.drift, key, stable, _number(status.get("drift"))
            )
            canary = status.get("canary") if isinstance(status.get("canary"), Mapping) else None
            series.canary = self._set(
                self.canary_weight,
                series.canary,
                key,
                str((canary or {}).get("version") or ""),
                _number((canary or {}).get("weight")),
            )

    def observe_versions(self, key: ModelKey, versions: Iterable[Mapping[str, Any]]) -> None:
        """A Model's ModelVersions after a pass: each one that finished since the last look is
        counted by its outcome, with its duration. The first look at a Model counts nothing."""
        finished: dict[str, Mapping[str, Any]] = {}
        for version in versions:
            status = version.get("status") or {}
            if status.get("phase") in contract.FINISHED:
                finished[version["metadata"]["name"]] = version
        with self._lock:
            seen = self._finished.get(key)
            self._finished[key] = set(finished)  # only what exists: pruned versions are let go
        if seen is None:
            for each in OUTCOMES.values():  # each outcome's series exists from the first look
                self.trainings.labels(*key, each)
            return
        for name, version in finished.items():
            if name in seen:
                continue
            status = version.get("status") or {}
            outcome = OUTCOMES.get(status["phase"])
            if outcome is None:  # rolled back or retired: its training was counted before
                continue
            self.trainings.labels(*key, outcome).inc()
            began = status.get("startedAt") or version["metadata"].get("creationTimestamp")
            seconds = _seconds_between(began, status.get("finishedAt"))
            if seconds is not None:
                self.training_seconds.labels(outcome).observe(seconds)

    # --- the per-Model series -------------------------------------------------------------

    def _set(
        self,
        gauge: Gauge,
        current: tuple[str, ...] | None,
        key: ModelKey,
        version: str,
        value: float | None,
    ) -> tuple[str, ...] | None:
        """Sets `gauge` for (Model, version) to `value`, removing the series it replaces; no value
        (or no version): no series. The label values now set."""
        wanted = (key[0], key[1], version) if value is not None and version else None
        if current is not None and current != wanted:
            gauge.remove(*current)
        if wanted is not None and value is not None:
            gauge.labels(*wanted).set(value)
        return wanted

    def _forget(self, key: ModelKey) -> None:
        if self._finished.pop(key, None) is not None:
            for each in OUTCOMES.values():
                with contextlib.suppress(KeyError):
                    self.trainings.remove(*key, each)
        series = self._models.pop(key, None)
        if series is None:
            return
        for outcome_labels in series.canary_outcomes:
            self.canaries.remove(*key, *outcome_labels)
        for gauge, labels in (
            (self.accuracy, series.accuracy),
            (self.drift, series.drift),
            (self.canary_weight, series.canary),
        ):
            if labels is not None:
                gauge.remove(*labels)
        if series.phase is not None:
            for phase in {*PHASES, series.phase}:
                self.phase.remove(key[0], key[1], phase)


def serve(metrics: Metrics, port: int, address: str = "0.0.0.0") -> WSGIServer | None:
    """Serves `metrics` on `address:port` from a daemon thread; the server, to shut it down. A
    port that cannot be bound costs the metrics, not the operator: logged as an error."""
    try:
        server, _ = start_http_server(port, address, registry=metrics.registry)
    except OSError as error:
        log.error("metrics not served: %s:%d cannot be bound (%s)", address, port, error)
        return None
    log.info("metrics on http://%s:%d/metrics", address, port)
    return server
