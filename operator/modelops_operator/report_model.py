"""What `modelops report` shows, as typed values: a Model's versions, its time series (from
Prometheus, or the status's last values), its Events, and the canaries and retrains read from them.

Pure: no Kubernetes client, no HTTP, no plotting. `report_gather` reads the objects and the
series, `report_render` turns a `ReportData` into the HTML page.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from modelops_api import contract
from modelops_operator.cli_model import RETRAIN_REASONS, ModelView, Version

# The Events the operator posts about a Model's canary (operator/modelops_operator/rollout.py).
CANARY_EVENTS = (
    "CanaryStarted",
    "CanaryAdvanced",
    "CanaryReplaced",
    "CanaryRemoved",
    "Promoted",
    "RolledBack",
)
# How a canary ended, by the reason of the Event that ended it.
ENDINGS = {
    "Promoted": "promoted",
    "RolledBack": "rolled back",
    "CanaryReplaced": "replaced",
    "CanaryRemoved": "removed",
}
RUNNING = "running"
STATUS = "status"  # where the series come from without Prometheus
PROMETHEUS = "prometheus"


@dataclass(frozen=True)
class Point:
    at: datetime.datetime
    value: float


@dataclass(frozen=True)
class Series:
    """One version's values over time."""

    version: str
    points: tuple[Point, ...]


@dataclass(frozen=True)
class FeatureSeries:
    """One feature's PSI against its version's reference over time."""

    version: str
    feature: str
    points: tuple[Point, ...]


@dataclass(frozen=True)
class Timelines:
    """The Model's series over the report's period: live accuracy from feedback, the largest
    feature PSI and the canary's share of traffic, each per version. `source` is `prometheus`
    (range queries) or `status` (the status's last values, one point each); `note` says what the
    page should say about where they come from."""

    source: str
    note: str
    accuracy: tuple[Series, ...] = ()
    drift: tuple[Series, ...] = ()
    canary_weight: tuple[Series, ...] = ()
    features: tuple[FeatureSeries, ...] = ()
    features_note: str = ""  # why some or all features have no series


@dataclass(frozen=True)
class EventRecord:
    at: datetime.datetime | None
    type: str  # Normal or Warning
    reason: str
    message: str
    count: int = 1


@dataclass(frozen=True)
class CanaryRecord:
    """One canary: its version, the Events of its steps, how it ended (or `running`)."""

    version: str
    outcome: str
    detail: str
    steps: tuple[EventRecord, ...] = ()


@dataclass(frozen=True)
class RetrainRecord:
    version: str
    trigger: str
    at: datetime.datetime | None
    phase: str
    result: str


@dataclass(frozen=True)
class ReportData:
    """Everything the page shows, read at `generated` over the `since_seconds` before it."""

    model: ModelView
    timelines: Timelines
    generated: datetime.datetime
    since_seconds: float
    events: tuple[EventRecord, ...] = ()
    events_note: str = ""  # why Events are missing, when they could not be read


def period_seconds(text: str) -> float:
    """Seconds in a period such as `90m`, `24h`, `7d`, `1d12h` or a number of seconds."""
    try:
        value = float(text)
    except ValueError:
        parts = re.findall(r"(\d+)([smhd])", text.strip())
        if not parts or "".join(n + u for n, u in parts) != text.strip():
            raise ValueError(f"not a period: {text!r} (use e.g. 90m, 24h, 7d)") from None
        value = sum(int(n) * _PERIOD_UNITS[u] for n, u in parts)
    if not value > 0 or value == float("inf"):
        raise ValueError(f"a period must be positive: {text!r}")
    return value


_PERIOD_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def from_status(model: ModelView, at: datetime.datetime, note: str) -> Timelines:
    """The status's last values as one point per series: the stable version's accuracy (live,
    else holdout) and largest PSI, the running canary's weight."""
    accuracy = (
        (Series(model.stable, (Point(at, model.accuracy),)),)
        if model.stable and model.accuracy is not None
        else ()
    )
    drift = (
        (Series(model.stable, (Point(at, model.drift),)),)
        if model.stable and model.drift is not None
        else ()
    )
    weight = (
        (Series(model.canary.version, (Point(at, float(model.canary.weight)),)),)
        if model.canary is not None and model.canary.version
        else ()
    )
    return Timelines(STATUS, note, accuracy, drift, weight)


