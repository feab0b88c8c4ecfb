"""Leader election (runtime/leader.py): the Lease decision, the candidates' loop on an in-memory
Lease with the API server's optimistic concurrency, the controller acting only once elected, and the
settings. The real API server and two operator processes: test_leader_failover.py."""

from __future__ import annotations

import datetime
import threading
from collections.abc import Callable
from dataclasses import replace

import pytest
from fake_kube import FakeKube
from support import eventually

from modelops_operator.runtime.controller import Controller
from modelops_operator.runtime.leader import (
    UNREAD,
    Action,
    ApiLeases,
    LeaderElector,
    LeaseConflict,
    LeaseError,
    LeaseRecord,
    Observation,
    Timing,
    claim,
    decide,
    identity,
    microtime,
    observe,
    record_of,
    released,
)
from modelops_operator.runtime.store import Store
from modelops_operator.runtime.workqueue import WorkQueue
from modelops_operator.settings import Settings, SettingsError, from_environment, resolve

pytestmark = pytest.mark.unit

T = Timing(lease_duration=15, renew_deadline=10.0, retry_period=2.0)
ME, OTHER = "op-a_1", "op-b_2"
NOON = datetime.datetime(2025, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)


def held(holder: str, rv: str = "7", renew: str = "2025-01-01T12:00:00.000000Z") -> LeaseRecord:
    return LeaseRecord(holder, 15, renew, renew, 3, rv)


def standby(read: LeaseRecord, now: float, seen_at: float) -> Action:
    """`decide` for a candidate that does not lead and first saw `read` at `seen_at`."""
    return decide(read, ME, now, Observation(read, seen_at), None, T)


# --- the decision ---------------------------------------------------------------------------------


def test_no_lease_is_created_and_a_released_one_taken_at_once() -> None:
    assert decide(None, ME, 100.0, None, None, T) is Action.CREATE
    assert standby(held(""), 100.0, 100.0) is Action.ACQUIRE


def test_another_holder_is_waited_for_until_the_lease_expires_on_the_local_clock() -> None:
    lease = held(OTHER)
    assert standby(lease, 100.0, 100.0) is Action.WAIT
    assert standby(lease, 114.9, 100.0) is Action.WAIT
    assert standby(lease, 115.0, 100.0) is Action.ACQUIRE


def test_a_renewal_starts_the_lease_duration_again() -> None:
    first = observe(None, held(OTHER, "7"), 100.0)
    renewed = held(OTHER, "8", renew="2025-01-01T12:00:02.000000Z")
    again = observe(first, renewed, 110.0)
    assert again.since == 110.0
    assert decide(renewed, ME, 120.0, again, None, T) is Action.WAIT
    assert decide(renewed, ME, 125.0, again, None, T) is Action.ACQUIRE
    # An unchanged record keeps its first sighting, whatever its resourceVersion says.
    assert observe(first, held(OTHER, "9"), 105.0) is first


def test_the_records_own_duration_counts() -> None:
    longer = replace(held(OTHER), duration=30)
    assert standby(longer, 120.0, 100.0) is Action.WAIT
    assert standby(longer, 130.0, 100.0) is Action.ACQUIRE


@pytest.mark.parametrize("skew", [-3600, -15, 15, 3600])
def test_clock_skew_between_nodes_changes_nothing(skew: int) -> None:
    """The holder's clock is off by `skew` seconds: its renewTime is never compared with ours."""
    stamp = microtime(NOON + datetime.timedelta(seconds=skew))
    lease = held(OTHER, renew=stamp)
    assert standby(lease, 100.0, 100.0) is Action.WAIT
    assert standby(lease, 114.0, 100.0) is Action.WAIT
    assert standby(lease, 115.0, 100.0) is Action.ACQUIRE


def test_a_record_first_seen_now_is_not_expired_whatever_it_says() -> None:
    """A candidate that starts beside a Lease renewed long ago still waits a full duration: it
    cannot tell an old renewal from a clock that is behind."""
    lease = held(OTHER, renew="2020-01-01T00:00:00.000000Z")
    assert decide(lease, ME, 100.0, None, None, T) is Action.WAIT
    assert decide(lease, ME, 100.0, Observation(held(OTHER, "1"), 0.0), None, T) is Action.WAIT


