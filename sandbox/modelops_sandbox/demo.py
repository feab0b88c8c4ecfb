"""`make demo`: the modelops loop on this machine, on a local cluster with a real node.

The sandbox starts (control plane, containerd, kubelet and kube-proxy, the project's images built
here, Prometheus, and the operator installed with its Helm chart, running in its pod);
`examples/iris.yaml` is applied with intervals shortened to seconds; the operator trains it in a
Job and serves it from a Deployment of the runtime image, with its archives in the sandbox's S3
store; the demo sends predictions and ground-truth feedback to the model's Service, the operator's
analysis reads them back from Prometheus, and serving records the labelled rows in the store (the
Model opts in: `spec.serving.recording`); then the inputs shift, and feedback for the shifted
inputs flows; the operator detects the drift and retrains on the dataset plus the labelled
production rows (`spec.training.dataset.production`), and the new version, better on the shifted
inputs than the stable one, goes through its canary and is promoted by its checks; finally pinning
`spec.serving.version` rolls back to the first version. A timeline is printed as it goes, then
the report of the run, the chart's alerts pending or firing in Prometheus (which scrapes the
operator's pod too) and a summary; everything stops.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import random
import signal
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from modelops_sandbox.sandbox import REPO, Sandbox, post_json, wait_for

MODEL = "iris"
START = time.monotonic()


def say(line: str) -> None:
    print(f"[{time.monotonic() - START:6.1f}s] {line}", flush=True)


class Timeline:
    """Remembers when each step ended, for the summary."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, float]] = []
        self.mark = time.monotonic()

    def done(self, step: str) -> None:
        now = time.monotonic()
        self.steps.append((step, now - self.mark))
        self.mark = now
        say(f"done: {step} ({self.steps[-1][1]:.1f}s)")


def model_state(sandbox: Sandbox) -> dict[str, Any]:
    return dict(sandbox.get("model", MODEL).get("status") or {})


def watch_model(
    sandbox: Sandbox, until: Callable[[dict[str, Any]], bool], timeout: float, what: str
) -> dict[str, Any]:
    """Prints the Model's phase and versions as they change until `until(status)` holds."""
    seen: set[str] = set()

    def check() -> dict[str, Any] | None:
        status = model_state(sandbox)
        versions = json.loads(
            sandbox.kubectl("get", "modelversions", "-n", sandbox.namespace, "-o", "json")
        )["items"]
        line = (
            f"model {status.get('phase', '-')}, stable {status.get('stableVersion') or '-'}; "
            + ", ".join(
                f"{v['metadata']['name']} {v.get('status', {}).get('phase', 'Pending')}"
                for v in versions
            )
        )
        if line not in seen:
            seen.add(line)
            say(f"  {line}")
        return status if until(status) else None

    result: dict[str, Any] = wait_for(check, timeout, what, say)
    return result


