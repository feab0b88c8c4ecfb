"""Pod status as the node agent reports it: phase, conditions, container statuses, logs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelops_sandbox import logs, podstatus
from modelops_sandbox.podstatus import ContainerView
from modelops_sandbox.probes import ProbeTracker

NOW = "2026-12-01T00:00:00Z"
LATER = "2026-12-01T00:01:00Z"


def running(name: str, ready: bool = True) -> ContainerView:
    return ContainerView(name, "img", {"running": {"startedAt": NOW}}, ready=ready, started=True,
                         container_id="sandbox://1")


def terminated(name: str, code: int, final: bool = True) -> ContainerView:
    state = {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error"}}
    return ContainerView(name, "img", state, final=final)


def pod(**status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p"}, "spec": {}, "status": status}


def test_phase_follows_init_containers_then_containers() -> None:
    waiting = ContainerView("app", "img")
    assert podstatus.phase([ContainerView("init", "img")], [waiting]) == "Pending"
    assert podstatus.phase([terminated("init", 1, final=True)], [waiting]) == "Failed"
    assert podstatus.phase([terminated("init", 1, final=False)], [waiting]) == "Pending"
    assert podstatus.phase([terminated("init", 0)], [waiting]) == "Pending"
    assert podstatus.phase([terminated("init", 0)], [running("app")]) == "Running"
    assert podstatus.phase([], [terminated("a", 0), terminated("b", 0)]) == "Succeeded"
    assert podstatus.phase([], [terminated("a", 0), terminated("b", 2)]) == "Failed"
    # A container that will be restarted keeps the pod Running.
    assert podstatus.phase([], [terminated("a", 1, final=False)]) == "Running"
    assert podstatus.phase([], [terminated("a", 0), running("b")]) == "Running"


def test_conditions_report_what_is_not_ready_and_keep_transition_times() -> None:
    scheduled = {"type": "PodScheduled", "status": "True", "lastTransitionTime": "then"}
    first = podstatus.pod_status(
        pod(conditions=[scheduled]), [], [running("a"), running("b", ready=False)],
        "127.10.0.2", "127.0.0.1", NOW, True, NOW)
    by_type = {c["type"]: c for c in first["conditions"]}
    assert by_type["PodScheduled"] == scheduled
    assert by_type["Initialized"]["status"] == "True"
    assert by_type["ContainersReady"]["status"] == "False"
    assert by_type["ContainersReady"]["message"] == "containers with unready status: [b]"
    assert by_type["Ready"]["reason"] == "ContainersNotReady"
    assert first["phase"] == "Running"
    assert first["podIP"] == "127.10.0.2" and first["podIPs"] == [{"ip": "127.10.0.2"}]

    second = podstatus.pod_status(
        pod(conditions=first["conditions"]), [], [running("a"), running("b")],
        "127.10.0.2", "127.0.0.1", NOW, True, LATER)
    by_type = {c["type"]: c for c in second["conditions"]}
    assert by_type["Ready"] == {"type": "Ready", "status": "True", "lastProbeTime": None,
                                "lastTransitionTime": LATER}
    assert by_type["Initialized"]["lastTransitionTime"] == NOW  # unchanged status, time kept


def test_succeeded_pods_are_not_ready_because_completed() -> None:
    status = podstatus.pod_status(pod(), [], [terminated("a", 0)], "ip", "host", NOW, True, NOW)
    by_type = {c["type"]: c for c in status["conditions"]}
    assert status["phase"] == "Succeeded"
    assert by_type["Ready"]["status"] == "False" and by_type["Ready"]["reason"] == "PodCompleted"


def test_readiness_gates_hold_ready_back() -> None:
    gated = {"metadata": {}, "spec": {"readinessGates": [{"conditionType": "example.com/lb"}]},
             "status": {}}
    status = podstatus.pod_status(gated, [], [running("a")], "ip", "host", NOW, True, NOW)
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "ReadinessGatesNotReady"


def test_container_statuses_carry_runtime_fields() -> None:
    init = [terminated("setup", 0)]
    view = running("app")
    view.restart_count, view.last_state = 2, {"terminated": {"exitCode": 143}}
    status = podstatus.pod_status(pod(), init, [view], "ip", "host", NOW, True, NOW)
    (app,) = status["containerStatuses"]
    assert app == {
        "name": "app", "state": {"running": {"startedAt": NOW}},
        "lastState": {"terminated": {"exitCode": 143}}, "ready": True, "restartCount": 2,
        "image": "img", "imageID": "sandbox://img", "started": True,
        "containerID": "sandbox://1",
    }
    assert status["initContainerStatuses"][0]["state"]["terminated"]["exitCode"] == 0


def test_probe_tracker_counts_thresholds_and_periods() -> None:
    probe = {"initialDelaySeconds": 2, "periodSeconds": 5, "failureThreshold": 2,
             "successThreshold": 2}
    tracker = ProbeTracker(probe, started=100.0)
    assert not tracker.due(101.0) and tracker.due(102.0)
    assert not tracker.record(True, 102.0) and tracker.result is None
    assert not tracker.due(106.0) and tracker.due(107.0)
    assert tracker.record(True, 107.0) and tracker.result is True
    assert not tracker.record(False, 112.0) and tracker.result is True
    assert tracker.record(False, 117.0) and tracker.result is False


def test_logs_rotate_and_read(tmp_path: Path) -> None:
    path = logs.log_path(tmp_path, "ml", "p", "app")
    logs.rotate(path)
    path.write_text("one\ntwo\n")
    logs.rotate(path)
    path.write_text("three\nfour\nfive\n")
    assert logs.read_logs(tmp_path, "ml", "p") == "three\nfour\nfive\n"
    assert logs.read_logs(tmp_path, "ml", "p", "app", tail=2) == "four\nfive\n"
    assert logs.read_logs(tmp_path, "ml", "p", previous=True) == "one\ntwo\n"
    logs.rotate(logs.log_path(tmp_path, "ml", "p", "side"))
    assert logs.read_logs(tmp_path, "ml", "p", tail=1) == "==> app <==\nfive\n\n==> side <==\n"
    with pytest.raises(FileNotFoundError, match="containers: app, side"):
        logs.read_logs(tmp_path, "ml", "p", "nope")
    with pytest.raises(FileNotFoundError):
        logs.read_logs(tmp_path, "ml", "absent")


def test_sidecars_count_once_started_and_never_decide_the_phase() -> None:
    sidecar = ContainerView("proxy", "img", {"waiting": {"reason": "ContainerCreating"}},
                            sidecar=True)
    assert podstatus.phase([sidecar], [ContainerView("app", "img")]) == "Pending"
    sidecar = running("proxy", ready=False)
    sidecar.sidecar = True
    status = podstatus.pod_status(pod(), [sidecar], [running("app")], "ip", "host", NOW, True, NOW)
    by_type = {c["type"]: c for c in status["conditions"]}
    assert by_type["Initialized"]["status"] == "True"
    assert by_type["Ready"]["message"] == "containers with unready status: [proxy]"
    stopped = terminated("proxy", 143)
    stopped.sidecar = True
    assert podstatus.phase([stopped], [terminated("app", 0)]) == "Succeeded"
