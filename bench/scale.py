"""A thousand Models on one operator: time to Serving, memory, CPU and API requests, side by side
with a minimal Kopf operator that creates the same objects (bench/baseline_operator.py).

    .venv/bin/python bench/scale.py [--models 10,100,1000] [--operators baseline,modelops]
        [--settle 30] [--window 180] [--write-docs docs/benchmarks.md]

Each run (one operator, one N) gets a fresh real control plane (the sandbox's Go builds, with an
audit log of the operator's requests), a real Prometheus, and one simulated kubelet
(bench/simkubelet.py: a Node whose pods run nothing; training pods report success at once, serving
pods report Ready). The operator runs as a process with a ServiceAccount token of its own, so the
audit log tells its requests apart from everyone else's. N Models (examples/iris.yaml with one
replica, monitored for error rate, latency and accuracy) are created by four client threads; the
clock runs from the first create until every Model's phase is Serving. After `--settle` seconds the
steady state is measured over `--window` seconds: the operator's CPU time and resident memory
(from /proc) and its API requests by verb and resource (from the audit log). Nothing changes in that
window, so a Model's status should not be written at all.

`--count-events` also counts the watch events each operator's watches receive during the rollout
(the kinds and label selectors of its handlers), through watches of the bench's own: they load the
API server too, so a run that counts is not one to time.

Drift is not among the checks: its reference is read from a serving pod's /metadata, which the
simulated pods do not serve.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import functools
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from benchdocs import write_section
from kubernetes import client, config
from prometheus_client.parser import text_string_to_metric_families
from simkubelet import SimulatedKubelet, watch_json

from modelops_api import contract
from modelops_operator.runtime.controller import TRAINING_PODS
from modelops_sandbox import audit
from modelops_sandbox.controlplane import ControlPlane
from modelops_sandbox.operatorproc import OperatorProcess
from modelops_sandbox.processes import log_tail
from modelops_sandbox.prometheus import PrometheusServer

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## Scale: a thousand Models on one operator"
NAMESPACE = "scale"
SYSTEM = "modelops-bench"
ACCOUNT = "operator"
USER = f"system:serviceaccount:{SYSTEM}:{ACCOUNT}"
TICKS = os.sysconf("SC_CLK_TCK")


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def model_template() -> dict[str, Any]:
    """examples/iris.yaml with one replica, monitored without drift."""
    body: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "iris.yaml").read_text())
    body["spec"]["serving"]["replicas"] = 1
    monitoring = body["spec"]["monitoring"]
    monitoring["checks"].pop("drift")
    monitoring["retrainOn"] = ["accuracy"]
    return body


def operator_kubeconfig(cp: ControlPlane) -> Path:
    """A kubeconfig with a token of the operator's own ServiceAccount (cluster-admin)."""
    cp.kubectl_run("create", "namespace", SYSTEM)
    cp.kubectl_run("create", "serviceaccount", ACCOUNT, "-n", SYSTEM)
    cp.kubectl_run(
        "create", "clusterrolebinding", "bench-operator", "--clusterrole=cluster-admin",
        f"--serviceaccount={SYSTEM}:{ACCOUNT}",
    )  # fmt: skip
    token = cp.kubectl_run("create", "token", ACCOUNT, "-n", SYSTEM, "--duration=24h").stdout
    admin = yaml.safe_load(cp.kubeconfig.read_text())
    admin["users"][0]["user"] = {"token": token.strip()}
    path = cp.directory / "operator.kubeconfig"
    path.write_text(yaml.safe_dump(admin))
    return path


