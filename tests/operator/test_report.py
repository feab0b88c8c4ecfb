"""`modelops report`: the HTML page, opened in headless Chromium, and its data, read from the real
API server.

The Model, its ModelVersions and an Event are created on the session's real API server as the
operator would leave them (no operator runs: each outcome is exact). The series over time come
from a stand-in Prometheus: a small HTTP server answering `/api/v1/query_range` with fixed
matrices in Prometheus' answer format, because a real Prometheus would need minutes of scrapes to
hold a range worth plotting; the stand-in records the PromQL it was sent, which the test checks.
The page is opened with `chromium --headless`: a screenshot that must not be blank, and the DOM
after plotly ran (`--dump-dom` with a virtual time budget), where every plot must have drawn at
least one trace with data.
"""

from __future__ import annotations

import datetime
import http.server
import json
import math
import shutil
import struct
import subprocess
import threading
import time
import urllib.parse
import zlib
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from typer.testing import CliRunner

from modelops_api import contract
from modelops_operator import cli
from modelops_operator.cli_model import parse_model
from modelops_operator.report_gather import queries, step_seconds, window_for
from modelops_operator.report_model import (
    EventRecord,
    Point,
    ReportData,
    Series,
    Timelines,
    accuracy_from_feedback,
    canaries,
    feature_drift,
    period_seconds,
)
from modelops_operator.report_render import render
from modelops_sandbox.controlplane import ControlPlane

REPO = Path(__file__).resolve().parents[2]
G, V = contract.GROUP, contract.VERSION
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (hack/prerequisites.sh installs it)"
)


# --- opening a page in headless Chromium ------------------------------------------------------


def chromium(page: Path, *args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={tmp / 'chromium-profile'}",
            "--virtual-time-budget=10000",
            *args,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and the rows of an 8-bit RGB(A) PNG, unfiltered (PNG's five filters)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour in (2, 6), f"unexpected PNG format: depth {depth} colour {colour}"
    bpp = 3 if colour == 2 else 4
    raw, stride = zlib.decompress(idat), width * bpp
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        kind, line = (
            raw[y * (stride + 1)],
            bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]),
        )
        for x in range(stride):
            left = line[x - bpp] if x >= bpp else 0
            up, corner = previous[x], previous[x - bpp] if x >= bpp else 0
            if kind == 1:
                line[x] = (line[x] + left) & 0xFF
            elif kind == 2:
                line[x] = (line[x] + up) & 0xFF
            elif kind == 3:
                line[x] = (line[x] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                best = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[x] = (line[x] + best) & 0xFF
        rows.append(bytes(line))
        previous = line
    return width, height, rows


def colours(png: Path) -> int:
    """How many distinct colours the screenshot has (1: blank)."""
    width, _, rows = png_pixels(png.read_bytes())
    bpp = len(rows[0]) // width
    return len({row[i : i + 3] for row in rows for i in range(0, len(row), bpp)})


class Plots(HTMLParser):
    """Per plotly plot (its div's id), the traces drawn and the data paths they hold."""

    def __init__(self) -> None:
        super().__init__()
        self.plots: dict[str, dict[str, int]] = {}
        self._stack: list[tuple[str, str | None, bool]] = []  # tag, plot id, inside a trace

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        plot, in_trace = self._stack[-1][1:] if self._stack else (None, False)
        if tag == "div" and "plotly-graph-div" in classes:
            plot = a.get("id") or f"plot-{len(self.plots)}"
            self.plots[plot] = {"traces": 0, "paths": 0}
        if plot is not None and tag == "g" and "trace" in classes:
            self.plots[plot]["traces"] += 1
            in_trace = True
        if (
            plot is not None
            and in_trace
            and tag == "path"
            and any(c.isdigit() for c in a.get("d") or "")
        ):
            self.plots[plot]["paths"] += 1
        if tag not in ("meta", "link", "br", "img", "input", "hr"):
            self._stack.append((tag, plot, in_trace))

    def handle_endtag(self, tag: str) -> None:
        while self._stack:
            if self._stack.pop()[0] == tag:
                break


def drawn(dom: str) -> dict[str, dict[str, int]]:
    parser = Plots()
    parser.feed(dom)
    return parser.plots


def assert_opens_and_draws(page: Path, tmp: Path, plots: set[str]) -> Path:
    """Opens the page in Chromium: the screenshot is not blank, each plot drew data."""
    shot = tmp / "report.png"
    chromium(page, f"--screenshot={shot}", "--window-size=1280,2400", tmp=tmp)
    assert shot.is_file()
    assert colours(shot) > 20, "the screenshot is blank"
    dom = chromium(page, "--dump-dom", tmp=tmp).stdout
    found = drawn(dom)
    assert set(found) == plots, found
    for plot, counts in found.items():
        assert counts["traces"] >= 1 and counts["paths"] >= 1, (plot, counts)
    return shot


# --- the data: a Model with a retrain, a promoted and a rolled-back canary ---------------------

NOW = time.time()


def model_body(namespace: str) -> dict[str, Any]:
    body = yaml.safe_load((REPO / "examples" / "iris.yaml").read_text())
    body["metadata"]["namespace"] = namespace
    body["status"] = {
        "observedGeneration": 1,
        "phase": "Canary",
        "stableVersion": "iris-v2",
        "latestVersion": "iris-v4",
        "accuracy": 0.94,
        "drift": 0.31,
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Serving", "message": "iris-v2 serves"}
        ],
        "canary": {
            "version": "iris-v4",
            "step": 0,
            "weight": 10,
            "replicas": 1,
            "failedChecks": 0,
            "paused": False,
            "reason": "Analysing",
            "message": "step 1/2 at 10%",
        },
        "monitoring": {
            "checks": [
                {
                    "check": "drift",
                    "outcome": "fail",
                    "threshold": "psi <= 0.2",
                    "value": 0.31,
                    "samples": 500,
                    "reason": "max PSI 0.31 on 'petal_length' over 4 feature(s) in 60s: > 0.2",
                }
            ],
            "summary": {"drift": {"feature": "petal_length", "psi": 0.31}},
            "lastRetrain": {"reason": "drift", "at": NOW - 600, "version": "iris-v4"},
        },
    }
    return body


