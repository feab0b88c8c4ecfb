"""A canary's checks judged against the stable track over the same window: pure functions.

A check with `vsStable` (errorRate, accuracy, latencyP95Seconds) gets, for a target that has a
baseline (a canary, whose baseline is the stable track of its Model), a second result named
`<check>.vsStable` beside its absolute one: **fail** when a one-sided test (`stats`) finds the
canary worse than stable at the check's `confidence` (the p-value below 1 - confidence),
**pass** otherwise, **inconclusive** when either track has fewer than `minSamples`
observations, or no series, or Prometheus gave no usable answer (the rules of `checks`: no data
is not failure). Its value is the p-value, its samples the smaller track's count, its reason
says canary vs stable with both measures, the p-value and the test.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from modelops_api.spec import VsStable
from modelops_operator.analysis import stats
from modelops_operator.analysis.checks import (
    Series,
    _bad_requests,
    _inconclusive,
    _number,
    _requests,
    _unavailable,
    _unusable,
)
from modelops_operator.analysis.client import Sample, Unavailable
from modelops_operator.analysis.model import (
    ACCURACY,
    ERROR_RATE,
    LATENCY_P95,
    VS_STABLE,
    CheckResult,
    Outcome,
)

VS_STABLE_FIELD = "vsStable"
# The spec's defaults, for check specs that reach the engine without them.
CONFIDENCE = float(VsStable.model_fields["confidence"].default)
MIN_SAMPLES = int(VsStable.model_fields["min_samples"].default)


def configured(spec: Any) -> bool:
    """Whether a check's spec asks for the comparison with stable."""
    return isinstance(spec, Mapping) and isinstance(spec.get(VS_STABLE_FIELD), Mapping)


def _settings(spec: Mapping[str, Any]) -> tuple[float, float]:
    """(alpha, minSamples) of a check's `vsStable`."""
    compare = spec.get(VS_STABLE_FIELD) or {}
    confidence = _number(compare, "confidence")
    needed = _number(compare, "minSamples")
    confidence = confidence if confidence is not None and 0 < confidence < 1 else CONFIDENCE
    return 1 - confidence, max(1.0, needed if needed is not None else float(MIN_SAMPLES))


def _threshold(alpha: float) -> str:
    return f"p >= {alpha:.4g} vs stable"


def _pct(value: float) -> str:
    return f"{100 * value:.3g}%"


def _judged(
    check: str, test: stats.Test, alpha: float, samples: float, compared: str
) -> CheckResult:
    worse = test.p_value < alpha
    verdict = (
        f"p = {test.p_value:.3g} < {alpha:.4g} ({test.method}): the canary is worse"
        if worse
        else f"p = {test.p_value:.3g} >= {alpha:.4g} ({test.method}): the canary is not worse"
    )
    outcome = Outcome.FAIL if worse else Outcome.PASS
    reason = f"{compared}: {verdict}"
    return CheckResult(check, outcome, test.p_value, _threshold(alpha), samples, reason)


T = TypeVar("T")


def _per_track(
    check: str,
    threshold: str,
    tracks: Mapping[str, Series],
    what: str,
    problem: Callable[[str, Sequence[Sample]], str | None],
    read: Callable[[Sequence[Sample]], T],
) -> dict[str, T] | CheckResult:
    """Each track's reading of its series; or the result that ends the check first: Prometheus
    unavailable, no `what` series of a track, or the `problem` its series have."""
    for answer in tracks.values():
        if isinstance(answer, Unavailable):
            return _unavailable(check, threshold, answer)
    readings: dict[str, T] = {}
    for track, series in tracks.items():
        assert not isinstance(series, Unavailable)
        if not series:
            return _inconclusive(check, threshold, f"no {what} series of {track}")
        bad = problem(track, series)
        if bad is not None:
            return _inconclusive(check, threshold, bad)
        readings[track] = read(series)
    return readings


def _too_few(
    check: str, threshold: str, canary: float, stable: float, needed: float, what: str, window: str
) -> CheckResult | None:
    """The inconclusive result when a track has fewer than `needed` observations."""
    counts = {"canary": canary, "stable": stable}
    samples = min(canary, stable)
    if samples >= needed:
        return None
    short = [f"{track} {n:.0f}" for track, n in counts.items() if n < needed]
    reason = f"{', '.join(short)} {what} < minSamples {needed:.0f} per track in {window}"
    return _inconclusive(check, threshold, reason, None, samples)


