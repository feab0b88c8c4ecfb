"""Each check's decision for one target, from the answers of the batched queries: pure functions.

Every function takes the check's spec (CRD shape), the target's series (already fanned out from a
batched answer, or the `Unavailable` answer itself) and returns one `CheckResult`. The rule they
share: **no data is not failure** — an unavailable Prometheus, no series, a NaN, or fewer
observations than `minSamples` end in `inconclusive` with a reason that names which, never `fail`.
Nor is a value that cannot be true a success: a count, share or quantile that Prometheus returns as
NaN, +Inf, -Inf or negative is inconclusive too, with what Prometheus returned in the reason
(a drift feature with such a count is left out, as one without series is). A custom check's value
may be negative (the user's query decides what it measures); NaN and infinities are inconclusive.
A threshold is inclusive: a value equal to `max` (or `min`) passes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from modelops_api import contract
from modelops_api.spec import AccuracyCheck, DriftCheck, ErrorRateCheck, LatencyCheck
from modelops_operator.analysis import psi
from modelops_operator.analysis.client import OUTAGES, Sample, Unavailable
from modelops_operator.analysis.model import (
    ACCURACY,
    CUSTOM_PREFIX,
    DRIFT,
    ERROR_RATE,
    LATENCY_P95,
    CheckResult,
    FeatureDrift,
    Outcome,
)

# The spec's defaults, for check specs that reach the engine without them.
MIN_SAMPLES = {
    check: int(spec.model_fields["min_samples"].default)
    for check, spec in (
        (ERROR_RATE, ErrorRateCheck),
        (LATENCY_P95, LatencyCheck),
        (DRIFT, DriftCheck),
        (ACCURACY, AccuracyCheck),
    )
}

Series = Sequence[Sample] | Unavailable


def _inconclusive(
    check: str,
    threshold: str,
    reason: str,
    value: float | None = None,
    samples: float | None = None,
    features: tuple[FeatureDrift, ...] = (),
) -> CheckResult:
    return CheckResult(check, Outcome.INCONCLUSIVE, value, threshold, samples, reason, features)


def _unavailable(check: str, threshold: str, answer: Unavailable) -> CheckResult:
    """Inconclusive for want of an answer; an `outage` when Prometheus could not be asked at all
    (refused, timed out, HTTP 5xx), rather than answering one query with an error."""
    reason = f"Prometheus unavailable ({answer.kind}): {answer.reason}"
    outage = answer.kind in OUTAGES
    return CheckResult(check, Outcome.INCONCLUSIVE, None, threshold, None, reason, outage=outage)


def _number(spec: Mapping[str, Any], key: str) -> float | None:
    value = spec.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _min_samples(check: str, spec: Mapping[str, Any]) -> float:
    value = _number(spec, "minSamples")
    return value if value is not None else float(MIN_SAMPLES[check])


def _few(samples: float, needed: float, what: str) -> str:
    return f"{samples:.0f} {what} < minSamples {needed:.0f}"


def _shown(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return f"a negative value ({value:g})"


def _unusable(values: Iterable[float], what: str) -> str | None:
    """Why values that cannot be negative (counts, shares, quantiles) are no measure: the first
    NaN, ±Inf or negative one, said as Prometheus returned it; None when every value is usable."""
    for value in values:
        if not math.isfinite(value) or value < 0:
            return f"Prometheus returned {_shown(value)} for {what}"
    return None


def _answered(series: Sequence[Sample]) -> list[Sample]:
    """The predict requests that were not refused as bad input: a 4xx is the client's bad input,
    counted in modelops_rejected_total; not the model's."""
    return [s for s in series if not s.labels.get("http_response_code", "").startswith("4")]


def _requests(series: Sequence[Sample]) -> tuple[float, float]:
    """(answered, failed): predict requests that were not refused as bad input, and the 5xx."""
    answered = _answered(series)
    failed = (s for s in answered if s.labels.get("http_response_code", "").startswith("5"))
    return sum(s.value for s in answered), sum(s.value for s in failed)


def _bad_requests(series: Sequence[Sample], window: str) -> str | None:
    return _unusable((s.value for s in _answered(series)), f"a /predict request count in {window}")


