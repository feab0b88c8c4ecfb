"""The sandbox node agent under the real control plane: pods run as real local processes.

The scheduler binds the pods to the agent's Node, the Job and Deployment controllers see what the
agent reports, and every container is a real process of this environment (`python ...`).
"""

from __future__ import annotations

import datetime
import functools
import json
import os
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import support
from kubernetes.client.exceptions import ApiException

from modelops_sandbox.controlplane import ControlPlane
from modelops_sandbox.kube import Kube
from modelops_sandbox.logs import read_logs
from modelops_sandbox.nodeagent import AgentProcess, NodeAgent, start_agent_process

Obj = dict[str, Any]

eventually = functools.partial(support.eventually, timeout=30.0, every=0.2)


@pytest.fixture(scope="module")
def kube(control_plane: ControlPlane) -> Iterator[Kube]:
    k = Kube(control_plane.kubeconfig)
    yield k
    k.close()


def py(code: str, *args: str) -> Obj:
    """A container running `python -c code args...`; the image is ignored by the agent."""
    return {"image": "modelops-runtime:dev", "command": ["python", "-c", code, *args]}


def create_pod(kube: Kube, namespace: str, name: str, containers: list[Obj], **spec: Any) -> Obj:
    body = {
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"containers": containers, **spec},
    }
    return post_pod(kube, namespace, body)


def post_pod(kube: Kube, namespace: str, body: Obj) -> Obj:
    """Creates a pod, waiting for a fresh namespace's default ServiceAccount if need be."""
    deadline = time.monotonic() + 15
    while True:
        try:
            return kube.request("POST", f"/api/v1/namespaces/{namespace}/pods", body)
        except ApiException as error:
            if (
                error.status != 403
                or "serviceaccount" not in str(error.body)
                or (time.monotonic() > deadline)
            ):
                raise
            time.sleep(0.2)


def get_pod(kube: Kube, namespace: str, name: str) -> Obj:
    return kube.get(f"/api/v1/namespaces/{namespace}/pods/{name}")


def finished(kube: Kube, namespace: str, name: str) -> Obj | None:
    pod = get_pod(kube, namespace, name)
    return pod if pod.get("status", {}).get("phase") in ("Succeeded", "Failed") else None


def condition(obj: Obj, kind: str) -> str | None:
    for c in obj.get("status", {}).get("conditions") or []:
        if c["type"] == kind:
            return str(c["status"])
    return None


def terminated(pod: Obj, container: str, init: bool = False) -> Obj:
    key = "initContainerStatuses" if init else "containerStatuses"
    status = next(s for s in pod["status"][key] if s["name"] == container)
    return dict(status["state"]["terminated"])


def pid_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def http_get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=2) as response:
        return int(response.status)


RESULT = (
    "import json, sys\n"
    "path = sys.argv[sys.argv.index('--result-file') + 1]\n"
    "open(path, 'w').write(json.dumps({'phase': 'Succeeded', 'resultFile': path}))\n"
    "print('trained')\n"
)


def test_job_completes_with_its_termination_message(
    node_agent: AgentProcess, kube: Kube, namespace: str
) -> None:
    job = {
        "metadata": {"name": "train"},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {"name": "train", **py(RESULT, "--result-file", "/dev/termination-log")}
                    ],
                }
            },
        },
    }
    kube.request("POST", f"/apis/batch/v1/namespaces/{namespace}/jobs", job)
    path = f"/apis/batch/v1/namespaces/{namespace}/jobs/train"
    done = eventually(lambda: condition(kube.get(path), "Complete") == "True" and kube.get(path))
    assert done["status"]["succeeded"] == 1

    pods = kube.get(
        f"/api/v1/namespaces/{namespace}/pods",
        {"labelSelector": "batch.kubernetes.io/job-name=train"},
    )["items"]
    (pod,) = pods
    assert pod["spec"]["nodeName"] == node_agent.node_name
    assert pod["status"]["phase"] == "Succeeded"
    state = terminated(pod, "train")
    assert (state["exitCode"], state["reason"]) == (0, "Completed")
    result = json.loads(state["message"])
    assert result["phase"] == "Succeeded"
    # The process wrote its pod's own termination-log file, never the real /dev/termination-log,
    # and what it reported reads in the container's terms again.
    assert result["resultFile"] == "/dev/termination-log"
    local = (
        node_agent.state_dir
        / "pods"
        / pod["metadata"]["uid"]
        / "containers"
        / "train"
        / "termination-log"
    )
    assert json.loads(local.read_text())["resultFile"] == str(local)
    # The Job controller saw the pod finish and dropped its tracking finalizer.
    pod = eventually(
        lambda: (
            (p := get_pod(kube, namespace, pod["metadata"]["name"]))
            and "batch.kubernetes.io/job-tracking" not in (p["metadata"].get("finalizers") or [])
            and p
        )
    )
    assert read_logs(node_agent.state_dir, namespace, pod["metadata"]["name"]) == "trained\n"


