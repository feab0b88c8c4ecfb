"""One analysis pass over every target: batched queries, fanned out, decided by `checks`.

Targets are grouped by window; each window sends at most one query per kind (six in all:
predict requests by response code, p95 latency, feature buckets, feature categories, feedback,
and the latency buckets a canary's latency comparison with stable reads), whatever the number of
models, and each answer is split by (namespace, model, version, track). A canary's checks with
`vsStable` read its baseline's (stable's) series from the same answers: a comparison costs no
query of its own, bar the latency buckets.
Custom checks add one query per distinct substituted text. All queries of a pass are evaluated at
one instant, so that every check of every target sees the same window. When Prometheus does not
answer (refused, timed out, or an HTTP 5xx), the rest of the pass is not sent: every check that
needed it is inconclusive with that reason, and an outage costs one timeout per pass, not one per
query. A query Prometheus refuses (HTTP 4xx, a bad custom query) spoils only its own checks.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from modelops_operator.analysis import checks, comparison, queries
from modelops_operator.analysis.client import (
    BAD_ANSWER,
    OUTAGES,
    Answer,
    QueryClient,
    Sample,
    Unavailable,
)
from modelops_operator.analysis.model import (
    ACCURACY,
    DRIFT,
    ERROR_RATE,
    LATENCY_P95,
    CheckResult,
    Target,
    TargetKey,
)

Table = dict[TargetKey, list[Sample]] | Unavailable


def kinds(target: Target) -> set[str]:
    """The batched query kinds a target's checks need."""
    spec = target.checks
    need: set[str] = set()
    if ERROR_RATE in spec:
        need.add(queries.REQUESTS)
    if LATENCY_P95 in spec:
        need |= {queries.REQUESTS, queries.LATENCY}
    if DRIFT in spec:
        need |= {queries.FEATURE_BUCKETS, queries.FEATURE_CATEGORIES}
    if ACCURACY in spec:
        need.add(queries.FEEDBACK)
    if target.baseline is not None and comparison.configured(spec.get(LATENCY_P95)):
        need.add(queries.LATENCY_BUCKETS)
    return need


def windows(targets: Iterable[Target], window_seconds: int) -> dict[int, list[Target]]:
    """Targets by the window they are analysed over (their own, else the pass's)."""
    groups: dict[int, list[Target]] = {}
    for target in targets:
        groups.setdefault(target.window_seconds or window_seconds, []).append(target)
    return dict(sorted(groups.items()))


def plan(targets: Iterable[Target], window_seconds: int) -> list[str]:
    """The batched queries one pass sends (custom checks' queries left out), in order."""
    out: list[str] = []
    for seconds, group in windows(targets, window_seconds).items():
        need = set().union(*(kinds(t) for t in group))
        namespaces = {t.key.namespace for t in group}
        out.extend(queries.batch(need, seconds, namespaces).values())
    return out


def fan_out(answer: Answer) -> Table:
    """A batched answer split by target key; samples without the four labels are dropped."""
    if isinstance(answer, Unavailable):
        return answer
    rows: dict[tuple[str, str, str, str], list[Sample]] = {}
    for sample in answer.samples:
        labels = sample.labels
        try:
            row = (labels["namespace"], labels["model"], labels["version"], labels["track"])
        except KeyError:
            continue
        rows.setdefault(row, []).append(sample)
    return {TargetKey(*row): samples for row, samples in rows.items() if all(row)}


class _Pass:
    """The queries of one pass: one instant, each distinct text sent once, none after an outage."""

    def __init__(self, client: QueryClient, at: float) -> None:
        self.client = client
        self.at = at
        self.answers: dict[str, Answer] = {}
        self.down: Unavailable | None = None

    def ask(self, promql: str) -> Answer:
        if promql in self.answers:
            return self.answers[promql]
        answer: Answer
        if self.down is not None:
            answer = Unavailable(
                self.down.kind,
                f"{self.down.reason} (not sent: an earlier query of this pass got no answer)",
            )
        else:
            try:
                answer = self.client.query(promql, self.at)
            except Exception as error:  # a client that breaks its contract still yields no fail
                answer = Unavailable(BAD_ANSWER, f"the query raised {error!r}")
            if isinstance(answer, Unavailable) and answer.kind in OUTAGES:
                self.down = answer
        self.answers[promql] = answer
        return answer