# iris-v2's reference distributions (ModelVersion status.reference); iris-v4 has none yet.
REFERENCE = {
    "petal_length": {"edges": [2.5, 5.0], "proportions": [0.33, 0.34, 0.33]},
    "colour": {"categories": {"red": 0.5, "blue": 0.5}, "other": 0.0},
}
# Cumulative bucket increases (le 2.5, 5.0, +Inf) per step: as the reference, then shifting.
PETAL_LENGTH = [(33, 67, 100), (30, 65, 100), (20, 55, 100), (10, 40, 100), (5, 20, 100)]
COLOUR = [(50, 50), (55, 45), (70, 30), (90, 10), (95, 5)]


def psi(observed: list[float], expected: list[float]) -> float:
    """The PSI as docs/monitoring.md defines it, shares floored at 1e-4."""
    a = [max(x, 1e-4) for x in observed]
    e = [max(x, 1e-4) for x in expected]
    return sum((x - y) * math.log(x / y) for x, y in zip(a, e, strict=True))


VERSIONS: list[tuple[str, str, dict[str, Any]]] = [
    (
        "iris-v1",
        "initial",
        {"phase": "Succeeded", "metrics": {"accuracy": 0.953, "f1_macro": 0.95}},
    ),
    (
        "iris-v2",
        "spec-change",
        {
            "phase": "Succeeded",
            "metrics": {"accuracy": 0.967, "f1_macro": 0.966},
            contract.REFERENCE: REFERENCE,
        },
    ),
    (
        "iris-v3",
        "drift",
        {
            "phase": "RolledBack",
            "reason": "CheckFailed",
            "message": "iris-v3 failed 2 analyses (threshold 2): errorRate",
            "metrics": {"accuracy": 0.96, "f1_macro": 0.958},
        },
    ),
    ("iris-v4", "drift", {"phase": "Succeeded", "metrics": {"accuracy": 0.973, "f1_macro": 0.97}}),
]
EVENTS = [
    (3000, "Normal", "CanaryStarted", "canary iris-v2 at 10% of traffic"),
    (2900, "Normal", "CanaryAdvanced", "iris-v2 advanced to step 2/2 (50% of traffic)"),
    (2800, "Normal", "Promoted", "iris-v2 passed all 2 steps"),
    (2000, "Normal", "CanaryStarted", "canary iris-v3 at 10% of traffic"),
    (1900, "Warning", "RolledBack", "iris-v3 failed 2 analyses (threshold 2): errorRate"),
    (600, "Normal", "TrainingStarted", "iris-v4 created (drift)"),
    (300, "Normal", "CanaryStarted", "canary iris-v4 at 10% of traffic"),
]


