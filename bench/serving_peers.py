"""Serving against its peers: one fitted scikit-learn model served by our runtime, MLServer and
KServe's model server, side by side on this machine.

    .venv/bin/python bench/serving_peers.py [--rounds 3] [--seconds 5] [--workers 4] [--rate 150]
        [--smoke] [--write-docs docs/benchmarks.md]
    .venv/bin/python bench/serving_peers.py --paired [--rounds 5] [--seconds 8] [--control]

`modelops train` fits iris (logistic regression behind the runtime's impute-and-scale
preprocessing) and archives it; the same `pipeline.pkl` is then served, one worker each, by:

- our runtime (`bentoml serve modelops_serving.service:ModelService`), monitoring on (the default:
  input histograms, prediction counts, a signed prediction id for feedback);
- our runtime with `MODELOPS_MONITORING=off`;
- MLServer with its scikit-learn runtime (`mlserver`, `mlserver-sklearn`, `parallel_workers: 0`),
  in a virtual environment of its own under ~/.cache/modelops/peers (its pins never touch ours);
- KServe's Python model server (`kserve`, which has no scikit-learn server on PyPI: a custom
  `kserve.Model` that loads the pickle, as KServe's sklearnserver does), in its own environment.

Both peers run with this project's package folders on their PYTHONPATH (no dependencies installed),
so that the pipeline's own transformer class can be unpickled. Every server answers the same rows
with predictions and class probabilities: ours in its `{"rows": ...}` body, the peers through the
Open Inference Protocol with named columns (MLServer's `pd` content type, which hands the pipeline
a DataFrame as ours does). The load comes from vegeta (hack/tools): closed loop (`--workers`
concurrent requests, each sent as soon as the last is answered) and fixed rate (`--rate` requests
per second). Each round visits every server in turn; the tables give the median of the rounds
with their range. Besides throughput and latency, each run measures the CPU time the server's
processes (the server and its descendants, from /proc) spent per request: on a shared machine the
throughput of a run moves with whatever else runs, its CPU per request much less. `--paired`
measures only what monitoring costs: our runtime with monitoring on and off under the same
closed-loop load at the same time, so that whatever else runs slows both alike; half its rounds
start the monitored server first, half the other, since the order leans the result (`--control`,
both unmonitored, shows by how much).
"""

from __future__ import annotations

import argparse
import base64
import csv
import io
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from benchdocs import write_section

from modelops_api import contract
from modelops_sandbox import tools
from modelops_sandbox.processes import spawn

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## Serving against its peers"
BIN = Path(sys.executable).parent
FEATURES = ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]
LOW, HIGH = [4.3, 2.0, 1.0, 0.1], [7.9, 4.4, 6.9, 2.5]
BODIES = 64
PEERS = {
    "mlserver": ["mlserver==1.7.1", "mlserver-sklearn==1.7.1", "pyyaml"],
    "kserve": ["kserve==0.21.0", "scikit-learn==1.9.1", "pyyaml"],
}
KSERVE_MODEL = """
import sys, uuid, joblib, kserve
from kserve import InferOutput, InferResponse

class Pipeline(kserve.Model):
    def __init__(self, name, path):
        super().__init__(name)
        self.model = joblib.load(path)
        self.ready = True

    def predict(self, payload, headers=None):
        frame = payload.as_dataframe()
        predictions = self.model.predict(frame)
        probabilities = self.model.predict_proba(frame)
        outputs = [
            InferOutput("predict", list(predictions.shape), "BYTES", [str(p) for p in predictions]),
            InferOutput("predict_proba", list(probabilities.shape), "FP64",
                        probabilities.ravel().tolist()),
        ]
        return InferResponse(payload.id or uuid.uuid4().hex, self.name, outputs)

if __name__ == "__main__":
    server = kserve.ModelServer(http_port=int(sys.argv[2]), grpc_port=int(sys.argv[3]),
                                workers=1, enable_grpc=False, enable_latency_logging=False)
    server.start([Pipeline("iris", sys.argv[1])])
"""


