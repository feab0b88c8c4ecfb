"""A Model and its ModelVersions as the `modelops` command shows them: typed views parsed from the
API server's JSON.

Pure: no Kubernetes client and no I/O. `cli_kube` reads the objects, `cli_verdicts` judges them,
`cli_views` renders them. Every field is optional in what the API server returns (a Model the
operator has not seen yet has no status), so the parsers take whatever is there and never raise
on a missing or oddly typed field.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from modelops_api import contract
from modelops_api.spec import CanarySpec

# The metrics a version table shows, in this order, when a version has them.
METRICS = ("accuracy", "f1_macro", "roc_auc", "r2", "mae", "rmse")
# ModelVersion reasons that are retrains of an unchanged spec.
RETRAIN_REASONS = (
    contract.REASON_DRIFT,
    contract.REASON_ACCURACY,
    contract.REASON_SCHEDULE,
    contract.REASON_MANUAL,
)


@dataclass(frozen=True)
class Condition:
    type: str
    status: str  # "True", "False" or "Unknown"
    reason: str = ""
    message: str = ""
    since: datetime.datetime | None = None


@dataclass(frozen=True)
class Check:
    """One check's last outcome (pass, fail, inconclusive) and why."""

    name: str
    outcome: str
    reason: str = ""
    value: float | None = None
    threshold: float | None = None
    samples: float | None = None


@dataclass(frozen=True)
class Canary:
    version: str
    step: int  # 0-based, as in the status
    steps: int | None  # how many the spec has, when it can be read
    weight: int
    replicas: int
    failed_checks: int
    threshold: int | None
    paused: bool
    reason: str
    message: str
    verdict: str | None  # of the last analysis
    analysed_at: datetime.datetime | None
    checks: tuple[Check, ...] = ()


@dataclass(frozen=True)
class Retrain:
    """The last retrain: why, when, and the version it started."""

    reason: str
    at: datetime.datetime | None
    version: str | None


@dataclass(frozen=True)
class Version:
    name: str
    model: str
    phase: str  # Pending until its training Job starts
    trigger: str  # spec.reason: initial, spec-change, drift, accuracy, schedule, manual
    reason: str = ""  # status.reason, in the training runtime's words
    message: str = ""
    metrics: Mapping[str, float] = field(default_factory=dict)
    approved: bool | None = None
    rows: int | None = None
    created: datetime.datetime | None = None
    finished: datetime.datetime | None = None

    @property
    def finished_training(self) -> bool:
        return self.phase in contract.FINISHED


@dataclass(frozen=True)
class ModelView:
    namespace: str
    name: str
    generation: int
    observed_generation: int | None
    phase: str | None
    conditions: tuple[Condition, ...] = ()
    stable: str | None = None
    latest: str | None = None
    canary: Canary | None = None
    accuracy: float | None = None
    accuracy_live: bool = False  # from feedback; otherwise the holdout accuracy
    drift: float | None = None
    drift_limit: float | None = None
    drift_feature: str | None = None
    checks: tuple[Check, ...] = ()  # the stable version's last analysis
    last_retrain: Retrain | None = None
    retrain_token: str | None = None
    canary_command: str | None = None
    created: datetime.datetime | None = None
    versions: tuple[Version, ...] = ()  # oldest first

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)

    def version(self, name: str | None) -> Version | None:
        return next((v for v in self.versions if v.name == name), None)


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> Sequence[Any]:
    return value if isinstance(value, list) else []


def _str(value: Any) -> str:
    return "" if value is None else str(value)


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _int(value: Any, default: int = 0) -> int:
    number = _float(value)
    return default if number is None else int(number)


def timestamp(value: Any) -> datetime.datetime | None:
    """An RFC 3339 string (the API's timestamps) or seconds since the epoch (the operator's
    clock in status.canary and status.monitoring) as an aware UTC datetime."""
    if isinstance(value, str) and value:
        try:
            parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)
    number = _float(value)
    if number is None:
        return None
    return datetime.datetime.fromtimestamp(number, datetime.UTC)


def parse_check(raw: Mapping[str, Any]) -> Check:
    return Check(
        name=_str(raw.get("check")),
        outcome=_str(raw.get("outcome")) or "inconclusive",
        reason=_str(raw.get("reason")),
        value=_float(raw.get("value")),
        threshold=_float(raw.get("threshold")),
        samples=_float(raw.get("samples")),
    )


def _canary_spec(spec: Mapping[str, Any]) -> CanarySpec | None:
    try:
        return CanarySpec.model_validate(_map(_map(spec.get("serving")).get("canary")))
    except ValidationError:
        return None


def parse_canary(raw: Mapping[str, Any], spec: Mapping[str, Any]) -> Canary:
    """status.canary; the number of steps and the threshold come from the spec (with its
    defaults), since the status does not repeat them."""
    canary_spec = _canary_spec(spec)
    analysis = _map(raw.get("lastAnalysis"))
    outcomes = _map(analysis.get("checks"))
    reasons = _map(analysis.get("reasons"))
    values, samples = _map(analysis.get("values")), _map(analysis.get("samples"))
    checks = tuple(
        Check(
            name=str(name),
            outcome=_str(outcome),
            reason=_str(reasons.get(name)),
            value=_float(values.get(name)),
            samples=_float(samples.get(name)),
        )
        for name, outcome in sorted(outcomes.items())
    )
    return Canary(
        version=_str(raw.get("version")),
        step=_int(raw.get("step")),
        steps=len(canary_spec.steps) if canary_spec else None,
        weight=_int(raw.get("weight")),
        replicas=_int(raw.get("replicas")),
        failed_checks=_int(raw.get("failedChecks")),
        threshold=canary_spec.threshold if canary_spec else None,
        paused=bool(raw.get("paused")),
        reason=_str(raw.get("reason")),
        message=_str(raw.get("message")),
        verdict=_str(analysis.get("verdict")) or None,
        analysed_at=timestamp(analysis.get("at")),
        checks=checks,
    )


