"""Stable monitoring and the analysis loop: breaches, retrain triggers, batching, due times."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from modelops_api import contract
from modelops_operator import versions
from modelops_operator.analysis.client import Unavailable
from modelops_operator.analysis.model import CheckResult, Outcome, Target, TargetKey, Watch
from modelops_operator.monitor import Monitor, next_due
from modelops_operator.retraining import ScheduleError, count_breaches, retrain_reason, schedule_due
from modelops_operator.versions import VersionInfo

pytestmark = pytest.mark.unit


def result(check: str, outcome: Outcome) -> CheckResult:
    return CheckResult(check, outcome, None, "", None, "")


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        ([Outcome.FAIL], {"drift": 2, "accuracy": 0}),  # one more breach
        ([Outcome.PASS], {"drift": 0, "accuracy": 0}),  # a pass resets
        ([Outcome.INCONCLUSIVE], {"drift": 1, "accuracy": 0}),  # no data changes nothing
    ],
)
def test_breaches(outcomes: list[Outcome], expected: dict[str, int]) -> None:
    results = [result("drift", o) for o in outcomes] + [result("errorRate", Outcome.FAIL)]
    assert count_breaches({"drift": 1}, results, ["drift", "accuracy"]) == expected


@pytest.mark.parametrize(
    ("breaches", "last", "now", "expected"),
    [
        ({"drift": 2}, None, 100.0, "drift"),
        ({"drift": 1}, None, 100.0, None),  # not yet consecutive enough
        ({"accuracy": 3}, None, 100.0, "accuracy"),
        ({"drift": 5}, 50.0, 100.0, None),  # cooling down (cooldown 3600)
        ({"drift": 5}, 50.0, 3700.0, "drift"),
    ],
)
def test_retrain_reason(
    breaches: dict[str, int], last: float | None, now: float, expected: str | None
) -> None:
    assert retrain_reason(breaches, 2, last, 3600.0, now) == expected


def v(n: int, phase: str) -> VersionInfo:
    artifact = f"file:///m/iris-v{n}.bentomodel" if phase == contract.SUCCEEDED else ""
    return VersionInfo(f"iris-v{n}", n, "sha256:x", "initial", phase, artifact=artifact)


def test_stable_stays_and_newer_approved_versions_are_canary_candidates() -> None:
    found = [
        v(1, contract.SUCCEEDED),
        v(2, contract.SUCCEEDED),
        v(3, contract.ROLLED_BACK),
        v(4, contract.FAILED),
    ]
    chosen = versions.choose_stable(found, "", "iris-v1").version
    assert chosen is not None and chosen.name == "iris-v1"
    candidate = versions.candidate(found, chosen, "")
    assert candidate is not None and candidate.name == "iris-v2"
    assert versions.candidate(found, chosen, "iris-v1") is None  # a pin holds stable
    assert versions.candidate(found[:1], chosen, "") is None


def test_a_drift_trigger_trains_with_its_reason_unless_one_runs() -> None:
    plan = versions.plan_training("iris", "sha256:x", [v(1, contract.SUCCEEDED)], trigger="drift")
    assert (plan.create, plan.reason) == ("iris-v2", "drift")
    running = [
        v(1, contract.SUCCEEDED),
        VersionInfo("iris-v2", 2, "sha256:x", "drift", contract.TRAINING),
    ]
    assert versions.plan_training("iris", "sha256:x", running, trigger="drift").create is None


class CountingClient:
    """Answers every query with no series, and counts the queries."""

    def __init__(self) -> None:
        self.queries: list[str] = []

    def query(self, promql: str, at: float | None = None) -> Any:
        self.queries.append(promql)
        return Unavailable("unreachable", "connection refused")


CHECKS = {"errorRate": {"max": 0.05}, "accuracy": {"min": 0.8}}


def watch(model: str, interval: float = 60.0) -> Watch:
    return Watch((Target(TargetKey("ml", model, f"{model}-v1", "stable"), CHECKS),), interval)


@pytest.mark.parametrize("models", [3, 30])
def test_one_pass_covers_every_due_model_with_the_same_queries(models: int) -> None:
    client, clock = CountingClient(), [1000.0]
    monitor = Monitor(client, lambda ns, name: None, clock=lambda: clock[0])
    for i in range(models):
        monitor.watch(("ml", f"m{i}"), watch(f"m{i}"))
    clock[0] = 1020.0  # the next multiple of 60 after 1000
    assert len(monitor.run_once()) == models
    # An outage: the first query fails and the rest of the pass is not sent.
    assert len(client.queries) == 1
    results = monitor.results(("ml", "m0"))
    assert results is not None
    assert {r.outcome for r in results.by_track["stable"]} == {Outcome.INCONCLUSIVE}
    monitor.watch(("ml", "m0"), None)  # the Model is gone: so are its results
    assert monitor.results(("ml", "m0")) is None


def test_nothing_runs_before_it_is_due_and_due_times_align() -> None:
    assert next_due(1000.0, 60.0) == 1020.0 and next_due(1020.0, 60.0) == 1080.0
    client, clock = CountingClient(), [1000.0]
    monitor = Monitor(client, lambda ns, name: None, clock=lambda: clock[0])
    monitor.watch(("ml", "a"), watch("a"))
    clock[0] = 1010.0
    assert monitor.run_once() == [] and client.queries == []
    monitor.watch(("ml", "a"), None)
    clock[0] = 5000.0
    assert monitor.run_once() == []


def test_a_zero_interval_admitted_by_an_older_crd_breaks_no_pass() -> None:
    client, clock = CountingClient(), [1000.0]
    monitor = Monitor(client, lambda ns, name: None, clock=lambda: clock[0])
    monitor.watch(("ml", "zero"), watch("zero", interval=0.0))
    monitor.watch(("ml", "other"), watch("other"))
    clock[0] = 1020.0
    assert sorted(monitor.run_once()) == [("ml", "other"), ("ml", "zero")]
    clock[0] = 1021.0  # the zero-interval Model comes round once a second, the other one waits
    assert monitor.run_once() == [("ml", "zero")]


def at(text: str) -> float:
    return datetime.datetime.fromisoformat(text).replace(tzinfo=datetime.UTC).timestamp()


@pytest.mark.parametrize(
    ("since", "now", "expected"),
    [
        ("2026-12-06 02:00", "2026-12-06 03:00:30", "2026-12-06 03:00"),  # Sunday 03:00 fired
        ("2026-12-06 03:00", "2026-12-06 03:00:30", None),  # already handled
        ("2026-11-01 00:00", "2026-12-06 03:00:30", "2026-12-06 03:00"),  # missed fires: one
        ("2026-12-06 03:01", "2026-12-07 12:00", None),  # not Sunday 03:00 again yet
    ],
)
def test_schedule_due(since: str, now: str, expected: str | None) -> None:
    fired = schedule_due("0 3 * * 0", at(since), at(now))
    assert fired == (at(expected) if expected else None)


def test_a_schedule_that_is_not_cron_is_an_error_naming_the_field() -> None:
    with pytest.raises(ScheduleError, match=r"spec.training.schedule '61 \* \* \* \*'"):
        schedule_due("61 * * * *", 0.0, at("2026-12-06 03:00"))
