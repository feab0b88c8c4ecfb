"""The operator against the real control plane: training Jobs, versions, stable serving, status.

The session's control plane has no node, and the tests play the kubelet, as kubebuilder's envtest
leaves it to a test: they report a training Pod finished with the termination message each test
needs (succeeded, rejected by the gate, failed), and serving Pods running and ready. Everything
else is the real API server, controllers, garbage collector and the operator process. The same
loop with pods that really run is tests/loop/test_loop.py, on the real node.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from support import (
    OperatorProcess,
    eventually,
    finish_pod,
    run_pod_ready,
    store_of,
    training_result,
)

from modelops_sandbox.controlplane import ControlPlane

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
GROUP, VERSION = "modelops.dev", "v1alpha1"


@pytest.fixture(scope="module")
def operator(
    control_plane: ControlPlane, crds: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """One operator for the module, watching the namespaces named `op-*`."""
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    # No periodic resync: every behaviour below must come from the events that cause it.
    process = OperatorProcess(
        control_plane.kubeconfig, ["op-*"], log, {"MODELOPS_RESYNC_SECONDS": "3600"}
    ).start()
    yield process
    process.stop()
    print(process.tail())


@pytest.fixture
def ns(namespace_factory: Callable[[str], str], operator: OperatorProcess) -> str:
    return namespace_factory("op-")


class Cluster:
    """The API calls the tests make, in the tests' own words."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.ns = namespace
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.policy = client.PolicyV1Api(api)
        self.networking = client.NetworkingV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    def apply_model(self, body: dict[str, Any]) -> None:
        name = body["metadata"]["name"]
        try:
            current = self.model(name)
        except ApiException as error:
            if error.status != 404:
                raise
            self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, "models", body)
            return
        for _ in range(10):  # the operator writes annotations too: retry on a conflict
            meta = {**body["metadata"], "resourceVersion": current["metadata"]["resourceVersion"]}
            try:
                self.custom.replace_namespaced_custom_object(
                    GROUP, VERSION, self.ns, "models", name, {**body, "metadata": meta}
                )
                return
            except ApiException as error:
                if error.status != 409:
                    raise
            current = self.model(name)
        pytest.fail(f"could not update Model {name}: conflicts")

    def model(self, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, "models", name)

    def condition(self, name: str, kind: str) -> dict[str, Any]:
        for c in self.model(name).get("status", {}).get("conditions", []):
            if c["type"] == kind:
                return dict(c)
        return {}

    def versions(self) -> dict[str, dict[str, Any]]:
        items = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.ns, "modelversions")[
            "items"
        ]
        return {v["metadata"]["name"]: v for v in items}

    def version_phase(self, name: str) -> str | None:
        v = self.versions().get(name)
        return (v or {}).get("status", {}).get("phase")

    def jobs(self) -> list[str]:
        return [j.metadata.name for j in self.batch.list_namespaced_job(self.ns).items]

    def training_pod(self, version: str) -> Any:
        pods = self.core.list_namespaced_pod(
            self.ns, label_selector=f"batch.kubernetes.io/job-name={version}"
        ).items
        return pods[0] if pods else None

    def finish_training(
        self, model: str, version: str, phase: str = "Succeeded", exit_code: int = 0, **fields: Any
    ) -> None:
        pod = eventually(lambda: self.training_pod(version))
        message = training_result(model, version, phase, store_of(pod), **fields)
        finish_pod(self.core, self.ns, pod.metadata.name, "train", exit_code, message)

    def deployment(self, name: str) -> Any:
        try:
            return self.apps.read_namespaced_deployment(name, self.ns)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def serve_ready(self, deployment: str) -> None:
        """Plays the kubelet for the Deployment's pods until it has rolled out: each running and
        ready, every replica of its current template."""
        selector = ",".join(
            f"{k}={v}" for k, v in self.deployment(deployment).spec.selector.match_labels.items()
        )

        def all_ready() -> bool:
            pods = self.core.list_namespaced_pod(self.ns, label_selector=selector).items
            for pod in pods:
                if pod.status.phase != "Running" and not pod.metadata.deletion_timestamp:
                    containers = [(c.name, c.image) for c in pod.spec.containers]
                    try:
                        run_pod_ready(self.core, self.ns, pod.metadata.name, containers)
                    except ApiException as error:
                        # Its ReplicaSet deleted it since the list (a rollout replacing an
                        # old pod): the next round lists again.
                        if error.status != 404:
                            raise
            d = self.deployment(deployment)
            rolled_out = (d.status.observed_generation or 0) >= d.metadata.generation and (
                d.status.updated_replicas == d.status.replicas == d.spec.replicas
            )
            return rolled_out and d.status.ready_replicas == d.spec.replicas

        eventually(all_ready, timeout=60, every=0.5)