ABOUT = (
    "One fitted scikit-learn model (`modelops train` on iris: logistic regression behind the "
    "runtime's impute-and-scale preprocessing, the same `pipeline.pkl` for every server) served "
    "by our runtime with monitoring on and off, by MLServer's scikit-learn runtime and by KServe's "
    "model server, one worker each, each peer in a virtual environment of its own; every request "
    "asks for predictions and class probabilities (bench/serving_peers.py explains the setup). "
    "Measured in one run of:"
)


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def train(work: Path) -> Path:
    """The archive's pipeline.pkl, extracted next to it."""
    spec = work / "spec.json"
    spec.write_text(
        json.dumps(
            {
                "dataset": {"uri": "builtin:iris", "target": "species"},
                "pipeline": {"scaling": "standard", "cleaning": {"missing": "impute-median"}},
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
    archive = Path(json.loads(done.stdout)["artifact"].removeprefix("file://"))
    subprocess.run(["tar", "-xf", str(archive), "-C", str(work), "./pipeline.pkl"], check=True)
    return archive


def peer_environment(name: str) -> Path:
    """The peer's own virtual environment (made once); the project comes from `peer_env()`."""
    home = tools.cache_dir() / "peers" / name
    python = home / "bin" / "python"
    stamp = home / ".installed"
    wanted = " ".join(PEERS[name]) + " (the project on PYTHONPATH)"
    if not python.exists() or not stamp.exists() or stamp.read_text() != wanted:
        say(f"peers: installing {wanted} into {home} (about a minute, once)")
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(home)], check=True)
        pip = [str(python), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, *PEERS[name]], check=True)
        stamp.write_text(wanted)
    return home


def peer_env() -> dict[str, str]:
    """A peer's environment: ours, with the project's package folders on its path (always the
    current code, whatever the folder the peer's environment was made from)."""
    roots = [str(ROOT / folder) for folder in ("api", "training", "serving")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(roots)}