Sample = tuple[float, float]  # (seconds since the epoch, value)


def _when(seconds: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC)


def by_version(rows: Iterable[tuple[Mapping[str, str], Sequence[Sample]]]) -> tuple[Series, ...]:
    """A range query's series, one per `version` label, by version; NaN and infinite values are
    left out (no sample is no value), and so are series left with no point."""
    out = []
    for labels, samples in rows:
        points = tuple(Point(_when(t), v) for t, v in samples if v == v and abs(v) != float("inf"))
        if points:
            out.append(Series(labels.get("version", ""), points))
    return tuple(sorted(out, key=lambda s: s.version))


def accuracy_from_feedback(
    rows: Iterable[tuple[Mapping[str, str], Sequence[Sample]]],
) -> tuple[Series, ...]:
    """Live accuracy per version and instant, correct / (correct + incorrect), from the feedback
    increases by `version` and `outcome`; an instant with no feedback has no point."""
    counts: dict[str, dict[float, dict[str, float]]] = {}
    for labels, samples in rows:
        per_time = counts.setdefault(labels.get("version", ""), {})
        for t, v in samples:
            if v == v and v >= 0 and v != float("inf"):
                per_time.setdefault(t, {})[labels.get("outcome", "")] = v
    out = []
    for version, per_time in sorted(counts.items()):
        points = []
        for t in sorted(per_time):
            correct = per_time[t].get("correct", 0.0)
            total = correct + per_time[t].get("incorrect", 0.0)
            if total > 0:
                points.append(Point(_when(t), correct / total))
        if points:
            out.append(Series(version, tuple(points)))
    return tuple(out)


Rows = Sequence[tuple[Mapping[str, str], Sequence[Sample]]]
# One instant's comparison with a reference: its PSI, None without observations.
Comparing = Callable[[Mapping[str, object]], float | None]


def _usable(counts: Mapping[Any, float]) -> bool:
    return all(v == v and 0 <= v < float("inf") for v in counts.values())


def _numeric_psi(cumulative: Mapping[float, float], ref: Mapping[str, object]) -> float | None:
    """The PSI of cumulative bucket counts; None without observations or with a count that
    cannot be (NaN, negative, infinite)."""
    from modelops_operator.analysis import psi

    if not _usable(cumulative):
        return None
    found = psi.numeric(cumulative, ref)
    return found.psi if found.samples > 0 else None


def _categorical_psi(counts: Mapping[str, float], ref: Mapping[str, object]) -> float | None:
    from modelops_operator.analysis import psi

    if not _usable(counts):
        return None
    found = psi.categorical(counts, ref)
    return found.psi if found.samples > 0 else None


def feature_drift(
    numeric: Rows, categorical: Rows, references: Mapping[str, Mapping[str, object]]
) -> tuple[tuple[FeatureSeries, ...], tuple[str, ...]]:
    """Each feature's PSI per version and instant, as the drift check computes it (analysis.psi),
    from the window's bucket increases by `version, feature, le` (numeric) and category increases
    by `version, feature, category`, against `references[version][feature]`; and why a version or
    feature has none (no reference, bounds that are not its edges). An instant with no
    observation has no point."""
    from modelops_operator.analysis import psi

    # (version, feature) -> time -> bucket bound or category -> increase
    numbers: dict[tuple[str, str], dict[float, dict[float, float]]] = {}
    for labels, samples in numeric:
        try:
            bound = float(labels.get("le", ""))
        except ValueError:
            continue
        per_time = numbers.setdefault((labels.get("version", ""), labels.get("feature", "")), {})
        for t, v in samples:
            per_time.setdefault(t, {})[bound] = v
    categories: dict[tuple[str, str], dict[float, dict[str, float]]] = {}
    for labels, samples in categorical:
        key = (labels.get("version", ""), labels.get("feature", ""))
        per_time_c = categories.setdefault(key, {})
        for t, v in samples:
            per_time_c.setdefault(t, {})[labels.get("category", "")] = v
    out: list[FeatureSeries] = []
    notes: set[str] = set()

    def compare(version: str, feature: str, at: Iterable[tuple[float, Comparing]]) -> None:
        reference = references.get(version)
        if not reference:
            notes.add(f"{version}: no reference distributions in its status")
            return
        ref = reference.get(feature)
        if not isinstance(ref, Mapping):
            notes.add(f"{version}/{feature}: not in the reference")
            return
        points = []
        for t, comparing in sorted(at, key=lambda pair: pair[0]):
            try:
                found = comparing(ref)
            except psi.ReferenceMismatch as error:
                notes.add(f"{version}/{feature}: {error}")
                return
            if found is not None:
                points.append(Point(_when(t), found))
        if points:
            out.append(FeatureSeries(version, feature, tuple(points)))

    for (version, feature), by_time in numbers.items():
        compare(version, feature, ((t, partial(_numeric_psi, c)) for t, c in by_time.items()))
    for (version, feature), by_time_c in categories.items():
        compare(version, feature, ((t, partial(_categorical_psi, c)) for t, c in by_time_c.items()))
    out.sort(key=lambda f: (f.version, f.feature))
    return tuple(out), tuple(sorted(notes))


