"""The `modelops` command against the real API server: one test per verb, the exit statuses of
`status --wait`, the clean errors (unknown Model, a namespace RBAC forbids).

No operator runs here: each test writes the Model's status and its ModelVersions as the operator
would (the operator itself answers the requests in tests/operator/test_operator.py), and, for a
request's `--wait`, plays the operator's answer from a thread once the request's annotation
arrives. So each outcome is exact and each test takes seconds.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from support import eventually
from typer.testing import CliRunner, Result

from modelops_api import contract
from modelops_operator import cli
from modelops_operator.cli_verdicts import (
    EXIT_DEGRADED,
    EXIT_ERROR,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_PENDING,
)
from modelops_sandbox.controlplane import ControlPlane

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
G, V = contract.GROUP, contract.VERSION


def condition(type_: str, status: str, reason: str, message: str = "") -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2025-05-01T11:00:00Z",
        "observedGeneration": 1,
    }


READY = [
    condition("Ready", "True", "Serving", "iris-v1 serves with 2/2 replicas ready"),
    condition("Degraded", "False", "AsExpected", "nothing is degraded"),
]
SERVING: dict[str, Any] = {
    "observedGeneration": 1,
    "phase": "Serving",
    "conditions": READY,
    "stableVersion": "iris-v1",
    "latestVersion": "iris-v1",
    "accuracy": 0.953,
    "drift": 0.04,
}


def canary_status() -> dict[str, Any]:
    now = time.time()
    return {
        **SERVING,
        "phase": "Canary",
        "latestVersion": "iris-v2",
        "canary": {
            "version": "iris-v2",
            "step": 0,
            "weight": 33,
            "replicas": 1,
            "failedChecks": 1,
            "startedAt": now - 120,
            "stepStartedAt": now - 120,
            "lastAnalysisAt": now - 30,
            "paused": False,
            "lastAnalysis": {
                "verdict": "fail",
                "at": now - 30,
                "checks": {"errorRate": "pass", "latencyP95Seconds": "fail"},
                "reasons": {"latencyP95Seconds": "p95 0.81s > 0.5s"},
            },
            "reason": "CheckFailed",
            "message": "latencyP95Seconds failed (1/2)",
        },
        "monitoring": {
            "version": "iris-v1",
            "checks": [
                {"check": "drift", "outcome": "pass", "threshold": 0.2, "reason": "", "value": 0.04}
            ],
            "summary": {"drift": {"feature": "petal_length", "psi": 0.04}},
            "lastRetrain": {"reason": "drift", "at": now - 600, "version": "iris-v2"},
        },
    }


class World:
    """The namespace, as the operator would leave it, and the command run against it."""

    def __init__(self, api: client.ApiClient, namespace: str, kubeconfig: Path) -> None:
        self.ns = namespace
        self.kubeconfig = kubeconfig
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.runner = CliRunner()

    def model(self, name: str = "iris", status: dict[str, Any] | None = None) -> None:
        body = yaml.safe_load((REPO / "examples" / "iris.yaml").read_text())
        body["metadata"]["name"] = name
        self.custom.create_namespaced_custom_object(G, V, self.ns, contract.MODELS, body)
        if status is not None:
            self.status(status, name)

    def read(self, name: str = "iris") -> dict[str, Any]:
        got = self.custom.get_namespaced_custom_object(G, V, self.ns, contract.MODELS, name)
        assert isinstance(got, dict)
        return got

    def status(self, status: dict[str, Any], name: str = "iris") -> None:
        self.custom.patch_namespaced_custom_object_status(
            G, V, self.ns, contract.MODELS, name, {"status": status}
        )

    def version(self, name: str, trigger: str, **status: Any) -> None:
        body = {
            "apiVersion": contract.API_VERSION,
            "kind": "ModelVersion",
            "metadata": {"name": name, "labels": {contract.LABEL_MODEL: name.rsplit("-v", 1)[0]}},
            "spec": {
                "model": name.rsplit("-v", 1)[0],
                "reason": trigger,
                "specHash": "sha256:" + "0" * 64,
                "training": {},
            },
        }
        self.custom.create_namespaced_custom_object(G, V, self.ns, contract.MODEL_VERSIONS, body)
        if status:
            self.custom.patch_namespaced_custom_object_status(
                G, V, self.ns, contract.MODEL_VERSIONS, name, {"status": status}
            )

    def run(self, *args: str, namespace: bool = True) -> Result:
        where = ["-n", self.ns] if namespace else []
        return self.runner.invoke(
            cli.app, [*args, *where, "--kubeconfig", str(self.kubeconfig)], catch_exceptions=False
        )

    def when_annotated(self, key: str, answer: Callable[[str], None]) -> threading.Thread:
        """Plays the operator: once the Model carries `key`, calls `answer` with its value."""

        def wait_then_answer() -> None:
            value = eventually(
                lambda: (self.read()["metadata"].get("annotations") or {}).get(key), timeout=30
            )
            answer(str(value))

        thread = threading.Thread(target=wait_then_answer, daemon=True)
        thread.start()
        return thread


@pytest.fixture
def world(
    kube_api: client.ApiClient, crds: Path, namespace: str, control_plane: ControlPlane
) -> World:
    return World(kube_api, namespace, control_plane.kubeconfig)


SUCCEEDED = {"phase": "Succeeded", "reason": "Trained", "metrics": {"accuracy": 0.953}}


def test_get_shows_a_model_as_a_tree_all_models_as_a_table_and_as_json(world: World) -> None:
    world.model(status=canary_status())
    world.model("wine", status={**SERVING, "stableVersion": "wine-v1"})
    world.version("iris-v1", "initial", **SUCCEEDED, rows={"clean": 147})
    world.version("iris-v2", "drift", phase="Succeeded", metrics={"accuracy": 0.967})

    tree = world.run("get", "iris")
    assert tree.exit_code == 0, tree.output
    lines = tree.stdout.splitlines()
    assert lines[0].split() == ["iris", world.ns, "Canary"]
    assert "stable iris-v1  accuracy 0.953 (holdout)  drift PSI 0.04 ≤ 0.2" in tree.stdout
    assert "canary iris-v2  step 1/2  weight 33%  1 replica  failed analyses 1/2" in tree.stdout
    assert "✖ latencyP95Seconds fail: p95 0.81s > 0.5s" in tree.stdout
    assert "last retrain drift  10m ago  -> iris-v2" in tree.stdout
    assert any(line.split()[:3] == ["iris-v2", "Succeeded", "drift"] for line in lines)

    table = world.run("get")
    rows = [line.split() for line in table.stdout.splitlines()[2:]]
    assert [r[:5] for r in rows] == [
        ["iris", "Canary", "True", "iris-v1", "iris-v2"],
        ["wine", "Serving", "True", "wine-v1", "-"],
    ]
    everywhere = world.run("get", "-A", namespace=False)
    assert [world.ns, "iris", "Canary"] in [
        line.split()[:3] for line in everywhere.stdout.splitlines()
    ]

    as_json = json.loads(world.run("get", "iris", "-o", "json").stdout)
    assert as_json["canary"]["weight"] == 33 and as_json["stable"] == "iris-v1"
    assert [v["name"] for v in as_json["versions"]] == ["iris-v1", "iris-v2"]
    # Global options before the verb work too.
    as_yaml = world.runner.invoke(
        cli.app, ["-o", "yaml", "-n", world.ns, "--kubeconfig", str(world.kubeconfig), "get"]
    )
    assert [m["name"] for m in yaml.safe_load(as_yaml.stdout)["items"]] == ["iris", "wine"]


def test_get_says_when_a_namespace_has_no_models(world: World) -> None:
    result = world.run("get")
    assert result.exit_code == 0 and f"No Models in namespace {world.ns}." in result.stderr


def test_history_is_the_experiment_table(world: World) -> None:
    world.model(status=SERVING)
    world.version("iris-v1", "initial", **SUCCEEDED, rows={"clean": 147})
    world.version(
        "iris-v2",
        "manual",
        phase="Rejected",
        reason="QualityGateMissed",
        message="accuracy 0.81 < 0.9",
        metrics={"accuracy": 0.81},
    )
    result = world.run("history", "iris")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["VERSION", "PHASE", "TRIGGER", "ACCURACY"]
    rows = [line.split() for line in lines[2:]]
    assert rows[0][:4] == ["iris-v2", "Rejected", "manual", "0.81"]
    assert "QualityGateMissed: accuracy 0.81 < 0.9" in lines[2]
    assert rows[1][:4] == ["iris-v1", "Succeeded", "initial", "0.953"] and "stable" in rows[1]
    items = json.loads(world.run("history", "iris", "-o", "json").stdout)["items"]
    assert [(v["name"], v["trigger"]) for v in items] == [
        ("iris-v1", "initial"),
        ("iris-v2", "manual"),
    ]


DEGRADED_WHY = "still serving iris-v1; iris-v2 rejected: accuracy 0.81 < 0.9"


@pytest.mark.parametrize(
    ("status", "code", "said"),
    [
        (SERVING, EXIT_OK, "Ready (Serving): iris-v1 serves with 2/2 replicas ready"),
        (
            {
                **SERVING,
                "phase": "Degraded",
                "conditions": [
                    condition("Ready", "False", "QualityGateMissed", DEGRADED_WHY),
                    condition("Degraded", "True", "QualityGateMissed", DEGRADED_WHY),
                ],
            },
            EXIT_DEGRADED,
            f"Degraded (QualityGateMissed): {DEGRADED_WHY}",
        ),
        (
            {
                "observedGeneration": 1,
                "phase": "Failed",
                "conditions": [condition("Ready", "False", "TrainingFailed", "MissingTarget")],
            },
            EXIT_FAILED,
            "Failed (TrainingFailed): MissingTarget",
        ),
        (
            {
                "observedGeneration": 1,
                "phase": "Training",
                "conditions": [condition("Ready", "False", "Training", "iris-v1 is training")],
            },
            EXIT_PENDING,
            "Pending (Training): iris-v1 is training",
        ),
    ],
)
def test_status_answers_with_its_exit_status(
    world: World, status: dict[str, Any], code: int, said: str
) -> None:
    world.model(status=status)
    result = world.run("status", "iris")
    assert result.exit_code == code, result.output
    assert result.stdout.strip() == f"model {world.ns}/iris: {said}"
    as_json = json.loads(world.run("status", "iris", "-o", "json").stdout)
    assert as_json["exitCode"] == code


TRAINING = {
    "observedGeneration": 1,
    "phase": "Training",
    "conditions": [condition("Ready", "False", "Training", "iris-v1 is training (initial)")],
}


def later(seconds: float, action: Callable[[], None]) -> threading.Timer:
    timer = threading.Timer(seconds, action)
    timer.start()
    return timer


def test_status_wait_ends_0_when_the_model_becomes_ready(world: World) -> None:
    world.model(status=TRAINING)
    later(2, lambda: world.status(SERVING))
    started = time.monotonic()
    result = world.run("status", "iris", "--wait", "--timeout", "60s", "--interval", "0.5")
    assert result.exit_code == EXIT_OK, result.output
    assert 1.5 < time.monotonic() - started < 30
    assert "Ready (Serving)" in result.stdout


def test_status_wait_ends_3_when_the_model_turns_degraded(world: World) -> None:
    world.model(status=TRAINING)
    degraded = {
        **SERVING,
        "phase": "Degraded",
        "conditions": [
            condition("Ready", "False", "RolledBack", "iris-v2 rolled back"),
            condition("Degraded", "True", "RolledBack", "still serving iris-v1"),
        ],
    }
    later(1.5, lambda: world.status(degraded))
    result = world.run("status", "iris", "--wait", "--timeout", "60", "--interval", "0.5")
    assert result.exit_code == EXIT_DEGRADED, result.output
    assert "Degraded (RolledBack): still serving iris-v1" in result.stdout


def test_status_wait_ends_5_when_the_timeout_passes(world: World) -> None:
    world.model(status=TRAINING)
    started = time.monotonic()
    result = world.run("status", "iris", "--wait", "--timeout", "2s", "--interval", "0.5")
    assert result.exit_code == EXIT_PENDING, result.output
    assert 2 <= time.monotonic() - started < 20
    assert "timed out after 2s: iris-v1 is training (initial)" in result.stdout


def test_status_wait_does_not_take_a_status_older_than_the_spec(world: World) -> None:
    world.model(status=SERVING)  # Ready, for generation 1
    body = world.read()
    body["spec"]["serving"]["replicas"] = 3  # generation 2, not yet observed
    world.custom.replace_namespaced_custom_object(G, V, world.ns, contract.MODELS, "iris", body)
    result = world.run("status", "iris", "--wait", "--timeout", "1s", "--interval", "0.5")
    assert result.exit_code == EXIT_PENDING, result.output
    assert "has not observed generation 2" in result.stdout


def test_retrain_writes_its_annotation(world: World) -> None:
    world.model(status=SERVING)
    result = world.run("retrain", "iris")
    assert result.exit_code == 0, result.output
    value = world.read()["metadata"]["annotations"][contract.ANNOTATION_RETRAIN]
    assert result.stdout.strip() == (
        f"model {world.ns}/iris: retrain requested ({contract.ANNOTATION_RETRAIN}={value})"
    )


@pytest.mark.parametrize(
    ("outcome", "code"),
    [(SUCCEEDED, EXIT_OK), ({"phase": "Rejected", "reason": "QualityGateMissed"}, EXIT_DEGRADED)],
)
def test_retrain_wait_follows_the_version_it_started(
    world: World, outcome: dict[str, Any], code: int
) -> None:
    world.model(status=SERVING)
    world.version("iris-v1", "initial", **SUCCEEDED)

    def operator(token: str) -> None:
        world.version("iris-v2", "manual", phase="Training")
        world.status({"retrainToken": token, "latestVersion": "iris-v2"})
        time.sleep(1)
        world.custom.patch_namespaced_custom_object_status(
            G, V, world.ns, contract.MODEL_VERSIONS, "iris-v2", {"status": outcome}
        )

    world.when_annotated(contract.ANNOTATION_RETRAIN, operator)
    result = world.run("retrain", "iris", "--wait", "--timeout", "60s", "--interval", "0.5")
    assert result.exit_code == code, result.output
    assert f"retrain: {'Ready' if code == 0 else 'Degraded'}: iris-v2 " in result.stdout


def test_canary_verbs_refuse_without_a_canary(world: World) -> None:
    world.model(status=SERVING)
    for verb in ("promote", "abort", "pause", "resume"):
        result = world.run(verb, "iris")
        assert result.exit_code == EXIT_ERROR, result.output
        assert f"runs no canary to {verb}; iris-v1 serves as stable" in result.stderr
    assert contract.ANNOTATION_CANARY not in (world.read()["metadata"].get("annotations") or {})


def test_pause_writes_its_command(world: World) -> None:
    world.model(status=canary_status())
    result = world.run("pause", "iris")
    assert result.exit_code == 0, result.output
    value = world.read()["metadata"]["annotations"][contract.ANNOTATION_CANARY]
    assert (
        value.startswith("pause/")
        and f"pause requested ({contract.ANNOTATION_CANARY}={value})" in result.stdout
    )


@pytest.mark.parametrize(("promoted", "code"), [(True, EXIT_OK), (False, EXIT_DEGRADED)])
def test_promote_wait_says_whether_the_canary_became_stable(
    world: World, promoted: bool, code: int
) -> None:
    world.model(status=canary_status())

    def operator(value: str) -> None:
        stable = "iris-v2" if promoted else "iris-v1"  # not promoted: rolled back meanwhile
        world.status({"canaryCommand": value, "canary": None, "stableVersion": stable})

    world.when_annotated(contract.ANNOTATION_CANARY, operator)
    result = world.run("promote", "iris", "--wait", "--timeout", "60s", "--interval", "0.5")
    assert result.exit_code == code, result.output
    expected = "iris-v2 is stable" if promoted else "iris-v2 was not promoted; stable is iris-v1"
    assert expected in result.stdout


def test_abort_wait_times_out_when_the_operator_does_not_answer(world: World) -> None:
    world.model(status=canary_status())
    result = world.run(
        "abort", "iris", "--wait", "--timeout", "1s", "--interval", "0.3", "-o", "json"
    )
    assert result.exit_code == EXIT_PENDING, result.output
    said = json.loads(result.stdout)
    assert said["verb"] == "abort" and said["outcome"]["reason"] == "NotHandled"


@pytest.mark.parametrize(
    "verb",
    [
        ["get", "nosuch"],
        ["status", "nosuch", "--wait"],
        ["history", "nosuch"],
        ["retrain", "nosuch"],
        ["promote", "nosuch"],
    ],
)
def test_an_unknown_model_is_a_clean_error(world: World, verb: list[str]) -> None:
    result = world.run(*verb)
    assert result.exit_code == EXIT_ERROR
    assert result.stderr.strip() == f"modelops: Model {world.ns}/nosuch not found"
    assert result.stdout == ""


def test_an_unknown_model_from_the_installed_command_has_no_traceback(world: World) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelops_operator.cli",
            "status",
            "nosuch",
            "-n",
            world.ns,
            "--kubeconfig",
            str(world.kubeconfig),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == EXIT_ERROR
    assert result.stderr == f"modelops: Model {world.ns}/nosuch not found\n"


@pytest.fixture
def outsider(world: World, tmp_path: Path) -> Path:
    """A kubeconfig of a ServiceAccount no Role grants anything: RBAC forbids it everything."""
    world.core.create_namespaced_service_account(
        world.ns, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="outsider"))
    )
    token = world.core.create_namespaced_service_account_token(
        "outsider",
        world.ns,
        client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[])),
    ).status.token
    admin = yaml.safe_load(world.kubeconfig.read_text())
    cluster = admin["clusters"][0]["cluster"]
    if "certificate-authority" in cluster:
        ca = base64.b64encode(Path(cluster["certificate-authority"]).read_bytes()).decode()
        cluster = {"server": cluster["server"], "certificate-authority-data": ca}
    path = tmp_path / "outsider.kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": cluster}],
                "users": [{"name": "outsider", "user": {"token": token}}],
                "contexts": [{"name": "outsider", "context": {"cluster": "c", "user": "outsider"}}],
                "current-context": "outsider",
            }
        )
    )
    return path


def test_a_forbidden_namespace_is_a_clean_error(world: World, outsider: Path) -> None:
    world.model(status=SERVING)
    for verb in (["get"], ["get", "iris"], ["status", "iris"], ["retrain", "iris"]):
        result = world.runner.invoke(
            cli.app, [*verb, "-n", world.ns, "--kubeconfig", str(outsider)], catch_exceptions=False
        )
        assert result.exit_code == EXIT_ERROR, result.output
        assert f"in namespace {world.ns}: forbidden: " in result.stderr, result.stderr
        assert "system:serviceaccount:" in result.stderr and "Traceback" not in result.output
    assert contract.ANNOTATION_RETRAIN not in (world.read()["metadata"].get("annotations") or {})


def _ctrl_c_stops() -> None:
    """SIGINT as a terminal delivers it: a suite started as a shell's background job (`make test &`)
    inherits SIGINT ignored, and then Python installs no Ctrl-C handler in the child either."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def watching(world: World) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "modelops_operator.cli",
                *args,
                "-n",
                world.ns,
                "--kubeconfig",
                str(world.kubeconfig),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "COLUMNS": "160"},
            preexec_fn=_ctrl_c_stops,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_get_watch_refreshes_until_ctrl_c(
    world: World, watching: Callable[..., subprocess.Popen[str]]
) -> None:
    world.model(status=canary_status())
    process = watching("get", "iris", "-w", "--interval", "0.3")
    time.sleep(3)  # started and showing the canary
    assert process.poll() is None
    world.status({"phase": "Serving", "canary": None, "stableVersion": "iris-v2"})
    time.sleep(1.5)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    last = out.split("(Ctrl-C to stop)")[-1]  # the last frame (all of them on a terminal)
    assert "Serving" in last and "stable iris-v2" in last and "canary iris-v2" not in last
    assert "Traceback" not in err


def test_get_watch_follows_the_api_servers_watch_not_a_timer(
    world: World, watching: Callable[..., subprocess.Popen[str]]
) -> None:
    """With a minute between two polls, a change still shows within seconds: it came by the
    watch of Models and ModelVersions."""
    world.model(status=SERVING)
    world.version("iris-v1", "spec-change", **SUCCEEDED)
    process = watching("get", "iris", "-w", "--interval", "60")
    time.sleep(3)  # started, showing iris-v1 as stable, watching
    assert process.poll() is None
    world.version("iris-v2", "drift", phase="Training", reason="Training")
    time.sleep(2)
    world.status({"phase": "Canary", "latestVersion": "iris-v2"})
    time.sleep(3)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    last = out.split("(Ctrl-C to stop)")[-1]
    assert "Canary" in last and "iris-v2" in last, last
    assert "not watching" not in out and "Traceback" not in err