def artifacts_claim(cp: ControlPlane) -> None:
    """The claim every training and serving pod mounts, bound to a volume (nothing is stored)."""
    volume = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": "scale-artifacts"},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteMany"],
            "storageClassName": "",
            "hostPath": {"path": str(cp.directory / "artifacts")},
            "claimRef": {"namespace": NAMESPACE, "name": "modelops-artifacts"},
        },
    }
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "modelops-artifacts", "namespace": NAMESPACE},
        "spec": {
            "accessModes": ["ReadWriteMany"],
            "storageClassName": "",
            "volumeName": "scale-artifacts",
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }
    manifest = cp.directory / "artifacts.json"
    manifest.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [volume, claim]}))
    cp.kubectl_run("apply", "-f", str(manifest))


@dataclass
class Sampler:
    """CPU seconds and resident memory of one process, from /proc."""

    pid: int
    rss: list[float] = field(default_factory=list)

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def sample(self) -> float:
        value = self.rss_mb()
        self.rss.append(value)
        return value


AFTER_SERVING = "after Serving"


def audit_counts(
    log: Path, windows: dict[str, tuple[float, float]], serving_at: dict[str, float]
) -> dict[str, collections.Counter[str]]:
    """The operator's requests received in each [since, until) window, as
    `verb resource[/subresource]`, and under AFTER_SERVING those on a Model (its status, mostly)
    made after that Model was seen Serving (`serving_at`); the log is read once."""
    counts: dict[str, collections.Counter[str]] = {w: collections.Counter() for w in windows}
    counts[AFTER_SERVING] = collections.Counter()
    rollout = windows["rollout"]
    for event in audit.events(log):
        at = datetime.datetime.fromisoformat(event["requestReceivedTimestamp"]).timestamp()
        ref = event.get("objectRef") or {}
        what = ref.get("resource", event.get("requestURI", "?"))
        if ref.get("subresource"):
            what += "/" + ref["subresource"]
        for window, (since, until) in windows.items():
            if since <= at < until:
                counts[window][f"{event['verb']} {what}"] += 1
        served = serving_at.get(ref.get("name", "")) if ref.get("resource") == "models" else None
        if served is not None and served <= at and rollout[0] <= at < rollout[1]:
            counts[AFTER_SERVING][f"{event['verb']} {what}"] += 1
    return counts


@contextmanager
def operator(
    kind: str, kubeconfig: Path, prometheus: str, log: Path
) -> Iterator[OperatorProcess]:
    """Runs the operator under test; yields it once its liveness endpoint answers."""
    env = {"MODELOPS_PROMETHEUS_URL": prometheus}
    process = OperatorProcess(kubeconfig, [], log, env)
    if kind == "baseline":
        process.command = [sys.executable, str(ROOT / "bench" / "baseline_operator.py")]
    process.start()
    try:
        process.wait_ready()
        assert process.process is not None
        yield process
    finally:
        process.stop()


def reconcile_passes(metrics_port: int) -> float:
    """The reconcile passes the operator has run so far, from its own metrics
    (modelops_operator_reconcile_total, every result)."""
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "modelops_operator_reconcile_total"
    )


def create_models(api_client: client.ApiClient, n: int) -> None:
    objects = client.CustomObjectsApi(api_client)
    template = model_template()

    def create(i: int) -> None:
        body = {**template, "metadata": {"name": f"model-{i:04d}", "namespace": NAMESPACE}}
        objects.create_namespaced_custom_object(
            "modelops.dev", "v1alpha1", NAMESPACE, "models", body
        )

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(create, range(n)))


