"""Container probes for the sandbox node agent: httpGet, tcpSocket and exec, and their timing.

`ProbeTracker` is the pure bookkeeping a kubelet's prober worker does (initialDelaySeconds,
periodSeconds, success/failure thresholds); `run_probe` performs one probe against the pod's own
loopback address. Startup, readiness and liveness probes differ only in what the agent does with
the result (see `modelops_sandbox.nodeagent`).
"""

from __future__ import annotations

import http.client
import socket
import ssl
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass
class ProbeTracker:
    """One probe of one container instance. `result` is None until the thresholds decide."""

    probe: Mapping[str, Any]
    started: float  # monotonic time the container started
    result: bool | None = None
    successes: int = 0
    failures: int = 0
    last_run: float | None = None
    message: str = ""

    @property
    def period(self) -> float:
        return float(self.probe.get("periodSeconds") or 10)

    def due(self, now: float) -> bool:
        if self.last_run is None:
            return now >= self.started + float(self.probe.get("initialDelaySeconds") or 0)
        return now >= self.last_run + self.period

    def record(self, ok: bool, now: float, message: str = "") -> bool:
        """Counts one outcome; returns True when `result` changed."""
        self.last_run = now
        self.message = message
        before = self.result
        if ok:
            self.successes, self.failures = self.successes + 1, 0
            if self.successes >= int(self.probe.get("successThreshold") or 1):
                self.result = True
        else:
            self.successes, self.failures = 0, self.failures + 1
            if self.failures >= int(self.probe.get("failureThreshold") or 3):
                self.result = False
        return self.result != before


def resolve_port(port: Any, ports: Sequence[Mapping[str, Any]]) -> int:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        return int(port)
    for p in ports:
        if p.get("name") == port:
            return int(p["containerPort"])
    raise ValueError(f"probe names unknown port {port!r}")


def run_probe(
    probe: Mapping[str, Any],
    pod_ip: str,
    ports: Sequence[Mapping[str, Any]],
    run_exec: Callable[[list[str], float], int],
) -> tuple[bool, str]:
    """Runs one probe; returns (success, message). `run_exec(argv, timeout)` runs exec probes."""
    timeout = float(probe.get("timeoutSeconds") or 1)
    try:
        if "httpGet" in probe:
            return _http(probe["httpGet"], pod_ip, ports, timeout)
        if "tcpSocket" in probe:
            action = probe["tcpSocket"]
            host = action.get("host") or pod_ip
            port = resolve_port(action["port"], ports)
            with socket.create_connection((host, port), timeout=timeout):
                return True, ""
        if "exec" in probe:
            code = run_exec([str(c) for c in probe["exec"].get("command") or []], timeout)
            return code == 0, "" if code == 0 else f"command exited with {code}"
        if "grpc" in probe:
            return False, "grpc probes are not supported by the sandbox agent"
    except subprocess.TimeoutExpired:
        return False, f"command timed out after {timeout:g}s"
    except (OSError, ValueError, http.client.HTTPException) as error:
        return False, str(error)
    return False, "probe has no handler"


def _http(
    action: Mapping[str, Any], pod_ip: str, ports: Sequence[Mapping[str, Any]], timeout: float
) -> tuple[bool, str]:
    host = action.get("host") or pod_ip
    port = resolve_port(action["port"], ports)
    path = action.get("path") or "/"
    connection: http.client.HTTPConnection
    if str(action.get("scheme", "HTTP")).upper() == "HTTPS":
        context = ssl._create_unverified_context()
        connection = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    else:
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
    headers = {"User-Agent": "kube-probe/sandbox", "Accept": "*/*"}
    for header in action.get("httpHeaders") or []:
        headers[header["name"]] = header["value"]
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        response.read(10240)
        if 200 <= response.status < 400:
            return True, ""
        return False, f"HTTP probe failed with statuscode: {response.status}"
    finally:
        connection.close()
