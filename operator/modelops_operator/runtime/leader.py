"""Leader election over a coordination.k8s.io/v1 Lease, the way client-go's leaderelection does it.

Several replicas of the operator may run; one leads. Only the leader runs the work queue's workers,
the periodic resync and the analysis loop (runtime/controller.py); the others keep their watches
and store warm and act on nothing. The Lease holds client-go's record: `holderIdentity`,
`leaseDurationSeconds`, `acquireTime`, `renewTime`, `leaseTransitions`.

- `decide` is the whole rule, pure: from the Lease as read, this candidate's identity, what it
  observed before and its own clock, one of create, acquire, renew, wait or lost.
- A candidate takes the Lease when there is none (create), when nobody holds it (released), or when
  it has expired: its record has not changed for `leaseDurationSeconds`, measured on this process's
  monotonic clock from the moment it saw the record change (`observe`). The timestamps in the
  record are for people (`kubectl get lease -o yaml`); they are never compared with the local
  clock, so nodes whose clocks disagree cannot take a live Lease (client-go's rule too).
- Every write is conditional: an update carries the resourceVersion it read, a missing Lease is
  created. When two candidates race, the API server accepts one write and answers the other 409, so
  two never both win.
- The leader renews every retry period. A leader that has not renewed for the renew deadline is
  lost and stops acting at once: `on_lost`, by default `exit_process`, which exits with status 1, as
  controller-runtime does; Kubernetes restarts the container and it comes back as a candidate with
  a fresh memory. Exiting is the simple correct choice: a pass, an analysis or an Event under way
  cannot be recalled, the queue and the analysis loop are not built to restart, and a new process
  reads everything from the API server again. The renew deadline is shorter than the lease
  duration (settings.py checks it), and the leader counts it from just before it sent its last
  renewal while the others count the lease duration from after they saw it, so the old leader has
  stopped before anyone else may take over. No call outlasts the deadline: each has a timeout of
  the time left (which `Kube.request`, without a timeout, could not promise; hence `ApiLeases`).
- A leader that stops cleanly (SIGTERM, Kopf's cleanup) releases the Lease after its queue has
  drained (an empty holder, as client-go's ReleaseOnCancel), so a standby takes over within one
  retry period instead of a lease duration.

Why not Kopf's peering: it pauses an operator's handlers while a peer of higher priority runs,
through CRDs of its own (KopfPeering, ClusterKopfPeering) that the chart would have to install and
grant. It elects nobody among equals: replicas of one priority all warn and freeze, leaving the
cluster unserved. And pausing handlers is the wrong cut here: a standby's handlers must keep running
so its store is warm when it takes over; what must stop is the queue's workers and the analysis
loop, which are the operator's, not Kopf's. A Lease is what Kubernetes' own controllers use.
"""

from __future__ import annotations

import datetime
import enum
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final, Literal, Protocol

from kubernetes import client
from urllib3.exceptions import HTTPError

from modelops_operator.settings import Settings

log = logging.getLogger("modelops.leader")


@dataclass(frozen=True)
class Timing:
    """client-go's three durations, in seconds; its defaults."""

    lease_duration: int = 15  # a Lease not renewed for this long may be taken over
    renew_deadline: float = 10.0  # a leader that has not renewed for this long stops acting
    retry_period: float = 2.0  # between two tries of every candidate

    @classmethod
    def of(cls, settings: Settings) -> Timing:
        return cls(
            settings.lease_duration_seconds,
            settings.renew_deadline_seconds,
            settings.retry_period_seconds,
        )


@dataclass(frozen=True)
class LeaseRecord:
    """A Lease's spec, and the resourceVersion it was read at (the condition of the next write)."""

    holder: str = ""  # empty: released
    duration: int = 0
    acquire_time: str = ""
    renew_time: str = ""
    transitions: int = 0
    resource_version: str = ""


def _content(record: LeaseRecord | None) -> LeaseRecord | None:
    """The record without its resourceVersion: what its holder wrote."""
    return None if record is None else replace(record, resource_version="")


@dataclass(frozen=True)
class Observation:
    """The record last read, and when (on this process's monotonic clock) it was first read so."""

    record: LeaseRecord | None
    since: float