class Phases:
    """Each Model's phase, from a watch: listing a thousand Models every poll would load the API
    server more than the operator under test does."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.by_name: dict[str, str] = {}
        self.serving_at: dict[str, float] = {}  # when each Model was first seen Serving
        self._stop = threading.Event()
        objects = client.CustomObjectsApi(api_client)
        lister = functools.partial(
            objects.list_namespaced_custom_object, "modelops.dev", "v1alpha1", NAMESPACE, "models"
        )
        thread = threading.Thread(
            target=watch_json, args=(lister, self._seen, self._stop), daemon=True
        )
        thread.start()

    def _seen(self, type: str, model: dict[str, Any]) -> None:
        name = model["metadata"]["name"]
        if type == "DELETED":
            self.by_name.pop(name, None)
        else:
            phase = (model.get("status") or {}).get("phase") or "-"
            self.by_name[name] = phase
            if phase == "Serving":
                self.serving_at.setdefault(name, time.time())

    def counts(self) -> collections.Counter[str]:
        return collections.Counter(self.by_name.values())

    def stop(self) -> None:
        self._stop.set()


def _selector(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in labels.items())


def watched(kind: str, api_client: client.ApiClient) -> dict[str, functools.partial[Any]]:
    """The namespace's listers of what each operator's handlers watch, with their selectors:
    modelops' (operator/modelops_operator/handlers.py) and the baseline's."""
    objects = client.CustomObjectsApi(api_client)
    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    batch = client.BatchV1Api(api_client)
    managed = _selector(contract.MANAGED)
    ours = functools.partial(
        objects.list_namespaced_custom_object, contract.GROUP, contract.VERSION
    )
    listers: dict[str, functools.partial[Any]] = {
        "Model": functools.partial(ours, NAMESPACE, contract.MODELS),
        "Job": functools.partial(batch.list_namespaced_job, NAMESPACE, label_selector=managed),
        "Deployment": functools.partial(
            apps.list_namespaced_deployment, NAMESPACE, label_selector=managed
        ),
    }
    if kind == "modelops":
        autoscaling, policy = client.AutoscalingV2Api(api_client), client.PolicyV1Api(api_client)
        listers |= {
            "ModelVersion": functools.partial(ours, NAMESPACE, contract.MODEL_VERSIONS),
            "Pod": functools.partial(
                core.list_namespaced_pod, NAMESPACE, label_selector=_selector(TRAINING_PODS)
            ),
            "Service": functools.partial(
                core.list_namespaced_service, NAMESPACE, label_selector=managed
            ),
            "HorizontalPodAutoscaler": functools.partial(
                autoscaling.list_namespaced_horizontal_pod_autoscaler,
                NAMESPACE,
                label_selector=managed,
            ),
            "PodDisruptionBudget": functools.partial(
                policy.list_namespaced_pod_disruption_budget, NAMESPACE, label_selector=managed
            ),
        }
    return listers


class Events:
    """Counts, by kind, the watch events the operator under test receives, from watches of the
    same kinds and selectors started before the first Model is created."""

    def __init__(self, listers: dict[str, functools.partial[Any]]) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        for kind, lister in listers.items():
            self.counts[kind] = 0
            handle = functools.partial(self._seen, kind)
            threading.Thread(
                target=watch_json, args=(lister, handle, self._stop), daemon=True
            ).start()

    def _seen(self, kind: str, type: str, body: dict[str, Any]) -> None:
        with self._lock:
            self.counts[kind] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)

    def stop(self) -> None:
        self._stop.set()


def one_run(
    kind: str, n: int, settle: float, window: float, timeout: float, count_events: bool = False
) -> dict[str, Any]:
    say(f"== {kind}, {n} Models")
    with ExitStack() as stack:
        audit_dir = Path(tempfile.mkdtemp(prefix="modelops-scale-audit-"))
        stack.callback(shutil.rmtree, audit_dir, ignore_errors=True)
        audit_args, audit_log = audit.flags(audit_dir, users=[USER])
        cp = ControlPlane(progress=lambda line: None, apiserver_args=audit_args).start()
        stack.callback(cp.stop)
        cp.kubectl_run("apply", "--server-side", "-f", str(ROOT / "crds"))
        cp.kubectl_run("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        cp.kubectl_run("create", "namespace", NAMESPACE)
        artifacts_claim(cp)
        kubeconfig = operator_kubeconfig(cp)
        api_client = config.new_client_from_config(str(cp.kubeconfig))
        api_client.configuration.connection_pool_maxsize = 8
        kubelet = SimulatedKubelet(api_client).start()
        stack.callback(kubelet.stop)
        prometheus = PrometheusServer(cp.kubeconfig, scrape_interval="15s", progress=lambda _: None)
        stack.enter_context(prometheus)
        log = cp.directory / f"{kind}.log"
        process = stack.enter_context(operator(kind, kubeconfig, prometheus.url, log))
        assert process.process is not None
        sampler = Sampler(process.process.pid)

        others = {
            **{c.name: Sampler(c.popen.pid) for c in cp.processes},
            "prometheus": Sampler(prometheus.pid or 0),
            "bench (kubelet, clients)": Sampler(os.getpid()),
        }
        others_started = {name: s.cpu_seconds() for name, s in others.items()}
        phases = Phases(api_client)
        stack.callback(phases.stop)
        events = Events(watched(kind, api_client)) if count_events else None
        if events is not None:
            stack.callback(events.stop)
            time.sleep(2)  # the watches are open before the first create
        started, cpu_started = time.time(), sampler.cpu_seconds()
        create_models(api_client, n)
        created = time.time() - started
        say(f"  {n} Models created in {created:.1f}s")
        last = 0.0
        while True:
            counts = phases.counts()
            elapsed = time.time() - started
            sampler.sample()
            if counts.get("Serving", 0) == n:
                break
            if elapsed > timeout:
                raise TimeoutError(
                    f"{kind}: after {timeout}s the phases are {dict(counts)}\n"
                    + cp.kubectl_run("get", "all", "-n", NAMESPACE, check=False).stdout[-3000:]
                    + f"\nthe operator's log ends:\n{log_tail(log, 40)}"
                )
            if elapsed - last >= 10:
                say(f"  {elapsed:5.1f}s {dict(sorted(counts.items()))}")
                last = elapsed
            time.sleep(0.5)
        serving = time.time() - started
        rollout_cpu = sampler.cpu_seconds() - cpu_started
        passes = reconcile_passes(process.metrics_port) if kind == "modelops" else None
        rollout_events = events.snapshot() if events is not None else None
        components = {n: round(s.cpu_seconds() - others_started[n], 1) for n, s in others.items()}
        say(f"  all {n} Serving after {serving:.1f}s; settling {settle:.0f}s")
        time.sleep(settle)

        say(f"  steady state: measuring for {window:.0f}s")
        begin, cpu_before = time.time(), sampler.cpu_seconds()
        sampler.rss.clear()
        while time.time() - begin < window:
            sampler.sample()
            time.sleep(5)
        end, cpu_after = time.time(), sampler.cpu_seconds()
        if phases.counts().get("Serving", 0) != n:
            raise RuntimeError(f"{kind}: Models left Serving during the steady state; see {log}")
        time.sleep(2)  # the audit log is written in batches
        counted = audit_counts(
            audit_log,
            {"steady": (begin, end), "rollout": (started, started + serving)},
            phases.serving_at,
        )
        steady, rollout, after = counted["steady"], counted["rollout"], counted[AFTER_SERVING]
        minutes = (end - begin) / 60
        result = {
            "operator": kind,
            "models": n,
            "settle_seconds": settle,
            "window_seconds": window,
            "create_seconds": round(created, 1),
            "serving_seconds": round(serving, 1),
            "rollout_requests_per_model": round(sum(rollout.values()) / n, 1),
            "rollout_requests_per_model_until_serving": round(
                (sum(rollout.values()) - sum(after.values())) / n, 1
            ),
            "rollout_cpu_seconds": round(rollout_cpu, 1),
            "steady_requests_per_model_minute": round(sum(steady.values()) / n / minutes, 3),
            "steady_status_writes": sum(v for k, v in steady.items() if k.endswith("/status")),
            "steady_cpu_percent": round(100 * (cpu_after - cpu_before) / (end - begin), 1),
            "rss_mb": round(max(sampler.rss), 1),
            "rollout_cpu_by_component": components,
            "steady_requests": dict(steady.most_common()),
            "rollout_requests": dict(rollout.most_common()),
            "rollout_requests_after_serving": dict(after.most_common()),
        }
        if passes is not None:
            result["rollout_passes_per_model"] = round(passes / n, 2)
        if rollout_events is not None:
            result["rollout_events_per_model"] = {
                k: round(v / n, 2) for k, v in rollout_events.items()
            }
        say("  " + json.dumps({k: v for k, v in result.items() if "requests" not in k}))
        say(f"  steady requests: {dict(steady.most_common(8))}")
        say(f"  CPU seconds during the rollout: {components}")
        return result


def ratio(ours: float, base: float) -> str:
    return f"{ours / base:.2f}x" if base else "-"


def table(results: list[dict[str, Any]]) -> str:
    rows = [
        "| Models | operator | to Serving | requests per Model (rollout) | of which until its "
        "Serving | CPU s (rollout) | RSS MB | steady requests / Model / min | steady CPU % "
        "| steady status writes |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        if "timeout" in r:
            rows.append(f"| {r['models']} | {r['operator']} | not all after {r['timeout']:.0f} s |")
            continue
        rows.append(
            f"| {r['models']} | {r['operator']} | {r['serving_seconds']:.1f} s "
            f"| {r['rollout_requests_per_model']} "
            f"| {r.get('rollout_requests_per_model_until_serving', '')} "
            f"| {r['rollout_cpu_seconds']} | {r['rss_mb']} "
            f"| {r['steady_requests_per_model_minute']} | {r['steady_cpu_percent']} "
            f"| {r['steady_status_writes']} |"
        )
    return "\n".join(rows)


def ratios(results: list[dict[str, Any]]) -> str:
    by = {(r["operator"], r["models"]): r for r in results}
    rows = [
        "| Models | to Serving | requests (rollout) | CPU (rollout) | RSS |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for n in sorted({r["models"] for r in results}):
        ours, base = by.get(("modelops", n)), by.get(("baseline", n))
        if ours is None or base is None or "timeout" in ours or "timeout" in base:
            continue
        rows.append(
            f"| {n} | {ratio(ours['serving_seconds'], base['serving_seconds'])} "
            f"| {ratio(ours['rollout_requests_per_model'], base['rollout_requests_per_model'])} "
            f"| {ratio(ours['rollout_cpu_seconds'], base['rollout_cpu_seconds'])} "
            f"| {ratio(ours['rss_mb'], base['rss_mb'])} |"
        )
    return "\n".join(rows)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="10,100,1000")
    parser.add_argument("--operators", default="baseline,modelops")
    parser.add_argument("--settle", type=float, default=30)
    parser.add_argument("--window", type=float, default=180)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument(
        "--count-events",
        action="store_true",
        help="also count the watch events each operator receives (loads the API server more)",
    )
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--write-docs", type=Path)
    parser.add_argument(
        "--from-json", type=Path, help="render the tables (and docs) of an earlier run's --json"
    )
    args = parser.parse_args(argv)
    # A stopped run cleans up like a finished one: SIGTERM unwinds the ExitStack of one_run.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results = json.loads(args.from_json.read_text()) if args.from_json else []
    for n in () if args.from_json else (int(x) for x in args.models.split(",")):
        for kind in args.operators.split(","):
            try:
                results.append(
                    one_run(kind, n, args.settle, args.window, args.timeout, args.count_events)
                )
            except TimeoutError as error:  # a row that says so, and the other runs still run
                say(str(error))
                results.append({"operator": kind, "models": n, "timeout": args.timeout})
    print(table(results))
    print()
    print(ratios(results))
    if counted(results):
        print()
        print(events_table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if args.write_docs:
        write_section(args.write_docs, SECTION, docs(results, args))
    return 0


def counted(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs that counted their watch events (--count-events)."""
    return [r for r in results if "rollout_events_per_model" in r]


