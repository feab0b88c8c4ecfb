"""How long a bad canary lives: from its first failing scrape to its rollback, in intervals.

In the sandbox (a cluster with a real node, Prometheus, the operator installed with its chart),
iris serves iris-v1; a new training spec yields a depth-1 tree that passes training (no gate) but
answers badly, so live accuracy from feedback fails its canary analyses. The clock starts when
Prometheus first holds a feedback sample of the canary with a wrong answer (its first failing
scrape) and stops when the version is RolledBack. With `threshold: 2` the floor is two analyses,
one interval apart, the first one interval after the canary starts.

    .venv/bin/python bench/canary_rollback.py [--interval 5] [--runs 3] \
        [--write-docs docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from benchdocs import write_section

from modelops_sandbox.demo import Traffic, demo_model
from modelops_sandbox.sandbox import Sandbox, wait_for

SECTION = "## Canary rollback time"


def status(sandbox: Sandbox, namespace: str, kind: str, name: str) -> dict[str, Any]:
    return dict(sandbox.get(kind, name, namespace).get("status") or {})


def one_run(sandbox: Sandbox, namespace: str, interval: int) -> dict[str, float]:
    sandbox.create_namespace(namespace)
    body = demo_model()
    body["spec"]["serving"]["replicas"] = 1
    body["spec"]["serving"]["canary"].update(interval=f"{interval}s", steps=[50], threshold=2)
    body["spec"]["monitoring"].update(interval=f"{interval}s")
    manifest = sandbox.directory / f"{namespace}.json"
    manifest.write_text(json.dumps(body))
    sandbox.kubectl("apply", "-n", namespace, "-f", str(manifest))
    wait_for(
        lambda: status(sandbox, namespace, "model", "iris").get("phase") == "Serving",
        300,
        "iris serving",
    )
    traffic = Traffic(sandbox, namespace=namespace).start()
    assert sandbox.prometheus is not None
    wrong = (
        f'modelops_feedback_total{{namespace="{namespace}",track="canary",outcome="incorrect"}} > 0'
    )
    try:
        body["spec"]["training"]["estimator"] = {
            "class": "sklearn.tree.DecisionTreeClassifier",
            "params": {"max_depth": 1},
        }
        body["spec"]["training"]["validation"].pop("gates", None)
        manifest.write_text(json.dumps(body))
        sandbox.kubectl("apply", "-n", namespace, "-f", str(manifest))
        wait_for(
            lambda: sandbox.prometheus is not None and sandbox.prometheus.query(wrong),
            300,
            "the canary's first failing scrape",
            every=0.2,
        )
        first_failure = time.monotonic()
        wait_for(
            lambda: (
                status(sandbox, namespace, "modelversion", "iris-v2").get("phase") == "RolledBack"
            ),
            300,
            "the rollback",
            every=0.2,
        )
        rolled_back = time.monotonic()
    finally:
        traffic.stop()
    seconds = rolled_back - first_failure
    return {"seconds": seconds, "intervals": seconds / interval}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--interval", type=int, default=5, help="analysis interval, seconds")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--write-docs", type=Path, help="replace this section of the file")
    args = parser.parse_args()
    runs = []
    with Sandbox(scrape_interval="1s") as sandbox:
        for i in range(args.runs):
            run = one_run(sandbox, f"bench-rollback-{i}", args.interval)
            print(
                f"run {i + 1}: {run['seconds']:.1f}s = {run['intervals']:.2f} intervals", flush=True
            )
            runs.append(run)
    intervals = [r["intervals"] for r in runs]
    lines = [
        SECTION,
        "",
        f"From a bad canary's first failing scrape (a wrong answer in its feedback counters in "
        f"Prometheus) to its version being RolledBack; `threshold: 2`, analysis interval "
        f"{args.interval} s, Prometheus scraping every 1 s, {args.runs} runs in the sandbox:",
        "",
        "| run | seconds | analysis intervals |",
        "| ---: | ---: | ---: |",
        *(f"| {i + 1} | {r['seconds']:.1f} | {r['intervals']:.2f} |" for i, r in enumerate(runs)),
        "",
        f"Median {statistics.median(intervals):.2f} intervals. Two failed analyses are needed "
        "(the threshold), one interval apart, and the first comes one interval after the canary "
        "starts and at the next aligned pass; so the floor is between one and two intervals "
        "after the first failing scrape, and about three is the most a run should take.",
        "",
        "```sh",
        f".venv/bin/python bench/canary_rollback.py --interval {args.interval} "
        f"--runs {args.runs} --write-docs docs/benchmarks.md",
        "```",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write_docs:
        write_section(args.write_docs, SECTION, text)


if __name__ == "__main__":
    main()