@pytest.fixture
def cluster(kube_api: client.ApiClient, ns: str) -> Cluster:
    return Cluster(kube_api, ns)


OwnOperator = Callable[..., OperatorProcess]


@pytest.fixture
def isolated(
    control_plane: ControlPlane,
    crds: Path,
    kube_api: client.ApiClient,
    namespace_factory: Callable[[str], str],
    tmp_path: Path,
) -> Iterator[tuple[Cluster, OwnOperator]]:
    """A namespace outside the module's operator, and a way to start operators of its own
    (environment as keyword arguments); every one started is stopped at the end."""
    ns = namespace_factory("own-")
    started: list[OperatorProcess] = []

    def start(**env: str) -> OperatorProcess:
        process = OperatorProcess(control_plane.kubeconfig, [ns], tmp_path / "operator.log", env)
        started.append(process.start())
        return process

    yield Cluster(kube_api, ns), start
    for process in started:
        process.stop()


def iris(**serving: Any) -> dict[str, Any]:
    body = yaml.safe_load((REPO / "examples" / "iris.yaml").read_text())
    body["spec"]["serving"].update(serving)
    return dict(body)


def with_estimators(body: dict[str, Any], n: int) -> dict[str, Any]:
    changed = copy.deepcopy(body)
    changed["spec"]["training"]["estimator"]["params"]["n_estimators"] = n
    return changed