def events_table(results: list[dict[str, Any]]) -> str:
    """Watch events per Model during the rollout, by kind, for the runs that counted them."""
    rows = counted(results)
    kinds = list(dict.fromkeys(k for r in rows for k in r["rollout_events_per_model"]))
    lines = [
        "| Models | operator | " + " | ".join(kinds) + " | all |",
        "| ---: | --- |" + " ---: |" * (len(kinds) + 1),
    ]
    for r in rows:
        per_model = r["rollout_events_per_model"]
        cells = [f"{per_model[k]:.2f}" if k in per_model else "(not watched)" for k in kinds]
        total = sum(per_model.values())
        lines.append(
            f"| {r['models']} | {r['operator']} | " + " | ".join(cells) + f" | {total:.2f} |"
        )
    return "\n".join(lines)


def components(results: list[dict[str, Any]]) -> str:
    """CPU seconds of every process during the rollout: what paces it on a small machine."""
    rows = [r for r in results if "rollout_cpu_by_component" in r]
    names = list(rows[0]["rollout_cpu_by_component"]) if rows else []
    lines = [
        "| Models | operator | operator CPU s | " + " | ".join(names) + " |",
        "| ---: | --- | ---: |" + " ---: |" * len(names),
    ]
    for r in rows:
        cpu = r["rollout_cpu_by_component"]
        lines.append(
            f"| {r['models']} | {r['operator']} | {r['rollout_cpu_seconds']} | "
            + " | ".join(str(cpu.get(n, "")) for n in names)
            + " |"
        )
    return "\n".join(lines)


