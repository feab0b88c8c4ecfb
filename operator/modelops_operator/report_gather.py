"""Reading what `modelops report` shows: the Model and its ModelVersions and Events from the API
server, its series from Prometheus range queries; and `write_report`, which writes the page.

The I/O half of the report: every value is turned into `report_model`'s types here and handed to
the pure `report_render.render`. A Prometheus that cannot be read, or Events that RBAC hides, cost
their part of the page (which says why), not the report.
"""

from __future__ import annotations

import datetime
import importlib.util
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import requests
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from urllib3.util.retry import Retry

from modelops_api import contract
from modelops_operator.cli_kube import TIMEOUT, CliError, Connection, Kube, connect
from modelops_operator.cli_model import ModelView, parse_model
from modelops_operator.report_model import (
    PROMETHEUS,
    EventRecord,
    ReportData,
    Sample,
    Timelines,
    accuracy_from_feedback,
    by_version,
    feature_drift,
    from_status,
)

PROMETHEUS_TIMEOUT = 15.0  # seconds, per range query
POINTS = 240  # about this many points per series over the period
MIN_STEP = 15.0  # seconds: no finer than a usual scrape interval
MIN_WINDOW = 60.0  # seconds: counters' increases over no less than the analysis' shortest window


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def queries(
    namespace: str, model: str, window_seconds: float, step_seconds: float
) -> dict[str, str]:
    """The range queries, by series: live accuracy from the serving runtime's feedback counters
    and each feature's distribution (the series the accuracy and drift checks read, per version,
    over windows of `window_seconds`), and the operator's per-Model gauges of the largest PSI and
    of the canary's weight (`_highest`, at points `step_seconds` apart)."""
    match = f'namespace="{_label(namespace)}", model="{_label(model)}"'
    window = f"{int(window_seconds)}s"
    return {
        "accuracy": (
            f"sum by (version, outcome) (increase(modelops_feedback_total{{{match}}}[{window}]))"
        ),
        "drift": _highest(f"modelops_operator_model_drift_psi{{{match}}}", step_seconds),
        "canary_weight": _highest(
            f"modelops_operator_model_canary_weight_percent{{{match}}}", step_seconds
        ),
        "numeric": (
            f"sum by (version, feature, le) "
            f"(increase(modelops_feature_value_bucket{{{match}}}[{window}]))"
        ),
        "categorical": (
            f"sum by (version, feature, category) "
            f"(increase(modelops_feature_category_total{{{match}}}[{window}]))"
        ),
    }


def _highest(gauge: str, step_seconds: float) -> str:
    """A gauge per version, each point its highest value since the point before: a canary step
    shorter than the points' spacing still shows (a plain instant query samples one moment a
    step); where no sample fell in between (a scrape interval longer than the spacing), its last
    value."""
    step = f"{int(step_seconds)}s"
    return f"max by (version) (max_over_time({gauge}[{step}])) or max by (version) ({gauge})"


def step_seconds(since_seconds: float) -> float:
    """Seconds between two points: a short period still has a point every scrape or so."""
    return max(MIN_STEP, since_seconds / POINTS)


def window_for(step: float) -> float:
    """The window of each point's increases: the step, and never shorter than a minute, so that
    a point at a 15 s step still counts a minute of feedback (windows then overlap)."""
    return max(MIN_WINDOW, step)


Rows = list[tuple[Mapping[str, str], Sequence[Sample]]]


def _rows(answer: Any) -> Rows:
    """A range query's matrix as (labels, [(time, value)]) rows."""
    if not isinstance(answer, list):
        raise ValueError(f"a range query answered {type(answer).__name__}, not a matrix")
    rows: Rows = []
    for series in answer:
        labels = {str(k): str(v) for k, v in (series.get("metric") or {}).items()}
        rows.append((labels, [(float(t), float(v)) for t, v in series.get("values") or []]))
    return rows


