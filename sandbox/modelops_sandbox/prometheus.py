"""A real Prometheus that finds pods through Kubernetes service discovery, as a cluster's would.

The binary is the Go-built one of `hack/tools` (tags `remove_all_sd,enable_kubernetes_sd`: Debian's
package has no Kubernetes discovery). It watches the pods of the API server named by a kubeconfig
and scrapes every Running pod that carries the scrape annotations (`scrape_config` below is the
contract; docs/sandbox.md explains it). It listens on a free port of `address` (127.0.0.1; the
sandbox uses the node's bridge address, so that the operator's pod reaches it), keeps its config and
TSDB in one temporary directory, runs in its own process group that dies with its parent, and
leaves no process, port or directory after `stop()`.

    with PrometheusServer(cp.kubeconfig, scrape_interval="1s") as prom:
        prom.query('sum by (model) (bentoml_service_request_total)')
"""

from __future__ import annotations

import atexit
import json
import re
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from modelops_sandbox import tools
from modelops_sandbox.controlplane import StartupError, free_port
from modelops_sandbox.processes import LOG_TAIL_LINES, Lifecycle, Process, log_tail, spawn

JOB_NAME = "kubernetes-pods"
SCRAPE_ANNOTATION = "prometheus.io/scrape"
PORT_ANNOTATION = "prometheus.io/port"
PATH_ANNOTATION = "prometheus.io/path"
# pod label -> target label. The serving runtime sets the same labels on its own series.
POD_LABELS = {
    "modelops.dev/model": "model",
    "modelops.dev/version": "version",
    "modelops.dev/track": "track",
}


def _meta(kind: str, name: str) -> str:
    """The discovery's meta label for a pod label (`label`, `labelpresent`) or annotation:
    `modelops.dev/x` -> `..._modelops_dev_x`."""
    sanitized = "".join(c if c.isalnum() else "_" for c in name)
    return f"__meta_kubernetes_pod_{kind}_{sanitized}"


def pod_relabel_configs() -> list[dict[str, Any]]:
    """Keeps annotated, Running pods with an IP; sets address, path and the target labels."""
    return [
        {
            "source_labels": [_meta("annotation", SCRAPE_ANNOTATION)],
            "regex": "true",
            "action": "keep",
        },
        {"source_labels": ["__meta_kubernetes_pod_phase"], "regex": "Running", "action": "keep"},
        {"source_labels": ["__meta_kubernetes_pod_ip"], "regex": ".+", "action": "keep"},
        {
            "source_labels": [_meta("annotation", PATH_ANNOTATION)],
            "regex": "(.+)",
            "target_label": "__metrics_path__",
        },
        # The pod IP and the annotated port. An IPv6 address (it has a colon) needs brackets.
        {
            "source_labels": [_meta("annotation", PORT_ANNOTATION), "__meta_kubernetes_pod_ip"],
            "regex": r"(\d+);([^:]+)",
            "replacement": "$2:$1",
            "target_label": "__address__",
        },
        {
            "source_labels": [_meta("annotation", PORT_ANNOTATION), "__meta_kubernetes_pod_ip"],
            "regex": r"(\d+);(.*:.*)",
            "replacement": "[$2]:$1",
            "target_label": "__address__",
        },
        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        *(
            {"source_labels": [_meta("label", label)], "target_label": target}
            for label, target in POD_LABELS.items()
        ),
    ]


def scrape_config(kubeconfig: Path, scrape_interval: str) -> dict[str, Any]:
    """The pod scrape job: Kubernetes discovery through `kubeconfig`, every namespace."""
    return {
        "job_name": JOB_NAME,
        "scrape_interval": scrape_interval,
        # The runtime sets model/version/track on its own series; with honor_labels they win over
        # the pod's labels, which only fill in series that lack them.
        "honor_labels": True,
        "kubernetes_sd_configs": [
            {
                "role": "pod",
                # kubeconfig_file excludes api_server and any custom HTTP client settings: the
                # server, CA and client certificate all come from the kubeconfig.
                "kubeconfig_file": str(kubeconfig),
                # Only Running pods are watched at all; the relabeling checks it again.
                "selectors": [{"role": "pod", "field": "status.phase=Running"}],
            }
        ],
        "relabel_configs": pod_relabel_configs(),
    }


class UnsupportedMonitor(ValueError):
    """A PodMonitor uses a field that `pod_monitor_scrape_configs` does not translate."""


# The PodMonitor fields the translation below follows; any other is refused, not ignored.
_MONITOR_SPEC = {"namespaceSelector", "selector", "podMetricsEndpoints"}
_MONITOR_ENDPOINT = {"port", "path", "honorLabels", "interval", "scrapeTimeout"}