OPERATORS = {"baseline", "modelops"}


def compared(results: list[dict[str, Any]]) -> int:
    """The largest N that both operators ran (else the largest N): where they are compared."""
    sizes = {r["models"] for r in results if "timeout" not in r}
    both = [n for n in sizes if {r["operator"] for r in results if r["models"] == n} >= OPERATORS]
    return max(both or sizes, default=0)


def requests(results: list[dict[str, Any]]) -> str:
    """The rollout's requests per Model by verb and resource where the operators are compared
    (Events posted after the last Model reached Serving are not in the window)."""
    size = compared(results)
    rows = [r for r in results if r["models"] == size and "rollout_requests" in r]
    # the one list per kind that fills the store at start rounds to 0.00 per Model: left out
    kinds = sorted(
        {k for r in rows for k, v in r["rollout_requests"].items() if v / r["models"] >= 0.005}
    )
    lines = [
        "| operator | " + " | ".join(kinds) + " |",
        "| --- |" + " ---: |" * len(kinds),
    ]
    for r in rows:
        for label, counts in (
            (r["operator"], r["rollout_requests"]),
            (f"{r['operator']}, of which after the Model was Serving",
             r.get("rollout_requests_after_serving")),
        ):  # fmt: skip
            if counts:
                per_model = [counts.get(k, 0) / r["models"] for k in kinds]
                lines.append(f"| {label} | " + " | ".join(f"{v:.2f}" for v in per_model) + " |")
    return "\n".join(lines)