def _version_named(message: str, names: Sequence[str]) -> str | None:
    """The version a message names (the longest name that occurs as a word)."""
    for name in sorted(names, key=len, reverse=True):
        if re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", message):
            return name
    return None


def canaries(model: ModelView, events: Sequence[EventRecord]) -> tuple[CanaryRecord, ...]:
    """Each canary the Events, the versions or the status tell of, oldest first: its steps (the
    canary Events naming its version; a canary Event naming none, as a progress deadline's
    rollback, belongs to the canary started last before it) and how it ended."""
    names = [v.name for v in model.versions]
    if model.canary is not None and model.canary.version not in names:
        names.append(model.canary.version)
    steps: dict[str, list[EventRecord]] = {}
    order: list[str] = []
    last: str | None = None
    timed = sorted(
        (e for e in events if e.reason in CANARY_EVENTS),
        key=lambda e: e.at or datetime.datetime.min.replace(tzinfo=datetime.UTC),
    )
    for event in timed:
        named = _version_named(event.message, names)
        if event.reason == "CanaryReplaced" and named is not None:
            # "<new> replaces canary <old>": the Event ends the old one.
            old = event.message.rsplit("canary ", 1)[-1].strip()
            named = old if old in names else named
        version = named or last
        if version is None:
            continue
        if version not in steps:
            steps[version] = []
            order.append(version)
        steps[version].append(event)
        if event.reason == "CanaryStarted":
            last = version
    for each in model.versions:
        if each.phase == contract.ROLLED_BACK and each.name not in steps:
            steps[each.name] = []
            order.append(each.name)
    if model.canary is not None and model.canary.version not in steps:
        steps[model.canary.version] = []
        order.append(model.canary.version)
    return tuple(_canary(model, name, tuple(steps[name])) for name in order)


def _canary(model: ModelView, name: str, steps: tuple[EventRecord, ...]) -> CanaryRecord:
    canary = model.canary
    if canary is not None and canary.version == name:
        total = f"/{canary.steps}" if canary.steps else ""
        paused = ", paused" if canary.paused else ""
        detail = f"step {canary.step + 1}{total} at {canary.weight}%{paused}"
        if canary.message and canary.message not in detail:
            detail += f": {canary.message}"
        return CanaryRecord(name, RUNNING, detail, steps)
    version = model.version(name)
    if version is not None and version.phase == contract.ROLLED_BACK:
        return CanaryRecord(name, ENDINGS["RolledBack"], _said(version), steps)
    ended = [e for e in steps if e.reason in ENDINGS]
    if ended:
        return CanaryRecord(name, ENDINGS[ended[-1].reason], ended[-1].message, steps)
    if model.stable == name:
        return CanaryRecord(name, ENDINGS["Promoted"], f"{name} is the stable version", steps)
    return CanaryRecord(name, "unknown", "no Event says how it ended", steps)


def _said(version: Version) -> str:
    return ": ".join(part for part in (version.reason, version.message) if part)


def retrains(model: ModelView) -> tuple[RetrainRecord, ...]:
    """The versions trained by a retrain of an unchanged spec (drift, accuracy, schedule,
    manual), oldest first, with their outcome."""
    return tuple(
        RetrainRecord(v.name, v.trigger, v.created, v.phase, _said(v))
        for v in model.versions
        if v.trigger in RETRAIN_REASONS
    )