def test_iris_trains_records_and_serves(cluster: Cluster, control_plane: ControlPlane) -> None:
    cluster.apply_model(iris())
    version = eventually(lambda: cluster.versions().get("iris-v1"))
    assert version["spec"]["reason"] == "initial"
    assert version["spec"]["specHash"].startswith("sha256:")
    assert version["metadata"]["ownerReferences"][0]["kind"] == "Model"

    job = eventually(lambda: _job(cluster, "iris-v1"))
    pod = job.spec.template.spec
    train = pod.containers[0]
    assert train.command == ["modelops", "train"]
    assert train.args[:6] == [
        "--spec",
        "/etc/modelops/training.json",
        "--model",
        "iris",
        "--version",
        "iris-v1",
    ]
    assert "--result-file" in train.args and train.termination_message_path in train.args
    assert pod.restart_policy == "Never" and job.spec.backoff_limit == 0
    [evicted] = job.spec.pod_failure_policy.rules  # an evicted pod is replaced, not a failure
    assert evicted.action == "Ignore" and evicted.on_pod_conditions[0].type == "DisruptionTarget"
    assert pod.security_context.run_as_non_root and train.security_context.read_only_root_filesystem
    mounts = {m.name: m.mount_path for m in train.volume_mounts}
    volumes = {v.name: v for v in pod.volumes}
    assert volumes["artifacts"].persistent_volume_claim.claim_name == "modelops-artifacts"
    assert (
        volumes["bentoml-home"].empty_dir is not None and mounts["bentoml-home"] == "/home/bentoml"
    )
    spec_file = volumes["spec"].downward_api.items[0]
    assert (spec_file.path, mounts["spec"]) == ("training.json", "/etc/modelops")
    annotation = re.fullmatch(r"metadata\.annotations\['(.+)'\]", spec_file.field_ref.field_path)
    assert annotation is not None
    spec = json.loads(job.spec.template.metadata.annotations[annotation.group(1)])
    assert spec["estimator"]["params"]["n_estimators"] == 100

    cluster.finish_training("iris", "iris-v1")
    eventually(lambda: cluster.version_phase("iris-v1") == "Succeeded")
    deployment = eventually(lambda: cluster.deployment("iris-stable"))
    serve = deployment.spec.template.spec.containers[0]
    env = {e.name: e.value for e in serve.env}
    uid = cluster.model("iris")["metadata"]["uid"]
    assert env["MODELOPS_ARTIFACT"] == f"file:///models/{cluster.ns}/{uid}/iris/iris-v1.bentomodel"
    assert env["MODELOPS_TRACK"] == "stable" and env["MODELOPS_VERSION"] == "iris-v1"
    assert deployment.spec.replicas == 2
    eventually(lambda: _exists(lambda: cluster.core.read_namespaced_service("iris", cluster.ns)))
    service = cluster.core.read_namespaced_service("iris", cluster.ns)
    assert service.spec.selector == {
        "modelops.dev/model": "iris",
        "app.kubernetes.io/component": "serving",
    }
    budget = eventually(
        lambda: _exists(
            lambda: cluster.policy.read_namespaced_pod_disruption_budget("iris", cluster.ns)
        )
    )
    assert budget
    # The API server takes the namespace's NetworkPolicy as the operator writes it.
    policy = cluster.networking.read_namespaced_network_policy("modelops-models", cluster.ns)
    assert policy.spec.policy_types == ["Ingress"]
    assert [p.port for p in policy.spec.ingress[0].ports] == [3000]
    assert policy.spec.pod_selector.match_expressions[1].values == ["serving", "training"]

    eventually(lambda: cluster.model("iris").get("status", {}).get("stableVersion") == "iris-v1")
    status_writers = {
        f["manager"]
        for f in cluster.model("iris")["metadata"]["managedFields"]
        if f.get("subresource") == "status"
    }
    assert status_writers == {"modelops"}  # so GitOps tools and kubectl can tell who owns what
    columns = control_plane.kubectl_run("get", "models", "-n", cluster.ns).stdout
    header, row = columns.splitlines()[:2]
    assert header.split()[:6] == ["NAME", "PHASE", "STABLE", "WEIGHT", "ACCURACY", "DRIFT"]
    assert row.split()[:4] == ["iris", "Deploying", "iris-v1", "0.97"]
    experiments = control_plane.kubectl_run("get", "modelversions", "-n", cluster.ns).stdout
    assert experiments.splitlines()[1].split()[:5] == [
        "iris-v1",
        "iris",
        "initial",
        "Succeeded",
        "0.97",
    ]


def _job(cluster: Cluster, name: str) -> Any:
    try:
        return cluster.batch.read_namespaced_job(name, cluster.ns)
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def _serve_v1(cluster: Cluster, body: dict[str, Any]) -> None:
    cluster.apply_model(body)
    cluster.finish_training("iris", "iris-v1")
    eventually(lambda: cluster.deployment("iris-stable"))


@pytest.mark.parametrize(
    ("phase", "exit_code", "fields", "reason"),
    [
        (
            "Failed",
            1,
            {"reason": "MissingTarget", "message": "no column 'species'"},
            "TrainingFailed",
        ),
        (
            "Rejected",
            0,
            {
                "reason": "QualityGateMissed",
                "message": "accuracy 0.41 < 0.9",
                "metrics": {"accuracy": 0.41},
            },
            "QualityGateMissed",
        ),
    ],
)
def test_failed_or_rejected_training_leaves_serving_untouched(
    cluster: Cluster, phase: str, exit_code: int, fields: dict[str, Any], reason: str
) -> None:
    _serve_v1(cluster, iris())
    before = cluster.deployment("iris-stable")
    cluster.apply_model(with_estimators(iris(), 5))
    eventually(lambda: cluster.versions().get("iris-v2"))
    cluster.finish_training("iris", "iris-v2", phase, exit_code, **fields)
    eventually(lambda: cluster.version_phase("iris-v2") == phase)

    degraded = eventually(
        lambda: (c := cluster.condition("iris", "Degraded")).get("status") == "True" and c
    )
    assert degraded["reason"] == reason and fields["message"] in degraded["message"]
    trained = cluster.condition("iris", "Trained")
    assert (trained["status"], trained["reason"]) == ("False", reason)
    model = cluster.model("iris")
    assert model["status"]["stableVersion"] == "iris-v1"
    assert model["status"]["phase"] == "Degraded"
    after = cluster.deployment("iris-stable")
    assert after.metadata.generation == before.metadata.generation
    env = {e.name: e.value for e in after.spec.template.spec.containers[0].env}
    assert env["MODELOPS_VERSION"] == "iris-v1"
    # Events are posted by a thread of their own after the status write: waited for.
    eventually(
        lambda: any(
            e.reason == reason and e.type == "Warning"
            for e in cluster.core.list_namespaced_event(cluster.ns).items
        ),
        timeout=30,
    )