def test_my_own_lease_is_renewed() -> None:
    assert decide(held(ME), ME, 100.0, None, 98.0, T) is Action.RENEW
    # A candidate that finds its own identity (a lease it wrote before a failed answer) renews it.
    assert decide(held(ME), ME, 100.0, None, None, T) is Action.RENEW


def test_a_leader_past_its_renew_deadline_is_lost_whatever_the_lease_says() -> None:
    assert decide(held(ME), ME, 109.9, None, 100.0, T) is Action.RENEW
    assert decide(held(ME), ME, 110.0, None, 100.0, T) is Action.LOST
    assert decide(UNREAD, ME, 110.0, None, 100.0, T) is Action.LOST


def test_a_leader_that_cannot_read_keeps_trying_until_its_deadline() -> None:
    assert decide(UNREAD, ME, 105.0, None, 100.0, T) is Action.WAIT
    assert decide(UNREAD, ME, 105.0, None, None, T) is Action.WAIT


def test_a_leader_that_finds_another_holder_is_lost_at_once() -> None:
    assert decide(held(OTHER), ME, 101.0, None, 100.0, T) is Action.LOST
    assert decide(held(""), ME, 101.0, None, 100.0, T) is Action.LOST


def test_the_deadline_ends_leadership_before_any_standby_may_take_over() -> None:
    """The leader counts its deadline from before it sent the renewal; a standby counts the lease
    duration from after it saw it: at every instant, at most one of them may act."""
    sent, seen = 100.0, 100.3  # the renewal, sent and seen by the standby an instant later
    lease = held(ME)
    for tick in range(0, 400):
        now = sent + tick * 0.05
        leader_acts = decide(lease, ME, now, None, sent, T) is Action.RENEW
        standby_takes = decide(replace(lease), OTHER, now, Observation(lease, seen), None, T) is (
            Action.ACQUIRE
        )
        assert not (leader_acts and standby_takes), now


# --- the records written ------------------------------------------------------------------------


def test_claims_follow_client_go() -> None:
    created = claim(None, ME, NOON, T)
    assert (created.holder, created.transitions, created.resource_version) == (ME, 0, "")
    assert created.acquire_time == created.renew_time == "2025-01-01T12:00:00.000000Z"

    later = NOON + datetime.timedelta(seconds=2, microseconds=5)
    renewal = claim(held(ME, "8"), ME, later, T)
    assert renewal.acquire_time == held(ME).acquire_time  # kept
    assert renewal.renew_time == "2025-01-01T12:00:02.000005Z"
    assert (renewal.transitions, renewal.resource_version) == (3, "8")  # written at what was read

    takeover = claim(held(OTHER, "9"), ME, later, T)
    assert (takeover.holder, takeover.transitions, takeover.resource_version) == (ME, 4, "9")
    assert takeover.acquire_time == takeover.renew_time

    gone = released(held(ME, "10"), later)
    assert (gone.holder, gone.duration, gone.resource_version) == ("", 1, "10")


def test_lease_bodies_round_trip() -> None:
    leases = ApiLeases(None, "ops", "modelops")  # type: ignore[arg-type]
    record = held(ME, "12")
    body = leases.body(record)
    assert body["metadata"] == {"name": "modelops", "namespace": "ops", "resourceVersion": "12"}
    assert body["spec"]["leaseDurationSeconds"] == 15
    assert record_of(body) == record
    assert record_of({"spec": {"leaseDurationSeconds": "x"}}) == LeaseRecord()


def test_identity_is_the_pod_and_a_suffix_new_for_each_process() -> None:
    first, second = identity("modelops-7d9-abcde"), identity("modelops-7d9-abcde")
    assert first.startswith("modelops-7d9-abcde_") and first != second
    assert identity("")  # the host name


# --- candidates on one Lease ---------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class MemoryLease:
    """One Lease as the API server keeps it: every write must carry the resourceVersion it read."""

    def __init__(self) -> None:
        self.record: LeaseRecord | None = None
        self.version = 0
        self.writes: list[str] = []

    def _store(self, record: LeaseRecord) -> LeaseRecord:
        self.version += 1
        self.record = replace(record, resource_version=str(self.version))
        self.writes.append(record.holder)
        return self.record


