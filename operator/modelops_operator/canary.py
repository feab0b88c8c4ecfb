"""The canary state machine, pure: from the canary's status, its spec, an analysis and the clock,
the next status and what to do (wait, advance, promote, roll back, hold).

Rules (docs/monitoring.md tells them to users):
- an analysis runs once per `interval`, the first one interval after the start; a check that
  *fails* adds one to `failedChecks` (failures count over the whole canary, so flapping results
  still reach the threshold), and `threshold` failures roll the canary back;
- an analysis whose checks all *pass* advances one step; passing the last step promotes;
- an *inconclusive* analysis (too few samples, no series, Prometheus unreachable) neither counts as
  a failure nor advances: no data is not failure, and no data is not success either; an analysis
  with no check at all (a Model with `checks: {}`) is inconclusive too ("no checks are
  configured"): a canary is never promoted blind, only by hand or not at all;
- a canary that has not advanced for `progressDeadline` does what `onDeadline` says: roll back, or
  hold where it is (with a condition that says so) until a person decides;
- time when the analysis is *unavailable* (every inconclusive check is so because Prometheus could
  not be asked: refused, timed out, HTTP 5xx) does not count toward the deadline: such an analysis
  moves `stepStartedAt` (the time the deadline counts from) forward by the time since the previous
  analysis, so an outage holds every canary where it is instead of rolling them all back; too few
  samples, no series or a bad query still count;
- annotations decide by hand: promote, abort (roll back), pause and resume.
The stable Deployment keeps its replicas through the canary. With the replica-ratio router (the
default) the canary Deployment gets enough replicas for its step's weight (at least one), and the
status reports the weight those replicas really give, since one Service spreads traffic by replica
count. With the Gateway API router (`spec.serving.traffic`) the route's weights give the step's
share exactly, and the canary runs `max(1, ceil(n * w / 100))` pods beside n stable ones: as many
per request as stable has.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from modelops_api.spec import CanarySpec

Action = Literal["wait", "advance", "promote", "rollback", "hold"]
PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"
NO_CHECKS = "no checks are configured"


@dataclass(frozen=True)
class Analysis:
    """The outcome of one analysis of the canary: every check's outcome, and why; `outages`
    names the checks left inconclusive because Prometheus could not be asked at all."""

    outcomes: Mapping[str, str] = field(default_factory=dict)  # check -> pass|fail|inconclusive
    reasons: Mapping[str, str] = field(default_factory=dict)
    outages: frozenset[str] = frozenset()
    values: Mapping[str, float] = field(default_factory=dict)  # check -> its measured value
    samples: Mapping[str, float] = field(default_factory=dict)  # check -> observations behind it

    @property
    def verdict(self) -> str:
        values = set(self.outcomes.values())
        if FAIL in values:
            return FAIL
        if INCONCLUSIVE in values or not values:  # nothing judged is not a pass
            return INCONCLUSIVE
        return PASS

    @property
    def unavailable(self) -> bool:
        """Inconclusive only because Prometheus could not be asked: every inconclusive check is
        an outage (a check that passed before the outage does not change that)."""
        waiting = {check for check, outcome in self.outcomes.items() if outcome == INCONCLUSIVE}
        return self.verdict == INCONCLUSIVE and bool(waiting) and waiting <= self.outages

    @property
    def why(self) -> str:
        """Why it did not pass, check by check (or that there was no check)."""
        return _why(self.outcomes, self.reasons)


@dataclass(frozen=True)
class Decision:
    action: Action
    status: dict[str, Any]
    reason: str
    message: str


def split(stable_replicas: int, weight: int, gateway: bool = False) -> tuple[int, int]:
    """Canary replicas for a step's weight beside `stable_replicas`, and the weight they give:
    by replica ratio, or (`gateway`) exactly the step's, the route's weights giving it."""
    stable = max(1, stable_replicas)
    if gateway:
        return max(1, math.ceil(stable * weight / 100)), weight
    canary = max(1, round(stable * weight / (100 - weight)))
    return canary, round(100 * canary / (stable + canary))


def start(
    version: str, now: float, stable_replicas: int, spec: CanarySpec, gateway: bool = False
) -> dict[str, Any]:
    """The status of a canary of `version` at its first step."""
    replicas, weight = split(stable_replicas, spec.steps[0], gateway)
    return {
        "version": version,
        "step": 0,
        "weight": weight,
        "replicas": replicas,
        "failedChecks": 0,
        "startedAt": now,
        "stepStartedAt": now,
        "lastAnalysisAt": now,  # the first analysis comes one interval after the start
        "paused": False,
    }


def at_step(
    status: Mapping[str, Any], spec: CanarySpec, stable_replicas: int, gateway: bool
) -> dict[str, Any]:
    """With the Gateway API router, the canary's replicas and weight as its step of the current
    spec gives them (the steps or the stable replicas may have been edited since the step began,
    or the router switched); the replica-ratio router keeps the weight its step started with."""
    current = dict(status)
    if gateway:
        step = min(int(current["step"]), len(spec.steps) - 1)
        replicas, weight = split(stable_replicas, spec.steps[step], gateway)
        current.update(replicas=replicas, weight=weight)
    return current


def decide(
    status: Mapping[str, Any],
    spec: CanarySpec,
    now: float,
    analysis: Analysis | None,
    stable_replicas: int,
    command: str | None = None,
    gateway: bool = False,
) -> Decision:
    """One tick of the canary. `analysis` is None when none is due (or none could be made);
    `command` is a person's word: promote, abort, pause or resume; `gateway` says which router
    splits the traffic (`split`)."""
    current = dict(status)
    if command == "promote":
        return Decision("promote", current, "PromotedByHand", f"{current['version']} promoted")
    if command == "abort":
        return Decision("rollback", current, "AbortedByHand", f"{current['version']} aborted")
    if command in ("pause", "resume"):
        current["paused"] = command == "pause"
        if command == "resume":  # the deadline counts from the resumption
            current["stepStartedAt"] = now
    if current.get("paused"):
        return Decision("hold", current, "Paused", "the canary is paused by hand")

    if analysis is not None and _due(current, spec, now):
        if analysis.unavailable:  # the deadline does not count what Prometheus' outage cost
            current["stepStartedAt"] = _after_outage(current, now)
        current["lastAnalysisAt"] = now
        current["lastAnalysis"] = _replacing(
            current.get("lastAnalysis") or {},
            {
                "verdict": analysis.verdict,
                "at": now,
                "checks": dict(analysis.outcomes),
                "reasons": dict(analysis.reasons),
                "values": dict(analysis.values),
                "samples": dict(analysis.samples),
            },
        )
        if analysis.verdict == FAIL:
            current["failedChecks"] = int(current.get("failedChecks", 0)) + 1
            failed = sorted(k for k, v in analysis.outcomes.items() if v == FAIL)
            if current["failedChecks"] >= spec.threshold:
                return Decision(
                    "rollback",
                    current,
                    "CanaryFailed",
                    f"{current['version']} failed {current['failedChecks']} "
                    f"analyses (threshold {spec.threshold}): {', '.join(failed)}",
                )
            return Decision(
                "wait",
                current,
                "CheckFailed",
                f"{', '.join(failed)} failed ({current['failedChecks']}/{spec.threshold})",
            )
        if analysis.verdict == PASS:
            step = int(current["step"]) + 1
            if step >= len(spec.steps):
                return Decision(
                    "promote",
                    current,
                    "CanaryPassed",
                    f"{current['version']} passed all {len(spec.steps)} steps",
                )
            replicas, weight = split(stable_replicas, spec.steps[step], gateway)
            current.update(step=step, weight=weight, replicas=replicas, stepStartedAt=now)
            return Decision(
                "advance",
                current,
                "StepPassed",
                f"{current['version']} advanced to step {step + 1}/"
                f"{len(spec.steps)} ({weight}% of traffic)",
            )
    if now - float(current["stepStartedAt"]) >= spec.progress_deadline_seconds:
        last = current.get("lastAnalysis")
        why = (last and _why(last.get("checks") or {}, last.get("reasons") or {})) or "no analysis"
        if spec.on_deadline == "rollback":
            return Decision(
                "rollback",
                current,
                "ProgressDeadlineExceeded",
                f"no progress for {spec.progress_deadline} ({why})",
            )
        return Decision(
            "hold",
            current,
            "ProgressDeadlineExceeded",
            f"holding: no progress for {spec.progress_deadline} ({why})",
        )
    if (
        analysis is not None
        and analysis.verdict == INCONCLUSIVE
        and current.get("lastAnalysisAt") == now
    ):
        why = analysis.why or "inconclusive"
        if analysis.unavailable:
            why += " (the progress deadline waits while Prometheus is unavailable)"
        return Decision("wait", current, "AnalysisInconclusive", why)
    last = current.get("lastAnalysis") or {}
    if last.get("verdict") == INCONCLUSIVE and current.get("reason") == "AnalysisInconclusive":
        # Until the next analysis, the last one still says why.
        return Decision("wait", current, "AnalysisInconclusive", str(current.get("message")))
    return Decision(
        "wait",
        current,
        "Analysing",
        f"step {int(current['step']) + 1}/{len(spec.steps)} at {current['weight']}%",
    )


def _replacing(previous: Mapping[str, Any], analysis: dict[str, Any]) -> dict[str, Any]:
    """`analysis` as a merge patch over the `previous` one: a check no longer in one of its maps
    is written as null, which removes it (a merge patch merges maps, it does not replace them)."""
    for key, entries in analysis.items():
        before = previous.get(key)
        if isinstance(entries, dict) and isinstance(before, Mapping):
            analysis[key] = {**{k: None for k in before if k not in entries}, **entries}
    return analysis


def _why(outcomes: Mapping[str, str], reasons: Mapping[str, str]) -> str:
    if not outcomes:
        return NO_CHECKS
    return "; ".join(f"{k}: {v}" for k, v in sorted(reasons.items()) if v is not None)


def _after_outage(status: Mapping[str, Any], now: float) -> float:
    """`stepStartedAt` moved forward by the time since the previous analysis (never past now)."""
    last = status.get("lastAnalysisAt")
    since = now - float(last) if last is not None else 0.0
    return min(now, float(status["stepStartedAt"]) + since)


def _due(status: Mapping[str, Any], spec: CanarySpec, now: float) -> bool:
    last = status.get("lastAnalysisAt")
    return last is None or now - float(last) >= spec.interval_seconds