def test_serving_changes_apply_in_place_and_children_are_put_back(cluster: Cluster) -> None:
    _serve_v1(cluster, iris())
    uid = cluster.deployment("iris-stable").metadata.uid
    cluster.apply_model(iris(replicas=3))
    eventually(lambda: cluster.deployment("iris-stable").spec.replicas == 3)
    assert cluster.deployment("iris-stable").metadata.uid == uid

    cluster.apps.patch_namespaced_deployment("iris-stable", cluster.ns, {"spec": {"replicas": 7}})
    eventually(lambda: cluster.deployment("iris-stable").spec.replicas == 3)

    cluster.apps.delete_namespaced_deployment("iris-stable", cluster.ns)
    recreated = eventually(
        lambda: (d := cluster.deployment("iris-stable")) and d.metadata.uid != uid and d
    )
    assert recreated.spec.replicas == 3
    cluster.core.delete_namespaced_service("iris", cluster.ns)
    eventually(lambda: _exists(lambda: cluster.core.read_namespaced_service("iris", cluster.ns)))

    cluster.custom.delete_namespaced_custom_object(GROUP, VERSION, cluster.ns, "models", "iris")

    def collected() -> bool:
        return (
            not cluster.versions()
            and all("-cleanup-" in j for j in cluster.jobs())
            and cluster.deployment("iris-stable") is None
            and not _exists(lambda: cluster.core.read_namespaced_service("iris", cluster.ns))
        )

    eventually(collected, timeout=60)
    # What stays: the Job that removes the deleted Model's directory from the store (it has no
    # owner, or it would have gone with the Model before it ran).
    (cleanup,) = cluster.jobs()
    job = cluster.batch.read_namespaced_job(cleanup, cluster.ns)
    assert job.metadata.owner_references is None
    assert job.spec.template.spec.containers[0].args[-1].startswith(f"file:///models/{cluster.ns}/")


def _exists(read: Callable[[], Any]) -> bool:
    try:
        read()
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return True


def test_autoscaling_replaces_replicas_with_an_hpa(cluster: Cluster) -> None:
    _serve_v1(cluster, iris(autoscaling={"minReplicas": 2, "maxReplicas": 5}))
    hpa = eventually(lambda: _read_hpa(cluster))
    assert (hpa.spec.min_replicas, hpa.spec.max_replicas) == (2, 5)
    assert hpa.spec.scale_target_ref.name == "iris-stable"
    body = iris()
    cluster.apply_model(body)
    eventually(lambda: _read_hpa(cluster) is None)


def _read_hpa(cluster: Cluster) -> Any:
    api = client.AutoscalingV2Api(cluster.core.api_client)
    try:
        return api.read_namespaced_horizontal_pod_autoscaler("iris", cluster.ns)
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def canary_command(cluster: Cluster, verb: str) -> None:
    cluster.custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        cluster.ns,
        "models",
        "iris",
        {"metadata": {"annotations": {"modelops.dev/canary": f"{verb}/{uuid.uuid4().hex[:8]}"}}},
    )


