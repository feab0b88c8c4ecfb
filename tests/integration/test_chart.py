"""The Helm chart against the real control plane with the Go-built helm.

What a platform team does with it: lint and render it, install it, let the operator run with the
chart's ServiceAccount (not admin) and reconcile the iris example, upgrade it, uninstall it.

No kubelet runs here, so the chart's operator pod never starts: the test runs the operator as a
local process whose kubeconfig holds a token of the chart's ServiceAccount (exactly the identity
the pod would have), and plays the kubelet for the training and serving pods as
test_operator.py does. Every permission the operator uses therefore comes from the chart's RBAC.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from support import OperatorProcess, eventually, finish_pod, run_pod_ready, training_result

from modelops_sandbox import tools
from modelops_sandbox.controlplane import ControlPlane

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "modelops"
GROUP, VERSION = "modelops.dev", "v1alpha1"
# A 403 as Kopf (APIForbiddenError, status=403) and the official client ("(403)", "Reason:
# Forbidden") log it; not a bare "403", which log timestamps' milliseconds contain.
DENIED = re.compile(r"forbidden|\(403\)|status=403|\bcode\W{0,4}403\b", re.IGNORECASE)


class Helm:
    """The Go-built helm, pointed at the session's control plane."""

    def __init__(self, control_plane: ControlPlane) -> None:
        self.path = tools.ensure("helm")["helm"]
        self.cp = control_plane
        self.kube_version = control_plane.server_version()

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.path), "--kubeconfig", str(self.cp.kubeconfig), *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and result.returncode != 0:
            pytest.fail(f"helm {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def template(self, *values: str, chart: Path = CHART) -> str:
        args = ["template", "t", str(chart), "--include-crds", "--kube-version", self.kube_version]
        return self.run(*args, *values).stdout


def sets(**values: str) -> list[str]:
    return [arg for k, v in values.items() for arg in ("--set", f"{k.replace('__', '.')}={v}")]


@pytest.fixture(scope="module")
def helm(control_plane: ControlPlane) -> Helm:
    return Helm(control_plane)


@pytest.fixture
def release() -> str:
    return f"mo-{uuid.uuid4().hex[:6]}"


def kubectl(cp: ControlPlane, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [str(cp.kubectl), f"--kubeconfig={cp.kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        pytest.fail(f"kubectl {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def can_i(cp: ControlPlane, sa: str, verb: str, resource: str, namespace: str | None) -> bool:
    """`kubectl auth can-i` as the ServiceAccount `namespace:name` (admin impersonates it)."""
    where = ["-n", namespace] if namespace else []
    result = subprocess.run(
        [
            str(cp.kubectl),
            f"--kubeconfig={cp.kubeconfig}",
            "auth",
            "can-i",
            verb,
            resource,
            *where,
            f"--as=system:serviceaccount:{sa}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    answer = result.stdout.strip()
    assert answer in ("yes", "no"), result.stderr
    return answer == "yes"


def service_account_kubeconfig(cp: ControlPlane, namespace: str, sa: str, path: Path) -> Path:
    """The control plane's server and CA, and a TokenRequest token of the ServiceAccount."""
    token = kubectl(cp, "create", "token", sa, "-n", namespace, "--duration=1h").strip()
    admin = yaml.safe_load(cp.kubeconfig.read_text())
    cluster = admin["clusters"][0]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": sa, "user": {"token": token}}],
        "contexts": [{"name": sa, "context": {"cluster": cluster["name"], "user": sa}}],
        "current-context": sa,
    }
    path.write_text(yaml.safe_dump(config))
    return path


class Models:
    """The admin's view of one namespace: apply iris, play the kubelet, read the outcome."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.ns = namespace
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    def apply_iris(self) -> None:
        body = yaml.safe_load((REPO / "examples" / "iris.yaml").read_text())
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, "models", body)

    def model(self) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, "models", "iris")

    def pods(self, selector: str) -> list[Any]:
        return list(self.core.list_namespaced_pod(self.ns, label_selector=selector).items)

    def deployment(self) -> Any:
        try:
            return self.apps.read_namespaced_deployment("iris-stable", self.ns)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def reconcile_to_serving(self) -> dict[str, Any]:
        """iris from a manifest to a stable, available Deployment; the Model at the end."""
        self.apply_iris()
        pod = eventually(lambda: self.pods("batch.kubernetes.io/job-name=iris-v1"), timeout=60)[0]
        message = training_result("iris", "iris-v1")
        finish_pod(self.core, self.ns, pod.metadata.name, "train", 0, message)
        deployment = eventually(self.deployment, timeout=60)
        selector = ",".join(f"{k}={v}" for k, v in deployment.spec.selector.match_labels.items())

        def serving() -> dict[str, Any] | None:
            for p in self.pods(selector):
                if p.status.phase != "Running" and not p.metadata.deletion_timestamp:
                    containers = [(c.name, c.image) for c in p.spec.containers]
                    run_pod_ready(self.core, self.ns, p.metadata.name, containers)
            model = self.model()
            status = model.get("status") or {}
            done = status.get("phase") == "Serving" and status.get("stableVersion") == "iris-v1"
            return model if done else None

        return eventually(serving, timeout=90, every=0.5)


def remove_after_uninstall(models: Models) -> None:
    """docs/operations.md, "Uninstall": a Model outlives the operator; it carries no finalizer, so
    deleting it needs no operator, and the garbage collector takes its serving children with it."""
    assert not models.model()["metadata"].get("finalizers")
    models.custom.delete_namespaced_custom_object(GROUP, VERSION, models.ns, "models", "iris")

    def gone() -> bool:
        try:
            models.model()
        except ApiException as error:
            return error.status == 404
        return False

    eventually(gone, timeout=30)
    eventually(lambda: models.deployment() is None, timeout=60)


@pytest.fixture
def run_operator(
    control_plane: ControlPlane, tmp_path: Path
) -> Iterator[Callable[[str, str, list[str]], OperatorProcess]]:
    """Starts `modelops operator` as the chart's ServiceAccount; stops it after the test."""
    started: list[OperatorProcess] = []

    def start(namespace: str, sa: str, watch: list[str]) -> OperatorProcess:
        config = service_account_kubeconfig(control_plane, namespace, sa, tmp_path / "sa.config")
        log = tmp_path / f"operator-{len(started)}.log"
        process = OperatorProcess(config, watch, log).start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()
        print(process.tail(40))


def denied(log: str) -> list[str]:
    """The operator's log records (a line with its traceback) that report a 403.

    Writes into a terminating namespace are refused with a 403 too (NamespaceTerminating), not by
    RBAC; a cluster-wide operator sees other tests' namespaces being deleted, so those are left out.
    """
    records = re.split(r"\n(?=\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", log)
    return [r for r in records if DENIED.search(r) and "NamespaceTerminating" not in r]


def test_lint_and_template_pass_a_server_side_dry_run(
    helm: Helm, control_plane: ControlPlane, namespace_factory: Callable[[str], str]
) -> None:
    lint = helm.run("lint", "--strict", str(CHART))
    assert "0 chart(s) failed" in lint.stdout and "[WARNING]" not in lint.stdout

    # The schema rejects what the chart cannot do: two replicas without peering, a root pod.
    for bad in (sets(replicas="2"), sets(podSecurityContext__runAsNonRoot="false")):
        refused = helm.run("lint", str(CHART), *bad, check=False)
        assert refused.returncode != 0 and "schema" in refused.stdout + refused.stderr

    release_ns = namespace_factory("chart-")
    watched = [namespace_factory("a-"), namespace_factory("b-")]
    # The PodMonitor's CRD comes with the Prometheus Operator, which this cluster lacks: a stand-in
    # CRD of the same name lets the API server accept or refuse the object's envelope.
    kubectl(control_plane, "apply", "--server-side", "-f", "-", stdin=POD_MONITOR_CRD)
    kubectl(
        control_plane,
        "wait",
        "--for=condition=Established",
        "crd/podmonitors.monitoring.coreos.com",
        "--timeout=30s",
    )
    rendered = {
        "default": helm.template("--namespace", release_ns),
        "namespaced": helm.template(
            "--namespace",
            release_ns,
            *sets(
                namespaces="{" + ",".join(watched) + "}",
                artifacts__create="true",
                artifacts__storageClassName="standard",
                podMonitor__enabled="true",
                image__tag="9.9.9",
                operator__verbose="true",
                replicas="0",
            ),
        ),
    }
    try:
        for name, manifest in rendered.items():
            out = kubectl(
                control_plane,
                "apply",
                "--server-side",
                "--force-conflicts",
                "--dry-run=server",
                "-f",
                "-",
                stdin=manifest,
            )
            assert "deployment.apps/t-modelops serverside-applied (server dry run)" in out, name
            assert "(server dry run)" in out.splitlines()[-1]
    finally:
        kubectl(control_plane, "delete", "crd", "podmonitors.monitoring.coreos.com", "--wait=false")
    kinds = [d["kind"] for d in yaml.safe_load_all(rendered["namespaced"]) if d]
    assert kinds.count("Role") == 2 and kinds.count("RoleBinding") == 2
    assert kinds.count("PersistentVolumeClaim") == 2 and "PodMonitor" in kinds
    assert "ClusterRole" not in kinds and "ClusterRoleBinding" not in kinds  # Roles only
    default_kinds = [d["kind"] for d in yaml.safe_load_all(rendered["default"]) if d]
    assert "Role" not in default_kinds and default_kinds.count("ClusterRole") == 1


def test_namespaced_install_reconciles_iris_as_its_service_account(
    helm: Helm,
    control_plane: ControlPlane,
    kube_api: client.ApiClient,
    namespace_factory: Callable[[str], str],
    run_operator: Callable[[str, str, list[str]], OperatorProcess],
    release: str,
) -> None:
    release_ns, ml, other = (namespace_factory(p) for p in ("chart-", "ml-", "other-"))
    # Pod Security admission refuses any pod below "restricted" in these namespaces: the chart's
    # operator pod, and the training and serving pods the operator creates.
    for namespace in (release_ns, ml):
        kubectl(
            control_plane,
            "label",
            "namespace",
            namespace,
            "pod-security.kubernetes.io/enforce=restricted",
        )
    installed = helm.run(
        "install",
        release,
        str(CHART),
        "--namespace",
        release_ns,
        *sets(namespaces="{" + ml + "}", artifacts__create="true"),
    )
    notes = installed.stdout.split("NOTES:", 1)[1]
    assert f"The operator watches only: {ml}" in notes
    assert "kubectl apply --server-side --force-conflicts -f <chart directory>/crds/" in notes
    sa = f"{release}-modelops"
    who = f"{release_ns}:{sa}"
    core = client.CoreV1Api(kube_api)
    operator_pods = eventually(
        lambda: (
            core.list_namespaced_pod(
                release_ns, label_selector=f"app.kubernetes.io/instance={release}"
            ).items
        ),
        timeout=30,
    )
    assert operator_pods[0].spec.service_account_name == sa

    # What the ServiceAccount may do, as the API server's authorizer answers.
    assert can_i(control_plane, who, "create", "deployments.apps", ml)
    assert can_i(control_plane, who, "patch", "models.modelops.dev/status", ml)
    for namespace in (ml, other, release_ns):
        for verb in ("get", "list", "watch"):
            assert not can_i(control_plane, who, verb, "secrets", namespace), (verb, namespace)
    for verb, resource in [
        ("get", "models.modelops.dev"),
        ("list", "pods"),
        ("create", "jobs.batch"),
        ("patch", "deployments.apps"),
        ("create", "configmaps"),
        ("create", "events"),
    ]:
        assert not can_i(control_plane, who, verb, resource, other), (verb, resource)
    assert not can_i(control_plane, who, "get", f"namespaces/{other}", None)
    assert not can_i(
        control_plane, who, "create", "clusterrolebindings.rbac.authorization.k8s.io", None
    )

    operator = run_operator(release_ns, sa, [ml])
    model = Models(kube_api, ml).reconcile_to_serving()
    assert model["status"]["observedGeneration"] == model["metadata"]["generation"]
    log = operator.log.read_text(errors="replace")
    assert "store seeded" in log and denied(log) == [], operator.tail()

    # An upgrade with changed values: a second namespace gets its Role, the operator its settings.
    ml2 = namespace_factory("ml2-")
    helm.run(
        "upgrade",
        release,
        str(CHART),
        "--namespace",
        release_ns,
        *sets(
            namespaces="{" + ml + "," + ml2 + "}",
            prometheus__url="http://prom:9090",
            runtime__image__tag="0.2.0",
        ),
    )
    assert can_i(control_plane, who, "create", "jobs.batch", ml2)
    deployment = client.AppsV1Api(kube_api).read_namespaced_deployment(sa, release_ns)
    container = deployment.spec.template.spec.containers[0]
    env = {e.name: e.value for e in container.env}
    assert env["MODELOPS_PROMETHEUS_URL"] == "http://prom:9090"
    assert env["MODELOPS_RUNTIME_IMAGE"] == "modelops/runtime:0.2.0"
    assert container.args.count("--namespace") == 2 and ml2 in container.args

    helm.run("uninstall", release, "--namespace", release_ns)
    assert not can_i(control_plane, who, "create", "jobs.batch", ml)
    # Left behind, as docs/operations.md says: the Model and what it serves, the artifact claim.
    models = Models(kube_api, ml)
    assert models.model()["status"]["stableVersion"] == "iris-v1"
    assert models.deployment() is not None
    assert core.read_namespaced_persistent_volume_claim("modelops-artifacts", ml)
    gone = core.list_namespaced_service_account(release_ns, field_selector=f"metadata.name={sa}")
    assert gone.items == []
    operator.stop()  # as the uninstalled Deployment's pod would be
    remove_after_uninstall(models)


def test_roles_only_is_enough_and_other_namespaces_are_refused(
    helm: Helm,
    control_plane: ControlPlane,
    kube_api: client.ApiClient,
    namespace_factory: Callable[[str], str],
    run_operator: Callable[[str, str, list[str]], OperatorProcess],
    release: str,
) -> None:
    """Namespaced mode installs no ClusterRole at all, and the operator needs none: it reconciles
    its namespace without a 403. Asked to watch a namespace it has no Role in, it is refused there
    (which also shows that `denied` finds a real RBAC refusal in the log)."""
    release_ns, ml = namespace_factory("chart-"), namespace_factory("ml-")
    other = namespace_factory("other-")
    helm.run(
        "install", release, str(CHART), "--namespace", release_ns, *sets(namespaces="{" + ml + "}")
    )
    rendered = helm.run("get", "manifest", release, "--namespace", release_ns).stdout
    assert "kind: ClusterRole" not in rendered
    operator = run_operator(release_ns, f"{release}-modelops", [ml, other])
    Models(kube_api, ml).reconcile_to_serving()
    refusals = eventually(lambda: denied(operator.log.read_text(errors="replace")), timeout=30)
    assert all(other in r for r in refusals), refusals
    assert not any(f"namespaces/{ml}/" in r for r in refusals), refusals
    helm.run("uninstall", release, "--namespace", release_ns)


def test_cluster_wide_install_upgrade_and_uninstall(
    helm: Helm,
    control_plane: ControlPlane,
    kube_api: client.ApiClient,
    namespace_factory: Callable[[str], str],
    run_operator: Callable[[str, str, list[str]], OperatorProcess],
    release: str,
    tmp_path: Path,
) -> None:
    release_ns, ml = namespace_factory("chart-"), namespace_factory("ml-")
    helm.run("install", release, str(CHART), "--namespace", release_ns)
    sa = f"{release}-modelops"
    who = f"{release_ns}:{sa}"
    assert can_i(control_plane, who, "create", "jobs.batch", ml)
    assert not can_i(control_plane, who, "get", "secrets", ml)
    assert not can_i(control_plane, who, "list", "secrets", None)
    assert not can_i(
        control_plane, who, "patch", "customresourcedefinitions.apiextensions.k8s.io", None
    )

    operator = run_operator(release_ns, sa, [])  # no --namespace: every namespace
    Models(kube_api, ml).reconcile_to_serving()
    log = operator.log.read_text(errors="replace")
    assert denied(log) == [], operator.tail()

    # Helm never upgrades CRDs from crds/: a chart whose CRD changed leaves the cluster's as it was
    # until the documented step applies them (docs/operations.md, "Upgrades").
    newer = tmp_path / "modelops"
    shutil.copytree(CHART, newer)
    crd_file = newer / "crds" / "modelops.dev_models.yaml"
    crd = yaml.safe_load(crd_file.read_text())
    crd["metadata"].setdefault("annotations", {})["modelops.dev/chart-test"] = release
    crd_file.write_text(yaml.safe_dump(crd))
    helm.run(
        "upgrade",
        release,
        str(newer),
        "--namespace",
        release_ns,
        *sets(operator__resyncSeconds="30"),
    )
    annotations = lambda: (  # noqa: E731
        yaml.safe_load(kubectl(control_plane, "get", "crd", "models.modelops.dev", "-o", "yaml"))[
            "metadata"
        ].get("annotations")
        or {}
    )
    assert "modelops.dev/chart-test" not in annotations()
    try:
        # The documented step, on the unpacked chart (`helm pull --untar`). Not `helm show crds`:
        # it concatenates the files without `---` between them.
        kubectl(
            control_plane, "apply", "--server-side", "--force-conflicts", "-f", str(newer / "crds")
        )
        assert annotations().get("modelops.dev/chart-test") == release
    finally:  # the same field manager applying the repository's CRDs removes the test's marker
        kubectl(
            control_plane, "apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds")
        )
    assert "modelops.dev/chart-test" not in annotations()

    cluster_role = f"{release_ns}-{release}-modelops"[:52].rstrip("-")
    rbac = client.RbacAuthorizationV1Api(kube_api)
    assert rbac.read_cluster_role(cluster_role)
    helm.run("uninstall", release, "--namespace", release_ns)
    with pytest.raises(ApiException) as missing:
        rbac.read_cluster_role(cluster_role)
    assert missing.value.status == 404
    # The CRDs and the Models stay: uninstalling the operator never deletes a user's model.
    kubectl(control_plane, "get", "crd", "models.modelops.dev", "modelversions.modelops.dev")
    operator.stop()
    remove_after_uninstall(Models(kube_api, ml))


POD_MONITOR_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: podmonitors.monitoring.coreos.com
  annotations:
    modelops.dev/note: stand-in for the Prometheus Operator's CRD in the chart's dry-run test
spec:
  group: monitoring.coreos.com
  names: {kind: PodMonitor, listKind: PodMonitorList, plural: podmonitors, singular: podmonitor}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          x-kubernetes-preserve-unknown-fields: true
"""
