"""The queue of Models waiting for a reconcile: each Model at most once, however many triggers.

A burst of watch events for one Model (its version's phase, its Job, its Deployment's replicas)
costs one reconcile, not one each: a Model added while it waits is not added twice, and one added
while it is being reconciled is reconciled once more afterwards (the event may have come too late
for the running pass). A reconcile that fails is retried after a growing delay (1 s doubling to a
minute) until one succeeds; workers run different Models in parallel, never one Model twice at once.

Two lanes: what a watch event, a retry or a held status queues goes first; what the periodic
passes queue (a new analysis, the resync) waits until that lane is empty, so that a thousand
Models whose analysis fell due together do not hold back the rollouts and trainings that changed
meanwhile. A Model queued in the background lane and then by a change moves to the first lane.
One that has waited `BACKGROUND_MAX_WAIT` goes first all the same: a steady stream of changes
never holds back a canary's analysis past its interval.

While a worker runs a Model's pass (and logs how it ended), `CURRENT` holds the Model's
(namespace, name) in that thread, so that every log line of the pass can name it (the JSON log
format does). With `metrics` (runtime/metrics.py) the queue reports its depth (Models waiting for a
worker, read at each scrape) and how long each Model waited, from being queued (or its retry
falling due) to its pass starting.
"""

from __future__ import annotations

import collections
import heapq
import logging
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar

from modelops_operator.objects import ModelKey
from modelops_operator.runtime.metrics import Metrics

log = logging.getLogger("modelops.queue")

# The Model whose pass the current thread runs, if any.
CURRENT: ContextVar[ModelKey | None] = ContextVar("modelops_current_model", default=None)

FIRST_RETRY = 1.0
LAST_RETRY = 60.0
BACKGROUND_MAX_WAIT = 30.0  # seconds a periodic pass waits at most behind the first lane


class WorkQueue:
    def __init__(
        self,
        workers: int = 4,
        clock: Callable[[], float] = time.monotonic,
        metrics: Metrics | None = None,
    ) -> None:
        self.workers, self.clock, self.metrics = workers, clock, metrics
        self.work: Callable[[str, str], object] = lambda namespace, name: None
        self._ready: collections.deque[ModelKey] = collections.deque()  # in arrival order
        self._background: collections.deque[ModelKey] = collections.deque()  # periodic passes
        self._queued: dict[ModelKey, bool] = {}  # waiting keys: whether in the background lane
        self._running: set[ModelKey] = set()
        self._again: set[ModelKey] = set()  # added while running
        self._later: list[tuple[float, ModelKey]] = []  # (due, key) heap of retries
        self._failures: dict[ModelKey, int] = {}
        self._since: dict[ModelKey, float] = {}  # when each waiting key was queued
        self._cond = threading.Condition()
        self._stop = False
        self._threads: list[threading.Thread] = []
        self.done = 0
        if metrics is not None:
            metrics.track_queue(self.depth)

    def add(self, namespace: str, name: str) -> None:
        """Queues a Model that changed."""
        with self._cond:
            self._offer((namespace, name))

    def add_background(self, namespace: str, name: str) -> None:
        """Queues a Model for a periodic pass: after every Model that changed."""
        with self._cond:
            self._offer((namespace, name), background=True)

    def _offer(self, key: ModelKey, background: bool = False) -> None:
        """Queues `key` unless it is queued (a change moves it to the first lane); one being
        reconciled goes again afterwards."""
        if key in self._running:
            self._again.add(key)
            return
        queued = self._queued.get(key)
        if queued is None or (queued and not background):
            # a key that moves lanes stays in the background deque too; `_take` skips it there
            self._queued[key] = background
            (self._background if background else self._ready).append(key)
            self._since.setdefault(key, self.clock())
            self._cond.notify()

    def add_later(self, key: ModelKey, delay: float) -> None:
        with self._cond:
            heapq.heappush(self._later, (self.clock() + delay, key))
            self._cond.notify()

    def depth(self) -> int:
        """Models waiting for a worker."""
        return len(self._queued)

    def pending(self) -> int:
        with self._cond:
            return len(self._queued) + len(self._running)

    def start(self, work: Callable[[str, str], object]) -> None:
        """Starts the workers, each running `work(namespace, name)` for the Models it takes."""
        self.work = work
        for i in range(self.workers):
            thread = threading.Thread(target=self._worker, name=f"modelops-reconcile-{i}")
            thread.daemon = True
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 30) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=timeout)

    def _take(self) -> ModelKey | None:
        with self._cond:
            while not self._stop:
                now = self.clock()
                while self._later and self._later[0][0] <= now:
                    self._offer(heapq.heappop(self._later)[1])
                key = self._next(now)
                if key is not None:
                    self._running.add(key)
                    since = self._since.pop(key, now)
                    if self.metrics is not None:
                        self.metrics.observe_wait(now - since)
                    return key
                wait = self._later[0][0] - now if self._later else None
                self._cond.wait(wait)
            return None

    def _next(self, now: float) -> ModelKey | None:
        """The first waiting key of the first lane, else of the background lane; the background
        lane's first if it has waited `BACKGROUND_MAX_WAIT`."""
        while self._background and self._queued.get(self._background[0]) is not True:
            self._background.popleft()  # it moved to the first lane, or was taken from there
        if self._background and now - self._since[self._background[0]] >= BACKGROUND_MAX_WAIT:
            key = self._background.popleft()
            del self._queued[key]
            return key
        while self._ready:
            key = self._ready.popleft()
            if self._queued.get(key) is False:
                del self._queued[key]
                return key
        if self._background:
            key = self._background.popleft()
            del self._queued[key]
            return key
        return None

    def _worker(self) -> None:
        while (key := self._take()) is not None:
            token = CURRENT.set(key)
            try:
                self.work(*key)
            except Exception:
                failures = self._failures.get(key, 0) + 1
                self._failures[key] = failures
                delay = min(LAST_RETRY, FIRST_RETRY * 2 ** (failures - 1))
                log.exception("reconcile of %s/%s failed; retrying in %.0fs", *key, delay)
                self.add_later(key, delay)
            else:
                self._failures.pop(key, None)
            finally:
                CURRENT.reset(token)
            with self._cond:
                self._running.discard(key)
                self.done += 1
                if key in self._again:
                    self._again.discard(key)
                    self._offer(key)
                self._cond.notify_all()