def _canary_v2(cluster: Cluster) -> dict[str, Any]:
    """iris-v1 serving, iris-v2 trained for a new spec: its canary runs beside stable."""
    _serve_v1(cluster, iris())
    cluster.apply_model(with_estimators(iris(), 5))
    cluster.finish_training("iris", "iris-v2")
    status = eventually(lambda: (s := cluster.model("iris").get("status", {})).get("canary") and s)
    assert status["canary"]["version"] == "iris-v2" and status["phase"] == "Canary"
    assert status["stableVersion"] == "iris-v1"
    deployment = eventually(lambda: cluster.deployment("iris-canary"))
    # Stable keeps its 2 replicas; 1 canary replica gives a real weight of 33% (step 1 asks 10%).
    assert deployment.spec.replicas == 1 and status["canary"]["weight"] == 33
    assert cluster.deployment("iris-stable").spec.replicas == 2
    return dict(status)


def cli(control_plane: ControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "modelops_operator.cli",
            *args,
            "--kubeconfig",
            str(control_plane.kubeconfig),
        ],
        capture_output=True,
        text=True,
        check=True,
    )


def test_a_new_version_goes_through_a_canary_and_is_promoted_by_hand(
    cluster: Cluster, control_plane: ControlPlane
) -> None:
    _canary_v2(cluster)
    assert "promote requested" in cli(control_plane, "promote", "iris", "-n", cluster.ns).stdout
    eventually(lambda: cluster.model("iris")["status"].get("stableVersion") == "iris-v2")
    # The canary's pods serve on until the stable Deployment serves iris-v2 with every replica.
    assert cluster.deployment("iris-canary") is not None
    cluster.serve_ready("iris-stable")
    eventually(lambda: cluster.deployment("iris-canary") is None)
    status = cluster.model("iris")["status"]
    assert status.get("canary") is None
    env = {
        e.name: e.value
        for e in cluster.deployment("iris-stable").spec.template.spec.containers[0].env
    }
    assert env["MODELOPS_VERSION"] == "iris-v2"


def test_an_aborted_canary_is_rolled_back(cluster: Cluster) -> None:
    _canary_v2(cluster)
    canary_command(cluster, "abort")
    eventually(lambda: cluster.version_phase("iris-v2") == "RolledBack")
    eventually(lambda: cluster.deployment("iris-canary") is None)
    # The pass that removed the canary writes the Model's status last (a moment later on a busy
    # machine).
    status = eventually(lambda: (s := cluster.model("iris")["status"]).get("canary") is None and s)
    assert status["stableVersion"] == "iris-v1"
    degraded = eventually(
        lambda: (c := cluster.condition("iris", "Degraded")).get("status") == "True" and c
    )
    assert degraded["reason"] == "RolledBack"
    events = cluster.core.list_namespaced_event(cluster.ns).items
    assert any(e.reason == "RolledBack" and e.type == "Warning" for e in events)


def test_pinned_version_rolls_back_and_a_bad_pin_keeps_serving(cluster: Cluster) -> None:
    _canary_v2(cluster)
    canary_command(cluster, "promote")
    eventually(lambda: cluster.model("iris").get("status", {}).get("stableVersion") == "iris-v2")

    cluster.apply_model(with_estimators(iris(version="iris-v1"), 5))
    eventually(lambda: cluster.model("iris")["status"]["stableVersion"] == "iris-v1")
    env = {
        e.name: e.value
        for e in cluster.deployment("iris-stable").spec.template.spec.containers[0].env
    }
    assert env["MODELOPS_VERSION"] == "iris-v1"

    cluster.apply_model(with_estimators(iris(version="iris-v9"), 5))
    degraded = eventually(
        lambda: (
            (c := cluster.condition("iris", "Degraded")).get("reason") == "PinnedVersionUnavailable"
            and c
        )
    )
    assert "iris-v9 does not exist" in degraded["message"]
    assert cluster.model("iris")["status"]["stableVersion"] == "iris-v1"