def parse_version(body: Mapping[str, Any]) -> Version:
    meta, spec, status = (
        _map(body.get("metadata")),
        _map(body.get("spec")),
        _map(body.get("status")),
    )
    metrics = {
        str(k): float(v) for k, v in _map(status.get("metrics")).items() if _float(v) is not None
    }
    approved = status.get("approved")
    return Version(
        name=_str(meta.get("name")),
        model=_str(spec.get("model")),
        phase=_str(status.get("phase")) or contract.PENDING,
        trigger=_str(spec.get("reason")),
        reason=_str(status.get("reason")),
        message=_str(status.get("message")),
        metrics=metrics,
        approved=approved if isinstance(approved, bool) else None,
        rows=(
            _int(_map(status.get("rows")).get("clean"))
            if _float(_map(status.get("rows")).get("clean")) is not None
            else None
        ),
        created=timestamp(meta.get("creationTimestamp")),
        finished=timestamp(status.get("finishedAt")),
    )


def _version_order(v: Version) -> tuple[int, datetime.datetime, str]:
    """Oldest first: versions are named <model>-v<n>; the creation time breaks other ties."""
    suffix = v.name.rsplit("-v", 1)[-1]
    number = int(suffix) if suffix.isdigit() else 0
    return number, v.created or datetime.datetime.min.replace(tzinfo=datetime.UTC), v.name


def _last_retrain(monitoring: Mapping[str, Any], versions: Sequence[Version]) -> Retrain | None:
    """The newer of the monitoring's record (drift, accuracy) and the newest version trained by a
    retrain (which also covers `manual` and `schedule`, which the record does not keep)."""
    recorded = _map(monitoring.get("lastRetrain"))
    record = (
        Retrain(
            reason=_str(recorded.get("reason")),
            at=timestamp(recorded.get("at")),
            version=_str(recorded.get("version")) or None,
        )
        if recorded
        else None
    )
    retrained = [v for v in versions if v.trigger in RETRAIN_REASONS]
    newest = (
        Retrain(reason=retrained[-1].trigger, at=retrained[-1].created, version=retrained[-1].name)
        if retrained
        else None
    )
    if record is None or newest is None:
        return record or newest
    if newest.version == record.version:
        return record
    newer = newest.at is not None and (record.at is None or newest.at > record.at)
    return newest if newer else record


def parse_model(body: Mapping[str, Any], versions: Sequence[Mapping[str, Any]] = ()) -> ModelView:
    """A Model and the ModelVersions given (those whose spec.model names it are kept)."""
    meta, spec, status = (
        _map(body.get("metadata")),
        _map(body.get("spec")),
        _map(body.get("status")),
    )
    name = _str(meta.get("name"))
    parsed = sorted(
        (parse_version(v) for v in versions if _map(v.get("spec")).get("model") == name),
        key=_version_order,
    )
    monitoring = _map(status.get("monitoring"))
    checks = tuple(parse_check(_map(c)) for c in _list(monitoring.get("checks")))
    live = any(c.name == "accuracy" and c.outcome != "inconclusive" for c in checks)
    drift_spec = _map(_map(_map(spec.get("monitoring")).get("checks")).get("drift"))
    conditions = tuple(
        Condition(
            type=_str(c.get("type")),
            status=_str(c.get("status")) or "Unknown",
            reason=_str(c.get("reason")),
            message=_str(c.get("message")),
            since=timestamp(c.get("lastTransitionTime")),
        )
        for c in map(_map, _list(status.get("conditions")))
    )
    observed = status.get("observedGeneration")
    return ModelView(
        namespace=_str(meta.get("namespace")),
        name=name,
        generation=_int(meta.get("generation"), 1),
        observed_generation=_int(observed) if _float(observed) is not None else None,
        phase=_str(status.get("phase")) or None,
        conditions=conditions,
        stable=_str(status.get("stableVersion")) or None,
        latest=_str(status.get("latestVersion")) or None,
        canary=parse_canary(_map(status["canary"]), spec) if _map(status.get("canary")) else None,
        accuracy=_float(status.get("accuracy")),
        accuracy_live=live,
        drift=_float(status.get("drift")),
        drift_limit=_float(_map(drift_spec.get("psi")).get("max")),
        drift_feature=_str(_map(_map(monitoring.get("summary")).get("drift")).get("feature"))
        or None,
        checks=checks,
        last_retrain=_last_retrain(monitoring, parsed),
        retrain_token=_str(status.get("retrainToken")) or None,
        canary_command=_str(status.get("canaryCommand")) or None,
        created=timestamp(meta.get("creationTimestamp")),
        versions=tuple(parsed),
    )