def version_body(name: str, trigger: str) -> dict[str, Any]:
    return {
        "apiVersion": contract.API_VERSION,
        "kind": "ModelVersion",
        "metadata": {"name": name, "labels": {contract.LABEL_MODEL: "iris"}},
        "spec": {
            "model": "iris",
            "reason": trigger,
            "specHash": "sha256:" + "0" * 64,
            "training": {},
        },
    }


def matrix(series: list[tuple[dict[str, str], list[float]]], step: float = 60) -> dict[str, Any]:
    start = NOW - step * 10
    return {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [
                {
                    "metric": labels,
                    "values": [[start + i * step, str(v)] for i, v in enumerate(values)],
                }
                for labels, values in series
            ],
        },
    }


def range_answer(query: str) -> dict[str, Any]:
    """What the stand-in Prometheus answers, by the series the query reads."""
    if "modelops_feedback_total" in query:
        return matrix(
            [
                ({"version": "iris-v2", "outcome": "correct"}, [45, 47, 44, 40, 38, 36]),
                ({"version": "iris-v2", "outcome": "incorrect"}, [5, 3, 6, 10, 12, 14]),
                ({"version": "iris-v4", "outcome": "correct"}, [0, 0, 0, 9, 19, 28]),
                ({"version": "iris-v4", "outcome": "incorrect"}, [0, 0, 0, 1, 1, 2]),
            ]
        )
    if "drift_psi" in query:
        return matrix([({"version": "iris-v2"}, [0.05, 0.08, 0.12, 0.19, 0.26, 0.31])])
    if "modelops_feature_value_bucket" in query:
        return matrix(
            [
                (
                    {"version": v, "feature": "petal_length", "le": le},
                    [row[i] for row in PETAL_LENGTH],
                )
                for v in ("iris-v2", "iris-v4")
                for i, le in enumerate(("2.5", "5.0", "+Inf"))
            ]
        )
    if "modelops_feature_category_total" in query:
        return matrix(
            [
                (
                    {"version": "iris-v2", "feature": "colour", "category": c},
                    [row[i] for row in COLOUR],
                )
                for i, c in enumerate(("red", "blue"))
            ]
        )
    if "canary_weight" in query:
        return matrix([({"version": "iris-v4"}, [10, 10, 10])])
    return matrix([])


