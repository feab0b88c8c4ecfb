"""The dataset's own credentials (spec.training.dataset.secretName) in the pods the operator
builds: only the training pod gets that Secret, prefixed so that the store's AWS_* stay; and a
training pod that cannot start for want of a Secret fails its version, naming the Secret."""

from __future__ import annotations

import copy
import datetime
from typing import Any

import pytest

from modelops_api import contract
from modelops_api.spec import ServingSpec
from modelops_operator import archives, children, training
from modelops_operator.settings import Settings
from modelops_operator.versions import VersionInfo

pytestmark = pytest.mark.unit

STORE = Settings(
    runtime_image="img:1", artifacts_uri="s3://models/root", artifacts_secret="store-creds"
)
MODEL: dict[str, Any] = {
    "apiVersion": "modelops.dev/v1alpha1",
    "kind": "Model",
    "metadata": {"name": "iris", "namespace": "ml", "uid": "u-1", "generation": 1},
    "spec": {
        "training": {
            "dataset": {"uri": "s3://data/iris.csv", "target": "species"},
            "estimator": {"class": "sklearn.svm.SVC"},
        },
        "serving": {"replicas": 1},
    },
}


def model(**dataset: Any) -> dict[str, Any]:
    body = copy.deepcopy(MODEL)
    body["spec"]["training"]["dataset"].update(dataset)
    return body


def training_container(body: dict[str, Any], settings: Settings = STORE) -> dict[str, Any]:
    version = training.build_model_version(body, "iris-v1", "initial", "sha256:x")
    version["metadata"]["uid"] = "u-2"
    job = training.build_training_job(version, settings)
    return dict(job["spec"]["template"]["spec"]["containers"][0])


def test_the_training_pod_gets_the_datasets_secret_prefixed_beside_the_stores() -> None:
    container = training_container(model(secretName="data-creds"))
    assert container["envFrom"] == [
        {"secretRef": {"name": "store-creds"}},
        {"secretRef": {"name": "data-creds"}, "prefix": "MODELOPS_DATASET_"},
    ]
    # with a claim as the store, the dataset's Secret is the pod's only envFrom
    claim = Settings(runtime_image="img:1")
    assert training_container(model(secretName="data-creds"), claim)["envFrom"] == [
        {"secretRef": {"name": "data-creds"}, "prefix": "MODELOPS_DATASET_"}
    ]


def test_without_a_dataset_secret_the_training_pod_has_the_stores_alone() -> None:
    assert training_container(model())["envFrom"] == [{"secretRef": {"name": "store-creds"}}]
    assert "envFrom" not in training_container(model(), Settings(runtime_image="img:1"))


def test_serving_and_cleanup_pods_never_get_the_datasets_secret() -> None:
    body = model(secretName="data-creds")
    version = VersionInfo(
        name="iris-v1",
        index=1,
        spec_hash="sha256:x",
        reason="initial",
        phase=contract.SUCCEEDED,
        artifact="s3://models/root/ml/u-1/iris/iris-v1.bentomodel",
    )
    serving = ServingSpec.model_validate(body["spec"]["serving"])
    deployment = children.build_deployment(body, serving, version, "stable", 1, STORE)
    cleanup = archives.cleanup_job(STORE, "ml", "iris", [version.artifact])
    for pod in (deployment["spec"]["template"]["spec"], cleanup["spec"]["template"]["spec"]):
        assert "data-creds" not in str(pod)
        assert pod["containers"][0]["envFrom"] == [{"secretRef": {"name": "store-creds"}}]


# --- a pod that waits for a missing Secret ------------------------------------------------------

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
KUBELET = 'secret "data-creds" not found'


def pod(created: datetime.datetime, reason: str, name: str = contract.TRAINING_CONTAINER) -> Any:
    return {
        "metadata": {"name": "iris-v1-abcde", "creationTimestamp": created.strftime("%FT%TZ")},
        "status": {
            "phase": "Pending",
            "containerStatuses": [
                {"name": name, "state": {"waiting": {"reason": reason, "message": KUBELET}}}
            ],
        },
    }