def error_rate(spec: Mapping[str, Any], requests: Series, window: str) -> CheckResult:
    limit = _number(spec, "max")
    threshold = f"<= {limit:g}" if limit is not None else "<= ?"
    if limit is None:
        return _inconclusive(ERROR_RATE, threshold, "the check has no numeric max")
    if isinstance(requests, Unavailable):
        return _unavailable(ERROR_RATE, threshold, requests)
    if not requests:
        return _inconclusive(ERROR_RATE, threshold, f"no /predict request series in {window}")
    bad = _bad_requests(requests, window)
    if bad is not None:
        return _inconclusive(ERROR_RATE, threshold, bad)
    answered, failed = _requests(requests)
    needed = _min_samples(ERROR_RATE, spec)
    value = failed / answered if answered > 0 else None
    if answered < needed:
        reason = _few(answered, needed, f"/predict requests in {window}")
        return _inconclusive(ERROR_RATE, threshold, reason, value, answered)
    assert value is not None
    outcome = Outcome.FAIL if value > limit else Outcome.PASS
    reason = (
        f"{failed:.0f} of {answered:.0f} /predict requests failed (5xx) in {window}: "
        f"{value:.4g} {'>' if outcome is Outcome.FAIL else '<='} {limit:g}"
    )
    return CheckResult(ERROR_RATE, outcome, value, threshold, answered, reason)


def latency_p95(
    spec: Mapping[str, Any], latency: Series, requests: Series, window: str
) -> CheckResult:
    limit = _number(spec, "max")
    threshold = f"<= {limit:g}s" if limit is not None else "<= ?"
    if limit is None:
        return _inconclusive(LATENCY_P95, threshold, "the check has no numeric max")
    for answer in (latency, requests):
        if isinstance(answer, Unavailable):
            return _unavailable(LATENCY_P95, threshold, answer)
    assert not isinstance(latency, Unavailable) and not isinstance(requests, Unavailable)
    answered, _ = _requests(requests)
    if not latency:
        return _inconclusive(LATENCY_P95, threshold, f"no /predict latency series in {window}")
    value = latency[0].value
    if math.isnan(value):
        reason = f"p95 is NaN (no /predict requests answered in {window})"
        return _inconclusive(LATENCY_P95, threshold, reason, None, answered)
    bad = _unusable([value], f"the p95 latency in {window}") or _bad_requests(requests, window)
    if bad is not None:
        return _inconclusive(LATENCY_P95, threshold, bad)
    needed = _min_samples(LATENCY_P95, spec)
    if answered < needed:
        reason = _few(answered, needed, f"/predict requests in {window}")
        return _inconclusive(LATENCY_P95, threshold, reason, value, answered)
    outcome = Outcome.FAIL if value > limit else Outcome.PASS
    reason = (
        f"p95 of {answered:.0f} /predict requests in {window}: {value:.4g}s "
        f"{'>' if outcome is Outcome.FAIL else '<='} {limit:g}s"
    )
    return CheckResult(LATENCY_P95, outcome, value, threshold, answered, reason)


def _by_feature(series: Sequence[Sample], label: str) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for s in series:
        feature, key = s.labels.get("feature"), s.labels.get(label)
        if feature is None or key is None:
            continue
        out.setdefault(feature, {})[key] = s.value
    return out


def _cumulative(buckets: Mapping[str, float]) -> dict[float, float]:
    out: dict[float, float] = {}
    for le, value in buckets.items():
        try:
            out[float(le)] = value
        except ValueError:
            continue
    return out


