"""The operator-wide analysis loop: one batched analysis per interval for every monitored model.

Reconcile registers what each Model wants watched (its stable version, its canary, their checks
and interval); a background thread runs, at each tick, one `analyse()` over every target that is
due, so the number of Prometheus queries per interval does not grow with the number of models.
Due times are aligned to multiples of the interval, so models with the same interval share their
pass. Each result is kept for reconcile to read, and the Model is reconciled at once.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from modelops_operator.analysis.client import QueryClient
from modelops_operator.analysis.engine import analyse
from modelops_operator.analysis.model import CheckResult, Results, Target, TargetKey, Watch
from modelops_operator.objects import ModelKey

log = logging.getLogger("modelops.monitor")


# The shortest interval analysed: the API rejects shorter ones, and a Model admitted by an older
# CRD (say `0s`) is analysed every second rather than breaking the pass of every Model.
MIN_INTERVAL = 1.0


def next_due(now: float, interval: float) -> float:
    """The next multiple of `interval` after `now`: models sharing an interval share a pass."""
    interval = max(interval, MIN_INTERVAL)
    return (math.floor(now / interval) + 1) * interval


class Monitor:
    """Registry of watches, latest results, and the thread that runs the passes."""

    def __init__(
        self,
        client: QueryClient,
        trigger: Callable[[str, str], object],
        tick: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client, self.trigger, self.tick, self.clock = client, trigger, tick, clock
        self._watches: dict[ModelKey, Watch] = {}
        self._due: dict[ModelKey, float] = {}
        self._results: dict[ModelKey, Results] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.passes = 0

    def watch(self, key: ModelKey, watch: Watch | None) -> None:
        """Registers (or, with None, forgets) what a Model wants analysed."""
        with self._lock:
            if watch is None or not watch.targets:
                self._watches.pop(key, None)
                self._due.pop(key, None)
                self._results.pop(key, None)
                return
            previous = self._watches.get(key)
            self._watches[key] = watch
            if previous is None or previous.interval != watch.interval:
                self._due[key] = next_due(self.clock(), watch.interval)

    def results(self, key: ModelKey) -> Results | None:
        with self._lock:
            return self._results.get(key)

    def run_once(self) -> list[ModelKey]:
        """One pass over what is due now; the Models whose results are new."""
        now = self.clock()
        with self._lock:
            due = {k: self._watches[k] for k, t in self._due.items() if t <= now}
            for k, w in due.items():
                self._due[k] = next_due(now, w.interval)
        if not due:
            return []
        by_window: dict[int, list[tuple[ModelKey, Target]]] = {}
        for k, w in due.items():
            for target in w.targets:
                by_window.setdefault(max(1, round(w.interval)), []).append((k, target))
        collected: dict[ModelKey, dict[str, list[CheckResult]]] = {k: {} for k in due}
        versions: dict[ModelKey, dict[str, str]] = {k: {} for k in due}
        for window, pairs in by_window.items():
            answers: dict[TargetKey, list[CheckResult]] = analyse(
                self.client, [t for _, t in pairs], window, at=now
            )
            for k, target in pairs:
                collected[k][target.key.track] = answers.get(target.key, [])
                versions[k][target.key.track] = target.key.version
        self.passes += 1
        with self._lock:
            for k in due:
                self._results[k] = Results(now, collected[k], versions[k])
        return list(due)

    def _loop(self) -> None:
        while not self._stop.wait(self.tick):
            try:
                fresh = self.run_once()
            except Exception:  # the loop must outlive any one pass
                log.exception("analysis pass failed")
                continue
            for namespace, name in fresh:
                try:
                    self.trigger(namespace, name)
                except Exception:
                    log.exception("reconcile of %s/%s after analysis failed", namespace, name)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="modelops-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)


def as_status(results: list[CheckResult]) -> list[dict[str, Any]]:
    return [r.as_status() for r in results]