class Traffic:
    """Prediction traffic with ground-truth feedback, in a background thread, to the model's
    Service (kube-proxy spreads it over the ready pods of both tracks). Feedback refers to each
    answer's signed prediction id and carries the Model's token, read from its Secret; any replica
    of the version scores it, and one that reaches a pod of the other track is counted there as
    `other_version` and not scored. `shift` moves the petal measurements, as a change in the
    world would."""

    def __init__(
        self,
        sandbox: Sandbox,
        model: str = MODEL,
        namespace: str | None = None,
        rows: int = 5,
        pause: float = 0.1,
        burst: int = 4,
    ) -> None:
        from sklearn.datasets import load_iris

        self.sandbox, self.rows, self.pause, self.burst = sandbox, rows, pause, burst
        self.model, self.namespace = model, namespace or sandbox.namespace
        self.data = load_iris()
        self.shift = 0.0
        self.feedback = True
        # `failed`: error answers (4xx/5xx); `lost`: connections to a pod that was going away
        # (as behind a Service, between a pod's deletion and its removal from the endpoints).
        self.counts = {
            "requests": 0,
            "rows": 0,
            "correct": 0,
            "incorrect": 0,
            "failed": 0,
            "lost": 0,
        }
        self.versions: collections.Counter[str] = collections.Counter()  # who answered
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rng = random.Random(7)
        self._url = ""
        self._auth: dict[str, str] = {}

    def send(self, requests: int) -> dict[str, int]:
        self._url = self._url or self.sandbox.service_url(self.model, self.namespace)
        if self.feedback and not self._auth:
            token = self.sandbox.feedback_token(self.model, self.namespace)
            self._auth = {"Authorization": f"Bearer {token}"}
        names = list(self.data.target_names)
        for _ in range(requests):
            picks = self._rng.sample(range(len(self.data.data)), self.rows)
            rows = [
                [
                    float(x) + (self.shift if j >= 2 else 0.0)
                    for j, x in enumerate(self.data.data[r])
                ]
                for r in picks
            ]
            self.counts["requests"] += 1
            try:
                answer = post_json(f"{self._url}/predict", {"rows": rows})
                self.counts["rows"] += len(rows)
                self.versions[answer["version"]] += 1
                if self.feedback:
                    items = [
                        {
                            "request_id": answer["request_id"],
                            "row": row,
                            "truth": names[self.data.target[r]],
                        }
                        for row, r in enumerate(picks)
                    ]
                    fed = post_json(f"{self._url}/feedback", {"items": items}, headers=self._auth)
                    self.counts["correct"] += int(fed.get("correct", 0))
                    self.counts["incorrect"] += int(fed.get("incorrect", 0))
            except urllib.error.HTTPError:
                self.counts["failed"] += 1
            except OSError:
                self.counts["lost"] += 1
        return dict(self.counts)

    def _run(self) -> None:
        while not self._stop.wait(self.pause):
            with contextlib.suppress(Exception):
                self.send(self.burst)

    def start(self) -> Traffic:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)


def demo_model() -> dict[str, Any]:
    """examples/iris.yaml with intervals in seconds, so the loop turns within a few minutes, and
    production data on: serving records it, a training adds the labelled rows of the last hour
    (none for the first version), and its quality gate at 0.8."""
    body: dict[str, Any] = yaml.safe_load((REPO / "examples" / "iris.yaml").read_text())
    body["spec"]["serving"]["canary"].update(interval="10s", steps=[30, 60])
    body["spec"]["serving"]["recording"] = {"retention": "24h"}
    body["spec"]["training"]["dataset"]["production"] = {"window": "1h", "minRows": 0}
    # Once production rows join, the holdout mixes both worlds, about 60 distinct rows whose
    # draw follows the traffic's order: accuracy 0.88 on average, under 0.85 one time in twenty
    # (a retrain Rejected), 0.83 at worst in 150 simulated traffic orders. So the gate is 0.8.
    body["spec"]["training"]["validation"]["gates"] = {"accuracy": 0.8}
    body["spec"]["monitoring"].update(interval="10s", consecutive=2, cooldown="10m")
    return body


def live_accuracy(sandbox: Sandbox, window: str = "1m", min_items: int = 20) -> dict[str, float]:
    """Each version's live accuracy over the last `window`, from the feedback Prometheus
    scraped; versions scored on fewer than `min_items` items are left out."""
    scored = (
        'sum by (version) (increase(modelops_feedback_total{model="iris",'
        f'outcome=~"correct|incorrect"}}[{window}]))'
    )
    correct = (
        'sum by (version) (increase(modelops_feedback_total{model="iris",outcome="correct"}'
        f"[{window}]))"
    )
    query = f"({correct} / {scored}) and on (version) ({scored} >= {min_items})"
    return {
        sample["metric"]["version"]: float(sample["value"][1])
        for sample in sandbox.query(query)
        if sample["value"][1] not in ("NaN", "+Inf", "-Inf")
    }


def sources_line(version: dict[str, Any]) -> str:
    """What a version was trained on: rows per source."""
    sources = (version.get("status") or {}).get("sources") or {}
    if not sources:
        return "the dataset only"
    production = sources.get("production", {})
    return (
        f"{sources.get('dataset', {}).get('rows', 0)} rows of the dataset + "
        f"{production.get('rows', 0)} labelled production rows of the last "
        f"{production.get('window', '?')} ({production.get('unlabelled', 0)} unlabelled left out)"
    )