class Reach:
    """One candidate's view of `MemoryLease`: it can be cut off, and can let another candidate run
    between its read and its write (a race)."""

    def __init__(self, lease: MemoryLease) -> None:
        self.lease = lease
        self.cut_off = False
        self.before_write: Callable[[], object] = lambda: None

    def _reach(self) -> None:
        if self.cut_off:
            raise LeaseError("connection refused")

    def read(self, timeout: float) -> LeaseRecord | None:
        self._reach()
        return self.lease.record

    def create(self, record: LeaseRecord, timeout: float) -> LeaseRecord:
        self._reach()
        self.before_write()
        if self.lease.record is not None:
            raise LeaseConflict("exists")
        return self.lease._store(record)

    def update(self, record: LeaseRecord, timeout: float) -> LeaseRecord:
        self._reach()
        self.before_write()
        current = self.lease.record
        if current is None or current.resource_version != record.resource_version:
            raise LeaseConflict("resourceVersion moved")
        return self.lease._store(record)


class Candidate:
    def __init__(self, name: str, lease: MemoryLease, clock: Clock) -> None:
        self.reach = Reach(lease)
        self.elected = threading.Event()
        self.lost: list[float] = []
        self.elector = LeaderElector(
            self.reach, name, Timing(4, 2.0, 0.5), on_lost=lambda: self.lost.append(clock()),
            clock=clock, wall=lambda: NOON + datetime.timedelta(seconds=clock()),
        )  # fmt: skip
        self.elector.on_elected = self.elected.set


def candidates(*names: str) -> tuple[MemoryLease, Clock, list[Candidate]]:
    lease, clock = MemoryLease(), Clock()
    return lease, clock, [Candidate(n, lease, clock) for n in names]


def test_of_two_candidates_racing_for_a_new_lease_one_wins() -> None:
    lease, _, (a, b) = candidates("a", "b")
    a.reach.before_write = b.elector.tick  # b reads nothing too, and writes first
    assert a.elector.tick() is Action.WAIT  # a's create: 409
    assert lease.record is not None and lease.record.holder == "b"
    assert b.elector.leading and not a.elector.leading
    assert eventually(lambda: b.elected.is_set()) and not a.elected.is_set()


def test_of_two_candidates_racing_for_an_expired_lease_one_wins() -> None:
    lease, clock, (a, b, c) = candidates("a", "b", "c")
    for x in (c, a, b):
        x.elector.tick()
    clock.now += 4  # c is gone; both see it expired
    a.reach.before_write = b.elector.tick
    assert a.elector.tick() is Action.WAIT  # a's update carried a version b's write moved
    assert lease.record is not None and lease.record.holder == "b"
    assert lease.record.transitions == 1
    assert [x.elector.leading for x in (a, b)] == [False, True]


def test_a_standby_takes_over_one_lease_duration_after_the_leader_dies() -> None:
    lease, clock, (a, b) = candidates("a", "b")
    assert a.elector.tick() is Action.CREATE
    assert b.elector.tick() is Action.WAIT
    for _ in range(10):  # both alive: a renews, b waits
        clock.now += 0.5
        assert a.elector.tick() is Action.RENEW and b.elector.tick() is Action.WAIT
    died = clock.now  # a stops ticking (kill -9)
    while b.elector.tick() is Action.WAIT:
        clock.now += 0.5
    assert 4.0 <= clock.now - died <= 4.5
    assert lease.record is not None and (lease.record.holder, lease.record.transitions) == ("b", 1)
    assert eventually(lambda: b.elected.is_set())


def test_a_cut_off_leader_stops_before_the_standby_takes_over() -> None:
    _, clock, (a, b) = candidates("a", "b")
    a.elector.tick()
    b.elector.tick()
    a.reach.cut_off = True  # a cannot reach the API server, b can
    b_acquired = None
    while b_acquired is None or not a.lost:
        clock.now += 0.25
        a.elector.tick()
        if b.elector.tick() is Action.ACQUIRE:
            b_acquired = clock.now
    assert a.lost == [1002.0]  # the renew deadline after its last renewal, not later
    assert b_acquired is not None and a.lost[0] < b_acquired
    assert not a.elector.leading


def test_the_loop_wakes_for_the_deadline_and_no_call_outlasts_it() -> None:
    _, clock, (a,) = candidates("a")
    assert a.elector._pause() == 0.5 and a.elector._timeout() == 2.0  # standing by
    a.elector.tick()
    clock.now += 1.8
    assert a.elector._pause() == pytest.approx(0.2) and a.elector._timeout() == pytest.approx(0.2)