def test_failed_container_reports_exit_code_and_log_tail(
    node_agent: AgentProcess, kube: Kube, namespace: str
) -> None:
    code = "import sys; print('loading'); print('boom: no such column', file=sys.stderr); exit(3)"
    create_pod(
        kube,
        namespace,
        "fails",
        [{"name": "main", **py(code), "terminationMessagePolicy": "FallbackToLogsOnError"}],
        restartPolicy="Never",
    )
    pod = eventually(lambda: finished(kube, namespace, "fails"))
    assert pod["status"]["phase"] == "Failed"
    state = terminated(pod, "main")
    assert (state["exitCode"], state["reason"]) == (3, "Error")
    assert "boom: no such column" in state["message"]


def _gone(kube: Kube, namespace: str, name: str) -> bool:
    try:
        get_pod(kube, namespace, name)
    except ApiException as error:
        return error.status == 404
    return False


def test_active_deadline_fails_the_pod(
    node_agent: AgentProcess, kube: Kube, namespace: str
) -> None:
    create_pod(
        kube,
        namespace,
        "late",
        [{"name": "main", **py("import time; time.sleep(600)")}],
        restartPolicy="Always",
        activeDeadlineSeconds=2,
        terminationGracePeriodSeconds=1,
    )
    pod = eventually(lambda: finished(kube, namespace, "late"), timeout=20)
    assert (pod["status"]["phase"], pod["status"]["reason"]) == ("Failed", "DeadlineExceeded")
    assert terminated(pod, "main")["exitCode"] == 143


def test_sidecar_serves_the_job_and_stops_when_it_is_done(
    node_agent: AgentProcess, kube: Kube, namespace: str
) -> None:
    sidecar = {
        "name": "proxy",
        "restartPolicy": "Always",
        "image": "modelops-runtime:dev",
        "ports": [{"name": "http", "containerPort": 18085}],
        "command": ["python", "-m", "http.server", "18085", "--bind", "0.0.0.0"],
        "startupProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 1},
    }
    main = py(
        "import os, urllib.request\n"
        "url = f\"http://{os.environ['POD_IP']}:18085/\"\n"
        "status = urllib.request.urlopen(url, timeout=5).status\n"
        "open('/dev/termination-log', 'w').write(str(status))\n"
    )
    create_pod(
        kube,
        namespace,
        "with-sidecar",
        [{"name": "main", **main}],
        initContainers=[sidecar],
        restartPolicy="Never",
        terminationGracePeriodSeconds=5,
    )
    pod = eventually(lambda: finished(kube, namespace, "with-sidecar"))
    assert pod["status"]["phase"] == "Succeeded", pod["status"]
    assert terminated(pod, "main")["message"] == "200"
    proxy = terminated(pod, "proxy", init=True)
    assert proxy["exitCode"] == 143  # stopped with SIGTERM once the main container was done


ENV_KEYS = [
    "NAME",
    "NS",
    "UID",
    "IP",
    "HOST",
    "NODE",
    "SA",
    "TRACK",
    "MEM",
    "CM",
    "SECRET",
    "CFG_level",
    "URL",
    "POD_IP",
    "HOME",
    "PATH",
]


