"""Prometheus queries per analysis interval for 10, 100 and 1,000 models in a canary (flat).

    .venv/bin/python bench/analysis_queries.py [--models 10,100,1000] [--passes 5]
        [--write-docs docs/benchmarks.md]

For each size, a real Prometheus (the sandbox's Go build) scrapes eight exporters on loopback
addresses that serve the series of that many models as the serving runtime exports them (after the
scrape's relabelling: `namespace`, `model`, `version`, `track` on every series), counters growing
with time. Each model serves a stable and a canary track: the stable target has the four built-in
checks (error rate, p95 latency, drift over two numeric features and one categorical, accuracy),
the canary every one but drift, as the operator analyses a canary. Each pass is measured twice:
with the absolute thresholds only, and with `vsStable` on the canary's error rate, latency and
accuracy too (judged against its stable track; `minSamples: 20`, since Prometheus holds only a
few seconds of counts). `analyse()` runs `--passes` times per configuration through a session
that counts HTTP requests; the table gives the requests per pass, what a per-model design would
send, the median wall time of a pass, the bytes Prometheus answered, and how many models got a
conclusive result on both tracks (all of them should: the answers do fan out). With --write-docs
the "## Analysis queries per interval" section of that file is replaced (the rest is kept).
"""

from __future__ import annotations

import argparse
import http.server
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests
from benchdocs import write_section

from modelops_operator.analysis import (
    Outcome,
    PrometheusClient,
    Target,
    TargetKey,
    analyse,
    plan,
)
from modelops_sandbox.prometheus import PrometheusServer

SECTION = "## Analysis queries per interval"
JOB = "modelops-bench"
EXPORTERS = 8
# Scrapes of a thousand models' two tracks (174,000 series) take seconds on a loaded machine.
SCRAPE = "5s"
WINDOW = 60
DURATIONS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    180.0,
)
EDGES = [float(i) for i in range(1, 10)]  # 10 bins
PROPORTIONS = [0.1] * 10
COLORS = {"red": 0.5, "green": 0.3, "blue": 0.2}
REFERENCE = {
    "f1": {"edges": EDGES, "proportions": PROPORTIONS},
    "f2": {"edges": EDGES, "proportions": PROPORTIONS},
    "color": {"categories": COLORS, "other": 0.0},
}
CHECKS = {
    "errorRate": {"max": 0.05},
    "latencyP95Seconds": {"max": 0.5},
    "drift": {"psi": {"max": 0.2}},
    "accuracy": {"min": 0.85},
}
CANARY = {check: spec for check, spec in CHECKS.items() if check != "drift"}
VERSUS = {check: {**spec, "vsStable": {"minSamples": 20}} for check, spec in CANARY.items()}


def key(i: int, track: str = "stable") -> TargetKey:
    version = f"model{i:04d}-v{1 if track == 'stable' else 2}"
    return TargetKey(f"team{i % 20}", f"model{i:04d}", version, track)


def pair(i: int, canary_checks: dict[str, Any]) -> list[Target]:
    """Model i's stable target and its canary, whose baseline is stable."""
    stable = key(i)
    return [
        Target(stable, CHECKS, REFERENCE),
        Target(key(i, "canary"), canary_checks, REFERENCE, baseline=stable),
    ]


def targets(models: int, canary_checks: dict[str, Any]) -> list[Target]:
    return [target for i in range(models) for target in pair(i, canary_checks)]


def exposition(keys: list[TargetKey], t: float) -> bytes:
    """The runtime's series for `keys`, every counter at rate x t (t seconds since start)."""
    lines: list[str] = []
    add = lines.append
    for k in keys:
        own = f'namespace="{k.namespace}",model="{k.model}",version="{k.version}",track="{k.track}"'
        for code, rate in (("200", 10.0), ("500", 0.1), ("400", 0.5)):
            labels = f'{own},endpoint="/predict",http_response_code="{code}"'
            add(f"bentoml_service_request_total{{{labels}}} {rate * t}")
            for bound in DURATIONS:
                share = 0.0 if bound < 0.025 else (0.9 if bound < 0.1 else 1.0)
                add(
                    f'bentoml_service_request_duration_seconds_bucket{{{labels},le="{bound}"}} '
                    f"{rate * t * share}"
                )
            add(f'bentoml_service_request_duration_seconds_bucket{{{labels},le="+Inf"}} {rate * t}')
            add(f"bentoml_service_request_duration_seconds_count{{{labels}}} {rate * t}")
            add(f"bentoml_service_request_duration_seconds_sum{{{labels}}} {rate * t * 0.04}")
        for feature in ("f1", "f2"):
            for i, bound in enumerate(EDGES):
                value = 50.0 * t * (i + 1) / 10
                labels = f'{own},feature="{feature}",le="{bound}"'
                add(f"modelops_feature_value_bucket{{{labels}}} {value}")
            add(f'modelops_feature_value_bucket{{{own},feature="{feature}",le="+Inf"}} {50.0 * t}')
            add(f'modelops_feature_value_count{{{own},feature="{feature}"}} {50.0 * t}')
            add(f'modelops_feature_value_sum{{{own},feature="{feature}"}} {250.0 * t}')
        for category, share in (*COLORS.items(), ("__other__", 0.0)):
            add(
                f'modelops_feature_category_total{{{own},feature="color",category="{category}"}} '
                f"{50.0 * t * share}"
            )
        add(f'modelops_feedback_total{{{own},outcome="correct"}} {9.5 * t}')
        add(f'modelops_feedback_total{{{own},outcome="incorrect"}} {0.5 * t}')
    return ("\n".join(lines) + "\n").encode()