def test_a_leader_that_stops_releases_the_lease_and_a_standby_takes_it_at_once() -> None:
    lease, clock, (a, b) = candidates("a", "b")
    a.elector.tick()
    b.elector.tick()
    a.elector.stop()
    assert lease.record is not None and lease.record.holder == ""
    clock.now += 0.5
    assert b.elector.tick() is Action.ACQUIRE


def test_a_leader_that_cannot_start_acting_gives_up() -> None:
    _, _, (a,) = candidates("a")

    def broken() -> None:
        raise RuntimeError("API server unreachable")

    a.elector.on_elected = broken
    a.elector.tick()
    eventually(lambda: a.lost)


# --- the controller acts only when elected -------------------------------------------------------


class Ballot:
    """An elector the test decides for."""

    def __init__(self) -> None:
        self.on_elected: Callable[[], object] | None = None
        self.stopped = False

    def start(self, on_elected: Callable[[], object]) -> None:
        self.on_elected = on_elected

    def stop(self) -> None:
        self.stopped = True


def test_a_standby_acts_on_nothing_and_the_elected_one_seeds_and_queues_every_model() -> None:
    kube = FakeKube(Store(), namespace="ml")
    for name in ("iris", "wine"):
        kube.put({"apiVersion": "modelops.dev/v1alpha1", "kind": "Model",
                  "metadata": {"name": name, "namespace": "ml"}, "spec": {}})  # fmt: skip
    done: list[tuple[str, str]] = []
    # The controller's own store: as if its watches had delivered nothing yet.
    store, queue, ballot = Store(), WorkQueue(workers=2), Ballot()
    controller = Controller(kube, store, queue, Settings(), lambda *key: done.append(key),
                            elector=ballot)  # type: ignore[arg-type]  # fmt: skip
    controller.start()
    queue.add("ml", "iris")  # a watch event while standing by: kept, not acted on
    assert kube.requests == [] and done == [] and len(store) == 0
    assert ballot.on_elected is not None
    ballot.on_elected()
    eventually(lambda: sorted(done) == [("ml", "iris"), ("ml", "wine")])
    # Every watched kind was listed from the API server before the first pass.
    assert ("GET", "/apis/modelops.dev/v1alpha1/models") in kube.calls()
    assert store.names("Model") == [("ml", "iris"), ("ml", "wine")]
    controller.stop()
    assert ballot.stopped


# --- settings ------------------------------------------------------------------------------------


def test_leader_election_settings() -> None:
    assert not from_environment({}).leader_election
    env = {
        "MODELOPS_LEADER_ELECTION": "true",
        "POD_NAMESPACE": "modelops-system",
        "POD_NAME": "modelops-abc",
        "MODELOPS_LEADER_ELECTION_LEASE": "mo",
        "MODELOPS_LEADER_ELECTION_LEASE_SECONDS": "4",
        "MODELOPS_LEADER_ELECTION_RENEW_SECONDS": "2",
        "MODELOPS_LEADER_ELECTION_RETRY_SECONDS": "0.5",
    }
    settings, _ = resolve([], env)
    assert (settings.lease_namespace, settings.lease_name, settings.pod_name) == (
        "modelops-system",
        "mo",
        "modelops-abc",
    )
    assert Timing.of(settings) == Timing(4, 2.0, 0.5)
    assert resolve(["--no-leader-election"], env)[0].leader_election is False
    ns = {**env, "MODELOPS_LEADER_ELECTION_NAMESPACE": "elsewhere"}
    assert resolve([], ns)[0].lease_namespace == "elsewhere"
    assert Timing.of(Settings()) == Timing()  # client-go's defaults


ON = {"MODELOPS_LEADER_ELECTION": "true", "POD_NAMESPACE": "ops"}


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({**ON, "MODELOPS_LEADER_ELECTION": "maybe"}, "true or false"),
        ({"MODELOPS_LEADER_ELECTION": "true"}, "namespace"),
        ({**ON, "MODELOPS_LEADER_ELECTION_RENEW_SECONDS": "15"}, "shorter than the lease duration"),
        ({**ON, "MODELOPS_LEADER_ELECTION_RETRY_SECONDS": "10"}, "shorter than the renew deadline"),
        ({**ON, "MODELOPS_LEADER_ELECTION_LEASE_SECONDS": "1.5"}, "must be a number"),
    ],
)
def test_leader_election_settings_that_cannot_work_are_refused(
    env: dict[str, str], says: str
) -> None:
    with pytest.raises(SettingsError, match=says):
        resolve([], env)