def drift(
    spec: Mapping[str, Any],
    reference: Mapping[str, Any] | None,
    buckets: Series,
    categories: Series,
    window: str,
) -> CheckResult:
    psi_spec = spec.get("psi")
    limit = _number(psi_spec, "max") if isinstance(psi_spec, Mapping) else None
    threshold = f"psi <= {limit:g}" if limit is not None else "psi <= ?"
    if limit is None:
        return _inconclusive(DRIFT, threshold, "the check has no numeric psi.max")
    if not reference:
        return _inconclusive(DRIFT, threshold, "no reference proportions for this version")
    for answer in (buckets, categories):
        if isinstance(answer, Unavailable):
            return _unavailable(DRIFT, threshold, answer)
    assert not isinstance(buckets, Unavailable) and not isinstance(categories, Unavailable)
    numeric = _by_feature(buckets, "le")
    categorical = _by_feature(categories, "category")
    needed = _min_samples(DRIFT, spec)
    compared: list[FeatureDrift] = []
    notes: list[str] = []
    most = 0.0
    for feature, ref in sorted(reference.items()):
        if not isinstance(ref, Mapping):
            notes.append(f"{feature}: no usable reference")
            continue
        observed: Mapping[str, float] | None
        if contract.REFERENCE_EDGES in ref:
            kind, observed = "numeric", numeric.get(feature)
        elif "categories" in ref:
            kind, observed = "categorical", categorical.get(feature)
        else:
            notes.append(f"{feature}: no usable reference")
            continue
        if not observed:
            notes.append(f"{feature}: no series")
            continue
        what = "a bucket count" if kind == "numeric" else "a category count"
        bad = _unusable(observed.values(), what)
        if bad is not None:
            notes.append(f"{feature}: {bad}")
            continue
        try:
            if kind == "numeric":
                found = psi.numeric(_cumulative(observed), ref)
            else:
                found = psi.categorical(observed, ref)
        except psi.ReferenceMismatch as error:
            notes.append(f"{feature}: {error}")
            continue
        most = max(most, found.samples)
        if found.samples < needed:
            notes.append(f"{feature}: {_few(found.samples, needed, 'values')}")
            continue
        compared.append(FeatureDrift(feature, kind, found.psi, found.js, found.samples))
    left_out = f" ({'; '.join(notes)})" if notes else ""
    if not compared:
        reason = f"no feature could be compared with its reference in {window}{left_out}"
        return _inconclusive(DRIFT, threshold, reason, None, most)
    worst = max(compared, key=lambda f: f.psi)
    outcome = Outcome.FAIL if worst.psi > limit else Outcome.PASS
    reason = (
        f"max PSI {worst.psi:.4g} on {worst.feature!r} over {len(compared)} feature(s) in "
        f"{window}: {'>' if outcome is Outcome.FAIL else '<='} {limit:g}{left_out}"
    )
    samples = max(f.samples for f in compared)
    return CheckResult(DRIFT, outcome, worst.psi, threshold, samples, reason, tuple(compared))


def accuracy(spec: Mapping[str, Any], feedback: Series, window: str) -> CheckResult:
    limit = _number(spec, "min")
    threshold = f">= {limit:g}" if limit is not None else ">= ?"
    if limit is None:
        return _inconclusive(ACCURACY, threshold, "the check has no numeric min")
    if isinstance(feedback, Unavailable):
        return _unavailable(ACCURACY, threshold, feedback)
    if not feedback:
        reason = f"no feedback series in {window} (a regressor, or monitoring off)"
        return _inconclusive(ACCURACY, threshold, reason)
    counted = [s for s in feedback if s.labels.get("outcome") in ("correct", "incorrect")]
    bad = _unusable((s.value for s in counted), f"a feedback count in {window}")
    if bad is not None:
        return _inconclusive(ACCURACY, threshold, bad)
    correct = sum(s.value for s in counted if s.labels.get("outcome") == "correct")
    total = sum(s.value for s in counted)
    value = correct / total if total > 0 else None
    needed = _min_samples(ACCURACY, spec)
    if total < needed:
        reason = _few(total, needed, f"feedback items in {window}")
        return _inconclusive(ACCURACY, threshold, reason, value, total)
    assert value is not None
    outcome = Outcome.FAIL if value < limit else Outcome.PASS
    reason = (
        f"{correct:.0f} of {total:.0f} feedback items correct in {window}: {value:.4g} "
        f"{'<' if outcome is Outcome.FAIL else '>='} {limit:g}"
    )
    return CheckResult(ACCURACY, outcome, value, threshold, total, reason)


def custom(spec: Mapping[str, Any], answer: Series, promql: str) -> CheckResult:
    check = f"{CUSTOM_PREFIX}{spec.get('name', '?')}"
    low, high = _number(spec, "min"), _number(spec, "max")
    parts = ([f">= {low:g}"] if low is not None else []) + (
        [f"<= {high:g}"] if high is not None else []
    )
    threshold = " and ".join(parts) or "?"
    if low is None and high is None:
        return _inconclusive(check, threshold, "the check has neither min nor max")
    if isinstance(answer, Unavailable):
        return _unavailable(check, threshold, answer)
    if not answer:
        return _inconclusive(check, threshold, f"no series for {promql}")
    if len(answer) > 1:
        reason = (
            f"{len(answer)} series for {promql}; a custom query must return one value per "
            "target (scope it with $NAMESPACE, $MODEL, $VERSION, $TRACK)"
        )
        return _inconclusive(check, threshold, reason)
    value = answer[0].value
    if not math.isfinite(value):  # a negative value is the user's to judge; NaN and ±Inf are not
        return _inconclusive(check, threshold, f"Prometheus returned {_shown(value)} for {promql}")
    failed = (low is not None and value < low) or (high is not None and value > high)
    outcome = Outcome.FAIL if failed else Outcome.PASS
    verdict = "outside" if failed else "within"
    reason = f"{value:.4g} {verdict} {threshold} for {promql}"
    return CheckResult(check, outcome, value, threshold, None, reason)