def error_rate(spec: Mapping[str, Any], canary: Series, stable: Series, window: str) -> CheckResult:
    """The canary's share of 5xx among answered /predict requests against stable's."""
    check = f"{ERROR_RATE}{VS_STABLE}"
    alpha, needed = _settings(spec)
    threshold = _threshold(alpha)

    def problem(track: str, series: Sequence[Sample]) -> str | None:
        bad = _bad_requests(series, window)
        return None if bad is None else f"{track}: {bad}"

    tracks = {"canary": canary, "stable": stable}
    counts = _per_track(check, threshold, tracks, "/predict request", problem, _requests)
    if isinstance(counts, CheckResult):
        return counts
    (n_c, f_c), (n_s, f_s) = counts["canary"], counts["stable"]
    few = _too_few(check, threshold, n_c, n_s, needed, "/predict requests", window)
    if few is not None:
        return few
    compared = (
        f"canary {f_c:.0f} of {n_c:.0f} /predict requests failed ({_pct(f_c / n_c)}) vs stable "
        f"{f_s:.0f} of {n_s:.0f} ({_pct(f_s / n_s)}) in {window}"
    )
    return _judged(check, stats.proportions(f_c, n_c, f_s, n_s), alpha, min(n_c, n_s), compared)


def _feedback(series: Sequence[Sample]) -> tuple[float, float]:
    """(correct, total) feedback items."""
    counted = [s for s in series if s.labels.get("outcome") in ("correct", "incorrect")]
    correct = sum(s.value for s in counted if s.labels.get("outcome") == "correct")
    return correct, sum(s.value for s in counted)


def accuracy(spec: Mapping[str, Any], canary: Series, stable: Series, window: str) -> CheckResult:
    """The canary's share of incorrect feedback against stable's."""
    check = f"{ACCURACY}{VS_STABLE}"
    alpha, needed = _settings(spec)
    threshold = _threshold(alpha)

    def problem(track: str, series: Sequence[Sample]) -> str | None:
        return _unusable((s.value for s in series), f"a feedback count of {track} in {window}")

    tracks = {"canary": canary, "stable": stable}
    counts = _per_track(check, threshold, tracks, "feedback", problem, _feedback)
    if isinstance(counts, CheckResult):
        return counts
    (right_c, n_c), (right_s, n_s) = counts["canary"], counts["stable"]
    few = _too_few(check, threshold, n_c, n_s, needed, "feedback items", window)
    if few is not None:
        return few
    compared = (
        f"canary {right_c:.0f} of {n_c:.0f} feedback items correct ({_pct(right_c / n_c)}) vs "
        f"stable {right_s:.0f} of {n_s:.0f} ({_pct(right_s / n_s)}) in {window}"
    )
    test = stats.proportions(n_c - right_c, n_c, n_s - right_s, n_s)
    return _judged(check, test, alpha, min(n_c, n_s), compared)


def bins(series: Sequence[Sample]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(upper bounds, counts per bin) from cumulative bucket counts by `le`, in increasing order;
    a negative difference (a counter reset inside the window) counts as 0."""
    cumulative: dict[float, float] = {}
    for sample in series:
        try:
            bound = float(sample.labels.get("le", ""))
        except ValueError:
            continue
        cumulative[bound] = cumulative.get(bound, 0.0) + sample.value
    bounds = tuple(sorted(cumulative))
    counts, below = [], 0.0
    for bound in bounds:
        counts.append(max(0.0, cumulative[bound] - below))
        below = max(below, cumulative[bound])
    return bounds, tuple(counts)


def _median(bounds: Sequence[float], counts: Sequence[float]) -> str:
    """The bucket that holds the median, as `<= 0.05s`."""
    total, running = sum(counts), 0.0
    for bound, count in zip(bounds, counts, strict=True):
        running += count
        if running >= total / 2:
            return f"<= {bound:g}s" if bound != float("inf") else f"> {bounds[-2]:g}s"
    return "?"


def latency(spec: Mapping[str, Any], canary: Series, stable: Series, window: str) -> CheckResult:
    """The canary's request durations against stable's, bucket by bucket."""
    check = f"{LATENCY_P95}{VS_STABLE}"
    alpha, needed = _settings(spec)
    threshold = _threshold(alpha)

    def problem(track: str, series: Sequence[Sample]) -> str | None:
        return _unusable((s.value for s in series), f"a latency bucket count of {track}")

    tracks = {"canary": canary, "stable": stable}
    histograms = _per_track(check, threshold, tracks, "/predict latency", problem, bins)
    if isinstance(histograms, CheckResult):
        return histograms
    (bounds_c, counts_c), (bounds_s, counts_s) = histograms["canary"], histograms["stable"]
    if bounds_c != bounds_s or not bounds_c or bounds_c[-1] != float("inf"):
        reason = "the canary's and stable's latency buckets differ (or lack +Inf)"
        return _inconclusive(check, threshold, reason)
    n_c, n_s = sum(counts_c), sum(counts_s)
    few = _too_few(check, threshold, n_c, n_s, needed, "/predict requests", window)
    if few is not None:
        return few
    compared = (
        f"canary {n_c:.0f} /predict requests, median {_median(bounds_c, counts_c)}, vs stable "
        f"{n_s:.0f}, median {_median(bounds_s, counts_s)}, in {window}"
    )
    return _judged(check, stats.mann_whitney(counts_c, counts_s), alpha, min(n_c, n_s), compared)
