"""The analysis engine's types: what is analysed (targets), what each check concluded, a summary.

A target is one track of one version of one model, exactly as the serving runtime labels its series
(`namespace`, `model`, `version`, `track`). Each check ends in one of three outcomes; `inconclusive`
is never a failure: it carries the reason (too few samples, no series, NaN, Prometheus unavailable)
so that the status can say why nothing was decided.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ERROR_RATE = "errorRate"
LATENCY_P95 = "latencyP95Seconds"
DRIFT = "drift"
ACCURACY = "accuracy"
CUSTOM_PREFIX = "custom:"
# The suffix of a check judged against stable (`errorRate.vsStable`), as the spec spells it.
VS_STABLE = ".vsStable"
BUILT_IN = (ERROR_RATE, LATENCY_P95, DRIFT, ACCURACY)


class Outcome(enum.StrEnum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True, order=True)
class TargetKey:
    """One track of one version, as Prometheus labels its series."""

    namespace: str
    model: str
    version: str
    track: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.model}/{self.version}/{self.track}"


@dataclass(frozen=True)
class Target:
    """What to analyse for one key.

    `checks` is a Model's `spec.monitoring.checks` (CRD shape). `reference` is the version's
    `reference` metadata (per feature: numeric `{"edges", "proportions"}` or categorical
    `{"categories", "other"}`); without it drift is inconclusive. `window_seconds`, when set,
    overrides the window given to `analyse()` for this target (targets sharing a window share
    their queries). `baseline` is the track a canary is compared with (its Model's stable
    track): checks with `vsStable` are judged against it too; without one they are not.
    """

    key: TargetKey
    checks: Mapping[str, Any]
    reference: Mapping[str, Any] | None = None
    window_seconds: int | None = None
    baseline: TargetKey | None = None


@dataclass(frozen=True)
class FeatureDrift:
    """Drift of one feature: PSI and Jensen-Shannon divergence (base 2, 0..1) of its shares."""

    feature: str
    kind: str  # "numeric" | "categorical"
    psi: float
    js: float
    samples: float


@dataclass(frozen=True)
class CheckResult:
    """One check's conclusion for one target.

    `value` is the measured value (None when there is none); `threshold` says what passes
    (`<= 0.05`); `samples` is the number of observations behind the value (requests, feature
    values, feedback items; None for custom checks, which have no such count); `reason` is a
    sentence for the status. `features` holds the per-feature drift of a drift check. `outage`
    marks an inconclusive result because Prometheus could not be asked at all (refused, timed out,
    HTTP 5xx): the canary's progress deadline does not count such time.
    """

    check: str
    outcome: Outcome
    value: float | None
    threshold: str
    samples: float | None
    reason: str
    features: tuple[FeatureDrift, ...] = field(default=())
    outage: bool = False

    def as_status(self) -> dict[str, Any]:
        """A JSON-friendly dict (no NaN or infinities) for a Model's status."""
        out: dict[str, Any] = {
            "check": self.check,
            "outcome": str(self.outcome),
            "threshold": self.threshold,
            "reason": self.reason,
        }
        if self.value is not None and math.isfinite(self.value):
            out["value"] = round(self.value, 6)
        if self.samples is not None and math.isfinite(self.samples):
            out["samples"] = round(self.samples, 3)
        return out


@dataclass(frozen=True)
class Summary:
    """A target's results at a glance: which checks passed, failed, could not conclude."""

    passed: tuple[str, ...]
    failed: tuple[str, ...]
    inconclusive: tuple[str, ...]
    drift_feature: str | None = None
    drift_psi: float | None = None
    accuracy: float | None = None

    @property
    def conclusive(self) -> bool:
        """True when every check passed or failed (nothing was left undecided)."""
        return not self.inconclusive

    def as_status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "passed": list(self.passed),
            "failed": list(self.failed),
            "inconclusive": list(self.inconclusive),
        }
        if self.drift_feature is not None and self.drift_psi is not None:
            out["drift"] = {"feature": self.drift_feature, "psi": round(self.drift_psi, 6)}
        if self.accuracy is not None:
            out["accuracy"] = round(self.accuracy, 6)
        return out


def summarise(results: Sequence[CheckResult]) -> Summary:
    """Groups check names by outcome; the worst drift feature and the accuracy of conclusive checks
    (a value measured on too few samples is in the check's result, not in the summary)."""
    by: dict[Outcome, list[str]] = {o: [] for o in Outcome}
    drift_feature: str | None = None
    drift_psi: float | None = None
    accuracy: float | None = None
    for result in results:
        by[result.outcome].append(result.check)
        if result.outcome == Outcome.INCONCLUSIVE:
            continue
        if result.check == DRIFT and result.features:
            worst = max(result.features, key=lambda f: f.psi)
            drift_feature, drift_psi = worst.feature, worst.psi
        if result.check == ACCURACY and result.value is not None:
            accuracy = result.value
    return Summary(
        passed=tuple(by[Outcome.PASS]),
        failed=tuple(by[Outcome.FAIL]),
        inconclusive=tuple(by[Outcome.INCONCLUSIVE]),
        drift_feature=drift_feature,
        drift_psi=drift_psi,
        accuracy=accuracy,
    )


@dataclass(frozen=True)
class Watch:
    """What one Model wants analysed: targets (stable, canary) and how often."""

    targets: tuple[Target, ...]
    interval: float


@dataclass(frozen=True)
class Results:
    """One pass's results for one Model, by track."""

    at: float
    by_track: Mapping[str, list[CheckResult]] = field(default_factory=dict)
    versions: Mapping[str, str] = field(default_factory=dict)  # track -> version analysed