@dataclass
class Server:
    name: str
    url: str  # the endpoint that predicts
    ready: str  # the endpoint that says ready
    protocol: str  # "modelops" or "v2"
    root: int  # the server's process; its workers are its descendants


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(root: int) -> float:
    """User and system CPU time of a process and its live descendants, from /proc (BentoML's
    workers are its arbiter's children, in sessions of their own)."""
    parent, ticks = {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        pid = int(entry.name)
        parent[pid] = int(fields[1])
        ticks[pid] = int(fields[11]) + int(fields[12])  # utime and stime, in clock ticks
    total = 0
    for pid, spent in ticks.items():
        ancestor = pid
        while ancestor > 1 and ancestor != root:
            ancestor = parent.get(ancestor, 0)
        if ancestor == root:
            total += spent
    return total / TICKS


def _wait(url: str, process: Any, log: Path, seconds: float = 180.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not process.alive():
            sys.exit(f"{log.stem} exited:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    sys.exit(f"{log.stem} not ready in {seconds:.0f}s:\n{log.read_text()[-3000:]}")


@contextmanager
def ours(work: Path, archive: Path, monitoring: str, name: str = "") -> Iterator[Server]:
    """Our runtime with MODELOPS_MONITORING=`monitoring`, called `name` (else after it)."""
    name = name or "modelops, monitoring " + ("on" if monitoring == "on" else "off")
    port = free_port()
    label = "-".join("".join(c if c.isalnum() else " " for c in name).split())
    home = work / f"home-{label}"
    home.mkdir()
    credentials = work / "credentials"  # monitored answers carry a signed prediction id
    credentials.mkdir(exist_ok=True)
    (credentials / contract.CREDENTIAL_TOKEN).write_text("bench-token")
    (credentials / contract.CREDENTIAL_KEY).write_text("bench-signing-key")
    env = {
        **os.environ,
        "BENTOML_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "true",
        "MODELOPS_ARTIFACT": archive.as_uri(),
        "MODELOPS_MODEL": "iris",
        "MODELOPS_VERSION": "iris-bench",
        "MODELOPS_TRACK": "stable",
        "MODELOPS_HOST": "127.0.0.1",
        "MODELOPS_MONITORING": monitoring,
        contract.ENV_CREDENTIALS: str(credentials),
    }
    argv = [str(BIN / "bentoml"), *contract.SERVE_COMMAND[1:]]
    log = work / f"ours-{label}.log"
    process = spawn(log.stem, [*argv, "--port", str(port)], log, env=env, cwd=work)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(base + "/readyz", process, log)
        yield Server(name, base + "/predict", base + "/readyz", "modelops", process.popen.pid)
    finally:
        process.stop(20)


@contextmanager
def mlserver(work: Path) -> Iterator[Server]:
    env_dir = peer_environment("mlserver")
    root = work / "mlserver"
    (root / "iris").mkdir(parents=True)
    (root / "iris" / "pipeline.pkl").write_bytes((work / "pipeline.pkl").read_bytes())
    (root / "iris" / "model-settings.json").write_text(
        json.dumps(
            {
                "name": "iris",
                "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": "./pipeline.pkl", "version": "v1"},
            }
        )
    )
    port = free_port()
    (root / "settings.json").write_text(
        json.dumps(
            {
                "host": "127.0.0.1",
                "http_port": port,
                "grpc_port": free_port(),
                "metrics_port": free_port(),
                "parallel_workers": 0,
            }
        )
    )
    log = work / "mlserver.log"
    process = spawn(
        "mlserver",
        [str(env_dir / "bin" / "mlserver"), "start", str(root)],
        log,
        env=peer_env(),
        cwd=root,
    )
    base = f"http://127.0.0.1:{port}/v2/models/iris"
    try:
        _wait(base + "/ready", process, log)
        yield Server(
            "MLServer 1.7.1 (sklearn runtime)",
            base + "/infer",
            base + "/ready",
            "v2",
            process.popen.pid,
        )
    finally:
        process.stop(20)


@contextmanager
def kserve(work: Path) -> Iterator[Server]:
    env_dir = peer_environment("kserve")
    script = work / "kserve_model.py"
    script.write_text(KSERVE_MODEL)
    port = free_port()
    argv = [str(env_dir / "bin" / "python"), str(script), str(work / "pipeline.pkl")]
    log = work / "kserve.log"
    process = spawn("kserve", [*argv, str(port), str(free_port())], log, env=peer_env(), cwd=work)
    base = f"http://127.0.0.1:{port}/v2/models/iris"
    try:
        _wait(base + "/ready", process, log)
        yield Server(
            "KServe 0.21 model server", base + "/infer", base + "/ready", "v2", process.popen.pid
        )
    finally:
        process.stop(20)


def bodies(protocol: str, batch: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(BODIES):
        rows = rng.uniform(LOW, HIGH, (batch, len(FEATURES))).round(1)
        if protocol == "modelops":
            out.append(json.dumps({"rows": rows.tolist()}).encode())
            continue
        inputs = [
            {"name": name, "shape": [batch], "datatype": "FP64", "data": rows[:, j].tolist()}
            for j, name in enumerate(FEATURES)
        ]
        outputs = [{"name": "predict"}, {"name": "predict_proba"}]
        body = {"parameters": {"content_type": "pd"}, "inputs": inputs, "outputs": outputs}
        out.append(json.dumps(body).encode())
    return out


def targets(path: Path, server: Server, batch: int) -> Path:
    lines = [
        json.dumps(
            {
                "method": "POST",
                "url": server.url,
                "body": base64.b64encode(body).decode(),
                "header": {"Content-Type": ["application/json"]},
            }
        )
        for body in bodies(server.protocol, batch, seed=batch)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def attack(
    vegeta: Path, target_file: Path, seconds: float, workers: int, rate: int, warmup: float
) -> dict[str, Any]:
    """One vegeta run: closed loop with `workers` when `rate` is 0, else `rate` per second. The
    first `warmup` seconds, in which vegeta opens its connections (a bare BentoML service shows
    100-200 ms there too), are run but not counted."""
    pacing = (
        ["-rate=0", f"-max-workers={workers}", f"-workers={workers}"]
        if rate == 0
        else [f"-rate={rate}/s", f"-workers={workers}"]
    )
    raw = subprocess.run(
        [
            str(vegeta),
            "attack",
            "-format=json",
            f"-targets={target_file}",
            f"-duration={seconds + warmup}s",
            "-keepalive=true",
            *pacing,
        ],
        capture_output=True,
        check=True,
        timeout=seconds + warmup + 120,
    ).stdout
    encoded = subprocess.run(
        [str(vegeta), "encode", "--to=csv"], input=raw, capture_output=True, check=True
    ).stdout.decode()
    results = [(int(r[0]), r[1], int(r[2])) for r in csv.reader(io.StringIO(encoded)) if r]
    start = min(sent for sent, _, _ in results) + int(warmup * 1e9)
    counted = [(sent, code, latency) for sent, code, latency in results if sent >= start]
    ok = [latency for _, code, latency in counted if code == "200"]
    end = max(sent + latency for sent, _, latency in counted)
    latencies = np.array(ok or [0], dtype=float) / 1e6
    return {
        "rps": len(ok) / ((end - start) / 1e9),
        "p50_ms": float(np.percentile(latencies, 50)),
        "p99_ms": float(np.percentile(latencies, 99)),
        "success": len(ok) / max(len(counted), 1),
        "errors": dict(Counter(code for _, code, _ in counted if code != "200")),
        "sent": len(results),  # warm-up included, as in the server's CPU time
    }


def paired(
    vegeta: Path, servers: list[Server], files: dict[tuple[str, int], Path], batch: int, args: Any
) -> list[dict[str, Any]]:
    """One closed-loop run of each server, all at the same time; with their CPU per request."""
    runs: dict[str, dict[str, Any]] = {}
    before = {s.name: cpu_seconds(s.root) for s in servers}

    def load(server: Server) -> None:
        target = files[(server.name, batch)]
        runs[server.name] = attack(vegeta, target, args.seconds, args.workers, 0, args.warmup)

    threads = [threading.Thread(target=load, args=(s,)) for s in servers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for s in servers:
        spent = cpu_seconds(s.root) - before[s.name]
        runs[s.name]["cpu_ms"] = spent * 1e3 / max(runs[s.name]["sent"], 1)
    return [runs[s.name] for s in servers]


def prepared(
    vegeta: Path, folder: Path, servers: list[Server], warmup: float
) -> dict[tuple[str, int], Path]:
    """Each server's target files for 1 and 100 rows, once each server has been warmed up (in
    the order given) with a second of single rows."""
    files = {
        (s.name, batch): targets(folder / f"t{i}-{batch}.json", s, batch)
        for i, s in enumerate(servers)
        for batch in (1, 100)
    }
    for server in servers:
        attack(vegeta, files[(server.name, 1)], 1, 4, 0, warmup)
    return files


Pairs = dict[int, list[tuple[dict[str, Any], dict[str, Any]]]]  # rows -> (A's run, B's) by round


def paired_rounds(work: Path, archive: Path, vegeta: Path, args: Any) -> Pairs:
    """`args.rounds` paired rounds of A (monitoring on; with `args.control`, off too) and B
    (monitoring off) for 1 and 100 rows. The first half of the rounds runs against servers started
    A first, the second half against servers started B first: of two identical servers, the one
    started first answered some 5 % less here, for a reason not found (`--control` measures it),
    so that each order is half the rounds and the medians do not lean with it."""
    a = ("off", "modelops, monitoring off (A)") if args.control else ("on", "")
    b = ("off", "modelops, monitoring off (B)") if args.control else ("off", "")
    pairs: Pairs = {}
    first_half = (args.rounds + 1) // 2
    for half, order in enumerate([(a, b), (b, a)]):
        rounds = range(first_half) if half == 0 else range(first_half, args.rounds)
        if not rounds:
            continue
        with ExitStack() as stack:
            folder = work / f"paired-{half}"
            folder.mkdir()
            started = [stack.enter_context(ours(folder, archive, m, n)) for m, n in order]
            servers = started if half == 0 else started[::-1]  # always [A, B]
            say(f"servers started {started[0].name} first: " + ", ".join(s.name for s in servers))
            files = prepared(vegeta, folder, started, args.warmup)
            for r in rounds:
                for batch in (1, 100):
                    one, other = paired(vegeta, servers, files, batch, args)
                    pairs.setdefault(batch, []).append((one, other))
                    say(f"round {r + 1} paired / {batch} rows: A {one}, B {other}")
    return pairs


def paired_table(results: Pairs, control: bool) -> list[str]:
    a, b = ("A", "B") if control else ("monitored", "unmonitored")
    rows = [
        f"| request | {a} req/s | {b} req/s | {a} ÷ {b} | CPU per request, {a} ÷ {b} |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for batch, runs in results.items():
        rows.append(
            f"| {batch} row{'s' if batch > 1 else ''} | {spread([on['rps'] for on, _ in runs])} | "
            f"{spread([off['rps'] for _, off in runs])} | "
            f"{spread([on['rps'] / off['rps'] for on, off in runs], 2)} | "
            f"{spread([on['cpu_ms'] / off['cpu_ms'] for on, off in runs], 2)} |"
        )
    return rows


def spread(values: list[float], digits: int = 0) -> str:
    med, lo, hi = statistics.median(values), min(values), max(values)
    if len(values) == 1:
        return f"{med:.{digits}f}"
    return f"{med:.{digits}f} ({lo:.{digits}f} to {hi:.{digits}f})"


def table(results: dict[str, dict[str, list[dict[str, Any]]]], names: list[str]) -> list[str]:
    rows = [
        "| load | request | server | requests/s | p50 ms | p99 ms | CPU ms per request |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for case, by_server in results.items():
        load, request = case.split(" / ")
        for name in names:
            runs = by_server.get(name) or []
            if not runs:
                continue
            rows.append(
                f"| {load} | {request} | {name} | {spread([r['rps'] for r in runs])} | "
                f"{spread([r['p50_ms'] for r in runs], 1)} | "
                f"{spread([r['p99_ms'] for r in runs], 1)} | "
                f"{spread([r['cpu_ms'] for r in runs], 2)} |"
            )
    return rows


def ratios(results: dict[str, dict[str, list[dict[str, Any]]]], names: list[str]) -> list[str]:
    """Each ratio is taken within a round, between two runs made one after the other (the rounds
    visit the servers in turn), so that a change of the machine's speed between rounds cancels
    out; the median of the rounds' ratios, with their range."""
    on, off, peer = names[0], names[1], names[2]
    rows = [
        f"| load | request | monitored ÷ {peer.split(' (')[0]} | monitored ÷ unmonitored "
        "| CPU per request, monitored ÷ unmonitored |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for case, by_server in results.items():
        if case.startswith("fixed"):
            continue  # at a fixed rate every server keeps up: throughput says nothing
        load, request = case.split(" / ")
        rows.append(
            f"| {load} | {request} | {per_round(by_server[on], by_server[peer], 'rps')} | "
            f"{per_round(by_server[on], by_server[off], 'rps')} | "
            f"{per_round(by_server[on], by_server[off], 'cpu_ms')} |"
        )
    return rows


def per_round(runs: list[dict[str, Any]], others: list[dict[str, Any]], key: str) -> str:
    """`key` of each run over the same round's run of the other server: median (range)."""
    return spread([run[key] / other[key] for run, other in zip(runs, others, strict=True)], 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="measured length of a run")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds run first, not counted")
    parser.add_argument("--workers", type=int, default=4, help="concurrent requests (closed loop)")
    parser.add_argument("--rate", type=int, default=150, help="requests per second (fixed rate)")
    parser.add_argument("--peers", default="mlserver,kserve", help="peers to include")
    parser.add_argument("--smoke", action="store_true", help="short rounds, to check it runs")
    parser.add_argument("--write-docs", type=Path, help="update this benchmarks page")
    parser.add_argument("--json", type=Path, help="write the raw runs here")
    parser.add_argument(
        "--paired", action="store_true", help="only monitoring on against off, at the same time"
    )
    parser.add_argument(
        "--control",
        action="store_true",
        help="with --paired: both servers unmonitored, to see what the pairing itself leans",
    )
    args = parser.parse_args(argv)
    if args.smoke:  # one short round (with --paired, one per start order)
        args.rounds, args.seconds, args.warmup = 2 if args.paired else 1, 1.0, 0.5
    vegeta = tools.ensure("vegeta")["vegeta"]
    peers: dict[str, Callable[[Path], Any]] = {"mlserver": mlserver, "kserve": kserve}
    load_before = os.getloadavg()
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="modelops-peers-")))
        archive = train(work)
        if args.paired:
            pairs = paired_rounds(work, archive, vegeta, args)
            load_after = os.getloadavg()
            what = (
                "A and B both unmonitored (`--control`): what the pairing itself leans"
                if args.control
                else "monitored and unmonitored"
            )
            print(
                f"`.venv/bin/python bench/serving_peers.py --paired --rounds {args.rounds} "
                f"--seconds {args.seconds:g} --workers {args.workers}"
                f"{' --control' if args.control else ''}`: {what}; {args.workers} concurrent "
                f"requests to each, at the same time; load average {load_before[0]:.2f} before, "
                f"{load_after[0]:.2f} after. Median of the rounds (range in brackets).\n"
            )
            print("\n".join(paired_table(pairs, args.control)))
            return 0
        servers = [
            stack.enter_context(ours(work, archive, "on")),
            stack.enter_context(ours(work, archive, "off")),
        ]
        for peer in filter(None, args.peers.split(",")):
            servers.append(stack.enter_context(peers[peer](work)))
        names = [s.name for s in servers]
        say("servers ready: " + ", ".join(names))
        cases = [
            (f"closed loop, {args.workers} workers", args.workers, 0),
            (f"fixed {args.rate}/s", args.workers * 4, args.rate),
        ]
        files = prepared(vegeta, work, servers, args.warmup)
        for r in range(args.rounds):
            for load, workers, rate in cases:
                for batch in (1, 100):
                    case = f"{load} / {batch} row{'s' if batch > 1 else ''}"
                    order = servers if r % 2 == 0 else servers[::-1]
                    for server in order:
                        target = files[(server.name, batch)]
                        cpu_before = cpu_seconds(server.root)
                        run = attack(vegeta, target, args.seconds, workers, rate, args.warmup)
                        spent = cpu_seconds(server.root) - cpu_before
                        run["cpu_ms"] = spent * 1e3 / max(run["sent"], 1)
                        results.setdefault(case, {}).setdefault(server.name, []).append(run)
                        say(f"round {r + 1} {case} {server.name}: {run}")
    load_after = os.getloadavg()
    failures = [
        f"{case} {name}: {run['errors']}"
        for case, by_server in results.items()
        for name, runs in by_server.items()
        for run in runs
        if run["success"] < 1.0
    ]
    lines = [
        SECTION,
        "",
        ABOUT,
        "",
        f"`.venv/bin/python bench/serving_peers.py --rounds {args.rounds} --seconds "
        f"{args.seconds:g} --workers {args.workers} --rate {args.rate}` on {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}; one worker per server; "
        f"{args.warmup:g} s of each run not counted (vegeta opening its connections); load "
        f"average {load_before[0]:.2f} before, {load_after[0]:.2f} after. Median of the rounds "
        "(range in brackets). Every request answered 200"
        + (f", except: {'; '.join(failures)}" if failures else "")
        + ".",
        "",
        *table(results, names),
        "",
        *ratios(results, names),
        "",
        "- The peers hand the pipeline a pandas DataFrame built from the request's named columns "
        "(MLServer's `pd` content type), as our runtime did before it scored with NumPy blocks; "
        "most of their time per request is scikit-learn's dispatch around that one-row frame. "
        "Served a bare estimator and a NumPy tensor instead, MLServer answers several hundred "
        "single-row requests a second here; a model of `modelops train` always carries its "
        "preprocessing, and that is what is compared.",
        "- At a fixed rate every server that keeps up answers the rate; latency is what differs.",
        "- CPU ms per request: the CPU time of the server's processes over the requests of the "
        "run. On a shared machine the throughput of one 5-second run moves with whatever else "
        "runs (the ranges above), and so do the throughput ratios; the CPU per request moves "
        "less, and its ratio is the better measure of what monitoring costs.",
        "- Monitoring's own cost per request, measured in process (the fastest of many trials): "
        "23 µs for one row, 86 µs for 100 rows (`.venv/bin/python bench/serving_record_cost.py`; "
        'docs/serving.md, "Monitoring cost", says what it does).',
    ]
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps({"results": results, "names": names}, indent=1))
    if args.write_docs and not args.smoke:
        write_section(args.write_docs, SECTION, "\n".join(lines))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