def urlopen_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def prometheus_view(sandbox: Sandbox) -> list[str]:
    """What Prometheus scraped from the runtime: predictions by version and class, accuracy."""
    lines = []
    for sample in sandbox.query(
        'sum by (version, class) (modelops_prediction_class_total{model="iris"})'
    ):
        m = sample["metric"]
        lines.append(
            f"predictions {m.get('version')} {m.get('class'):<11} {float(sample['value'][1]):6.0f}"
        )
    for sample in sandbox.query(
        'sum by (version) (modelops_feedback_total{model="iris",outcome="correct"}) / '
        'sum by (version) (modelops_feedback_total{model="iris"})'
    ):
        lines.append(
            f"live accuracy {sample['metric'].get('version')}: "
            f"{float(sample['value'][1]):.3f} (from feedback)"
        )
    return sorted(lines)


def alerts_view(sandbox: Sandbox) -> list[str]:
    """The chart's alerts in the sandbox's Prometheus (`/api/v1/alerts`): firing or pending."""
    if sandbox.prometheus is None:
        return []
    lines = []
    for alert in sandbox.prometheus.api("/api/v1/alerts")["alerts"]:
        labels = alert["labels"]
        where = "/".join(labels[k] for k in ("namespace", "model") if k in labels)
        lines.append(f"{alert['state']:<8} {labels['alertname']} {where}".rstrip())
    return sorted(lines) or ["none pending or firing"]


def serving(status: dict[str, Any], version: str) -> bool:
    return status.get("stableVersion") == version and status.get("phase") == "Serving"


def run(sandbox: Sandbox, timeline: Timeline) -> None:
    ns = sandbox.namespace
    say(f"applying examples/iris.yaml in namespace {ns} (intervals shortened to 10s for the demo)")
    manifest = sandbox.directory / "iris.json"
    manifest.write_text(json.dumps(demo_model()))
    sandbox.kubectl("apply", "-n", ns, "-f", str(manifest))
    watch_model(sandbox, lambda s: s.get("phase") == "Serving", 300, "iris to train and serve")
    timeline.done("train iris-v1 in a Job and serve it")

    say("sending predictions and their ground truth as feedback, continuously")
    traffic = Traffic(sandbox).start()
    try:
        if sandbox.prometheus is not None or sandbox.prometheus_url:
            wait_for(lambda: prometheus_view(sandbox), 60, "Prometheus to scrape the runtime", say)
        watch_model(sandbox, lambda s: s.get("drift") is not None, 120, "a drift analysis")
        for line in prometheus_view(sandbox):
            say(f"  prometheus: {line}")
        say(f"  stable drift (max feature PSI) {model_state(sandbox)['drift']:.3f}")
        timeline.done("serve, record feedback, scrape and analyse")

        say("the world changes: petal measurements shift by +1.5 cm; their ground truth flows")
        traffic.shift = 1.5
        status = watch_model(
            sandbox,
            lambda s: bool(s.get("latestVersion") == "iris-v2"),
            240,
            "drift to trigger a retrain",
        )
        drifted = next(c for c in status["conditions"] if c["type"] == "Drifted")
        say(f"  Drifted={drifted['status']}: {drifted['message']}")
        wait_for(
            lambda: sandbox.get("modelversion", "iris-v2").get("status", {}).get("sources"),
            300,
            "iris-v2 trained",
            say,
        )
        retrained = sandbox.get("modelversion", "iris-v2")
        say(f"  iris-v2 was trained on {sources_line(retrained)}")
        outcome = retrained.get("status", {})
        if outcome.get("phase") != "Succeeded":  # no canary would start: say why at once
            raise RuntimeError(f"iris-v2 is {outcome.get('phase')}: {outcome.get('message')}")
        timeline.done("detect drift and retrain on production data (iris-v2, reason drift)")

        say("still shifted, with feedback: iris-v2 goes through its canary beside iris-v1")
        watch_model(sandbox, lambda s: s.get("phase") == "Canary", 300, "the canary to start")
        accuracies: dict[str, float] = {}

        def promoted(status: dict[str, Any]) -> bool:
            reading = live_accuracy(sandbox)  # the last one with both versions scored
            if {"iris-v1", "iris-v2"} <= set(reading):
                accuracies.update(reading)
            return serving(status, "iris-v2")

        watch_model(sandbox, promoted, 300, "the canary to be promoted")
        say(
            "  live accuracy on the shifted inputs, last minute of the canary: "
            f"iris-v1 (stable) {accuracies.get('iris-v1', float('nan')):.3f}, "
            f"iris-v2 (canary) {accuracies.get('iris-v2', float('nan')):.3f}"
        )
        timeline.done("canary iris-v2 through its steps; its accuracy check promotes it")
    finally:
        traffic.stop()
    say(f"  traffic: {traffic.counts}")

    say("pinning spec.serving.version to iris-v1 (manual rollback)")
    sandbox.kubectl(
        "patch",
        "model",
        MODEL,
        "-n",
        ns,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"serving": {"version": "iris-v1"}}}),
    )
    watch_model(sandbox, lambda s: serving(s, "iris-v1"), 300, "the rollback to iris-v1")
    timeline.done("roll back to iris-v1 by pinning it")


