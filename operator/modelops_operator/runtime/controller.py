"""The controller around the passes: it seeds the store, runs the queue's workers and the resync.

Built in `modelops_operator.run` from its parts; Kopf's startup handler calls `start`, its cleanup
handler `stop`. The resync is the safety net: every Model is queued once per interval, and a pass
with nothing to do costs no request (it reads the store).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from fnmatch import fnmatch

from kubernetes.client.exceptions import ApiException

from modelops_api import contract
from modelops_operator.monitor import Monitor
from modelops_operator.runtime.kube import Kube
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
)


def seed(kube: Kube, store: Store, namespaces: tuple[str, ...]) -> None:
    """Fills the store with one list per watched kind, before the watches start, so no pass plans
    from a half-filled store."""
    for kind in WATCHED:
        selector = {} if kind in ("Model", "ModelVersion") else contract.MANAGED
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
    analysis loop and the resync, started and stopped as one."""

    def __init__(
        self,
        kube: Kube,
        store: Store,
        queue: WorkQueue,
        settings: Settings,
        reconcile: Callable[[str, str], object],
        monitor: Monitor | None = None,
    ) -> None:
        self.kube, self.store, self.queue = kube, store, queue
        self.settings, self.reconcile, self.monitor = settings, reconcile, monitor
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        seed(self.kube, self.store, self.settings.namespaces)
        self.queue.start(self.reconcile)
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

    def _resync(self) -> None:
        while not self._stop.wait(self.settings.resync_seconds):
            for namespace, name in self.store.names("Model"):
                self.queue.add(namespace, name)