def timelines(
    prometheus: str,
    model: ModelView,
    references: Mapping[str, Mapping[str, object]],
    since_seconds: float,
    now: datetime.datetime,
) -> Timelines:
    """The series over the `since_seconds` before `now`, each feature's PSI against
    `references[version]`; when Prometheus cannot be read, the status's last values, with the
    reason in the note."""
    from prometheus_api_client import PrometheusConnect
    from prometheus_api_client.exceptions import PrometheusApiClientException

    step = step_seconds(since_seconds)
    window = window_for(step)
    start = now - datetime.timedelta(seconds=since_seconds)
    connection = PrometheusConnect(
        url=prometheus.rstrip("/"),
        disable_ssl=False,
        retry=Retry(total=0, connect=0, read=0, status=0, raise_on_status=False),
    )
    answers: dict[str, Rows] = {}
    try:
        for key, promql in queries(model.namespace, model.name, window, step).items():
            answers[key] = _rows(
                connection.custom_query_range(
                    promql,
                    start_time=start,
                    end_time=now,
                    step=f"{int(step)}s",
                    timeout=PROMETHEUS_TIMEOUT,
                )
            )
    except (
        requests.RequestException,
        PrometheusApiClientException,
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
    ) as error:
        why = " ".join(str(error).split()) or type(error).__name__
        return from_status(model, now, f"Prometheus at {prometheus} could not be read ({why}).")
    finally:
        connection.close()
    features, missing = feature_drift(answers["numeric"], answers["categorical"], references)
    return Timelines(
        PROMETHEUS,
        f"Prometheus {prometheus}, one point every {int(step)}s"
        + (f", each counting the last {int(window)}s." if window > step else "."),
        accuracy=accuracy_from_feedback(answers["accuracy"]),
        drift=by_version(answers["drift"]),
        canary_weight=by_version(answers["canary_weight"]),
        features=features,
        features_note="; ".join(missing),
    )


def _event_time(event: Any) -> datetime.datetime | None:
    at = event.last_timestamp or event.event_time or event.first_timestamp
    if at is None and event.metadata is not None:
        at = event.metadata.creation_timestamp
    if isinstance(at, datetime.datetime):
        return at if at.tzinfo else at.replace(tzinfo=datetime.UTC)
    return None


def events(
    connection: Connection, namespace: str, name: str, since: datetime.datetime
) -> tuple[tuple[EventRecord, ...], str]:
    """The Model's Events since `since`, oldest first, and a note when they cannot be read."""
    core = client.CoreV1Api(connection.api)
    try:
        listed = core.list_namespaced_event(
            namespace,
            field_selector=f"involvedObject.kind=Model,involvedObject.name={name}",
            _request_timeout=TIMEOUT,
        )
    except ApiException as error:
        return (), f"The Model's Events could not be read: {error.status} {error.reason}."
    records = [
        EventRecord(
            at=_event_time(e),
            type=str(e.type or ""),
            reason=str(e.reason or ""),
            message=str(e.message or ""),
            count=int(e.count or 1),
        )
        for e in listed.items or []
    ]
    kept = [r for r in records if r.at is None or r.at >= since]
    kept.sort(key=lambda r: r.at or since)
    return tuple(kept), ""


def gather(
    connection: Connection,
    name: str,
    prometheus: str | None,
    since_seconds: float,
    now: datetime.datetime | None = None,
) -> ReportData:
    """Everything the page shows about the Model `name` of the connection's namespace."""
    now = now or datetime.datetime.now(datetime.UTC)
    kube = Kube(connection)
    body = kube.model(name)
    versions = kube.versions(kube.namespace)
    model = parse_model(body, versions)
    references = {
        str(v["metadata"].get("name")): reference
        for v in versions
        if (v.get("spec") or {}).get("model") == name
        and isinstance(reference := (v.get("status") or {}).get(contract.REFERENCE), Mapping)
    }
    since = now - datetime.timedelta(seconds=since_seconds)
    found, note = events(connection, model.namespace or connection.namespace, name, since)
    series = (
        timelines(prometheus, model, references, since_seconds, now)
        if prometheus
        else from_status(model, now, "Give --prometheus URL for the series over time.")
    )
    return ReportData(model, series, now, since_seconds, found, note)


def missing_extra(prometheus: bool) -> str | None:
    """What to tell a person whose installation lacks the `report` extra; None when it is there
    (prometheus-api-client is needed only to ask Prometheus)."""
    needed = ["plotly", *(["prometheus_api_client"] if prometheus else [])]
    missing = [m for m in needed if importlib.util.find_spec(m) is None]
    if not missing:
        return None
    return (
        f"modelops report needs the 'report' extra ({', '.join(missing)} not installed): "
        "pip install 'modelops[report]'"
    )


def write_report(
    name: str,
    namespace: str | None = None,
    *,
    kubeconfig: str | None = None,
    context: str | None = None,
    prometheus: str | None = None,
    since_seconds: float = 24 * 3600,
    path: str | Path = "report.html",
) -> Path:
    """Writes the report of the Model `namespace/name` to `path` and returns its path (absolute).
    Raises CliError for what the command would print as an error (no kubeconfig, an unknown
    Model, the CRDs missing, the `report` extra not installed)."""
    told = missing_extra(prometheus is not None)
    if told is not None:
        raise CliError(told)
    from modelops_operator.report_render import render

    data = gather(connect(kubeconfig, context, namespace), name, prometheus, since_seconds)
    target = Path(path).resolve()
    try:
        target.write_text(render(data), encoding="utf-8")
    except OSError as error:
        raise CliError(f"cannot write the report to {target}: {error.strerror or error}") from None
    return target
