"""What monitoring costs the serving runtime: /predict with MODELOPS_MONITORING on against off.

    .venv/bin/python bench/serving_overhead.py [--seconds 6] [--rounds 5] [--connections 4]

Trains a small model with `modelops train` (builtin iris, logistic regression: a cheap model, so
the monitoring share of each request is as large as it gets), starts two `bentoml serve` processes
on 127.0.0.1 from the same archive — one with monitoring, one without, one worker each, their own
BENTOML_HOME — and drives each with `wrk` (a separate process; Debian package `wrk`) for single
rows and for batches of 100, alternating on and off within each round so both see the same machine.
Prints requests per second and p50/p99 latency per case (median over rounds) and the throughput
overhead, as a Markdown table, and writes the raw numbers as JSON next to it (--out).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from modelops_sandbox.processes import stop_group

BIN = Path(sys.executable).parent
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
BODIES = 64


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def train(work: Path) -> str:
    spec = work / "spec.json"
    spec.write_text(
        json.dumps(
            {
                "dataset": {"uri": "builtin:iris", "target": "species"},
                "pipeline": {"scaling": "standard"},
                "estimator": {
                    "class": "sklearn.linear_model.LogisticRegression",
                    "params": {"max_iter": 500},
                },
                "validation": {"testSize": 0.2, "randomState": 42, "gates": {"accuracy": 0.8}},
            }
        )
    )
    done = subprocess.run(
        [
            str(BIN / "modelops"),
            "train",
            "--spec",
            str(spec),
            "--model",
            "iris",
            "--version",
            "iris-bench",
            "--artifacts",
            (work / "artifacts").as_uri(),
            "--result-file",
            str(work / "result.json"),
        ],
        env={**os.environ, "BENTOML_HOME": str(work / "train-home")},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"modelops train failed:\n{done.stderr[-2000:]}")
    return str(json.loads(done.stdout)["artifact"])


class Server:
    def __init__(self, work: Path, name: str, artifact: str, monitoring: str) -> None:
        self.port = free_port()
        self.log = work / f"{name}.log"
        home = work / f"home-{name}"
        home.mkdir()
        env = {
            **os.environ,
            "BENTOML_HOME": str(home),
            "BENTOML_DO_NOT_TRACK": "true",
            "MODELOPS_ARTIFACT": artifact,
            "MODELOPS_MODEL": "iris",
            "MODELOPS_VERSION": "iris-bench",
            "MODELOPS_TRACK": "stable",
            "MODELOPS_HOST": "127.0.0.1",
            "MODELOPS_MONITORING": monitoring,
        }
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                [
                    str(BIN / "bentoml"),
                    "serve",
                    "modelops_serving.service:ModelService",
                    "--port",
                    str(self.port),
                ],
                cwd=work,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, deadline: float = 120.0) -> None:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if self.process.poll() is not None:
                sys.exit(f"server exited:\n{self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        sys.exit(f"server not ready:\n{self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        stop_group(self.process, 20)


def lua_script(path: Path, batch: int, seed: int) -> None:
    """A wrk script cycling through BODIES request bodies of `batch` rows each."""
    rng = np.random.default_rng(seed)
    bodies = []
    for _ in range(BODIES):
        rows = rng.uniform([4.3, 2.0, 1.0, 0.1], [7.9, 4.4, 6.9, 2.5], (batch, 4)).round(1)
        bodies.append(json.dumps({"rows": rows.tolist()}))
    items = ",\n".join(f"[==[{b}]==]" for b in bodies)
    path.write_text(
        f"local bodies = {{\n{items}\n}}\n"
        "local i = 0\n"
        'local headers = {["Content-Type"] = "application/json"}\n'
        "request = function()\n"
        "  i = i % #bodies + 1\n"
        '  return wrk.format("POST", "/predict", headers, bodies[i])\n'
        "end\n"
    )


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"cannot read latency {text!r}")
    return float(m.group(1)) * UNITS[m.group(2)]


def run_wrk(url: str, script: Path, seconds: int, connections: int) -> dict[str, float]:
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(script),
            url + "/predict",
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        sys.exit(f"wrk saw errors:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=6, help="length of one wrk run")
    parser.add_argument("--rounds", type=int, default=5, help="on/off pairs per case")
    parser.add_argument("--connections", type=int, default=4, help="wrk connections")
    parser.add_argument("--out", type=Path, default=None, help="write raw results as JSON here")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian: apt-get install wrk)")

    work = Path(tempfile.mkdtemp(prefix="modelops-bench-"))
    servers: dict[str, Server] = {}
    load_before = os.getloadavg()
    try:
        artifact = train(work)
        servers = {m: Server(work, m, artifact, m) for m in ("on", "off")}
        for server in servers.values():
            server.wait_ready()
        results: dict[str, dict[str, list[dict[str, float]]]] = {}
        for case, batch in (("1 row", 1), ("100 rows", 100)):
            script = work / f"batch{batch}.lua"
            lua_script(script, batch, seed=batch)
            for server in servers.values():  # warm up both
                run_wrk(server.url, script, 3, args.connections)
            results[case] = {"on": [], "off": []}
            for r in range(args.rounds):
                order = ("on", "off") if r % 2 == 0 else ("off", "on")
                for mode in order:
                    measured = run_wrk(servers[mode].url, script, args.seconds, args.connections)
                    results[case][mode].append(measured)
                    print(f"{case:>9} monitoring {mode:<3} round {r + 1}: {measured}", flush=True)
        metrics_text = urllib.request.urlopen(servers["on"].url + "/metrics").read().decode()
    finally:
        for server in servers.values():
            server.stop()
    load_after = os.getloadavg()

    rows = []
    summary: dict[str, Any] = {}
    for case, modes in results.items():
        med = {
            mode: {k: statistics.median(m[k] for m in runs) for k in ("rps", "p50_ms", "p99_ms")}
            for mode, runs in modes.items()
        }
        overhead = 100.0 * (1.0 - med["on"]["rps"] / med["off"]["rps"])
        summary[case] = {**med, "throughput_overhead_pct": overhead}
        for mode in ("off", "on"):
            m = med[mode]
            rows.append(
                f"| {case} | {mode} | {m['rps']:.0f} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} | "
                + (f"{overhead:.1f}% |" if mode == "on" else "|")
            )
    counted = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics_text.splitlines()
        if line.startswith("modelops_prediction_class_total{")
    )
    print()
    print(
        f"wrk -t1 -c{args.connections}, {args.seconds}s per run, {args.rounds} rounds per case "
        f"(median), one worker per server, {os.cpu_count()} CPUs; load average before "
        f"{load_before[0]:.2f}, after {load_after[0]:.2f}; the monitored server counted "
        f"{counted:.0f} predicted rows"
    )
    print()
    print("| request | monitoring | requests/s | p50 ms | p99 ms | throughput overhead |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    print("\n".join(rows))
    if args.out:
        args.out.write_text(
            json.dumps(
                {"summary": summary, "runs": results, "load": [load_before, load_after]},
                indent=2,
            )
        )
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
