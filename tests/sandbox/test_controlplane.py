"""The local control plane is a real Kubernetes: version, CRDs, controllers, GC, clean stop."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException
from support import eventually

from modelops_sandbox import tools
from modelops_sandbox.controlplane import ControlPlane

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def test_kubectl_reports_the_pinned_release(control_plane: ControlPlane) -> None:
    pinned = tools.versions()["KUBERNETES_VERSION"]
    result = control_plane.kubectl_run("version")
    assert f"Server Version: {pinned}" in result.stdout
    assert f"Client Version: {pinned}" in result.stdout
    assert control_plane.server_version() == pinned


def test_crds_become_established_and_validate(
    control_plane: ControlPlane, kube_api: client.ApiClient, namespace: str
) -> None:
    control_plane.kubectl_run("apply", "--server-side", "-f", str(REPO / "crds"))
    ext = client.ApiextensionsV1Api(kube_api)

    def established() -> bool:
        for crd in ("models.modelops.dev", "modelversions.modelops.dev"):
            conditions = ext.read_custom_resource_definition(crd).status.conditions or []
            if not any(c.type == "Established" and c.status == "True" for c in conditions):
                return False
        return True

    eventually(established)
    custom = client.CustomObjectsApi(kube_api)
    model = yaml.safe_load((REPO / "examples" / "iris.yaml").read_text())
    eventually(lambda: _create(custom, namespace, model))
    served = custom.get_namespaced_custom_object(
        "modelops.dev", "v1alpha1", namespace, "models", "iris"
    )
    assert served["spec"]["training"]["dataset"]["uri"] == "builtin:iris"
    assert served["spec"]["serving"]["canary"]["onDeadline"] == "rollback"  # a schema default

    bad = yaml.safe_load((REPO / "examples" / "iris.yaml").read_text())
    bad["metadata"]["name"] = "iris-bad"
    bad["spec"]["serving"]["replicas"] = 0
    with pytest.raises(ApiException) as error:
        custom.create_namespaced_custom_object("modelops.dev", "v1alpha1", namespace, "models", bad)
    assert error.value.status == 422
    assert "spec.serving.replicas" in error.value.body


def _create(custom: client.CustomObjectsApi, namespace: str, body: dict[str, Any]) -> bool:
    try:
        custom.create_namespaced_custom_object(
            "modelops.dev", "v1alpha1", namespace, "models", body
        )
    except ApiException as error:
        if error.status == 404:  # the resource is not served yet
            return False
        raise
    return True


def test_deployment_gets_replicaset_and_scheduled_pods(
    kube_api: client.ApiClient, namespace: str
) -> None:
    apps, core = client.AppsV1Api(kube_api), client.CoreV1Api(kube_api)
    labels = {"app": "web"}
    apps.create_namespaced_deployment(
        namespace,
        {
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "web", "image": "example.invalid/web:1"}]},
                },
            },
        },
    )
    replicasets = eventually(
        lambda: apps.list_namespaced_replica_set(namespace, label_selector="app=web").items
    )
    assert replicasets[0].metadata.owner_references[0].name == "web"

    def two_pods() -> list[client.V1Pod] | None:
        items = core.list_namespaced_pod(namespace, label_selector="app=web").items
        return items if len(items) == 2 else None

    pods = eventually(two_pods)

    # No node runs in this tier: the scheduler has seen the pods and reports why they wait.
    def unschedulable() -> bool:
        for pod in core.list_namespaced_pod(namespace, label_selector="app=web").items:
            conditions = pod.status.conditions or []
            if not any(
                c.type == "PodScheduled" and c.reason == "Unschedulable" for c in conditions
            ):
                return False
        return True

    eventually(unschedulable)
    assert all(p.status.phase == "Pending" for p in pods)


def test_deleting_an_owner_collects_its_dependents(
    kube_api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(kube_api)
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    reference = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": owner.metadata.uid,
    }
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "dependent", "ownerReferences": [reference]}}
    )
    core.delete_namespaced_config_map("owner", namespace)

    def collected() -> bool:
        try:
            core.read_namespaced_config_map("dependent", namespace)
        except ApiException as error:
            return error.status == 404
        return False

    eventually(collected)


def test_stop_leaves_no_process_port_or_directory() -> None:
    cp = ControlPlane().start()
    pids, ports, directory = cp.pids, cp.ports, cp.directory
    assert len(pids) == 4 and all(psutil.pid_exists(pid) for pid in pids)
    cp.stop()
    alive = [
        pid
        for pid in pids
        if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    ]
    assert alive == []
    listening = {c.laddr.port for c in psutil.net_connections("inet") if c.status == "LISTEN"}
    assert not listening & set(ports)
    assert not directory.exists()
    result = subprocess.run(["pgrep", "-f", str(directory)], capture_output=True)
    assert result.stdout == b""