def observe(previous: Observation | None, read: LeaseRecord | None, now: float) -> Observation:
    """What a candidate knows after reading `read` at `now`: the same observation while the record
    is unchanged, a new one from `now` when it changed (a renewal, a new holder)."""
    if previous is not None and _content(previous.record) == _content(read):
        return previous
    return Observation(read, now)


class Unread(enum.Enum):
    """The Lease could not be read (an error, a timeout)."""

    UNREAD = "unread"


UNREAD: Final = Unread.UNREAD
Read = LeaseRecord | None | Literal[Unread.UNREAD]  # None: there is no Lease


class Action(enum.Enum):
    CREATE = "create"  # there is no Lease: create it, holding it
    ACQUIRE = "acquire"  # released or expired: take it over
    RENEW = "renew"  # it is mine: renew it
    WAIT = "wait"  # another holds it and it is live, or it could not be read
    LOST = "lost"  # this candidate led and may no longer: stop acting now


def decide(
    read: Read,
    me: str,
    now: float,
    seen: Observation | None,
    renewed_at: float | None,
    timing: Timing,
) -> Action:
    """What candidate `me` does at `now` (its monotonic clock) with the Lease as `read`.

    `seen` is its observation of the record (`observe`); `renewed_at` when it last wrote the Lease
    as its holder (measured before sending), None while it does not lead."""
    leading = renewed_at is not None
    if renewed_at is not None and now - renewed_at >= timing.renew_deadline:
        return Action.LOST  # whatever the Lease says now: the others may take it soon
    if read is UNREAD:
        return Action.WAIT  # a leader tries again until its deadline
    if read is None:
        return Action.CREATE
    if read.holder == me:
        return Action.RENEW
    if leading:
        return Action.LOST  # someone else holds it (or released it): never act beside them
    if not read.holder:
        return Action.ACQUIRE
    since = seen.since if seen is not None and _content(seen.record) == _content(read) else now
    duration = read.duration if read.duration > 0 else timing.lease_duration
    return Action.ACQUIRE if now - since >= duration else Action.WAIT


def microtime(moment: datetime.datetime) -> str:
    """A MicroTime as the API server parses it: RFC 3339, UTC, always six fractional digits."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def claim(read: LeaseRecord | None, me: str, now: datetime.datetime, timing: Timing) -> LeaseRecord:
    """The record that makes `me` the holder as of `now` (wall clock, for people): a renewal keeps
    the acquire time; a takeover sets it and counts a transition, as client-go does."""
    stamp = microtime(now)
    if read is not None and read.holder == me:
        return replace(read, duration=timing.lease_duration, renew_time=stamp)
    return LeaseRecord(
        holder=me,
        duration=timing.lease_duration,
        acquire_time=stamp,
        renew_time=stamp,
        transitions=read.transitions + 1 if read is not None else 0,
        resource_version=read.resource_version if read is not None else "",
    )


def released(read: LeaseRecord, now: datetime.datetime) -> LeaseRecord:
    """What a leader leaves when it stops cleanly: no holder, so a candidate takes it at once."""
    stamp = microtime(now)
    return replace(read, holder="", duration=1, acquire_time=stamp, renew_time=stamp)


def identity(pod_name: str) -> str:
    """This process's holder identity: its pod's name (the host name outside a pod) and a random
    suffix, as controller-runtime makes it, so that a restarted container is a new candidate and
    never renews what its dead predecessor held."""
    return f"{pod_name or socket.gethostname()}_{uuid.uuid4().hex[:8]}"


# --- the Lease's I/O -----------------------------------------------------------------------------


class LeaseError(Exception):
    """A Lease call failed: the API server refused it, timed out, or could not be reached."""


class LeaseConflict(LeaseError):
    """409: another candidate wrote (or created) the Lease first."""


class Leases(Protocol):
    """One Lease's API calls, each with a timeout in seconds."""

    def read(self, timeout: float) -> LeaseRecord | None: ...

    def create(self, record: LeaseRecord, timeout: float) -> LeaseRecord: ...

    def update(self, record: LeaseRecord, timeout: float) -> LeaseRecord: ...


