"""The page `modelops report` writes: one self-contained HTML file (plotly's JavaScript inlined,
no network needed to open it) from a `ReportData`.

Pure: `render(data)` is a function of its input; plotly is imported here and only here, so the
other verbs never load it (it is the `report` extra).
"""

from __future__ import annotations

import datetime
import html
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio

from modelops_operator.cli_model import METRICS, ModelView
from modelops_operator.report_model import (
    PROMETHEUS,
    CanaryRecord,
    EventRecord,
    ReportData,
    Series,
    canaries,
    retrains,
)

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: 0.5em 0.8em; }
.muted { color: #777; } .Warning { color: #b00020; }
"""
PLOT_CONFIG = {"displaylogo": False, "responsive": True}


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _time(at: datetime.datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S UTC") if at is not None else "-"


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], numeric: set[int]) -> str:
    """An HTML table of already-escaped cells."""
    header = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{cell}</td>' if i in numeric else f"<td>{cell}</td>"
            for i, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"


def _figure(title: str, y_title: str, **layout: Any) -> go.Figure:
    figure = go.Figure()
    figure.update_layout(
        title=title,
        yaxis_title=y_title,
        height=380,
        margin={"l": 60, "r": 20, "t": 50, "b": 50},
        template="plotly_white",
        legend_title_text="version",
        **layout,
    )
    return figure


def _psi_limit(figure: go.Figure, limit: float | None) -> None:
    """The drift check's threshold as a dashed line, when the Model has one."""
    if limit is not None:
        figure.add_hline(
            y=limit, line_dash="dash", line_color="#b00020", annotation_text=f"psi.max {limit:g}"
        )


def _lines(figure: go.Figure, series: Sequence[Series]) -> None:
    for one in series:
        figure.add_trace(
            go.Scatter(
                x=[p.at for p in one.points],
                y=[p.value for p in one.points],
                mode="lines+markers",
                name=one.version,
            )
        )


def _role(model: ModelView, name: str) -> str:
    if name == model.stable:
        return "stable"
    if model.canary is not None and name == model.canary.version:
        return "canary"
    return ""


def _versions(model: ModelView) -> tuple[str, go.Figure | None]:
    """The versions table and the metric-per-version bar chart (None: no version has metrics)."""
    metrics = [m for m in METRICS if any(m in v.metrics for v in model.versions)]
    metrics += sorted({k for v in model.versions for k in v.metrics} - set(metrics))
    head = ["version", "phase", "trigger", *metrics, "rows", "created", "role", "result"]
    rows = [
        [
            _e(v.name),
            _e(v.phase),
            _e(v.trigger),
            *(f"{v.metrics[m]:.4g}" if m in v.metrics else "-" for m in metrics),
            _e(v.rows if v.rows is not None else "-"),
            _e(_time(v.created)),
            _e(_role(model, v.name)),
            _e(": ".join(p for p in (v.reason, v.message) if p)),
        ]
        for v in reversed(model.versions)
    ]
    numeric = set(range(3, 4 + len(metrics)))
    table = _table(head, rows, numeric) if rows else '<p class="muted">No versions yet.</p>'
    if not metrics:
        return table, None
    figure = _figure("Holdout metrics per version", "value", barmode="group")
    figure.update_layout(legend_title_text="metric", xaxis_title="version")
    for metric in metrics:
        scored = [v for v in model.versions if metric in v.metrics]
        figure.add_trace(
            go.Bar(x=[v.name for v in scored], y=[v.metrics[metric] for v in scored], name=metric)
        )
    return table, figure


def _canaries_html(records: Sequence[CanaryRecord]) -> str:
    if not records:
        return '<p class="muted">No canary has run.</p>'
    parts = [
        _table(
            ["version", "outcome", "detail", "steps"],
            [[_e(c.version), _e(c.outcome), _e(c.detail), str(len(c.steps))] for c in records],
            {3},
        )
    ]
    for record in records:
        if record.steps:
            parts.append(f"<h3>{_e(record.version)}: {_e(record.outcome)}</h3>")
            parts.append(_events_table(record.steps))
    return "".join(parts)


def _events_table(events: Sequence[EventRecord]) -> str:
    return _table(
        ["time", "type", "reason", "message"],
        [
            [
                _e(_time(e.at)),
                f'<span class="{_e(e.type)}">{_e(e.type)}</span>',
                _e(e.reason),
                _e(e.message) + (f" <span class=muted>({e.count} times)</span>" * (e.count > 1)),
            ]
            for e in events
        ],
        set(),
    )


def _since(seconds: float) -> str:
    hours, rest = divmod(int(seconds), 3600)
    minutes = rest // 60
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m"


def render(data: ReportData) -> str:
    """The report as one HTML document: plotly's JavaScript inlined once, before the first plot."""
    model, lines = data.model, data.timelines
    versions_table, metrics_figure = _versions(model)
    figures: list[tuple[str, go.Figure | None, str]] = [
        ("metrics", metrics_figure, "No version has holdout metrics yet."),
    ]

    accuracy = None
    if lines.accuracy:
        title = (
            "Live accuracy (feedback)"
            if lines.source == PROMETHEUS
            else "Accuracy in the status (live from feedback, else holdout)"
        )
        accuracy = _figure(title, "accuracy", xaxis_title="time")
        _lines(accuracy, lines.accuracy)
    figures.append(("accuracy", accuracy, "No accuracy measured in this period."))

    drift = None
    if lines.drift:
        drift = _figure("Largest feature drift (PSI)", "PSI", xaxis_title="time")
        _lines(drift, lines.drift)
        _psi_limit(drift, model.drift_limit)
    figures.append(("drift", drift, "No drift measured in this period."))

    features = None
    if lines.features:
        features = _figure("Drift per feature (PSI against the reference)", "PSI")
        features.update_layout(xaxis_title="time", legend_title_text="feature (version)")
        for one in lines.features:
            features.add_trace(
                go.Scatter(
                    x=[p.at for p in one.points],
                    y=[p.value for p in one.points],
                    mode="lines+markers",
                    name=f"{one.feature} ({one.version})",
                )
            )
        _psi_limit(features, model.drift_limit)
    no_features = (
        "No feature was observed in this period."
        if lines.source == PROMETHEUS
        else "Drift per feature over time needs --prometheus."
    )
    if lines.features_note:
        no_features += f" Left out: {lines.features_note}."
    figures.append(("features", features, no_features))

    weight = None
    if lines.canary_weight:
        weight = _figure(
            "Canary share of traffic", "% of traffic", xaxis_title="time", yaxis_range=[0, 100]
        )
        _lines(weight, lines.canary_weight)
    figures.append(("canary-weight", weight, "No canary ran in this period."))

    plots: dict[str, str] = {}
    inlined = False
    for key, figure, empty in figures:
        if figure is None:
            plots[key] = f'<p class="muted">{_e(empty)}</p>'
            continue
        plots[key] = str(
            pio.to_html(
                figure,
                full_html=False,
                include_plotlyjs=not inlined,
                div_id=f"plot-{key}",
                config=PLOT_CONFIG,
            )
        )
        inlined = True

    source = (
        f"Series from Prometheus range queries over the last {_since(data.since_seconds)}."
        if lines.source == PROMETHEUS
        else "No Prometheus was asked: the plots show the status's last values, one point each."
    )
    note = f"{source} {lines.note}".strip()
    drift_feature = (
        f" (worst feature in the last analysis: {_e(model.drift_feature)})"
        if model.drift_feature
        else ""
    )
    phase = model.phase or "unknown"
    ready = model.condition("Ready")
    ready_text = f"Ready={ready.status} ({ready.reason})" if ready is not None else "not judged yet"
    checks = _table(
        ["check", "outcome", "value", "threshold", "samples", "reason"],
        [
            [
                _e(c.name),
                _e(c.outcome),
                _e(f"{c.value:.4g}" if c.value is not None else "-"),
                _e(f"{c.threshold:g}" if c.threshold is not None else "-"),
                _e(f"{c.samples:g}" if c.samples is not None else "-"),
                _e(c.reason),
            ]
            for c in model.checks
        ],
        {2, 3, 4},
    )
    retrain_rows = [
        [_e(r.version), _e(r.trigger), _e(_time(r.at)), _e(r.phase), _e(r.result)]
        for r in retrains(model)
    ]
    retrain_html = (
        _table(["version", "trigger", "created", "phase", "result"], retrain_rows, set())
        if retrain_rows
        else '<p class="muted">No retrain yet.</p>'
    )
    last = model.last_retrain
    if last is not None:
        retrain_html = (
            f"<p>Last retrain: <b>{_e(last.reason)}</b> at {_e(_time(last.at))}"
            f" → {_e(last.version or '-')}</p>" + retrain_html
        )
    events = (
        _events_table(data.events)
        if data.events
        else f'<p class="muted">{_e(data.events_note or "No Events about this Model.")}</p>'
    )
    if data.events and data.events_note:
        events = f'<p class="note">{_e(data.events_note)}</p>' + events

    features_note = (
        f'<p class="muted">Left out of the drift per feature: {_e(lines.features_note)}.</p>'
        if lines.features and lines.features_note
        else ""
    )
    title = f"modelops report: {model.namespace}/{model.name}"
    canary = model.canary.version if model.canary is not None else "-"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{_e(title)}</title>
<style>{STYLE}</style>
</head>
<body>
<h1>{_e(title)}</h1>
<p>Generated {_e(_time(data.generated))}. Phase <b>{_e(phase)}</b>, {_e(ready_text)};
stable <b>{_e(model.stable or "-")}</b>, canary <b>{_e(canary)}</b>;
accuracy {_e(f"{model.accuracy:.4g}" if model.accuracy is not None else "-")}
({"live" if model.accuracy_live else "holdout"}); drift PSI
{_e(f"{model.drift:.4g}" if model.drift is not None else "-")}{drift_feature}, threshold
{_e(f"{model.drift_limit:g}" if model.drift_limit is not None else "-")}.</p>
<p class="note" id="source">{_e(note)}</p>
<h2>Versions</h2>
{versions_table}
{plots["metrics"]}
<h2>Live accuracy</h2>
{plots["accuracy"]}
<h2>Drift</h2>
{plots["drift"]}
{plots["features"]}
{features_note}
<h3>The stable version's last analysis</h3>
{checks if model.checks else '<p class="muted">No analysis yet.</p>'}
<h2>Canaries</h2>
{plots["canary-weight"]}
{_canaries_html(canaries(model, data.events))}
<h2>Retrains</h2>
{retrain_html}
<h2>Events</h2>
{events}
</body>
</html>
"""