def _series(table: Table, key: TargetKey) -> Sequence[Sample] | Unavailable:
    return table if isinstance(table, Unavailable) else table.get(key, [])


def _custom(target: Target, seconds: int, run: _Pass) -> list[CheckResult]:
    specs = target.checks.get("custom") or []
    results = []
    for spec in specs:
        if not isinstance(spec, Mapping) or not isinstance(spec.get("query"), str):
            continue
        promql = queries.custom(spec["query"], target.key, seconds)
        answer = run.ask(promql)
        series = answer if isinstance(answer, Unavailable) else list(answer.samples)
        results.append(checks.custom(spec, series, promql))
    return results


def _target(
    target: Target, tables: Mapping[str, Table], seconds: int, run: _Pass
) -> list[CheckResult]:
    spec: Mapping[str, Any] = target.checks
    key = target.key
    window = f"the last {queries.window(seconds)}"

    baseline = target.baseline

    def series(kind: str) -> Sequence[Sample] | Unavailable:
        return _series(tables[kind], key)

    def versus(check: str) -> bool:
        return baseline is not None and comparison.configured(spec.get(check))

    def stable(kind: str) -> Sequence[Sample] | Unavailable:
        assert baseline is not None
        return _series(tables[kind], baseline)

    results: list[CheckResult] = []
    if isinstance(spec.get(ERROR_RATE), Mapping):
        results.append(checks.error_rate(spec[ERROR_RATE], series(queries.REQUESTS), window))
        if versus(ERROR_RATE):
            results.append(
                comparison.error_rate(
                    spec[ERROR_RATE], series(queries.REQUESTS), stable(queries.REQUESTS), window
                )
            )
    if isinstance(spec.get(LATENCY_P95), Mapping):
        results.append(
            checks.latency_p95(
                spec[LATENCY_P95], series(queries.LATENCY), series(queries.REQUESTS), window
            )
        )
        if versus(LATENCY_P95):
            results.append(
                comparison.latency(
                    spec[LATENCY_P95],
                    series(queries.LATENCY_BUCKETS),
                    stable(queries.LATENCY_BUCKETS),
                    window,
                )
            )
    if isinstance(spec.get(DRIFT), Mapping):
        results.append(
            checks.drift(
                spec[DRIFT],
                target.reference,
                series(queries.FEATURE_BUCKETS),
                series(queries.FEATURE_CATEGORIES),
                window,
            )
        )
    if isinstance(spec.get(ACCURACY), Mapping):
        results.append(checks.accuracy(spec[ACCURACY], series(queries.FEEDBACK), window))
        if versus(ACCURACY):
            results.append(
                comparison.accuracy(
                    spec[ACCURACY], series(queries.FEEDBACK), stable(queries.FEEDBACK), window
                )
            )
    results.extend(_custom(target, seconds, run))
    return results


def analyse(
    client: QueryClient,
    targets: Iterable[Target],
    window_seconds: int,
    at: float | None = None,
) -> dict[TargetKey, list[CheckResult]]:
    """Every check of every target, over `window_seconds` (or a target's own window), evaluated at
    `at` (Unix seconds; now when None). Never raises for Prometheus' sake: what cannot be
    measured is inconclusive, with the reason."""
    run = _Pass(client, time.time() if at is None else at)
    results: dict[TargetKey, list[CheckResult]] = {}
    for seconds, group in windows(targets, window_seconds).items():
        need = set().union(*(kinds(t) for t in group))
        namespaces = {t.key.namespace for t in group}
        tables = {
            kind: fan_out(run.ask(promql))
            for kind, promql in queries.batch(need, seconds, namespaces).items()
        }
        for target in group:
            results[target.key] = _target(target, tables, seconds, run)
    return results