def record_of(body: Mapping[str, Any]) -> LeaseRecord:
    spec = body.get("spec") or {}
    meta = body.get("metadata") or {}

    def number(value: Any) -> int:
        try:
            return int(value or 0)
        except (TypeError, ValueError):
            return 0

    return LeaseRecord(
        holder=str(spec.get("holderIdentity") or ""),
        duration=number(spec.get("leaseDurationSeconds")),
        acquire_time=str(spec.get("acquireTime") or ""),
        renew_time=str(spec.get("renewTime") or ""),
        transitions=number(spec.get("leaseTransitions")),
        resource_version=str(meta.get("resourceVersion") or ""),
    )


class ApiLeases:
    """The Lease `namespace/name` through the operator's ApiClient, as `Kube.request` calls the API
    server, but with a timeout on every call."""

    def __init__(self, api_client: client.ApiClient, namespace: str, name: str) -> None:
        self.api_client, self.namespace, self.name = api_client, namespace, name
        self.path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"

    def body(self, record: LeaseRecord) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if record.resource_version:
            meta["resourceVersion"] = record.resource_version
        spec: dict[str, Any] = {
            "holderIdentity": record.holder,
            "leaseDurationSeconds": record.duration,
            "leaseTransitions": record.transitions,
        }
        if record.acquire_time:
            spec["acquireTime"] = record.acquire_time
        if record.renew_time:
            spec["renewTime"] = record.renew_time
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta,
                "spec": spec}  # fmt: skip

    def _call(self, method: str, url: str, body: Any, timeout: float) -> LeaseRecord | None:
        c = self.api_client
        try:
            method, full_url, headers, payload, _ = c.param_serialize(
                method,
                url,
                body=body,
                auth_settings=["BearerToken"],
                header_params={"Accept": "application/json", "Content-Type": "application/json"},
            )
            response = c.call_api(
                method, full_url, header_params=headers, body=payload, _request_timeout=timeout
            )
            data = response.read()  # type: ignore[no-untyped-call]
        except (HTTPError, OSError) as error:
            raise LeaseError(f"{method} lease {self.namespace}/{self.name}: {error}") from error
        if response.status == 404 and method == "GET":
            return None
        if response.status == 409:
            raise LeaseConflict(f"lease {self.namespace}/{self.name} was written by another")
        if not 200 <= response.status <= 299:
            text = data.decode(errors="replace")[:300] if data else ""
            raise LeaseError(
                f"{method} lease {self.namespace}/{self.name}: {response.status} {text}"
            )
        try:
            return record_of(json.loads(data))
        except (ValueError, AttributeError) as error:
            raise LeaseError(f"lease {self.namespace}/{self.name}: unreadable answer") from error

    def read(self, timeout: float) -> LeaseRecord | None:
        return self._call("GET", f"{self.path}/{self.name}", None, timeout)

    def create(self, record: LeaseRecord, timeout: float) -> LeaseRecord:
        written = self._call("POST", self.path, self.body(record), timeout)
        assert written is not None
        return written

    def update(self, record: LeaseRecord, timeout: float) -> LeaseRecord:
        written = self._call("PUT", f"{self.path}/{self.name}", self.body(record), timeout)
        assert written is not None
        return written


# --- the loop ------------------------------------------------------------------------------------