class Exporter:
    def __init__(self, keys: list[TargetKey], started: float) -> None:
        self.scrapes = 0
        exporter = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = exposition(keys, time.monotonic() - started)
                exporter.scrapes += 1
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        ip = f"127.{random.randint(100, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"
        self.server = http.server.ThreadingHTTPServer((ip, 0), Handler)
        self.address = f"{ip}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Counting(requests.Session):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.bytes = 0
        self.seconds = 0.0

    def request(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        self.count += 1
        begin = time.perf_counter()
        response = super().request(*args, **kwargs)
        self.bytes += len(response.content)
        self.seconds += time.perf_counter() - begin
        return response


def wait(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.2)


def timed(client_url: str, pass_targets: list[Target], passes: int) -> dict[str, Any]:
    """`passes` analyses of `pass_targets`: queries, medians of time, HTTP time and bytes, and the
    models concluded on both tracks."""
    times, waits, counts, sizes, conclusive = [], [], [], [], 0
    for _ in range(passes):
        session = Counting()
        client = PrometheusClient(client_url, timeout=30, session=session)
        begin = time.perf_counter()
        results = analyse(client, pass_targets, WINDOW)
        times.append(time.perf_counter() - begin)
        counts.append(session.count)
        waits.append(session.seconds)
        sizes.append(session.bytes)
        undecided = [r for c in results.values() for r in c if r.outcome is Outcome.INCONCLUSIVE]
        if undecided:
            print(f"inconclusive, e.g.: {undecided[0]}", file=sys.stderr)
        concluded: dict[str, int] = {}
        for target_key, checks in results.items():
            done = all(r.outcome is not Outcome.INCONCLUSIVE for r in checks)
            concluded[target_key.model] = concluded.get(target_key.model, 0) + done
        conclusive = sum(n == 2 for n in concluded.values())
    return {
        "queries": sorted(set(counts)),
        "seconds": statistics.median(times),
        "waiting": statistics.median(waits),
        "kib": statistics.median(sizes) / 1024,
        "conclusive": conclusive,
    }


def measure(models: int, passes: int, kubeconfig: Path) -> dict[str, Any]:
    keys = [key(i, track) for i in range(models) for track in ("stable", "canary")]
    started = time.monotonic()
    exporters = [Exporter(keys[i::EXPORTERS], started) for i in range(EXPORTERS)]
    job = {
        "job_name": JOB,
        "scrape_interval": SCRAPE,
        "scrape_timeout": SCRAPE,
        "honor_labels": True,
        "static_configs": [{"targets": [e.address for e in exporters]}],
    }
    prometheus = PrometheusServer(
        kubeconfig, scrape_interval=SCRAPE, extra_scrape_configs=[job], progress=lambda _: None
    )
    try:
        prometheus.start()
        wait(lambda: all(e.scrapes >= 4 for e in exporters), 300, "four scrapes of every exporter")
        time.sleep(1.0)  # the last scrape ingested
        series = int(
            float(
                prometheus.query(f'count({{job="{JOB}", __name__!~"up|scrape_.+"}})')[0]["value"][1]
            )
        )
        absolute = timed(prometheus.url, targets(models, CANARY), passes)
        versus = timed(prometheus.url, targets(models, VERSUS), passes)
        # the alternative: the same queries per model (both tracks), each scoped to its model
        session = Counting()
        client = PrometheusClient(prometheus.url, timeout=30, session=session)
        begin = time.perf_counter()
        for i in range(models):
            for promql in plan(pair(i, VERSUS), WINDOW):
                client.query(promql.replace('model!=""', f'model="{key(i).model}"'))
        naive_seconds = time.perf_counter() - begin
        return {
            "models": models,
            "naive_seconds": naive_seconds,
            "series": series,
            "naive": session.count,
            "absolute": absolute,
            "versus": versus,
        }
    finally:
        prometheus.stop()
        for exporter in exporters:
            exporter.close()


def render(rows: list[dict[str, Any]], args: argparse.Namespace, load: str) -> str:
    sizes = ",".join(str(r["models"]) for r in rows)
    lines = [
        SECTION,
        "",
        "Prometheus HTTP queries that one `analyse()` pass sends (one pass per monitoring interval)"
        " for that many models in a canary (stable with the four built-in checks, the canary with"
        " every one but drift), with the absolute thresholds only and with `vsStable` on the"
        " canary's error rate, latency and accuracy too, against a real Prometheus holding every"
        f" model's series of both tracks; median of {args.passes} passes of each, all measured in"
        " one run of:",
        "",
        "```",
        f".venv/bin/python bench/analysis_queries.py --models {sizes} --passes {args.passes} "
        "--write-docs docs/benchmarks.md",
        "```",
        "",
        "| models | series in Prometheus | checks | queries per pass | pass (s) |"
        " of which HTTP (s) | answers (KiB) | models concluded | per-model design: queries |"
        " per-model design (s) |",
        "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        for name, m in (("absolute", r["absolute"]), ("+ vsStable", r["versus"])):
            queries = "/".join(str(q) for q in m["queries"])
            naive = f"{r['naive']:,} | {r['naive_seconds']:.2f}" if name != "absolute" else "|"
            lines.append(
                f"| {r['models']:,} | {r['series']:,} | {name} | {queries} | {m['seconds']:.2f} | "
                f"{m['waiting']:.2f} | {m['kib']:,.0f} | {m['conclusive']:,} / {r['models']:,} | "
                f"{naive} |"
            )
    lines += [
        "",
        "- *queries per pass*: HTTP requests counted on the client's session; five kinds (predict"
        " requests by code, p95 latency, feature buckets, feature categories, feedback), one"
        " each per window, whatever the number of models; `vsStable` adds one, the latency"
        " buckets (the error rate and accuracy comparisons read stable's counts from the same"
        " answers). *per-model design*: the same queries sent once per model with"
        ' `model="<name>"` instead of `model!=""` (sent and timed once, answers not analysed),'
        " what a query-per-model design would cost. Custom PromQL checks come on top, one per"
        " target and check (docs/monitoring.md).",
        "- *models concluded*: models whose stable and canary targets concluded every check"
        " (the canaries serve what stable does, so each comparison passes).",
        "- *pass*: wall time of `analyse()`; *of which HTTP*: the requests to Prometheus until"
        " their bodies are read (its evaluation and the transfer), the rest is Python parsing the"
        " JSON, fanning out and computing every check and PSI. Both grow with the data Prometheus"
        " returns, not with the number"
        f" of queries. Each model exports {rows[0]['series'] // rows[0]['models']} series, half"
        " per track (two numeric features of 10 bins, one categorical of 3 categories,"
        " BentoML's request counter and duration histogram for three response codes,"
        " feedback).",
        f"- Machine: {platform.machine()}, {os.cpu_count()} CPUs (shared with other work),"
        f" Python {platform.python_version()}; load average before the run: {load}. Eight"
        " exporter threads in the benchmark's process serve the series; Prometheus scrapes them"
        f" every {SCRAPE}.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", default="10,100,1000")
    p.add_argument("--passes", type=int, default=5)
    p.add_argument("--write-docs", type=Path)
    args = p.parse_args()
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="modelops-bench-") as tmp:
        # Prometheus' pod discovery needs a kubeconfig; this one points nowhere (the static job
        # does the work).
        kubeconfig = Path(tmp) / "kubeconfig"
        kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: none\n"
            "clusters: [{name: none, cluster: {server: 'https://127.0.0.1:9'}}]\n"
            "users: [{name: none, user: {}}]\n"
            "contexts: [{name: none, context: {cluster: none, user: none}}]\n"
        )
        rows = []
        for models in (int(m) for m in args.models.split(",")):
            row = measure(models, args.passes, kubeconfig)
            print(row, file=sys.stderr, flush=True)
            rows.append(row)
    section = render(rows, args, load)
    print(section)
    if args.write_docs:
        write_section(args.write_docs, SECTION, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