def write_report(sandbox: Sandbox, path: Path) -> None:
    """`modelops report iris` of the run, as a user would write it; says where it is."""
    from modelops_operator.report_gather import write_report as report

    try:
        written = report(
            MODEL,
            sandbox.namespace,
            kubeconfig=str(sandbox.kubeconfig_path),
            prometheus=sandbox.prometheus_url,
            since_seconds=3600,
            path=path,
        )
    except Exception as error:  # the demo's loop ran; a report it cannot write is said, not fatal
        say(f"the report could not be written: {error}")
        return
    say(f"report of the run (modelops report {MODEL}): {written}")


def summary(sandbox: Sandbox, timeline: Timeline) -> None:
    print("\n== summary " + "=" * 70)
    print(sandbox.kubectl("get", "models", "-n", sandbox.namespace))
    print(sandbox.kubectl("get", "modelversions", "-n", sandbox.namespace, "-o", "wide"))
    print(f"{'step':<55} {'seconds':>8}")
    for step, seconds in timeline.steps:
        print(f"{step:<55} {seconds:8.1f}")
    print(f"{'total':<55} {time.monotonic() - START:8.1f}")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m modelops_sandbox.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the sandbox running at the end until Ctrl-C"
    )
    parser.add_argument(
        "--kubeconfig",
        type=Path,
        help="use this existing cluster instead of a sandbox: its Services' cluster IPs must be "
        "reachable from here (as on one of its nodes) and its nodes must have the images",
    )
    parser.add_argument("--prometheus-url", help="with --kubeconfig: the Prometheus to read")
    parser.add_argument("--namespace", default="ml", help="namespace of the example (ml)")
    parser.add_argument(
        "--report",
        type=Path,
        default=Path(tempfile.gettempdir()) / "modelops-demo" / "iris-report.html",
        help="where to write the HTML report of the run (%(default)s)",
    )
    parser.add_argument(
        "--install-operator",
        action="store_true",
        help="with --kubeconfig: install the operator there with the chart (else one must run)",
    )
    args = parser.parse_args(argv)
    timeline = Timeline()
    if args.kubeconfig:
        sandbox = Sandbox(
            namespace=args.namespace,
            progress=say,
            kubeconfig=args.kubeconfig,
            prometheus_url=args.prometheus_url,
            install_operator=args.install_operator,
        )
    else:
        say("starting the sandbox: a cluster with a real node, Prometheus, the operator's chart")
        sandbox = Sandbox(namespace=args.namespace, progress=say)
    try:
        sandbox.start()
        timeline.done("start the sandbox")
        run(sandbox, timeline)
        args.report.parent.mkdir(parents=True, exist_ok=True)
        write_report(sandbox, args.report)
        for line in alerts_view(sandbox):
            say(f"alert (the chart's rules): {line}")
        summary(sandbox, timeline)
        if args.keep:
            say(
                f"kept running: export KUBECONFIG={sandbox.kubeconfig_path}; "
                f"Prometheus at {sandbox.prometheus.url if sandbox.prometheus else '-'}; "
                "Ctrl-C stops everything"
            )
            signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops it as Ctrl-C does
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    except Exception as error:
        say(f"the demo failed: {error}")
        if sandbox.install_operator and hasattr(sandbox, "directory"):
            print("--- operator log (tail) ---\n" + sandbox.operator_log(40), file=sys.stderr)
        return 1
    finally:
        say("stopping the sandbox")
        sandbox.stop()
        say("stopped; nothing left running")
    return 0


if __name__ == "__main__":
    sys.exit(main())