def test_retrain_command_starts_one_manual_version(
    cluster: Cluster, control_plane: ControlPlane
) -> None:
    _serve_v1(cluster, iris())

    def retrain(model: str) -> subprocess.CompletedProcess[str]:
        cli = [sys.executable, "-m", "modelops_operator.cli", "retrain", model, "-n", cluster.ns]
        return subprocess.run(
            [*cli, "--kubeconfig", str(control_plane.kubeconfig)],
            capture_output=True,
            text=True,
            check=False,
        )

    result = retrain("iris")
    assert result.returncode == 0 and "retrain requested" in result.stdout, result.stderr
    v2 = eventually(lambda: cluster.versions().get("iris-v2"))
    assert v2["spec"]["reason"] == "manual"
    token = cluster.model("iris")["metadata"]["annotations"]["modelops.dev/retrain"]
    eventually(lambda: cluster.model("iris")["status"].get("retrainToken") == token)
    # The same request again (a re-sync by a GitOps tool, say, with a spec edit that does not
    # touch training) trains nothing new.
    cluster.custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        cluster.ns,
        "models",
        "iris",
        {
            "metadata": {"annotations": {"modelops.dev/retrain": token}},
            "spec": {"monitoring": {"interval": "2m"}},
        },
    )

    def handled() -> bool:  # the operator has reconciled the edit
        model = cluster.model("iris")
        return bool(model["status"].get("observedGeneration") == model["metadata"]["generation"])

    eventually(handled)
    assert sorted(cluster.versions()) == ["iris-v1", "iris-v2"]

    missing = retrain("nosuch")
    assert missing.returncode == 1 and "not found" in missing.stderr


def test_a_newer_spec_supersedes_a_running_training(cluster: Cluster) -> None:
    cluster.apply_model(iris())
    eventually(lambda: _job(cluster, "iris-v1"))
    cluster.apply_model(with_estimators(iris(), 7))
    eventually(lambda: cluster.version_phase("iris-v1") == "Superseded")
    v2 = eventually(lambda: cluster.versions().get("iris-v2"))
    assert v2["spec"]["reason"] == "spec-change"
    eventually(lambda: _job(cluster, "iris-v1") is None)
    assert eventually(lambda: _job(cluster, "iris-v2"))


