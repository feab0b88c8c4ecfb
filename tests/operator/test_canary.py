"""The canary state machine, table-driven: pass, failures below and at the threshold, inconclusive
streaks, flapping, the progress deadline both ways, manual commands, and the replica split; a
canary without checks, never promoted blind; and a Prometheus outage, which the deadline does not
count (analyses made as the operator makes them: the engine's pass, turned into an `Analysis`);
a canary judged against its stable track (vsStable): worse rolled back, alike promoted, too few
requests never promoted, and the operator giving a canary its stable track as baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from modelops_api.spec import ModelSpec, parse
from modelops_operator.analysis import Sample, Target, TargetKey, Unavailable, Vector, analyse
from modelops_operator.analysis.client import QUERY_ERROR, TIMEOUT, UNREACHABLE, Answer
from modelops_operator.analysis.model import CheckResult, Outcome, Results, Watch
from modelops_operator.canary import Analysis, CanarySpec, decide, split, start
from modelops_operator.monitor import Monitor
from modelops_operator.rollout import canary_analysis
from modelops_operator.watches import References, watch

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]

SPEC = CanarySpec(steps=(10, 50), interval="60s", threshold=2, progress_deadline="600s")
P, F, N = "pass", "fail", "inconclusive"  # N: no conclusion


def analysis(*outcomes: str) -> Analysis:
    names = ("errorRate", "latencyP95Seconds", "drift")
    return Analysis(
        dict(zip(names, outcomes, strict=False)),
        {n: "fewer than 20 samples" for n, o in zip(names, outcomes, strict=False) if o == N},
    )


def run(verdicts: list[tuple[str, ...]], spec: CanarySpec = SPEC) -> list[str]:
    """Feeds one analysis per interval; the actions taken, up to the first final one."""
    status: dict[str, Any] = start("iris-v2", 0.0, 2, spec)
    actions = []
    for tick, outcomes in enumerate(verdicts, start=1):
        decision = decide(status, spec, tick * spec.interval_seconds, analysis(*outcomes), 2)
        actions.append(decision.action)
        status = decision.status
        if decision.action in ("promote", "rollback", "hold"):
            break
    return actions


@pytest.mark.parametrize(
    ("verdicts", "expected"),
    [
        ([(P, P), (P, P)], ["advance", "promote"]),
        ([(P, F), (P, P), (P, P)], ["wait", "advance", "promote"]),  # one failure, threshold 2
        ([(F, P), (P, F)], ["wait", "rollback"]),  # the second failure rolls back
        ([(P, F), (P, P), (F, P)], ["wait", "advance", "rollback"]),  # flapping still counts
        (
            [(N, P), (P, N), (N, N), (P, P), (P, P)],
            ["wait", "wait", "wait", "advance", "promote"],
        ),  # inconclusive: neither way
        ([(N, F), (P, P), (N, P), (P, F)], ["wait", "advance", "wait", "rollback"]),
    ],
)
def test_analysis_sequences(verdicts: list[tuple[str, ...]], expected: list[str]) -> None:
    assert run(verdicts) == expected


def test_an_outage_never_rolls_back_before_the_deadline() -> None:
    outage = [(N, N, N)] * 9  # 9 intervals, deadline is 10
    assert set(run(outage)) == {"wait"}


@pytest.mark.parametrize(("on_deadline", "final"), [("rollback", "rollback"), ("hold", "hold")])
def test_progress_deadline_both_ways(on_deadline: str, final: str) -> None:
    spec = CanarySpec.model_validate(
        {"interval": "60s", "progressDeadline": "300s", "onDeadline": on_deadline}
    )
    actions = run([(N, N)] * 10, spec)
    assert actions == ["wait"] * 4 + [final]


def test_progress_resets_the_deadline() -> None:
    spec = CanarySpec(steps=(10, 50, 90), interval="60s", threshold=2, progress_deadline="180s")
    # Two inconclusive intervals, a pass, two more inconclusive: never 180 s without progress.
    assert run([(N,), (N,), (P,), (N,), (N,), (P,), (P,)], spec) == [
        "wait",
        "wait",
        "advance",
        "wait",
        "wait",
        "advance",
        "promote",
    ]


def test_inconclusive_reason_is_reported() -> None:
    status = start("iris-v2", 0.0, 2, SPEC)
    decision = decide(status, SPEC, 60.0, analysis(N, P), 2)
    assert decision.reason == "AnalysisInconclusive"
    assert "errorRate: fewer than 20 samples" in decision.message
    assert decision.status["failedChecks"] == 0
    # A pass before the next analysis (a pod's event) still says why, and so writes nothing new.
    kept = {**decision.status, "reason": decision.reason, "message": decision.message}
    between = decide(kept, SPEC, 90.0, None, 2)
    assert (between.reason, between.message) == (decision.reason, decision.message)


def test_each_checks_value_is_kept_and_a_check_no_longer_measured_is_removed() -> None:
    """The canary's last analysis carries each check's value and samples, as the stable's do; a
    merge patch merges maps, so what the next analysis no longer has is written as null."""
    status = start("iris-v2", 0.0, 2, SPEC)
    first = Analysis(
        {"errorRate": F, "accuracy": P},
        {"errorRate": "0.2 > 0.05"},
        values={"errorRate": 0.2, "accuracy": 0.97},
        samples={"errorRate": 50.0, "accuracy": 40.0},
    )
    status = decide(status, SPEC, 60.0, first, 2).status
    assert status["lastAnalysis"]["values"] == {"errorRate": 0.2, "accuracy": 0.97}
    second = Analysis(
        {"errorRate": P, "accuracy": N},
        {"accuracy": "3 feedback items < minSamples 20"},
        values={"errorRate": 0.0},
        samples={"errorRate": 60.0, "accuracy": 3.0},
    )
    last = decide(status, SPEC, 120.0, second, 2).status["lastAnalysis"]
    assert last["values"] == {"accuracy": None, "errorRate": 0.0}
    assert last["reasons"] == {"errorRate": None, "accuracy": "3 feedback items < minSamples 20"}


def test_the_rollout_gives_the_analysis_the_engines_finite_values() -> None:
    checks = [
        CheckResult("errorRate", Outcome.PASS, 0.0123456789, "<= 0.05", 120.0, "ok"),
        CheckResult("accuracy", Outcome.INCONCLUSIVE, float("nan"), ">= 0.9", 3.0, "too few"),
        CheckResult("custom", Outcome.PASS, 1.0, "<= 2", None, "ok"),
    ]
    results = Results(600.0, {"canary": checks}, {"canary": "iris-v2"})
    made = canary_analysis(results, {"version": "iris-v2", "lastAnalysisAt": 540.0})
    assert made is not None
    assert made.values == {"errorRate": 0.012346, "custom": 1.0}  # NaN left out, rounded
    assert made.samples == {"errorRate": 120.0, "accuracy": 3.0}


def test_no_analysis_before_an_interval_has_passed() -> None:
    status = start("iris-v2", 0.0, 2, SPEC)
    decision = decide(status, SPEC, 30.0, analysis(F, F), 2)
    assert decision.action == "wait" and decision.status["failedChecks"] == 0


@pytest.mark.parametrize(
    ("command", "action"), [("promote", "promote"), ("abort", "rollback"), ("pause", "hold")]
)
def test_commands(command: str, action: str) -> None:
    status = start("iris-v2", 0.0, 2, SPEC)
    assert decide(status, SPEC, 60.0, analysis(F, F), 2, command).action == action


def test_pause_stops_the_clock_and_resume_restarts_it() -> None:
    status = start("iris-v2", 0.0, 2, SPEC)
    paused = decide(status, SPEC, 60.0, None, 2, "pause").status
    assert decide(paused, SPEC, 5000.0, analysis(F, F), 2).action == "hold"
    resumed = decide(paused, SPEC, 5000.0, None, 2, "resume")
    assert resumed.action == "wait" and resumed.status["stepStartedAt"] == 5000.0


def test_a_newer_version_restarts_from_the_first_step() -> None:
    status = decide(start("iris-v2", 0.0, 2, SPEC), SPEC, 60.0, analysis(P, P), 2).status
    assert status["step"] == 1
    replaced = start("iris-v3", 61.0, 2, SPEC)
    assert (replaced["version"], replaced["step"], replaced["failedChecks"]) == ("iris-v3", 0, 0)


@pytest.mark.parametrize(
    ("stable", "weight", "expected"),
    [(2, 10, (1, 33)), (9, 10, (1, 10)), (10, 50, (10, 50)), (1, 90, (9, 90)), (3, 1, (1, 25))],
)
def test_split_reports_the_weight_replicas_really_give(
    stable: int, weight: int, expected: tuple[int, int]
) -> None:
    assert split(stable, weight) == expected


def test_a_canary_without_checks_is_never_promoted_blind() -> None:
    """A Model with `checks: {}`: every analysis is empty, and inconclusive, not a pass."""
    assert Analysis().verdict == N
    status: dict[str, Any] = start("iris-v2", 0.0, 2, SPEC)
    actions = []
    for tick in range(1, 11):
        decision = decide(status, SPEC, tick * 60.0, Analysis(), 2)
        actions.append(decision.action)
        status = decision.status
        if tick == 1:
            assert decision.reason == "AnalysisInconclusive"
            assert decision.message == "no checks are configured"
            assert status["lastAnalysis"]["verdict"] == N
    assert actions == ["wait"] * 9 + ["rollback"]  # the progress deadline (600 s) decides
    assert "no checks are configured" in decision.message
    by_hand = decide(start("iris-v2", 0.0, 2, SPEC), SPEC, 60.0, Analysis(), 2, "promote")
    assert by_hand.action == "promote"


# --- Prometheus unavailable: the deadline waits ------------------------------------------------

CHECKS = {"errorRate": {"max": 0.05}, "latencyP95Seconds": {"max": 0.5}, "accuracy": {"min": 0.9}}
CANARY = TargetKey("ml", "iris", "iris-v2", "canary")


class Answers:
    def __init__(self, answer: Answer) -> None:
        self.answer = answer

    def query(self, promql: str, at: float | None = None) -> Answer:
        return self.answer


def analysed(answer: Answer, at: float) -> Analysis:
    """The canary's analysis as the operator makes it: the engine's pass over a Prometheus that
    answers `answer` to every query, turned into an `Analysis` by the rollout."""
    results = analyse(Answers(answer), [Target(CANARY, CHECKS)], 60, at=at)
    by_track = Results(at, {"canary": results[CANARY]}, {"canary": CANARY.version})
    made = canary_analysis(by_track, {"version": CANARY.version, "lastAnalysisAt": at - 60})
    assert made is not None
    return made


def run_from(status: dict[str, Any], tick: float, verdicts: list[tuple[str, ...]]) -> list[str]:
    actions = []
    for outcomes in verdicts:
        tick += SPEC.interval_seconds
        decision = decide(status, SPEC, tick, analysis(*outcomes), 2)
        actions.append(decision.action)
        status = decision.status
    return actions


@pytest.mark.parametrize("kind", [UNREACHABLE, TIMEOUT])
def test_an_outage_three_times_the_deadline_then_passes_advances_never_rolls_back(
    kind: str,
) -> None:
    status: dict[str, Any] = start("iris-v2", 0.0, 2, SPEC)
    outage = 3 * SPEC.progress_deadline_seconds
    tick = 0.0
    while tick < outage:
        tick += SPEC.interval_seconds
        down = analysed(Unavailable(kind, "connection refused"), tick)
        assert down.verdict == N and down.unavailable
        decision = decide(status, SPEC, tick, down, 2)
        assert decision.action == "wait", (tick, decision)
        status = decision.status
        assert status["stepStartedAt"] == tick  # the deadline counts from the last analysis
        between = decide(status, SPEC, tick + 30.0, None, 2)  # a resync between two analyses
        assert between.action == "wait", (tick + 30.0, between)
    assert status["failedChecks"] == 0 and status["step"] == 0
    assert "Prometheus unavailable" in decision.message
    assert run_from(status, tick, [(P, P, P), (P, P, P)]) == ["advance", "promote"]


def test_few_samples_still_reach_the_deadline() -> None:
    few = [(N, N, N)] * 10  # the reasons say "fewer than 20 samples": the canary's own doing
    assert not analysis(*few[0]).unavailable
    assert run(few) == ["wait"] * 9 + ["rollback"]


@pytest.mark.parametrize(
    ("reasons", "outages"),
    [
        # one check lacked samples, another could not be asked: the deadline counts
        (
            {
                "errorRate": "12 /predict requests in the last 60s < minSamples 20",
                "accuracy": "Prometheus unavailable (unreachable): refused",
            },
            frozenset({"accuracy"}),
        ),
        # Prometheus answered, but refused a bad query: that is no outage
        (
            {"errorRate": "Prometheus unavailable (query-error): answered HTTP 400: parse"},
            frozenset(),
        ),
    ],
)
def test_an_analysis_that_is_not_only_an_outage_counts_toward_the_deadline(
    reasons: dict[str, str], outages: frozenset[str]
) -> None:
    outcomes = dict.fromkeys(reasons, N)
    assert not Analysis(outcomes, reasons, outages).unavailable
    status: dict[str, Any] = start("iris-v2", 0.0, 2, SPEC)
    actions = []
    for tick in range(1, 11):
        decision = decide(status, SPEC, tick * 60.0, Analysis(outcomes, reasons, outages), 2)
        actions.append(decision.action)
        status = decision.status
    assert actions == ["wait"] * 9 + ["rollback"]


def test_a_bad_query_from_the_engine_is_not_an_outage() -> None:
    assert not analysed(
        Unavailable(QUERY_ERROR, "Prometheus answered HTTP 400: parse"), 60
    ).unavailable


def test_an_outage_after_some_checks_passed_is_still_an_outage() -> None:
    outcomes = {"errorRate": P, "accuracy": N}
    reasons = {"accuracy": "Prometheus unavailable (timeout): not sent"}
    assert Analysis(outcomes, reasons, frozenset({"accuracy"})).unavailable
    assert not Analysis().unavailable  # no checks: the deadline counts


# --- a canary judged against stable --------------------------------------------------------------

STABLE = TargetKey("ml", "iris", "iris-v1", "stable")
VERSUS = {"errorRate": {"max": 0.05, "vsStable": {}}}


class Requests:
    """A Prometheus answering the request query with the given (ok, 5xx) per track."""

    def __init__(self, canary: tuple[float, float], stable: tuple[float, float]) -> None:
        self.counts = {CANARY: canary, STABLE: stable}

    def query(self, promql: str, at: float | None = None) -> Answer:
        samples = []
        for key, (ok, errors) in self.counts.items():
            labels = {"namespace": key.namespace, "model": key.model, "version": key.version}
            for code, n in (("200", ok), ("500", errors)):
                code_labels = {**labels, "track": key.track, "http_response_code": code}
                samples.append(Sample(code_labels, n))
        return Vector(tuple(samples))


def versus(client: Requests, at: float) -> Analysis:
    results = analyse(client, [Target(CANARY, VERSUS, baseline=STABLE)], 60, at=at)
    by_track = Results(at, {"canary": results[CANARY]}, {"canary": CANARY.version})
    made = canary_analysis(by_track, {"version": CANARY.version, "lastAnalysisAt": at - 60})
    assert made is not None
    return made


@pytest.mark.parametrize(
    ("canary", "stable", "actions", "why"),
    [
        # 2% against 0.1%, both within max 0.05: the comparison rolls it back
        ((490, 10), (4995, 5), ["wait", "rollback"], "(2%) vs stable 5 of 5000 (0.1%)"),
        # alike: promoted through both steps
        ((995, 5), (8955, 45), ["advance", "promote"], ""),
        # 2% against 0.1% with fewer than minSamples (200) canary requests: never promoted, the
        # progress deadline (600 s) decides
        ((147, 3), (4995, 5), ["wait"] * 9 + ["rollback"], "canary 150 /predict requests"),
    ],
    ids=["worse", "alike", "too-few"],
)
def test_a_canary_against_stable_through_the_state_machine(
    canary: tuple[float, float], stable: tuple[float, float], actions: list[str], why: str
) -> None:
    status: dict[str, Any] = start("iris-v2", 0.0, 9, SPEC)
    taken = []
    for tick in range(1, 16):
        analysis = versus(Requests(canary, stable), tick * 60.0)
        decision = decide(status, SPEC, tick * 60.0, analysis, 9)
        taken.append(decision.action)
        status = decision.status
        if decision.action in ("promote", "rollback"):
            break
    assert taken == actions
    if why:
        assert why in status["lastAnalysis"]["reasons"]["errorRate.vsStable"]
    if actions[-1] == "rollback" and len(actions) == 2:
        assert decision.reason == "CanaryFailed"
        assert decision.message.endswith("(threshold 2): errorRate.vsStable")
    if len(actions) > 2:  # inconclusive all along: the progress deadline decides
        assert decision.reason == "ProgressDeadlineExceeded"


def test_the_operator_compares_a_canary_with_its_models_stable_track() -> None:
    class Recorder:
        def __init__(self) -> None:
            self.watches: dict[tuple[str, str], Watch] = {}

        def watch(self, key: tuple[str, str], watch: Watch) -> None:
            self.watches[key] = watch

    example = yaml.safe_load((ROOT / "examples" / "iris.yaml").read_text())
    monitoring = example["spec"]["monitoring"]
    del monitoring["checks"]["drift"]  # no reference to read: none of this test's business
    monitoring["retrainOn"] = ["accuracy"]
    monitoring["checks"]["errorRate"]["vsStable"] = {}
    spec = parse(ModelSpec, example["spec"], "spec")
    recorder = Recorder()
    nobody = cast(References, None)  # asked only for drift's reference
    watch(cast(Monitor, recorder), nobody, ("ml", "iris"), spec, {}, "iris-v1", "iris-v2")
    stable, canary = recorder.watches[("ml", "iris")].targets
    assert (stable.key, stable.baseline) == (STABLE, None)
    assert (canary.key, canary.baseline) == (CANARY, STABLE)
    assert canary.checks["errorRate"]["vsStable"] == {"confidence": 0.95, "minSamples": 200}