def exit_process() -> None:
    """What a leader does when it is lost: exit at once, with status 1, abandoning whatever is
    under way (every pass is idempotent); Kubernetes restarts the container."""
    logging.shutdown()  # the last lines reach the log
    os._exit(1)


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class LeaderElector:
    """One candidate's election: a daemon thread that reads the Lease every retry period and
    creates, takes over or renews it as `decide` says. `start(on_elected)`: `on_elected` runs once,
    in a thread of its own (so that renewals never wait for it), when this candidate first wins;
    `on_lost` when, leading, it can no longer be sure it leads."""

    def __init__(
        self,
        leases: Leases,
        me: str,
        timing: Timing,
        on_lost: Callable[[], object] = exit_process,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime.datetime] = _utc_now,
        lease: str = "lease",
    ) -> None:
        self.leases, self.me, self.timing, self.on_lost = leases, me, timing, on_lost
        self.clock, self.wall, self.lease = clock, wall, lease
        self.on_elected: Callable[[], object] = lambda: None
        self.seen: Observation | None = None
        self.renewed_at: float | None = None  # while leading: when the last renewal was sent
        self.lost = False
        self._holder_logged: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def leading(self) -> bool:
        return self.renewed_at is not None

    def start(self, on_elected: Callable[[], object]) -> None:
        self.on_elected = on_elected
        log.info("candidate %s for %s", self.me, self.lease)
        self._thread = threading.Thread(target=self._run, name="modelops-leader", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ends the loop; a leader then releases the Lease."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timing.renew_deadline)
            if self._thread.is_alive():
                return  # stuck in a call: the Lease expires by itself
        if self.leading and not self.lost:
            self.release()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.tick() is Action.LOST:
                return
            self._stop.wait(self._pause())

    def _left(self) -> float:
        """Seconds until the renew deadline (while leading)."""
        assert self.renewed_at is not None
        return self.renewed_at + self.timing.renew_deadline - self.clock()

    def _pause(self) -> float:
        """A retry period, but never past the renew deadline: a leader notices it on time."""
        if self.renewed_at is None:
            return self.timing.retry_period
        return max(0.0, min(self.timing.retry_period, self._left()))

    def _timeout(self) -> float:
        """No call outlasts the renew deadline."""
        if self.renewed_at is None:
            return self.timing.renew_deadline
        return max(0.1, self._left())

    def tick(self) -> Action:
        """One round: read the Lease, decide, write it if the decision says so. What it decided."""
        read: Read
        try:
            read = self.leases.read(self._timeout())
        except LeaseError as error:
            log.warning("%s not read: %s", self.lease, error)
            read = UNREAD
        now = self.clock()  # after the read: the others' renewals are seen no earlier than this
        if read is not UNREAD:
            self.seen = observe(self.seen, read, now)
        action = decide(read, self.me, now, self.seen, self.renewed_at, self.timing)
        if action is Action.LOST:
            self._lose(read)
        elif action is Action.WAIT:
            self._standing_by(read)
        elif read is not UNREAD:
            return self._write(action, read)
        return action

    def _write(self, action: Action, read: LeaseRecord | None) -> Action:
        sent = self.clock()  # before the write: the leader's deadline counts from here
        record = claim(read, self.me, self.wall(), self.timing)
        try:
            if action is Action.CREATE:
                written = self.leases.create(record, self._timeout())
            else:
                written = self.leases.update(record, self._timeout())
        except LeaseConflict:
            log.info("%s: another candidate wrote it first", self.lease)
            return Action.WAIT
        except LeaseError as error:
            log.warning("%s not written (%s): %s", self.lease, action.value, error)
            return Action.WAIT
        self.seen = Observation(written, sent)
        elected = self.renewed_at is None
        self.renewed_at = sent
        if elected:
            log.info(
                "leading: %s acquired by %s (transition %d)",
                self.lease,
                self.me,
                written.transitions,
            )
            threading.Thread(target=self._elected, name="modelops-lead", daemon=True).start()
        return action

    def _elected(self) -> None:
        try:
            self.on_elected()
        except Exception:  # a leader that cannot act must not keep the Lease from one that can
            log.exception("elected, but could not start acting: giving %s up", self.lease)
            self._stop.set()
            self.lost = True
            self.on_lost()

    def _standing_by(self, read: Read) -> None:
        if isinstance(read, LeaseRecord) and read.holder != self._holder_logged:
            self._holder_logged = read.holder
            log.info("standing by: %s held by %s", self.lease, read.holder or "nobody")

    def _lose(self, read: Read) -> None:
        holder = read.holder if isinstance(read, LeaseRecord) else "unknown (not readable)"
        log.error(
            "lost %s (held by %s, last renewed %.1fs ago): stopping at once",
            self.lease,
            holder or "nobody",
            self.clock() - (self.renewed_at or 0.0),
        )
        self.lost = True
        self.renewed_at = None
        self.on_lost()

    def release(self) -> None:
        """Hands the Lease back (if it is still this candidate's), so a standby takes it at once."""
        try:
            read = self.leases.read(self.timing.retry_period)
            if read is not None and read.holder == self.me:
                self.leases.update(released(read, self.wall()), self.timing.retry_period)
                log.info("released %s", self.lease)
        except LeaseError as error:
            log.warning("%s not released (it expires by itself): %s", self.lease, error)
        self.renewed_at = None