def test_env_and_files_from_downward_api_configmap_and_secret_reach_the_process(
    node_agent: AgentProcess, kube: Kube, namespace: str
) -> None:
    base = f"/api/v1/namespaces/{namespace}"
    kube.request(
        "POST",
        f"{base}/configmaps",
        {"metadata": {"name": "settings"}, "data": {"level": "debug", "mode": "fast"}},
    )
    kube.request(
        "POST",
        f"{base}/secrets",
        {"metadata": {"name": "creds"}, "stringData": {"token": "s3cret"}},
    )
    code = (
        "import json, os\n"
        f"keys = {ENV_KEYS!r}\n"
        "env = {k: os.environ.get(k) for k in keys}\n"
        "files = ('/etc/app/conf/level.txt', '/etc/creds/token')\n"
        "env['files'] = [open(p).read() for p in files]\n"
        "env['listing'] = sorted(os.listdir('/etc/app/conf'))\n"
        "env['mode'] = oct(os.stat('/etc/creds/token').st_mode & 0o777)\n"
        "open('/dev/termination-log', 'w').write(json.dumps(env))\n"
    )

    def field(path: str) -> Obj:
        return {"valueFrom": {"fieldRef": {"fieldPath": path}}}

    container = {
        "name": "main",
        **py(code),
        "resources": {"limits": {"memory": "256Mi"}},
        "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
        "env": [
            {"name": "NAME", **field("metadata.name")},
            {"name": "NS", **field("metadata.namespace")},
            {"name": "UID", **field("metadata.uid")},
            {"name": "IP", **field("status.podIP")},
            {"name": "HOST", **field("status.hostIP")},
            {"name": "NODE", **field("spec.nodeName")},
            {"name": "SA", **field("spec.serviceAccountName")},
            {"name": "TRACK", **field("metadata.labels['track']")},
            {
                "name": "MEM",
                "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
            },
            {"name": "CM", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
            {"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
            {"name": "URL", "value": "http://$(IP):3000/$(NAME)"},
        ],
        "volumeMounts": [
            {"name": "conf", "mountPath": "/etc/app/conf"},
            {"name": "creds", "mountPath": "/etc/creds"},
        ],
    }
    volumes = [
        {
            "name": "conf",
            "configMap": {"name": "settings", "items": [{"key": "level", "path": "level.txt"}]},
        },
        {"name": "creds", "secret": {"secretName": "creds", "defaultMode": 0o400}},
    ]
    body = {
        "metadata": {"name": "env", "labels": {"track": "canary"}},
        "spec": {"restartPolicy": "Never", "containers": [container], "volumes": volumes},
    }
    post_pod(kube, namespace, body)
    pod = eventually(lambda: finished(kube, namespace, "env"))
    assert pod["status"]["phase"] == "Succeeded", pod["status"]
    env = json.loads(terminated(pod, "main")["message"])
    ip = pod["status"]["podIP"]
    assert ip.startswith("127.10.")
    assert env == {
        "NAME": "env",
        "NS": namespace,
        "UID": pod["metadata"]["uid"],
        "IP": ip,
        "HOST": "127.0.0.1",
        "NODE": node_agent.node_name,
        "SA": "default",
        "TRACK": "canary",
        "MEM": "256",
        "CM": "fast",
        "SECRET": "s3cret",
        "CFG_level": "debug",
        "URL": f"http://{ip}:3000/env",
        "POD_IP": ip,
        "HOME": env["HOME"],
        "PATH": env["PATH"],
        "files": ["debug", "s3cret"],
        "listing": ["level.txt"],
        "mode": "0o400",
    }
    assert env["HOME"].startswith(str(node_agent.state_dir))
    assert env["PATH"].split(":")[0] == os.path.dirname(sys.executable)


def test_emptydir_and_claim_are_shared_with_paths_rewritten(
    node_agent: AgentProcess, kube: Kube, namespace: str
) -> None:
    pv_name = f"{namespace}-store"
    kube.request(
        "POST",
        "/api/v1/persistentvolumes",
        {
            "metadata": {"name": pv_name},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteMany"],
                "storageClassName": "manual",
                "hostPath": {"path": "/srv/never-used"},
                "claimRef": {"namespace": namespace, "name": "store"},
            },
        },
    )
    try:
        kube.request(
            "POST",
            f"/api/v1/namespaces/{namespace}/persistentvolumeclaims",
            {
                "metadata": {"name": "store"},
                "spec": {
                    "accessModes": ["ReadWriteMany"],
                    "storageClassName": "manual",
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            },
        )
        scratch = {"name": "scratch", "mountPath": "/scratch"}
        prepare = py("open('/scratch/in.txt', 'w').write('from-init')")
        copy = py(
            "import os, sys\n"
            "store = sys.argv[1].removeprefix('file://')\n"
            "data = open('/scratch/in.txt').read()\n"
            "open(os.path.join(store, 'artifact.txt'), 'w').write(data + ' ' + os.environ['OUT'])",
            "file:///models",
        )
        create_pod(
            kube,
            namespace,
            "writer",
            [
                {
                    "name": "copy",
                    **copy,
                    "env": [{"name": "OUT", "value": "/models/artifact.txt"}],
                    "volumeMounts": [scratch, {"name": "store", "mountPath": "/models"}],
                }
            ],
            initContainers=[{"name": "prepare", **prepare, "volumeMounts": [scratch]}],
            volumes=[
                {"name": "scratch", "emptyDir": {}},
                {"name": "store", "persistentVolumeClaim": {"claimName": "store"}},
            ],
            restartPolicy="Never",
        )
        writer = eventually(lambda: finished(kube, namespace, "writer"), timeout=45)
        assert writer["status"]["phase"] == "Succeeded", writer["status"]
        assert terminated(writer, "prepare", init=True)["reason"] == "Completed"
        assert condition(writer, "Initialized") == "True"

        # Another pod mounts the same claim elsewhere and reads what the first one left there.
        read = py(
            "import os; open('/dev/termination-log', 'w')"
            ".write(open('artifact.txt').read() + '|' + os.getcwd())"
        )
        create_pod(
            kube,
            namespace,
            "reader",
            [
                {
                    "name": "read",
                    **read,
                    "workingDir": "/artifacts",
                    "volumeMounts": [{"name": "store", "mountPath": "/artifacts"}],
                }
            ],
            volumes=[{"name": "store", "persistentVolumeClaim": {"claimName": "store"}}],
            restartPolicy="Never",
        )
        reader = eventually(lambda: finished(kube, namespace, "reader"))
        local = node_agent.state_dir / "pvc" / namespace / "store"
        # The writer saw the claim at /models, the reader at /artifacts: each got its own
        # local spelling of the path, and the reader's report speaks of its own mount again.
        assert (local / "artifact.txt").read_text() == f"from-init {local}/artifact.txt"
        assert terminated(reader, "read")["message"] == (
            "from-init /artifacts/artifact.txt|/artifacts"
        )
        assert not Path("/models/artifact.txt").exists()
    finally:
        kube.request("DELETE", f"/api/v1/persistentvolumes/{pv_name}")


def test_claims_of_the_default_class_are_provisioned_as_local_directories(
    node_agent: AgentProcess, kube: Kube, namespace: str
) -> None:
    claims = f"/api/v1/namespaces/{namespace}/persistentvolumeclaims"
    kube.request(
        "POST",
        claims,
        {
            "metadata": {"name": "artifacts"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    claim = eventually(
        lambda: (c := kube.get(f"{claims}/artifacts"))["status"].get("phase") == "Bound" and c
    )
    assert claim["spec"]["storageClassName"] == "sandbox-local"  # the default class
    volume = kube.get(f"/api/v1/persistentvolumes/{claim['spec']['volumeName']}")
    local = node_agent.state_dir / "pvc" / namespace / "artifacts"
    assert volume["spec"]["hostPath"]["path"] == str(local)
    create_pod(
        kube,
        namespace,
        "store",
        [
            {
                "name": "main",
                **py("open('/models/iris.bentomodel', 'w').write('archive')"),
                "volumeMounts": [{"name": "a", "mountPath": "/models"}],
            }
        ],
        volumes=[{"name": "a", "persistentVolumeClaim": {"claimName": "artifacts"}}],
        restartPolicy="Never",
    )
    assert eventually(lambda: finished(kube, namespace, "store"))["status"]["phase"] == "Succeeded"
    assert (local / "iris.bentomodel").read_text() == "archive"

    kube.request("DELETE", f"/api/v1/namespaces/{namespace}/pods/store")
    kube.request("DELETE", f"{claims}/artifacts")

    def volume_gone() -> bool:
        try:
            kube.get(f"/api/v1/persistentvolumes/{volume['metadata']['name']}")
        except ApiException as error:
            return error.status == 404
        return False

    eventually(volume_gone)
    assert not local.exists()


SERVE = {
    "command": ["python", "-m", "http.server", "18080", "--bind", "0.0.0.0"],
    "image": "modelops-runtime:dev",
    "ports": [{"name": "http", "containerPort": 18080}],
}
READY_HTTP = {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1}


def test_two_pods_serve_the_same_port_each_on_its_own_address(
    node_agent: AgentProcess, kube: Kube, namespace: str
) -> None:
    for name in ("web-a", "web-b"):
        create_pod(kube, namespace, name, [{"name": "web", **SERVE, "readinessProbe": READY_HTTP}])
    pods = [
        eventually(
            lambda n=name: (
                condition(p := get_pod(kube, namespace, n), "Ready")  # type: ignore[misc]
                == "True"
                and p
            )
        )
        for name in ("web-a", "web-b")
    ]
    addresses = {p["status"]["podIP"] for p in pods}
    assert len(addresses) == 2
    for address in addresses:
        assert http_get(f"http://{address}:18080/") == 200


def test_readiness_probe_gates_ready(node_agent: AgentProcess, kube: Kube, namespace: str) -> None:
    code = (
        "import pathlib, time\n"
        "time.sleep(3)\n"
        "pathlib.Path('/data/ready').touch()\n"
        "time.sleep(600)\n"
    )
    probe = {
        "exec": {
            "command": [
                "python",
                "-c",
                "import os, sys; sys.exit(not os.path.exists('/data/ready'))",
            ]
        },
        "periodSeconds": 1,
    }
    create_pod(
        kube,
        namespace,
        "slow",
        [
            {
                "name": "main",
                **py(code),
                "readinessProbe": probe,
                "volumeMounts": [{"name": "d", "mountPath": "/data"}],
            }
        ],
        volumes=[{"name": "d", "emptyDir": {}}],
    )
    running = eventually(
        lambda: (p := get_pod(kube, namespace, "slow"))["status"].get("phase") == "Running" and p
    )
    assert condition(running, "Ready") == "False"
    assert running["status"]["containerStatuses"][0]["ready"] is False
    ready = eventually(
        lambda: condition(p := get_pod(kube, namespace, "slow"), "Ready") == "True" and p
    )
    assert ready["status"]["containerStatuses"][0]["restartCount"] == 0


def test_an_exec_probe_that_cannot_run_fails_without_harming_the_pod(
    node_agent: AgentProcess, kube: Kube, namespace: str
) -> None:
    probe = {"exec": {"command": ["no-such-command"]}, "periodSeconds": 1}
    create_pod(
        kube,
        namespace,
        "odd",
        [{"name": "main", **py("import time; time.sleep(600)"), "readinessProbe": probe}],
    )

    def unhealthy() -> list[Obj]:
        events = kube.get(f"/api/v1/namespaces/{namespace}/events")["items"]
        return [e for e in events if e["reason"] == "Unhealthy"]

    (event,) = eventually(unhealthy)
    assert event["message"] == "Readiness probe failed: command exited with 127"
    pod = get_pod(kube, namespace, "odd")
    assert (pod["status"]["phase"], condition(pod, "Ready")) == ("Running", "False")
    kube.request("DELETE", f"/api/v1/namespaces/{namespace}/pods/odd")
    eventually(lambda: _gone(kube, namespace, "odd"))  # its worker still runs the pod


def test_liveness_failure_restarts_the_container(
    node_agent: AgentProcess, kube: Kube, namespace: str
) -> None:
    code = "import time\nprint('up', flush=True)\ntime.sleep(600)\n"
    liveness = {
        "tcpSocket": {"port": 18099},
        "periodSeconds": 1,
        "failureThreshold": 2,
        "terminationGracePeriodSeconds": 2,
    }
    create_pod(kube, namespace, "sick", [{"name": "main", **py(code), "livenessProbe": liveness}])

    def restarted() -> Obj | None:
        status = (get_pod(kube, namespace, "sick")["status"].get("containerStatuses") or [{}])[0]
        return status if status.get("restartCount", 0) >= 1 else None

    status = eventually(restarted)
    assert status["lastState"]["terminated"]["exitCode"] == 143  # SIGTERM
    previous = read_logs(node_agent.state_dir, namespace, "sick", "main", previous=True)
    assert previous == "up\n"

    # Each failed probe is an event, folded into one with a count as a kubelet's are.
    def unhealthy() -> list[Obj]:
        events = kube.get(f"/api/v1/namespaces/{namespace}/events")["items"]
        return [e for e in events if e["reason"] == "Unhealthy"]

    eventually(lambda: unhealthy() and unhealthy()[0]["count"] >= 2, timeout=10)
    assert len(unhealthy()) == 1


def test_deleting_a_pod_stops_its_process_gracefully(
    node_agent: AgentProcess, kube: Kube, namespace: str
) -> None:
    code = (
        "import signal, sys, time\n"
        "def bye(*_):\n"
        "    print('SIGTERM received', flush=True)\n"
        "    time.sleep(0.5)\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "print('serving', flush=True)\n"
        "while True:\n"
        "    time.sleep(0.1)\n"
    )
    create_pod(
        kube,
        namespace,
        "graceful",
        [{"name": "main", **py(code)}],
        terminationGracePeriodSeconds=20,
    )
    eventually(lambda: "serving" in _log(node_agent, namespace, "graceful"))
    pod = get_pod(kube, namespace, "graceful")
    pid = int(pod["status"]["containerStatuses"][0]["containerID"].removeprefix("sandbox://"))
    assert pid_alive(pid)
    started = time.monotonic()
    kube.request("DELETE", f"/api/v1/namespaces/{namespace}/pods/graceful")

    eventually(lambda: _gone(kube, namespace, "graceful"))
    assert time.monotonic() - started < 10  # it exited on SIGTERM, well before the 20 s grace
    assert not pid_alive(pid)
    assert "SIGTERM received" in _log(node_agent, namespace, "graceful")


def test_lifecycle_hooks_run_around_the_container(
    node_agent: AgentProcess, kube: Kube, namespace: str
) -> None:
    def note(word: str) -> list[str]:
        return ["python", "-c", f"open('/hooks/events.txt', 'a').write('{word}\\n')"]

    code = (
        "import signal, sys, time\n"
        "def bye(*_):\n"
        "    open('/hooks/events.txt', 'a').write('SIGTERM\\n')\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "print('ready', flush=True)\n"
        "while True:\n"
        "    time.sleep(0.1)\n"
    )
    hooks = f"hooks-{namespace}"
    create_pod(
        kube,
        namespace,
        "hooked",
        [
            {
                "name": "main",
                **py(code),
                "lifecycle": {
                    "postStart": {"exec": {"command": note("postStart")}},
                    "preStop": {"exec": {"command": note("preStop")}},
                },
                "volumeMounts": [{"name": "hooks", "mountPath": "/hooks"}],
            }
        ],
        volumes=[{"name": "hooks", "hostPath": {"path": f"/var/{hooks}"}}],
        terminationGracePeriodSeconds=10,
    )
    events = node_agent.state_dir / "hostpath" / "var" / hooks / "events.txt"
    eventually(lambda: events.exists() and "ready" in _log(node_agent, namespace, "hooked"))
    kube.request("DELETE", f"/api/v1/namespaces/{namespace}/pods/hooked")
    eventually(lambda: _gone(kube, namespace, "hooked"))
    assert events.read_text().split() == ["postStart", "preStop", "SIGTERM"]


def _log(agent: AgentProcess, namespace: str, pod: str) -> str:
    try:
        return read_logs(agent.state_dir, namespace, pod)
    except FileNotFoundError:
        return ""


def test_deployment_becomes_available(node_agent: AgentProcess, kube: Kube, namespace: str) -> None:
    labels = {"app": "serve"}
    kube.request(
        "POST",
        f"/apis/apps/v1/namespaces/{namespace}/deployments",
        {
            "metadata": {"name": "serve"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [{"name": "web", **SERVE, "readinessProbe": READY_HTTP}]
                    },
                },
            },
        },
    )
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments/serve"
    deployment = eventually(
        lambda: (
            condition(d := kube.get(path), "Available") == "True"
            and d.get("status", {}).get("readyReplicas") == 2
            and d
        )
    )
    assert deployment["status"]["availableReplicas"] == 2


def test_node_is_ready_and_renews_its_lease(node_agent: AgentProcess, kube: Kube) -> None:
    node = kube.get(f"/api/v1/nodes/{node_agent.node_name}")
    assert condition(node, "Ready") == "True"
    assert not node["spec"].get("taints")
    status = node["status"]
    assert status["capacity"]["cpu"] == str(os.cpu_count())
    assert status["allocatable"]["pods"] == "110"
    assert {"type": "InternalIP", "address": "127.0.0.1"} in status["addresses"]
    assert status["nodeInfo"]["kubeletVersion"] == kube.get("/version")["gitVersion"]
    annotations = node["metadata"]["annotations"]
    assert annotations["modelops.dev/sandbox-state-dir"] == str(node_agent.state_dir)
    path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{node_agent.node_name}"
    lease = kube.get(path)
    assert lease["spec"]["holderIdentity"] == node_agent.node_name
    assert lease["metadata"]["ownerReferences"][0]["name"] == node_agent.node_name

    def renewed() -> bool:
        # Renewed every 10 s since the registration created it, and recently.
        spec, meta = (lease := kube.get(path))["spec"], lease["metadata"]
        renew = datetime.datetime.fromisoformat(spec["renewTime"])
        created = datetime.datetime.fromisoformat(meta["creationTimestamp"])
        age = datetime.datetime.now(datetime.UTC) - renew
        return renew - created >= datetime.timedelta(seconds=5) and age.total_seconds() < 15

    eventually(renewed, timeout=15, every=0.5)


STUBBORN = (
    "import signal, subprocess, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
    "time.sleep(600)\n"
)


def test_stopping_the_agent_ends_every_process_and_the_node(
    control_plane: ControlPlane, kube: Kube, namespace: str, tmp_path: Path
) -> None:
    name = f"stop-{uuid.uuid4().hex[:6]}"
    agent = NodeAgent(
        control_plane.kubeconfig,
        tmp_path,
        name,
        stop_grace=2,
        pod_network="127.11.0.0/16",
        provision=False,
    ).start()
    try:
        create_pod(kube, namespace, "server", [{"name": "web", **SERVE}], nodeName=name)
        create_pod(
            kube,
            namespace,
            "stubborn",
            [{"name": "main", **py(STUBBORN)}],
            nodeName=name,
            terminationGracePeriodSeconds=60,
        )
        for pod in ("server", "stubborn"):
            eventually(
                lambda p=pod: (
                    get_pod(kube, namespace, p)["status"].get("phase")  # type: ignore[misc]
                    == "Running"
                )
            )
        addresses = set(agent.pod_addresses().values())
        eventually(lambda: _listening(addresses))
        time.sleep(0.5)  # the stubborn container has started its child
        pids = agent.process_ids()
        family = pids + [c.pid for p in pids for c in psutil.Process(p).children(recursive=True)]
        assert len(family) >= 3
    finally:
        started = time.monotonic()
        agent.stop()
    assert time.monotonic() - started < 15
    assert [pid for pid in family if pid_alive(pid)] == []
    assert not _listening(addresses)
    with pytest.raises(ApiException) as error:
        kube.get(f"/api/v1/nodes/{name}")
    assert error.value.status == 404
    for pod in ("server", "stubborn"):
        status = get_pod(kube, namespace, pod)["status"]
        assert (status["phase"], status["reason"]) == ("Failed", "Terminated")


def _listening(addresses: set[str]) -> set[str]:
    return {
        c.laddr.ip
        for c in psutil.net_connections("inet")
        if c.status == psutil.CONN_LISTEN and c.laddr.ip in addresses
    }


def test_a_killed_agent_leaves_no_process_behind(
    control_plane: ControlPlane, kube: Kube, namespace: str, tmp_path: Path
) -> None:
    name = f"killed-{uuid.uuid4().hex[:6]}"
    agent = start_agent_process(
        control_plane.kubeconfig,
        tmp_path,
        name,
        extra_args=["--pod-network", "127.12.0.0/16", "--no-provisioner"],
    )
    try:
        create_pod(
            kube, namespace, "orphan-maker", [{"name": "main", **py(STUBBORN)}], nodeName=name
        )
        pod = eventually(
            lambda: (
                (p := get_pod(kube, namespace, "orphan-maker"))["status"].get("phase") == "Running"
                and p
            )
        )
        pid = int(pod["status"]["containerStatuses"][0]["containerID"].removeprefix("sandbox://"))
        children = eventually(lambda: psutil.Process(pid).children(recursive=True))
        family = [pid, *(c.pid for c in children)]
    finally:
        agent.popen.kill()  # no clean stop: the container and its child must die all the same
        agent.popen.wait()
        kube.request("DELETE", f"/api/v1/nodes/{name}")
    eventually(lambda: not [p for p in family if pid_alive(p)], timeout=10)