def test_status_reads_as_kstatus_through_change_training_and_failure(cluster: Cluster) -> None:
    """What Argo CD and Flux read: observedGeneration caught up, and Ready with a reason."""

    def settled() -> dict[str, Any]:
        model = cluster.model("iris")
        status = model.get("status", {})
        if status.get("observedGeneration") != model["metadata"]["generation"]:
            return {}
        return {c["type"]: c for c in status.get("conditions", [])}

    cluster.apply_model(iris())
    ready = eventually(settled)["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "Training")

    cluster.finish_training("iris", "iris-v1")
    eventually(lambda: (c := settled()) and c["Ready"]["reason"] == "DeploymentUnavailable")
    cluster.serve_ready("iris-stable")
    ready = eventually(lambda: (c := settled()) and c["Ready"]["status"] == "True" and c)["Ready"]
    assert ready["reason"] == "Serving" and "iris-v1" in ready["message"]
    assert cluster.model("iris")["status"]["phase"] == "Serving"

    cluster.apply_model(with_estimators(iris(), 9))
    generation = cluster.model("iris")["metadata"]["generation"]
    conditions = eventually(lambda: (c := settled()) and c["Progressing"]["status"] == "True" and c)
    assert all(c["observedGeneration"] == generation for c in conditions.values())
    # A new spec is not realised until its version trains: Ready says so, the old one serves.
    assert (conditions["Ready"]["status"], conditions["Ready"]["reason"]) == ("False", "Training")
    assert "iris-v2" in conditions["Ready"]["message"]
    assert cluster.model("iris")["status"]["phase"] == "Serving"

    cluster.finish_training(
        "iris", "iris-v2", "Failed", 1, reason="EmptyData", message="no rows left after cleaning"
    )
    conditions = eventually(lambda: (c := settled()) and c["Ready"]["reason"] != "Training" and c)
    ready = conditions["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "TrainingFailed")
    assert "no rows left" in ready["message"]


def test_operator_killed_mid_training_resumes_without_duplicates(
    isolated: tuple[Cluster, OwnOperator],
) -> None:
    cluster, operator = isolated
    first = operator()
    cluster.apply_model(iris())
    eventually(lambda: _job(cluster, "iris-v1"))
    first.kill()
    cluster.finish_training("iris", "iris-v1")
    operator()
    eventually(lambda: cluster.deployment("iris-stable"), timeout=90)
    eventually(lambda: cluster.version_phase("iris-v1") == "Succeeded")
    assert sorted(cluster.versions()) == ["iris-v1"]
    assert cluster.jobs() == ["iris-v1"]


def test_operator_restarted_mid_canary_resumes_from_the_status(
    isolated: tuple[Cluster, OwnOperator], control_plane: ControlPlane
) -> None:
    cluster, operator = isolated
    first = operator()
    before = _canary_v2(cluster)["canary"]
    cli(control_plane, "pause", "iris", "-n", cluster.ns)
    eventually(lambda: cluster.model("iris")["status"]["canary"].get("paused"))
    first.kill()
    operator()
    cli(control_plane, "resume", "iris", "-n", cluster.ns)
    resumed = eventually(
        lambda: (c := cluster.model("iris")["status"]["canary"]) and not c.get("paused") and c
    )
    # The same canary, not a new one: its start time and step came from the status.
    assert resumed["startedAt"] == before["startedAt"]
    assert (resumed["version"], resumed["step"]) == ("iris-v2", before["step"])
    assert cluster.deployment("iris-canary") is not None


def test_a_schedule_retrains_on_time(isolated: tuple[Cluster, OwnOperator]) -> None:
    """`spec.training.schedule` every minute: within a minute (and a resync) a version with the
    reason `schedule` trains; a bad expression is reported, not crashed on."""
    cluster, operator = isolated
    operator(MODELOPS_RESYNC_SECONDS="2")
    body = iris()
    body["spec"]["training"]["schedule"] = "* * * * *"
    _serve_v1(cluster, body)
    v2 = eventually(lambda: cluster.versions().get("iris-v2"), timeout=90)
    assert v2["spec"]["reason"] == "schedule"
    fired = eventually(lambda: cluster.model("iris")["status"].get("lastScheduledAt"))
    assert fired % 60 == 0  # a whole minute, as the schedule says

    # February 31st: a cron expression the CRD takes, but one that never fires.
    body["spec"]["training"]["schedule"] = "0 0 31 2 *"
    cluster.apply_model(body)
    error = eventually(lambda: cluster.model("iris")["status"].get("scheduleError"))
    assert "spec.training.schedule '0 0 31 2 *'" in error
    # A schedule says when to train, not what: changing it trained no new version.
    assert "iris-v4" not in cluster.versions()
    assert cluster.versions().get("iris-v3", {}).get("spec", {}).get("reason") != "spec-change"


def test_a_refused_serving_write_degrades_the_model_until_it_succeeds(cluster: Cluster) -> None:
    """The API server refusing a child (here a quota of no Services) is in the Model's status,
    not only in the operator's log; once the refusal goes, the retry serves."""
    cluster.core.create_namespaced_resource_quota(
        cluster.ns, {"metadata": {"name": "no-services"}, "spec": {"hard": {"services": "0"}}}
    )
    _serve_v1(cluster, iris(replicas=1))
    degraded = eventually(
        lambda: (c := cluster.condition("iris", "Degraded")).get("reason") == "WriteFailed" and c
    )
    assert degraded["status"] == "True" and "quota" in degraded["message"], degraded
    assert cluster.model("iris")["status"]["phase"] == "Degraded"

    cluster.core.delete_namespaced_resource_quota("no-services", cluster.ns)
    eventually(lambda: cluster.core.list_namespaced_service(cluster.ns).items)
    cluster.serve_ready("iris-stable")
    eventually(lambda: cluster.model("iris")["status"]["phase"] == "Serving")
    assert cluster.condition("iris", "Degraded")["status"] == "False"
