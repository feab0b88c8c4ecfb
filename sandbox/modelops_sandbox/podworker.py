"""One pod on the sandbox node: its volumes, its container processes, probes, restarts, deletion.

A `PodWorker` thread owns everything of one pod for the pod's life on this node, as a kubelet's
pod worker does: it prepares the volumes, runs the init containers in order and then the
containers as processes (each in its own process group, killed if the agent dies), restarts them
by the restart policy with back-off, runs their probes, writes the pod's status when it changes,
and on graceful deletion sends SIGTERM, waits the grace period, sends SIGKILL and deletes the Pod
with a uid precondition. The worker thread lives until its processes are gone: a process's
parent-death signal belongs to the thread that started it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubernetes.client.exceptions import ApiException

from modelops_sandbox import logs, podspec, podstatus, volumes
from modelops_sandbox.kube import STRATEGIC, not_found
from modelops_sandbox.node import HOST_IP
from modelops_sandbox.podspec import ConfigError, PodContext
from modelops_sandbox.podstatus import ContainerView, now_rfc3339
from modelops_sandbox.probes import ProbeTracker, run_probe
from modelops_sandbox.processes import die_with_parent

if TYPE_CHECKING:
    from modelops_sandbox.nodeagent import NodeAgent

Obj = dict[str, Any]

TICK = 0.2
MESSAGE_LIMIT = 4096
FALLBACK_LINES, FALLBACK_BYTES = 80, 2048
BACKOFF_MAX = 300.0
BACKOFF_RESET = 600.0
HOOK_TIMEOUT = 30.0
VENV_BIN = os.path.dirname(sys.executable)


def _killpg(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def exit_code(returncode: int) -> int:
    """A process killed by signal N exits 128+N, as container runtimes report it."""
    return returncode if returncode >= 0 else 128 - returncode


@dataclass
class Container:
    spec: Obj
    init: bool
    view: ContainerView
    log: Path
    termination_file: Path
    process: subprocess.Popen[bytes] | None = None
    runs: int = 0
    crashes: int = 0
    started_mono: float = 0.0
    next_start: float = 0.0
    kill_deadline: float | None = None
    probes: dict[str, ProbeTracker] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.spec["name"])


class PodWorker(threading.Thread):
    def __init__(self, agent: NodeAgent, pod: Obj) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True)
        self.agent = agent
        self.pod = pod
        self.uid: str = meta["uid"]
        self.namespace: str = meta["namespace"]
        self.pod_name: str = meta["name"]
        self.wake = threading.Event()
        self.gone = False  # the Pod no longer exists in the API
        self.deleted = False  # this worker deleted it
        self.complaint = ""  # the last status-update failure, said once
        self.expired = False  # activeDeadlineSeconds passed
        self.crashed = False  # the worker itself failed
        self.stopping: float | None = None  # the agent stops: grace seconds
        self.pod_dir = agent.state / "pods" / self.uid
        self.pod_ip = ""
        self.start_time = now_rfc3339()
        self.sandbox_ready = False
        self.initialized = False
        self.terminal_reason = ("", "")
        self.last_status: Obj | None = None
        self.dirs: dict[str, Path] = {}
        self.configmaps: dict[str, dict[str, str]] = {}
        self.secrets: dict[str, dict[str, str]] = {}
        spec = pod["spec"]
        self.restart_policy: str = spec.get("restartPolicy") or "Always"
        self.init = [self._container(c, True) for c in spec.get("initContainers") or []]
        self.app = [self._container(c, False) for c in spec["containers"]]

    # --- called from the agent's threads -------------------------------------------------------

    def update(self, pod: Obj) -> None:
        self.pod = pod
        self.wake.set()

    def mark_gone(self) -> None:
        self.gone = True
        self.wake.set()

    def shutdown(self, grace: float) -> None:
        self.stopping = grace
        self.wake.set()

    def pids(self) -> list[int]:
        return [c.process.pid for c in [*self.init, *self.app] if c.process is not None]

    # --- the worker ---------------------------------------------------------------------------

    def _container(self, spec: Obj, init: bool) -> Container:
        name = spec["name"]
        return Container(
            spec=spec,
            init=init,
            view=ContainerView(name=name, image=str(spec.get("image", "")),
                               sidecar=init and spec.get("restartPolicy") == "Always"),
            log=logs.log_path(self.agent.state, self.namespace, self.pod_name, name),
            termination_file=self.pod_dir / "containers" / name / "termination-log",
        )

    def say(self, line: str) -> None:
        self.agent.say(f"pod {self.namespace}/{self.pod_name}: {line}")

    def run(self) -> None:
        try:
            self.pod_ip = self.agent.addresses.allocate(self.uid)
            self._run()
        except Exception as error:  # a worker must never take the agent down
            self.say(f"worker failed:\n{traceback.format_exc()}")
            self.crashed = True
            self.terminal_reason = ("SandboxError", f"the node agent failed to run the pod: "
                                    f"{type(error).__name__}: {error}"[:1000])
        finally:
            self._kill_all(0.0)
            if self.crashed and not self.gone:
                # Failed for good, so that a deletion needs no worker (the agent does it).
                with contextlib.suppress(Exception):
                    self.write_status(final=True)
            self.agent.addresses.release(self.uid)
            self.agent.forget(self)
            if self.pod["metadata"].get("deletionTimestamp") and not (self.gone or self.deleted):
                # Asked to delete while the worker was ending: later events no longer reach it.
                self.agent.delete_now(self.pod)

    def _run(self) -> None:
        self.say(f"starting on {self.pod_ip}")
        while not self._setup():
            if self._should_end():
                return self._end()
            self.write_status()
            self.wake.wait(2.0)
            self.wake.clear()
        self.sandbox_ready = True
        started = time.monotonic()
        deadline = self.pod["spec"].get("activeDeadlineSeconds")
        while True:
            if self._should_end():
                return self._end()
            if deadline is not None and not self.expired and (
                    time.monotonic() - started >= float(deadline)):
                self.expired = True
                self.say(f"active longer than its deadline of {deadline}s; killing it")
                self.terminal_reason = (
                    "DeadlineExceeded",
                    "Pod was active on the node longer than the specified deadline")
                self._kill_all(self._termination_grace())
            self._step(time.monotonic())
            self.write_status()
            if self.last_status is not None and self.last_status["phase"] in (
                    "Succeeded", "Failed") and not self.pids():
                # Done for good, as its status says: a kubelet tears the pod's sandbox down
                # here (its address is freed); the agent deletes the Pod when asked to.
                self.say(f"{self.last_status['phase']}; its processes are gone")
                return
            self.wake.wait(TICK)
            self.wake.clear()

    def _should_end(self) -> bool:
        return self.gone or self.stopping is not None or bool(
            self.pod["metadata"].get("deletionTimestamp"))

    def _end(self) -> None:
        if self.gone:
            self.say("gone from the API; killing its processes")
            self._kill_all(0.0)
            self.remove_dirs()
            return
        if self.stopping is not None:
            grace = min(self.stopping, self._grace())
            self._kill_all(grace)
            self.terminal_reason = (
                "Terminated", "Pod was terminated in response to the sandbox node agent stopping.")
            self.write_status(final=True)
            return
        grace = self._grace()
        self.say(f"deleting: SIGTERM, then SIGKILL after {grace:g}s")
        self._kill_all(grace)
        self.write_status(final=True)
        try:
            self.agent.kube.request(
                "DELETE", f"/api/v1/namespaces/{self.namespace}/pods/{self.pod_name}",
                {"gracePeriodSeconds": 0, "preconditions": {"uid": self.uid}},
            )
        except ApiException as error:
            if error.status not in (404, 409):
                raise
        self.deleted = True
        self.remove_dirs()
        self.say("deleted")

    def _grace(self) -> float:
        meta, spec = self.pod["metadata"], self.pod["spec"]
        value = meta.get("deletionGracePeriodSeconds")
        if value is None:
            value = spec.get("terminationGracePeriodSeconds", 30)
        return float(value)

    # --- setup: volumes and referenced objects -------------------------------------------------

    def context(self) -> PodContext:
        return PodContext(self.pod, self.pod_ip, HOST_IP, self.agent.allocatable)

    def _setup(self) -> bool:
        try:
            self.configmaps, self.secrets = volumes.fetch_objects(self.agent.kube, self.pod)
        except ApiException as error:
            self.say(f"could not read its ConfigMaps and Secrets ({error.status}); retrying")
            return False
        try:
            self.dirs = volumes.prepare(self.agent.kube, self.context(), self.agent.state,
                                        self.pod_dir, self.configmaps, self.secrets)
            (self.pod_dir / "home").mkdir(parents=True, exist_ok=True)
        except ConfigError as error:
            for c in [*self.init, *self.app]:
                c.view.state = {"waiting": {"reason": "CreateContainerConfigError",
                                            "message": str(error)}}
            return False
        for c in [*self.init, *self.app]:
            c.view.state = {"waiting": {"reason": "PodInitializing" if not c.init and
                                        self.init else "ContainerCreating"}}
        return True

    # --- containers ---------------------------------------------------------------------------

    def _step(self, now: float) -> None:
        if not self.initialized:
            for c in self.init:
                # In order: a sidecar (restartPolicy Always) once it has started, any other
                # init container once it has succeeded.
                if c.view.sidecar:
                    self._drive(c, now)
                    if not c.view.started:
                        return
                elif not c.view.succeeded:
                    self._drive(c, now)
                    if not c.view.succeeded:
                        return
            self.initialized = True
            for c in self.app:
                c.view.state = {"waiting": {"reason": "ContainerCreating"}}
        sidecars = [c for c in self.init if c.view.sidecar]
        for c in sidecars:
            self._drive(c, now)
        for c in self.app:
            self._drive(c, now)
        if all(c.view.final for c in self.app) and any(c.process for c in sidecars):
            # The pod's work is done: its sidecars are stopped, the last one first.
            self.say("containers done; stopping its sidecars")
            grace = self._termination_grace()
            for c in reversed(sidecars):
                c.view.final = True
            self._kill_all(grace)

    def _policy(self, c: Container) -> str:
        if c.view.sidecar:
            return "Always"
        if c.init:
            return "Never" if self.restart_policy == "Never" else "OnFailure"
        return self.restart_policy

    def _drive(self, c: Container, now: float) -> None:
        if c.process is not None:
            returncode = c.process.poll()
            if returncode is None:
                if c.kill_deadline is not None:
                    if now >= c.kill_deadline:
                        _killpg(c.process.pid, signal.SIGKILL)
                else:
                    self._probe(c, now)
                return
            self._exited(c, returncode, now)
        if c.view.final:
            return
        if now >= c.next_start:
            self._start(c, now)
        elif c.runs:
            delay = c.next_start - c.started_mono
            c.view.state = {"waiting": {
                "reason": "CrashLoopBackOff",
                "message": f"back-off {delay:.0f}s restarting failed container={c.name} "
                           f"pod={self.pod_name}_{self.namespace}({self.uid})"}}

    def _launch(self, c: Container, argv: list[str] | None = None) -> podspec.Launch:
        ctx = self.context()
        base = podspec.base_env(VENV_BIN, self.pod_name, str(self.pod_dir / "home"), self.pod_ip)
        env = podspec.resolve_env(ctx, c.spec, self.configmaps, self.secrets, base)
        pairs = podspec.mounts(c.spec, self.dirs, c.termination_file)
        spec = c.spec if argv is None else {**c.spec, "command": argv, "args": []}
        default_cwd = self.pod_dir / "containers" / c.name / "root"
        default_cwd.mkdir(parents=True, exist_ok=True)
        return podspec.launch(spec, env, pairs, self.pod_ip, VENV_BIN, str(default_cwd),
                              keep=(str(self.agent.state),))

    def _start(self, c: Container, now: float) -> None:
        try:
            launch = self._launch(c)
        except ConfigError as error:
            c.view.state = {"waiting": {"reason": "CreateContainerConfigError",
                                        "message": str(error)}}
            c.next_start = now + 2.0
            return
        if c.runs:
            c.view.restart_count += 1
        logs.rotate(c.log)
        c.termination_file.parent.mkdir(parents=True, exist_ok=True)
        c.termination_file.write_bytes(b"")
        Path(launch.cwd).mkdir(parents=True, exist_ok=True)
        try:
            with c.log.open("ab") as out:
                c.process = subprocess.Popen(
                    launch.argv, env=launch.env, cwd=launch.cwd, stdin=subprocess.DEVNULL,
                    stdout=out, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        except OSError as error:
            c.runs += 1
            c.view.state = {"waiting": {"reason": "RunContainerError", "message": str(error)}}
            self._schedule_restart(c, now, c.crashes + 1)
            return
        self.agent.reaper.add(c.process.pid)
        c.runs += 1
        c.started_mono = now
        c.kill_deadline = None
        c.view.state = {"running": {"startedAt": now_rfc3339()}}
        c.view.container_id = f"sandbox://{c.process.pid}"
        c.probes = {}
        for kind in ("startup", "readiness", "liveness"):
            probe = c.spec.get(f"{kind}Probe")
            if probe and (not c.init or c.view.sidecar):
                c.probes[kind] = ProbeTracker(probe, now)
        c.view.started = "startup" not in c.probes
        c.view.ready = c.view.started and "readiness" not in c.probes and (
            not c.init or c.view.sidecar)
        line = " ".join(launch.argv).replace("\n", "\\n")
        line = line if len(line) <= 240 else line[:240] + "..."
        self.say(f"container {c.name} started (pid {c.process.pid}): {line}")
        self.agent.event(self.pod, "Started", f"Started container {c.name}")
        ok, message = self._hook(c, "postStart", HOOK_TIMEOUT)
        if not ok:
            self.say(f"container {c.name}: postStart hook failed: {message}")
            self.agent.event(self.pod, "FailedPostStartHook", message, "Warning")
            _killpg(c.process.pid, signal.SIGTERM)
            c.kill_deadline = now + self._termination_grace()

    def _hook(self, c: Container, kind: str, timeout: float) -> tuple[bool, str]:
        """Runs a lifecycle hook (exec, httpGet, sleep) of the container, if it has one."""
        handler = (c.spec.get("lifecycle") or {}).get(kind)
        if not handler:
            return True, ""
        if "sleep" in handler:
            time.sleep(min(float(handler["sleep"].get("seconds", 0)), timeout))
            return True, ""
        return run_probe({**handler, "timeoutSeconds": max(timeout, 0.1)}, self.pod_ip,
                         c.spec.get("ports") or [],
                         lambda argv, limit: self._exec(c, argv, limit))

    def _termination_grace(self) -> float:
        return float(self.pod["spec"].get("terminationGracePeriodSeconds", 30))

    def _exited(self, c: Container, returncode: int, now: float) -> None:
        assert c.process is not None
        pid = c.process.pid
        _killpg(pid, signal.SIGKILL)  # whatever the container left behind in its group
        self.agent.reaper.remove(pid)
        c.process = None
        code = exit_code(returncode)
        message = self._termination_message(c, code)
        started = c.view.state.get("running", {}).get("startedAt", now_rfc3339())
        terminated: Obj = {
            "exitCode": code,
            "reason": "Completed" if code == 0 else "Error",
            "startedAt": started,
            "finishedAt": now_rfc3339(),
            "containerID": f"sandbox://{pid}",
        }
        if returncode < 0:
            terminated["signal"] = -returncode
        if message:
            terminated["message"] = message
        c.view.state = {"terminated": terminated}
        # A completed init container counts as ready; a stopped sidecar does not.
        c.view.ready = c.init and not c.view.sidecar and code == 0
        c.view.started = False
        self.say(f"container {c.name} exited with {code}")
        policy = self._policy(c)
        if c.view.final or self.stopping is not None or self.pod["metadata"].get(
            "deletionTimestamp") or policy == "Never" or (policy == "OnFailure" and code == 0):
            c.view.final = True
            return
        c.view.last_state = {"terminated": terminated}
        crashes = 1 if now - c.started_mono > BACKOFF_RESET else c.crashes + 1
        self._schedule_restart(c, now, crashes)

    def _schedule_restart(self, c: Container, now: float, crashes: int) -> None:
        c.crashes = crashes
        base = self.agent.restart_backoff
        delay = 0.0 if crashes <= 1 else min(base * 2 ** (crashes - 2), BACKOFF_MAX)
        c.started_mono = now
        c.next_start = now + delay
        if delay:
            self.agent.event(self.pod, "BackOff", f"Back-off restarting failed container "
                             f"{c.name}", "Warning")

    def _termination_message(self, c: Container, code: int) -> str:
        try:
            with c.termination_file.open("rb") as f:
                message = f.read(MESSAGE_LIMIT).decode(errors="replace")
        except OSError:
            message = ""
        policy = c.spec.get("terminationMessagePolicy") or "File"
        if not message and code != 0 and policy == "FallbackToLogsOnError":
            try:
                text = logs.read_logs(self.agent.state, self.namespace, self.pod_name, c.name,
                                      tail=FALLBACK_LINES)
            except OSError:
                text = ""
            message = text.encode()[-FALLBACK_BYTES:].decode(errors="replace")
        try:
            pairs = podspec.mounts(c.spec, self.dirs, c.termination_file)
        except ConfigError:
            return message
        return podspec.restore_paths(message, pairs)

    def _probe(self, c: Container, now: float) -> None:
        assert c.process is not None
        ports = c.spec.get("ports") or []

        def run(kind: str) -> ProbeTracker | None:
            tracker = c.probes.get(kind)
            if tracker is None or not tracker.due(now):
                return None
            ok, message = run_probe(tracker.probe, self.pod_ip, ports,
                                    lambda argv, timeout: self._exec(c, argv, timeout))
            changed = tracker.record(ok, time.monotonic(), message)
            if not ok:
                self.agent.event(self.pod, "Unhealthy",
                                 f"{kind.capitalize()} probe failed: {message}", "Warning")
            if changed:
                self.say(f"container {c.name}: {kind} probe now {tracker.result} {message}")
            return tracker

        startup = c.probes.get("startup")
        if startup is not None and startup.result is not True:
            run("startup")
            result = c.probes["startup"].result  # run() just updated it
            if result is True:
                c.view.started = True
            elif result is False:
                self._kill_for_restart(c, now, "startup")
            return
        c.view.started = True
        run("readiness")
        readiness = c.probes.get("readiness")
        c.view.ready = readiness is None or readiness.result is True
        liveness = run("liveness")
        if liveness is not None and liveness.result is False:
            self._kill_for_restart(c, now, "liveness")

    def _kill_for_restart(self, c: Container, now: float, kind: str) -> None:
        assert c.process is not None
        probe = c.probes[kind].probe
        grace = probe.get("terminationGracePeriodSeconds")
        grace = float(grace if grace is not None else
                      self.pod["spec"].get("terminationGracePeriodSeconds", 30))
        self.say(f"container {c.name} failed its {kind} probe; restarting it")
        self.agent.event(self.pod, "Killing", f"Container {c.name} failed {kind} probe, "
                         "will be restarted")
        c.view.ready = False
        _killpg(c.process.pid, signal.SIGTERM)
        c.kill_deadline = now + grace

    def _exec(self, c: Container, argv: list[str], timeout: float) -> int:
        """Runs an exec probe or hook as the container would; 127 when it cannot be run."""
        try:
            launch = self._launch(c, argv)
        except ConfigError as error:
            self.say(f"container {c.name}: cannot run {argv[:1]}: {error}")
            return 127
        result = subprocess.run(
            launch.argv, env=launch.env, cwd=launch.cwd, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout,
            preexec_fn=die_with_parent, check=False)
        return result.returncode

    def _kill_all(self, grace: float) -> None:
        """SIGTERM to every running container's group, SIGKILL after `grace` seconds."""
        running = [c for c in [*self.init, *self.app] if c.process is not None]
        if not running:
            return
        deadline = time.monotonic() + grace
        for c in running if grace > 0 else []:
            # preStop hooks first, within the same grace period, as a kubelet runs them.
            ok, message = self._hook(c, "preStop", deadline - time.monotonic())
            if not ok:
                self.agent.event(self.pod, "FailedPreStopHook", message, "Warning")
        for c in running:
            assert c.process is not None
            _killpg(c.process.pid, signal.SIGTERM if grace > 0 else signal.SIGKILL)
        if grace > 0:
            self.agent.event(self.pod, "Killing", "Stopping containers "
                             f"{', '.join(c.name for c in running)}")
        while grace > 0 and time.monotonic() < deadline and not self.gone:
            if all(c.process is None or c.process.poll() is not None for c in running):
                break
            time.sleep(0.05)
        for c in running:
            if c.process is None:
                continue
            if c.process.poll() is None:
                _killpg(c.process.pid, signal.SIGKILL)
            returncode = c.process.wait()
            c.view.final = True
            self._exited(c, returncode, time.monotonic())

    # --- status -------------------------------------------------------------------------------

    def write_status(self, final: bool = False) -> None:
        if final:
            for c in [*self.init, *self.app]:
                c.view.final = True
                c.view.ready = False
                if "terminated" not in c.view.state and c.runs == 0:
                    c.view.state = {"terminated": {
                        "exitCode": 137, "reason": "ContainerStatusUnknown",
                        "message": "The container was never started",
                        "finishedAt": now_rfc3339()}}
        scheduled = [c for c in (self.pod.get("status") or {}).get("conditions") or []
                     if c.get("type") == "PodScheduled"]
        own = [c for c in (self.last_status or {}).get("conditions") or []
               if c.get("type") != "PodScheduled"]
        view = {**self.pod, "status": {"conditions": scheduled + own}}
        reason, message = self.terminal_reason
        status = podstatus.pod_status(
            view, [c.view for c in self.init], [c.view for c in self.app], self.pod_ip,
            HOST_IP, self.start_time, self.sandbox_ready, now_rfc3339(),
            pod_phase="Failed" if self.expired or self.crashed or self.stopping is not None
            else None,
            reason=reason, message=message)
        if status == self.last_status:
            return
        try:
            self.agent.kube.request(
                "PATCH", f"/api/v1/namespaces/{self.namespace}/pods/{self.pod_name}/status",
                {"metadata": {"uid": self.uid}, "status": status}, content_type=STRATEGIC)
        except ApiException as error:
            if not_found(error) or error.status == 409:
                self.mark_gone()
                return
            complaint = f"status update failed ({error.status} {error.reason}): {error.body}"
            if complaint != self.complaint:
                self.say(f"{complaint}; retrying")
                self.complaint = complaint
            return
        self.complaint = ""
        if self.last_status is None or status["phase"] != self.last_status["phase"]:
            self.say(f"phase {status['phase']}")
        self.last_status = status

    def remove_dirs(self) -> None:
        shutil.rmtree(self.pod_dir, ignore_errors=True)