class StandInPrometheus:
    def __init__(self) -> None:
        self.queries: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self, params: dict[str, list[str]]) -> None:
                query = params.get("query", [""])[0]
                outer.queries.append(query)
                body = json.dumps(range_answer(query)).encode()
                ok = self.path.startswith("/api/v1/query_range")
                self.send_response(200 if ok else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._answer(urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self._answer(urllib.parse.parse_qs(self.rfile.read(length).decode()))

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def prometheus() -> Iterator[StandInPrometheus]:
    server = StandInPrometheus()
    yield server
    server.close()


@pytest.fixture
def iris(kube_api: client.ApiClient, crds: Path, namespace: str) -> str:
    """The Model, its four versions and its Events, created on the real API server."""
    custom, core = client.CustomObjectsApi(kube_api), client.CoreV1Api(kube_api)
    body = model_body(namespace)
    status = body.pop("status")
    created = custom.create_namespaced_custom_object(G, V, namespace, contract.MODELS, body)
    custom.patch_namespaced_custom_object_status(
        G, V, namespace, contract.MODELS, "iris", {"status": status}
    )
    for name, trigger, version_status in VERSIONS:
        custom.create_namespaced_custom_object(
            G, V, namespace, contract.MODEL_VERSIONS, version_body(name, trigger)
        )
        custom.patch_namespaced_custom_object_status(
            G, V, namespace, contract.MODEL_VERSIONS, name, {"status": version_status}
        )
    for ago, kind, reason, message in EVENTS:
        at = datetime.datetime.fromtimestamp(NOW - ago, datetime.UTC)
        core.create_namespaced_event(
            namespace,
            client.CoreV1Event(
                metadata=client.V1ObjectMeta(generate_name="iris."),
                involved_object=client.V1ObjectReference(
                    api_version=contract.API_VERSION,
                    kind="Model",
                    name="iris",
                    namespace=namespace,
                    uid=created["metadata"]["uid"],
                ),
                type=kind,
                reason=reason,
                message=message,
                first_timestamp=at,
                last_timestamp=at,
                count=1,
                source=client.V1EventSource(component="modelops"),
            ),
        )
    return namespace


def run(control_plane: ControlPlane, *args: str) -> Any:
    return CliRunner().invoke(
        cli.app, [*args, "--kubeconfig", str(control_plane.kubeconfig)], catch_exceptions=False
    )


# --- the tests ---------------------------------------------------------------------------------


@pytest.mark.integration
@needs_chromium
def test_report_with_prometheus_draws_every_plot_from_the_api_server_and_the_series(
    iris: str,
    control_plane: ControlPlane,
    prometheus: StandInPrometheus,
    tmp_path: Path,
) -> None:
    page = tmp_path / "iris.html"
    result = run(
        control_plane, "report", "iris", "-n", iris, "--prometheus", prometheus.url,
        "--since", "2h", "-o", str(page),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"wrote {page}" in result.stdout
    html = page.read_text()
    assert "Series from Prometheus range queries over the last 2h00m" in html
    # Every query is the documented one, scoped to this Model.
    assert sorted(prometheus.queries) == sorted(queries(iris, "iris", 60, 30).values())
    # Offline: plotly inlined once, nothing fetched from elsewhere.
    assert html.count("<script") >= 4 and "cdn" not in html.lower().split("plotly.js v")[0]
    assert 'src="http' not in html
    # The versions, the canaries with their outcomes, the retrains with their reasons.
    for text in (
        "iris-v1", "f1_macro", "CheckFailed: iris-v3 failed 2 analyses (threshold 2): errorRate",
        "iris-v2 passed all 2 steps", "step 1/2 at 10%", "Last retrain: <b>drift</b>",
        "iris-v4 created (drift)", "worst feature in the last analysis: petal_length",
    ):  # fmt: skip
        assert text in html, text
    assert "Left out of the drift per feature: iris-v4: no reference distributions" in html
    shot = assert_opens_and_draws(
        page,
        tmp_path,
        {"plot-metrics", "plot-accuracy", "plot-drift", "plot-features", "plot-canary-weight"},
    )
    print(f"screenshot: {shot}")


@pytest.mark.integration
@needs_chromium
def test_report_without_prometheus_shows_the_status_and_says_so(
    iris: str, control_plane: ControlPlane, tmp_path: Path
) -> None:
    page = tmp_path / "report.html"
    result = run(control_plane, "report", "iris", "-n", iris, "-o", str(page))
    assert result.exit_code == 0, result.output
    html = page.read_text()
    assert "No Prometheus was asked: the plots show the status&#x27;s last values" in html
    assert "Drift per feature over time needs --prometheus." in html
    assert_opens_and_draws(
        page, tmp_path, {"plot-metrics", "plot-accuracy", "plot-drift", "plot-canary-weight"}
    )


@pytest.mark.integration
def test_report_of_an_unknown_model_and_an_unreadable_prometheus(
    iris: str, control_plane: ControlPlane, tmp_path: Path
) -> None:
    missing = run(control_plane, "report", "nope", "-n", iris, "-o", str(tmp_path / "x.html"))
    assert missing.exit_code == 1 and f"Model {iris}/nope not found" in missing.stderr
    assert not (tmp_path / "x.html").exists()
    page = tmp_path / "r.html"
    down = run(
        control_plane, "report", "iris", "-n", iris, "--prometheus", "http://127.0.0.1:9",
        "-o", str(page),
    )  # fmt: skip
    assert down.exit_code == 0, down.output
    assert "Prometheus at http://127.0.0.1:9 could not be read" in page.read_text()
    bad = run(control_plane, "report", "iris", "-n", iris, "--since", "yesterday")
    assert bad.exit_code == 2 and "not a period" in bad.output


@pytest.mark.unit
def test_accuracy_per_version_and_instant_from_feedback_counts() -> None:
    rows = [
        ({"version": "v1", "outcome": "correct"}, [(0.0, 9.0), (60.0, 0.0), (120.0, float("nan"))]),
        ({"version": "v1", "outcome": "incorrect"}, [(0.0, 1.0), (60.0, 0.0)]),
    ]
    (series,) = accuracy_from_feedback(rows)
    assert [(p.at.timestamp(), p.value) for p in series.points] == [(0.0, 0.9)]


@pytest.mark.unit
def test_each_canary_gets_its_events_and_outcome() -> None:
    model = parse_model(
        model_body("ml"),
        [{**version_body(n, t), "status": s} for n, t, s in VERSIONS],
    )
    events = [
        EventRecord(datetime.datetime.fromtimestamp(NOW - ago, datetime.UTC), k, r, m)
        for ago, k, r, m in EVENTS
    ]
    deadline = EventRecord(events[-3].at, "Warning", "RolledBack", "no progress for 15m (x)")
    found = canaries(model, [*events[:4], deadline])
    assert [(c.version, c.outcome, len(c.steps)) for c in found] == [
        ("iris-v2", "promoted", 3),
        ("iris-v3", "rolled back", 2),
        ("iris-v4", "running", 0),
    ]


@pytest.mark.unit
def test_periods() -> None:
    assert period_seconds("24h") == 86400 and period_seconds("1d12h") == 129600
    assert period_seconds("90") == 90
    for bad in ("yesterday", "0", "-5m", "5 m"):
        with pytest.raises(ValueError):
            period_seconds(bad)


@pytest.mark.unit
def test_render_leaves_out_plots_without_data_and_escapes_text() -> None:
    body = model_body("ml")
    body["metadata"]["name"] = "iris"
    body["status"]["canary"]["message"] = "<script>alert(1)</script>"
    model = parse_model(body, [])
    at = datetime.datetime.now(datetime.UTC)
    data = ReportData(
        model,
        Timelines("prometheus", "", drift=(Series("iris-v2", (Point(at, 0.3),)),)),
        at,
        3600,
    )
    page = render(data)
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)" in page
    assert 'id="plot-drift"' in page and 'id="plot-accuracy"' not in page
    assert "No accuracy measured in this period." in page


@pytest.mark.unit
def test_without_the_report_extra_the_command_says_which_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from modelops_operator import report_gather

    real = report_gather.importlib.util.find_spec
    monkeypatch.setattr(
        report_gather.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "plotly" else real(name, *a),
    )
    result = CliRunner().invoke(
        cli.app, ["report", "iris", "--kubeconfig", str(tmp_path / "none"), "-o", "x.html"]
    )
    assert result.exit_code == 1
    assert "needs the 'report' extra (plotly not installed)" in result.stderr
    assert "pip install 'modelops[report]'" in result.stderr


@pytest.mark.unit
def test_drift_per_feature_is_the_psi_against_the_version_reference() -> None:
    numeric = [
        (
            {"version": "iris-v2", "feature": "petal_length", "le": le},
            [(60.0 * t, row[i]) for t, row in enumerate(PETAL_LENGTH)],
        )
        for i, le in enumerate(("2.5", "5.0", "+Inf"))
    ]
    categorical = [
        (
            {"version": "iris-v2", "feature": "colour", "category": c},
            [(60.0 * t, row[i]) for t, row in enumerate(COLOUR)],
        )
        for i, c in enumerate(("red", "blue"))
    ]
    orphan = [({"version": "iris-v9", "feature": "petal_length", "le": "+Inf"}, [(0.0, 5.0)])]
    found, notes = feature_drift(numeric + orphan, categorical, {"iris-v2": REFERENCE})
    assert [(f.version, f.feature) for f in found] == [
        ("iris-v2", "colour"),
        ("iris-v2", "petal_length"),
    ]
    colour, petal = found
    for series, rows, expected in (
        (petal, PETAL_LENGTH, [0.33, 0.34, 0.33]),
        (colour, COLOUR, [0.5, 0.5, 0.0]),
    ):
        assert len(series.points) == len(rows)
        for point, row in zip(series.points, rows, strict=True):
            total = row[-1] if series is petal else sum(row)
            shares = (
                [row[0] / total, (row[1] - row[0]) / total, (row[2] - row[1]) / total]
                if series is petal
                else [row[0] / total, row[1] / total, 0.0]
            )
            assert point.value == pytest.approx(psi(shares, expected), rel=1e-9)
    assert petal.points[0].value < 0.01 and petal.points[-1].value > 0.2
    assert notes == ("iris-v9: no reference distributions in its status",)


@pytest.mark.unit
def test_a_short_period_has_a_point_every_15s_over_windows_of_a_minute() -> None:
    """An hour's report draws a canary of a few minutes with a dozen points, each point's
    increases over a minute; a day's, a point (and a window) every 6 minutes."""
    assert (step_seconds(3600), window_for(step_seconds(3600))) == (15, 60)
    assert (step_seconds(86400), window_for(step_seconds(86400))) == (360, 360)


@pytest.mark.unit
def test_a_gauges_point_is_its_highest_since_the_point_before() -> None:
    """A canary step of 2 minutes in a day's report (a point every 6 minutes) still shows."""
    weight = queries("ml", "iris", 360, 360)["canary_weight"]
    gauge = 'modelops_operator_model_canary_weight_percent{namespace="ml", model="iris"}'
    assert weight == (
        f"max by (version) (max_over_time({gauge}[360s])) or max by (version) ({gauge})"
    )
