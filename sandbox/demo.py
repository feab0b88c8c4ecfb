"""`make demo`: the modelops loop on this machine: a real control plane, no container engine.

The sandbox (control plane, node agent, Prometheus, operator) starts; `examples/iris.yaml` is
applied; the operator trains it in a Job and serves it; the demo sends predictions and ground-truth
feedback to the serving pods and reads the runtime's metrics back from Prometheus; a retrain is
requested (`modelops retrain`) and the new version rolls out; pinning `spec.serving.version` rolls
back to the first. A timeline is printed as it goes and a summary at the end; everything stops.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from typing import Any

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


def traffic(sandbox: Sandbox, requests: int) -> dict[str, int]:
    """Predictions over the ready serving pods, then ground truth for each as feedback."""
    from sklearn.datasets import load_iris

    pods = sandbox.serving_pods(MODEL)
    metadata = json.loads(urlopen_text(f"http://{pods[0]['ip']}:3000/metadata"))
    data = load_iris()
    names = list(data.target_names)
    if len(metadata["features"]) != data.data.shape[1]:
        raise RuntimeError(f"unexpected schema: {metadata['features']}")
    rng = random.Random(7)
    sent = correct = incorrect = 0
    for i in range(requests):
        pod = pods[i % len(pods)]
        rows = rng.sample(range(len(data.data)), 5)
        answer = post_json(
            f"http://{pod['ip']}:3000/predict",
            {"rows": [list(map(float, data.data[r])) for r in rows]},
        )
        items = [
            {"request_id": answer["request_id"], "row": k, "truth": names[data.target[r]]}
            for k, r in enumerate(rows)
        ]
        fed = post_json(f"http://{pod['ip']}:3000/feedback", {"items": items})
        sent += len(rows)
        correct += int(fed.get("correct", 0))
        incorrect += int(fed.get("incorrect", 0))
    return {"rows": sent, "correct": correct, "incorrect": incorrect}


def urlopen_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def prometheus_view(sandbox: Sandbox) -> list[str]:
    """What Prometheus scraped from the runtime: predictions by version and class, accuracy."""
    assert sandbox.prometheus is not None
    lines = []
    for sample in sandbox.prometheus.query(
        'sum by (version, class) (modelops_prediction_class_total{model="iris"})'
    ):
        m = sample["metric"]
        lines.append(
            f"predictions {m.get('version')} {m.get('class'):<11} {float(sample['value'][1]):6.0f}"
        )
    for sample in sandbox.prometheus.query(
        'sum by (version) (modelops_feedback_total{model="iris",outcome="correct"}) / '
        'sum by (version) (modelops_feedback_total{model="iris"})'
    ):
        lines.append(
            f"live accuracy {sample['metric'].get('version')}: "
            f"{float(sample['value'][1]):.3f} (from feedback)"
        )
    return sorted(lines)


def serving(status: dict[str, Any], version: str) -> bool:
    return status.get("stableVersion") == version and status.get("phase") == "Serving"


def run(sandbox: Sandbox, timeline: Timeline) -> None:
    ns = sandbox.namespace
    say(f"applying examples/iris.yaml in namespace {ns}")
    sandbox.kubectl("apply", "-n", ns, "-f", str(REPO / "examples" / "iris.yaml"))
    watch_model(sandbox, lambda s: s.get("phase") == "Serving", 300, "iris to train and serve")
    timeline.done("train iris-v1 in a Job and serve it")

    say("sending 40 prediction requests (5 rows each) and their ground truth as feedback")
    outcome = traffic(sandbox, 40)
    say(
        f"  {outcome['rows']} rows predicted; feedback {outcome['correct']} correct, "
        f"{outcome['incorrect']} incorrect"
    )
    wait_for(lambda: prometheus_view(sandbox), 60, "Prometheus to scrape the runtime", say)
    time.sleep(float(sandbox.scrape_interval.rstrip("s")) * 2)
    for line in prometheus_view(sandbox):
        say(f"  prometheus: {line}")
    timeline.done("serve predictions, record feedback, scrape metrics")

    say("requesting a retrain: modelops retrain iris")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "modelops_operator.cli",
            "retrain",
            MODEL,
            "-n",
            ns,
            "--kubeconfig",
            str(sandbox.control_plane.kubeconfig),
        ],
        check=True,
    )
    watch_model(sandbox, lambda s: serving(s, "iris-v2"), 300, "iris-v2 to train and roll out")
    timeline.done("retrain by request and roll out iris-v2")

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


def summary(sandbox: Sandbox, timeline: Timeline) -> None:
    print("\n== summary " + "=" * 70)
    print(sandbox.kubectl("get", "models", "-n", sandbox.namespace))
    print(sandbox.kubectl("get", "modelversions", "-n", sandbox.namespace, "-o", "wide"))
    print(f"{'step':<55} {'seconds':>8}")
    for step, seconds in timeline.steps:
        print(f"{step:<55} {seconds:8.1f}")
    print(f"{'total':<55} {time.monotonic() - START:8.1f}")
    print("\nDrift detection, canary analysis and automatic rollback join this loop with the")
    print("monitoring issue; see docs/sandbox.md.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="modelops demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the sandbox running at the end until Ctrl-C"
    )
    args = parser.parse_args(argv)
    timeline = Timeline()
    say("starting the sandbox: control plane, node agent, Prometheus, operator")
    sandbox = Sandbox(progress=say)
    try:
        sandbox.start()
        timeline.done("start the sandbox")
        run(sandbox, timeline)
        summary(sandbox, timeline)
        if args.keep:
            say(
                f"kept running: export KUBECONFIG={sandbox.control_plane.kubeconfig}; "
                f"Prometheus at {sandbox.prometheus.url if sandbox.prometheus else '-'}; "
                "Ctrl-C stops everything"
            )
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    except Exception as error:
        say(f"the demo failed: {error}")
        if sandbox.operator is not None:
            print("--- operator log (tail) ---\n" + sandbox.operator.tail(40), file=sys.stderr)
        return 1
    finally:
        say("stopping the sandbox")
        sandbox.stop()
        say("stopped; nothing left running")
    return 0


if __name__ == "__main__":
    sys.exit(main())
