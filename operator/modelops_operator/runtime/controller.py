"""The controller around the passes: it seeds the store, runs the queue's workers and the resync.

Built in `modelops_operator.run` from its parts; Kopf's startup handler calls `start`, its cleanup
handler `stop`. The resync is the safety net: every Model is queued once per interval, and a pass
with nothing to do costs no request (it reads the store).

With leader election (runtime/leader.py) `start` only enters the election: the replica's watches
keep its store warm and its queue collects Models, but nothing acts until it is elected. Then
`lead` lists every watched kind again from the API server (so the new leader plans from what the
previous one wrote, not from what its own watches have delivered so far), queues every Model, and
only then starts the workers, the analysis loop and the resync. Versions and Jobs have
deterministic names (a second create is a 409) and a canary's clock is in the Model's status, so
the new leader's first passes continue where the old one stopped instead of repeating a step.

With `metrics` (runtime/metrics.py) the workers run each pass through `reconciling`, which
observes its result and duration, the status it returned (None: the Model is gone, and its series
go too) and the Model's ModelVersions as the store has them afterwards (a training that ended).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from fnmatch import fnmatch

from kubernetes.client.exceptions import ApiException

from modelops_api import contract
from modelops_operator.monitor import Monitor
from modelops_operator.objects import owned_by
from modelops_operator.runtime.kube import Kube
from modelops_operator.runtime.leader import LeaderElector
from modelops_operator.runtime.metrics import Metrics
from modelops_operator.runtime.store import Store
from modelops_operator.runtime.workqueue import WorkQueue
from modelops_operator.settings import Settings, is_pattern

log = logging.getLogger("modelops.controller")
# What the operator watches (handlers.py) and so keeps in its store.
WATCHED = (
    "Model",
    "ModelVersion",
    "Job",
    "Deployment",
    "Service",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "Pod",
)
# The pods the operator watches: training pods only, whose termination message is a run's result.
TRAINING_PODS = {**contract.MANAGED, contract.LABEL_COMPONENT: "training"}


def seed(kube: Kube, store: Store, namespaces: tuple[str, ...]) -> None:
    """Fills the store with one list per watched kind, before the watches start, so no pass plans
    from a half-filled store."""
    for kind in WATCHED:
        selector = {} if kind in ("Model", "ModelVersion") else contract.MANAGED
        if kind == "Pod":
            selector = TRAINING_PODS
        for namespace in namespaces or ("",):
            pattern = is_pattern(namespace)
            try:
                items = kube.list(kind, "" if pattern else namespace, selector)
            except ApiException as error:  # the watch will be refused the same way
                log.error("%s in %r not listed: %s", kind, namespace, error.body or error)
                continue
            if pattern:
                items = [i for i in items if fnmatch(i["metadata"]["namespace"], namespace)]
            store.seed(kind, items)
    log.info("store seeded with %d objects", len(store))


class Controller:
    """The store, the queue of Models (whose workers run `reconcile(namespace, name)`), the
    analysis loop and the resync, started and stopped as one; with an elector, started only once
    this replica leads."""

    def __init__(
        self,
        kube: Kube,
        store: Store,
        queue: WorkQueue,
        settings: Settings,
        reconcile: Callable[[str, str], object],
        monitor: Monitor | None = None,
        elector: LeaderElector | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.kube, self.store, self.queue = kube, store, queue
        self.settings, self.reconcile, self.monitor = settings, reconcile, monitor
        self.elector, self.metrics = elector, metrics
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._acting = False
        if metrics is not None:
            metrics.track_leader(self.leading)

    def leading(self) -> bool:
        """Whether this replica acts: it leads (or needs no election) and has started acting."""
        return self._acting and (self.elector is None or self.elector.leading)

    def reconciling(self, namespace: str, name: str) -> object:
        """`reconcile(namespace, name)` as the workers run it, observed."""
        started = time.monotonic()
        try:
            result = self.reconcile(namespace, name)
        except Exception as error:
            if self.metrics is not None:
                self.metrics.observe_reconcile(time.monotonic() - started, error)
            raise
        if self.metrics is not None:
            self.metrics.observe_reconcile(time.monotonic() - started)
            key = (namespace, name)
            status = result if isinstance(result, Mapping) else None
            self.metrics.observe_status(key, status)
            model = self.store.get("Model", namespace, name)
            if status is not None and model is not None:
                uid = model["metadata"].get("uid", "")
                owned = self.store.owned("ModelVersion", namespace, name)
                self.metrics.observe_versions(key, [v for v in owned if owned_by(v, uid)])
        return result

    def start(self) -> None:
        """Without an elector: `lead` now, before Kopf starts the watches. With one: enters the
        election and returns; the elector calls `lead` once this replica is elected."""
        if self.elector is None:
            self.lead()
        else:
            self.elector.start(self.lead)

    def lead(self) -> None:
        """Seeds the store from the API server, queues every Model, then acts."""
        self._acting = True
        seed(self.kube, self.store, self.settings.namespaces)
        if self._stop.is_set():
            return
        models = self.store.names("Model")
        for namespace, name in models:
            self.queue.add(namespace, name)
        log.info("acting: %d Models queued", len(models))
        self.queue.start(self.reconciling)
        if self.monitor is not None:
            self.monitor.start()
        thread = threading.Thread(target=self._resync, name="modelops-resync", daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        if self.monitor is not None:
            self.monitor.stop()
        self.queue.stop()
        for thread in self._threads:
            thread.join(timeout=30)
        if self.elector is not None:  # after the queue drained: a standby takes over at once
            self.elector.stop()

    def _resync(self) -> None:
        while not self._stop.wait(self.settings.resync_seconds):
            for namespace, name in self.store.names("Model"):
                self.queue.add_background(namespace, name)