def test_a_pod_missing_its_secret_past_the_grace_fails_naming_the_secret() -> None:
    grace = training.CONFIG_ERROR_GRACE_SECONDS
    stuck = [pod(T0, "CreateContainerConfigError")]
    assert training.config_error(stuck, T0 + datetime.timedelta(seconds=grace - 1)) is None
    failed = training.config_error(stuck, T0 + datetime.timedelta(seconds=grace + 5))
    assert failed is not None
    assert failed["phase"] == contract.FAILED and failed["approved"] is False
    assert failed["reason"] == "CreateContainerConfigError"
    assert KUBELET in failed["message"] and f"{grace + 5}s" in failed["message"]
    assert "spec.training.dataset.secretName" in failed["message"]


@pytest.mark.parametrize(
    "other",
    [
        pod(T0, "ContainerCreating"),  # still pulling or mounting
        pod(T0, "ImagePullBackOff"),  # not a Secret's doing
        pod(T0, "CreateContainerConfigError", name="sidecar"),  # not the training container
        {"metadata": {}, "status": {}},  # not created yet
    ],
)
def test_other_waiting_pods_are_left_to_start(other: Any) -> None:
    assert training.config_error([other], T0 + datetime.timedelta(hours=1)) is None


def test_the_age_of_an_object_without_a_timestamp_is_zero() -> None:
    assert training.age({"metadata": {}}, T0) == 0.0
    later = T0 + datetime.timedelta(seconds=90)
    assert training.age({"metadata": {"creationTimestamp": "2026-01-01T00:00:00Z"}}, later) == 90


def test_a_pass_fails_the_version_whose_pod_lacks_its_secret_and_deletes_the_job(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A whole reconcile pass (tests/fake_kube.py's API server): the pod of the version's Job
    waits in CreateContainerConfigError past the grace; the version ends Failed with the kubelet's
    message, which names the Secret, and its Job is deleted."""
    from test_reconcile_pass import MODEL as NAME
    from test_reconcile_pass import iris, make_world

    world = make_world(STORE)
    body = iris()
    body["spec"]["training"]["dataset"].update(uri="s3://data/iris.csv", secretName="data-creds")
    world.kube.put(body)
    world.run()
    job = world.kube.object("Job", f"{NAME}-v1")
    assert job is not None
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert {"secretRef": {"name": "data-creds"}, "prefix": "MODELOPS_DATASET_"} in container[
        "envFrom"
    ]
    world.kube.start_job(f"{NAME}-v1", running=False)
    (pod_name,) = world.kube.names("Pod")
    waiting = {"reason": "CreateContainerConfigError", "message": KUBELET}
    world.kube.set_status(
        "Pod",
        pod_name,
        {
            "phase": "Pending",
            "containerStatuses": [
                {"name": contract.TRAINING_CONTAINER, "state": {"waiting": waiting}}
            ],
        },
    )
    world.run()  # within the grace: still waiting for the Secret
    assert world.version_status(f"{NAME}-v1").get("phase") != contract.FAILED
    assert world.kube.object("Job", f"{NAME}-v1") is not None

    monkeypatch.setattr(training, "CONFIG_ERROR_GRACE_SECONDS", 0)  # the grace has passed
    world.run()
    status = world.version_status(f"{NAME}-v1")
    assert (status["phase"], status["reason"]) == (contract.FAILED, "CreateContainerConfigError")
    assert KUBELET in status["message"] and status["finishedAt"]
    assert world.kube.object("Job", f"{NAME}-v1") is None
    assert world.status()["phase"] == contract.PHASE_FAILED


def test_a_config_error_without_a_secret_gets_no_secret_hint() -> None:
    root = pod(T0, "CreateContainerConfigError")
    waiting = root["status"]["containerStatuses"][0]["state"]["waiting"]
    waiting["message"] = "container has runAsNonRoot and image will run as root"
    failed = training.config_error([root], T0 + datetime.timedelta(hours=1))
    assert failed is not None and failed["reason"] == "CreateContainerConfigError"
    assert failed["message"].endswith("image will run as root")
