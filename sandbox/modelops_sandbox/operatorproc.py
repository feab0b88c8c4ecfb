"""`modelops operator` as a local process: how the sandbox, the demo and the tests run the operator.

In a cluster the operator runs from its image under the Helm chart; here it runs from this
environment against the local (or any) API server, exactly the same code.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from modelops_sandbox.controlplane import free_port
from modelops_sandbox.processes import die_with_parent, log_tail, stop_group


class OperatorProcess:
    """The operator watching `namespaces` (Kopf globs allowed; empty: every namespace)."""

    def __init__(
        self,
        kubeconfig: Path,
        namespaces: Sequence[str],
        log: Path,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.kubeconfig, self.namespaces, self.log = kubeconfig, list(namespaces), log
        self.extra_env = dict(extra_env or {})
        self.process: subprocess.Popen[bytes] | None = None
        self.liveness = f"http://127.0.0.1:{free_port()}/healthz"
        # A port of its own for its metrics, so operators side by side never clash on the default.
        self.metrics_port = free_port()
        # What runs: `modelops operator`, or anything taking the same --liveness and --namespace.
        self.command = [sys.executable, "-m", "modelops_operator.cli", "operator"]

    def start(self) -> OperatorProcess:
        args = [*self.command, "--liveness", self.liveness]
        for namespace in self.namespaces:
            args += ["--namespace", namespace]
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "MODELOPS_METRICS_PORT": str(self.metrics_port),
            **self.extra_env,
        }
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                args,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Waits until Kopf's liveness endpoint answers (the operator is watching)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"the operator exited; its log ends:\n{self.tail()}")
            try:
                with urllib.request.urlopen(self.liveness, timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"the operator was not ready in {timeout:.0f}s:\n{self.tail()}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """Stops it the hard way, as a node failure or an OOM kill would."""
        if self.process is not None and self.alive():
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None:
            stop_group(self.process, 15)

    def tail(self, lines: int = 60) -> str:
        return log_tail(self.log, lines)