def pod_monitor_scrape_configs(
    monitor: Mapping[str, Any], kubeconfig: Path
) -> list[dict[str, Any]]:
    """A Prometheus Operator PodMonitor as the scrape jobs the Prometheus Operator generates from
    it, one per endpoint: pod discovery in `namespaceSelector.matchNames` (through `kubeconfig`),
    the pods whose labels match `selector.matchLabels` and are neither Succeeded nor Failed, their
    container port named `port`; target labels `namespace`, `pod`, `container`, `endpoint`, and
    `job` = `<namespace>/<name>` of the PodMonitor (what alerts select the job by). Covers what
    the chart's PodMonitors use; any other field raises UnsupportedMonitor."""
    metadata, spec = monitor["metadata"], monitor["spec"]
    name = f"{metadata['namespace']}/{metadata['name']}"
    unknown = set(spec) - _MONITOR_SPEC
    selector = spec.get("selector") or {}
    unknown |= {f"selector.{k}" for k in selector if k != "matchLabels"}
    namespaces = spec.get("namespaceSelector") or {}
    unknown |= {f"namespaceSelector.{k}" for k in namespaces if k not in ("matchNames", "any")}
    endpoints = spec.get("podMetricsEndpoints") or []
    unknown |= {
        f"podMetricsEndpoints.{k}" for e in endpoints for k in e if k not in _MONITOR_ENDPOINT
    }
    if unknown or not endpoints or not all("port" in e for e in endpoints):
        raise UnsupportedMonitor(
            f"PodMonitor {name}: cannot translate {sorted(unknown) or 'an endpoint without port'}"
        )
    discovery: dict[str, Any] = {
        "role": "pod",
        "kubeconfig_file": str(kubeconfig),
        "selectors": [{"role": "pod", "field": "status.phase=Running"}],
    }
    if not namespaces.get("any"):
        discovery["namespaces"] = {
            "names": list(namespaces.get("matchNames") or [metadata["namespace"]])
        }
    selecting = [
        {
            "source_labels": [_meta("label", key), _meta("labelpresent", key)],
            "regex": f"({re.escape(value)});true",
            "action": "keep",
        }
        for key, value in (selector.get("matchLabels") or {}).items()
    ]
    jobs = []
    for index, endpoint in enumerate(endpoints):
        job: dict[str, Any] = {
            "job_name": f"podMonitor/{name}/{index}",
            "honor_labels": bool(endpoint.get("honorLabels", False)),
            "metrics_path": endpoint.get("path", "/metrics"),
            "kubernetes_sd_configs": [discovery],
            "relabel_configs": [
                {
                    "source_labels": ["__meta_kubernetes_pod_phase"],
                    "regex": "(Failed|Succeeded)",
                    "action": "drop",
                },
                *selecting,
                {
                    "source_labels": ["__meta_kubernetes_pod_container_port_name"],
                    "regex": re.escape(endpoint["port"]),
                    "action": "keep",
                },
                {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
                {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
                {
                    "source_labels": ["__meta_kubernetes_pod_container_name"],
                    "target_label": "container",
                },
                {"target_label": "endpoint", "replacement": endpoint["port"]},
                {"target_label": "job", "replacement": name},
            ],
        }
        if "interval" in endpoint:
            job["scrape_interval"] = endpoint["interval"]
        if "scrapeTimeout" in endpoint:
            job["scrape_timeout"] = endpoint["scrapeTimeout"]
        jobs.append(job)
    return jobs


def rule_file(prometheus_rule: Mapping[str, Any]) -> dict[str, Any]:
    """A Prometheus Operator PrometheusRule as a Prometheus rule file: its `spec.groups`."""
    return {"groups": list(prometheus_rule["spec"]["groups"])}


def config(
    kubeconfig: Path,
    scrape_interval: str = "2s",
    evaluation_interval: str = "2s",
    extra_scrape_configs: Sequence[Mapping[str, Any]] = (),
    rule_files: Sequence[Path] = (),
) -> dict[str, Any]:
    """The whole prometheus.yml, as a dict."""
    document: dict[str, Any] = {
        "global": {
            "scrape_interval": scrape_interval,
            "evaluation_interval": evaluation_interval,
        },
        "scrape_configs": [
            scrape_config(kubeconfig, scrape_interval),
            *(dict(c) for c in extra_scrape_configs),
        ],
    }
    if rule_files:
        document["rule_files"] = [str(p) for p in rule_files]
    return document


class QueryError(RuntimeError):
    """The HTTP API answered with an error, or not at all."""


@dataclass
class PrometheusServer(Lifecycle):
    """Starts and stops one Prometheus. `progress` receives one line per step."""

    kubeconfig: Path | str
    scrape_interval: str = "2s"
    evaluation_interval: str = "2s"
    extra_scrape_configs: Sequence[Mapping[str, Any]] = ()
    rule_files: Sequence[Path] = ()
    enable_lifecycle: bool = False
    # How often the scrape manager applies discovered changes. A cluster's Prometheus waits 5 s
    # (the hidden flag's default); the sandbox and the tests want changes sooner.
    discovery_reload_interval: str = "1s"
    startup_timeout: float = 60.0
    keep_dir: bool = False
    progress: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)
    address: str = "127.0.0.1"
    parent: Path | None = None  # where its temporary directory goes; the system's by default
    directory: Path = field(init=False)
    port: int = field(init=False)
    process: Process | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.popen.pid if self.process else None

    @property
    def config_file(self) -> Path:
        return self.directory / "prometheus.yml"

    @property
    def log(self) -> Path:
        return self.directory / "prometheus.log"

    def start(self) -> PrometheusServer:
        started = time.monotonic()
        binary = tools.ensure("prometheus")["prometheus"]
        self.directory = Path(tempfile.mkdtemp(prefix="modelops-prometheus-", dir=self.parent))
        atexit.register(self.stop)
        try:
            self.write_config()
            self._spawn(binary)
            self._wait_ready()
        except BaseException:
            self.progress(f"prometheus failed to start; its log is kept in {self._save_log()}")
            self.stop()
            raise
        self.progress(f"prometheus ready in {time.monotonic() - started:.1f}s at {self.url}")
        return self

    def write_config(self) -> Path:
        """Writes prometheus.yml from the fields; `reload()` applies a rewritten one."""
        document = config(
            Path(self.kubeconfig).resolve(),
            self.scrape_interval,
            self.evaluation_interval,
            self.extra_scrape_configs,
            self.rule_files,
        )
        self.config_file.write_text(yaml.safe_dump(document, sort_keys=False))
        return self.config_file

    def _spawn(self, binary: Path) -> None:
        self.port = free_port(self.address)
        args = [
            str(binary),
            f"--config.file={self.config_file}",
            f"--web.listen-address={self.address}:{self.port}",
            f"--storage.tsdb.path={self.directory / 'data'}",
            "--storage.tsdb.retention.time=1d",
            f"--scrape.discovery-reload-interval={self.discovery_reload_interval}",
            "--log.level=info",
        ]
        if self.enable_lifecycle:
            args.append("--web.enable-lifecycle")
        self.process = spawn("prometheus", args, self.log, [self.port], cwd=self.directory)

    def _wait_ready(self) -> None:
        """Polls /-/ready; fails early, with the log tail, if the process exits."""
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout
        last = ""
        while time.monotonic() < deadline:
            if not self.process.alive():
                raise StartupError(self._failure(f"exited with {self.process.popen.returncode}"))
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError) as error:
                last = str(error)
            time.sleep(0.1)
        raise StartupError(self._failure(f"not ready after {self.startup_timeout}s (last: {last})"))

    def _failure(self, what: str) -> str:
        return f"prometheus {what}; last {LOG_TAIL_LINES} lines of its log:\n{log_tail(self.log)}"

    def _save_log(self) -> Path:
        saved = tools.cache_dir() / "logs" / f"prometheus-{time.strftime('%Y%m%d-%H%M%S')}"
        saved.mkdir(parents=True, exist_ok=True)
        if self.log.exists():
            shutil.copy2(self.log, saved / self.log.name)
        return saved

    def stop(self) -> None:
        """Stops the process group and removes the directory. Safe to call twice."""
        if self.process is not None:
            self.process.stop()
            self.process = None
        atexit.unregister(self.stop)
        directory = getattr(self, "directory", None)
        if directory is not None and not self.keep_dir:
            shutil.rmtree(directory, ignore_errors=True)

    def api(self, path: str, params: Mapping[str, str] | None = None, method: str = "GET") -> Any:
        """The `data` of one HTTP API call (`/api/v1/...`); an error answer raises QueryError."""
        url = f"{self.url}{path}"
        if params:
            url = f"{url}?{urllib.parse.urlencode(params)}"
        request = urllib.request.Request(url, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as error:
            body = json.loads(error.read() or b"{}")
            raise QueryError(f"{path}: {error.code} {body.get('error', '')}".strip()) from error
        except (urllib.error.URLError, OSError) as error:
            raise QueryError(f"{path}: {error}") from error
        if body.get("status") != "success":
            raise QueryError(f"{path}: {body.get('error', body)}")
        return body["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query: the vector's samples, each `{"metric": {...}, "value": [t, "v"]}`."""
        data = self.api("/api/v1/query", {"query": promql})
        if data["resultType"] != "vector":
            raise QueryError(f"{promql!r} is a {data['resultType']}, not a vector")
        return list(data["result"])

    def targets(self, state: str = "active") -> list[dict[str, Any]]:
        """The scrape targets (`active` or `dropped`), as `/api/v1/targets` lists them."""
        data = self.api("/api/v1/targets", {"state": state})
        return list(data["activeTargets" if state == "active" else "droppedTargets"])

    def reload(self) -> None:
        """Re-reads prometheus.yml (needs `enable_lifecycle`)."""
        request = urllib.request.Request(f"{self.url}/-/reload", method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30):
                pass
        except (urllib.error.URLError, OSError) as error:
            raise QueryError(f"reload: {error}") from error
