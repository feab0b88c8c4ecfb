"""The stable version's monitoring state in the Model's status, advanced by each analysis: pure.

The state changes only when an analysis says something new: an outcome, a reason, a breach count,
or a value that moved by more than `SETTLED` of itself. An analysis that repeats the last one
writes nothing (the live values are in Prometheus, docs/monitoring.md). The state also says when a
check in `retrainOn` has breached long enough to retrain (`retraining.retrain_reason`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelops_api.spec import MonitoringSpec
from modelops_operator import children, retraining
from modelops_operator.analysis.model import DRIFT, CheckResult, Outcome, Results, summarise

SETTLED = 0.1


@dataclass(frozen=True)
class MonitoringResult:
    """The new `status.monitoring`, the check that calls for a retrain now, and the time of the
    analysis taken into account (None when no new one was)."""

    state: dict[str, Any]
    trigger: str | None = None
    analysed: float | None = None


def advance(
    spec: MonitoringSpec,
    previous: Mapping[str, Any] | None,
    stable: str | None,
    results: Results | None,
    analysed_before: float,
    clock: float,
) -> MonitoringResult:
    """`previous` state advanced by `results`, if they are a new analysis of the stable version."""
    state: dict[str, Any] = dict(previous or {})
    if state.pop("lastAnalysisAt", None) is not None:  # older operators wrote it on every pass
        state["lastAnalysisAt"] = None  # (the merge patch removes it)
    if results is None or not stable or results.versions.get(children.STABLE) != stable:
        return MonitoringResult(state)
    if results.at <= analysed_before:
        return MonitoringResult(state)
    checks: list[CheckResult] = results.by_track.get(children.STABLE, [])
    same_version = state.get("version") == stable
    state["version"] = stable
    before = {c.get("check"): c for c in state.get("checks") or []} if same_version else {}
    state["checks"] = [settled(before.get(r.check), r.as_status()) for r in checks]
    state["summary"] = settled(
        state.get("summary") if same_version else None, summarise(checks).as_status()
    )
    state["breaches"] = retraining.count_breaches(
        state.get("breaches") or {}, checks, list(spec.retrain_on)
    )
    last = (state.get("lastRetrain") or {}).get("at")
    trigger = retraining.retrain_reason(
        state["breaches"],
        spec.consecutive,
        float(last) if last is not None else None,
        spec.cooldown_seconds,
        clock,
    )
    return MonitoringResult(state, trigger, results.at)


def retrained(state: Mapping[str, Any], reason: str, at: float, version: str) -> dict[str, Any]:
    """The state after a retrain started by `reason`: its record, and the breach counts cleared
    (null, since a merge patch of `{}` would keep them)."""
    record = {"reason": reason, "at": at, "version": version}
    return {**state, "lastRetrain": record, "breaches": None}


def settled(previous: Any, new: Any) -> Any:
    """`previous` when `new` says the same thing: equal but for numbers that moved by no more
    than SETTLED (10%) of their previous value; otherwise `new`."""
    return previous if _same(previous, new) else new


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return abs(b - a) <= SETTLED * abs(a)
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def view(spec: MonitoringSpec, state: Mapping[str, Any]) -> dict[str, Any]:
    """Drift and live accuracy of the stable version, as the status shows them."""
    found: dict[str, Any] = {}
    drift = spec.checks.drift
    for check in state.get("checks") or []:
        conclusive = check.get("outcome") != str(Outcome.INCONCLUSIVE)
        if check.get("check") == DRIFT and conclusive and "value" in check and drift is not None:
            found["drift"] = float(check["value"])
            found["drift_limit"] = drift.psi.max
            found["drift_feature"] = ((state.get("summary") or {}).get("drift") or {}).get(
                "feature"
            )
        if check.get("check") == "accuracy" and conclusive and "value" in check:
            found["live_accuracy"] = float(check["value"])
    return found