def docs(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    quiet = all(not r.get("steady_requests") for r in results if "timeout" not in r)
    steady = (
        "none, in every run: a Model whose state does not change costs no request."
        if quiet
        else "\n\n"
        + "\n".join(
            f"- {r['operator']}, {r['models']} Models: "
            + (", ".join(f"{k} {v}" for k, v in list(r["steady_requests"].items())[:8]) or "none")
            for r in results
            if "timeout" not in r
        )
    )
    settle, window = (
        measured(results, "settle_seconds", args.settle),
        measured(results, "window_seconds", args.window),
    )
    return f"""{SECTION}

`{command(results, settle, window)}` on {platform.machine()}, {os.cpu_count()} cores, Python
{platform.python_version()}; each row is a fresh control plane, a real Prometheus and the simulated
kubelet (bench/simkubelet.py), with the operator as a process of its own. "To Serving" runs from
the first create (the Models are created by four client threads, which is part of the time) until
every Model's phase is Serving; the requests are the operator's own, from the API server's audit
log; the steady state is {window:.0f} s after {settle:.0f} s of settling (longer than the
Models' 1-minute analysis interval), with nothing changing; RSS is the largest in that window.

{table(results)}

modelops ÷ baseline (the minimal Kopf operator of bench/baseline_operator.py, which creates the
same objects and sets the phase, and does nothing else):

{ratios(results)}

Where the requests go, per Model, at {compared(results)} Models:

{requests(results)}

Operator requests in the steady-state window: {steady}

CPU seconds of each process during the rollout (the machine has {os.cpu_count()} cores; every
process of the control plane runs on it):

{components(results)}
{counted_events(results)}
{targets(results)}
"""


def measured(results: list[dict[str, Any]], key: str, default: float) -> float:
    """A setting as the runs were made (an earlier run's --json keeps it), else the argument's."""
    return float(next((r[key] for r in results if key in r), default))


def command(results: list[dict[str, Any]], settle: float, window: float) -> str:
    """The command line that makes these runs, also when they are rendered from --from-json."""
    sizes = ",".join(str(n) for n in dict.fromkeys(r["models"] for r in results))
    kinds = list(dict.fromkeys(r["operator"] for r in results))
    line = f".venv/bin/python bench/scale.py --models {sizes}"
    if set(kinds) != OPERATORS:
        line += " --operators " + ",".join(kinds)
    line += f" --settle {settle:.0f} --window {window:.0f}"
    if counted(results):
        line += " --count-events"
    return line


def counted_events(results: list[dict[str, Any]]) -> str:
    if not counted(results):
        return ""
    return f"""
Watch events each operator received per Model during the rollout, by kind (counted by watches of
the bench's own with the same kinds and selectors, `--count-events`):

{events_table(results)}
"""


def targets(results: list[dict[str, Any]]) -> str:
    """The targets (set for a thousand Models) where the operators are compared, met or not."""
    size = compared(results)
    ours = [
        r
        for r in results
        if r["operator"] == "modelops" and "timeout" not in r and r["models"] == size
    ]
    if not ours:
        return "modelops did not bring every Model to Serving in time."
    r = ours[0]
    base = next(
        (b for b in results if b["operator"] == "baseline" and b["models"] == r["models"]), None
    )
    baseline = (
        f" (the baseline: {base['serving_seconds']:.0f} s)"
        if base and "timeout" not in base
        else ""
    )
    verdict = lambda ok: "met" if ok else "missed"  # noqa: E731
    compared_to_baseline = []
    if base and "timeout" not in base:
        times = r["serving_seconds"] / base["serving_seconds"]
        compared_to_baseline.append(
            f"- to Serving within 1.15x the baseline's time: {times:.2f}x, "
            f"{verdict(times <= 1.15)};"
        )
    until = r.get("rollout_requests_per_model_until_serving")
    each = f" ({until} until each Model was Serving)" if until is not None else ""
    compared_to_baseline.append(
        f"- at most 10 requests per Model in the rollout: {r['rollout_requests_per_model']}{each}, "
        f"{verdict(r['rollout_requests_per_model'] <= 10)};"
    )
    return "\n".join(
        [
            f"Targets at {r['models']} Models:",
            "",
            *compared_to_baseline,
            f"- every Model Serving in under 2 minutes: {r['serving_seconds']:.0f} s{baseline}, "
            f"{verdict(r['serving_seconds'] < 120)};",
            f"- steady-state operator memory under 300 MB: {r['rss_mb']:.0f} MB, "
            f"{verdict(r['rss_mb'] < 300)};",
            f"- no status writes when nothing changes: {r['steady_status_writes']}, "
            f"{verdict(r['steady_status_writes'] == 0)}.",
        ]
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
