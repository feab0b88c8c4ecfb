"""The Helm chart as a platform team uses it: lint and render it, install, upgrade, uninstall.

The CRDs are templates of the chart, and every install and upgrade here passes `--take-ownership`:
the tests share one cluster, whose CRDs the release before (or the sandbox) left behind under
`crds.keep`, as an operator's CRDs installed with `kubectl apply` or by an older chart would be.

The installed operator runs in its pod on the real node, from the operator image built here, under
the chart's ServiceAccount (not admin), and reconciles the iris example for real: a training Job
and a serving Deployment of the runtime image. The API server's audit log records every request
of the ServiceAccounts, so a test counts exactly the ones RBAC refused. Linting and the
server-side dry run of the rendered manifests need no node: they use the session's control plane.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from support import Node, eventually, wait_established

from modelops_sandbox import audit, tools
from modelops_sandbox.cluster import Cluster
from modelops_sandbox.controlplane import ControlPlane

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "modelops"
GROUP, VERSION = "modelops.dev", "v1alpha1"
# The images are on the node or nowhere: installs here never pull.
NO_PULL = {"image.pullPolicy": "Never", "runtime.pullPolicy": "Never"}


class Helm:
    """The Go-built helm and kubectl, pointed at one cluster."""

    def __init__(self, kubeconfig: Path, server_version: str) -> None:
        self.path = tools.ensure("helm")["helm"]
        self.kubectl_path = tools.ensure("kubectl")["kubectl"]
        self.kubeconfig = kubeconfig
        self.kube_version = server_version

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.path), "--kubeconfig", str(self.kubeconfig), *args],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if check and result.returncode != 0:
            pytest.fail(f"helm {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def template(self, *values: str, chart: Path = CHART) -> str:
        args = ["template", "t", str(chart), "--kube-version", self.kube_version]
        return self.run(*args, *values).stdout

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        result = subprocess.run(
            [str(self.kubectl_path), f"--kubeconfig={self.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            pytest.fail(f"kubectl {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def can_i(self, sa: str, verb: str, resource: str, namespace: str | None) -> bool:
        """`kubectl auth can-i` as the ServiceAccount `namespace:name` (admin impersonates it)."""
        where = ["-n", namespace] if namespace else []
        result = subprocess.run(
            [
                str(self.kubectl_path),
                f"--kubeconfig={self.kubeconfig}",
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


def sets(**values: str) -> list[str]:
    return [arg for k, v in values.items() for arg in ("--set", f"{k.replace('__', '.')}={v}")]


def no_pull() -> list[str]:
    """The values of an install on the node, and `--take-ownership` of CRDs that another release
    of the shared cluster left behind (docs/operations.md, "CRD upgrades")."""
    return ["--take-ownership", *(a for k, v in NO_PULL.items() for a in ("--set", f"{k}={v}"))]


@pytest.fixture(scope="module")
def helm(control_plane: ControlPlane) -> Helm:
    """helm against the session's control plane (no node): linting and dry runs."""
    return Helm(control_plane.kubeconfig, control_plane.server_version())


@pytest.fixture(scope="module")
def node_helm(node_cluster: Cluster) -> Helm:
    """helm against the cluster with a real node: installs whose operator runs."""
    return Helm(node_cluster.kubeconfig, node_cluster.control_plane.server_version())


@pytest.fixture
def release() -> str:
    return f"mo-{uuid.uuid4().hex[:6]}"


def kubectl(cp: ControlPlane, *args: str, stdin: str | None = None) -> str:
    return Helm(cp.kubeconfig, "").kubectl(*args, stdin=stdin)


class Models:
    """The admin's view of one namespace: apply iris, wait for the operator to serve it."""

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

    def deployment(self) -> Any:
        try:
            return self.apps.read_namespaced_deployment("iris-stable", self.ns)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def reconcile_to_serving(self) -> dict[str, Any]:
        """iris from a manifest to a stable, available Deployment, trained and served on the
        node by the chart's operator; the Model at the end."""
        self.apply_iris()

        def serving() -> dict[str, Any] | None:
            model = self.model()
            status = model.get("status") or {}
            done = status.get("phase") == "Serving" and status.get("stableVersion") == "iris-v1"
            return model if done else None

        return eventually(serving, timeout=300, every=1)


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


def denied(node: Node, release_ns: str) -> list[str]:
    """The requests of the release's ServiceAccounts that RBAC refused (a write into another
    test's terminating namespace is refused too, but not by RBAC, and is not counted)."""
    return audit.denied(node.audit_log, f"system:serviceaccount:{release_ns}:")


def operator_pod(models_api: client.ApiClient, release_ns: str, release: str) -> Any:
    core = client.CoreV1Api(models_api)
    pods = core.list_namespaced_pod(
        release_ns, label_selector=f"app.kubernetes.io/instance={release}"
    ).items
    return next((p for p in pods if p.status.phase == "Running"), None)


def test_lint_and_template_pass_a_server_side_dry_run(
    helm: Helm, control_plane: ControlPlane, namespace_factory: Callable[[str], str]
) -> None:
    lint = helm.run("lint", "--strict", str(CHART))
    assert "0 chart(s) failed" in lint.stdout and "[WARNING]" not in lint.stdout

    # The schema rejects what the chart cannot do: two replicas without leader election, a root pod.
    assert helm.run("lint", "--strict", str(CHART), *sets(replicas="2")).returncode == 0
    for bad in (
        sets(replicas="2", leaderElection__enabled="false"),
        sets(podSecurityContext__runAsNonRoot="false"),
    ):
        refused = helm.run("lint", str(CHART), *bad, check=False)
        assert refused.returncode != 0 and "schema" in refused.stdout + refused.stderr

    release_ns = namespace_factory("chart-")
    watched = [namespace_factory("a-"), namespace_factory("b-")]
    # The PodMonitor's CRD comes with the Prometheus Operator, which this cluster lacks: a stand-in
    # CRD of the same name lets the API server accept or refuse the object's envelope.
    kubectl(control_plane, "apply", "--server-side", "-f", "-", stdin=POD_MONITOR_CRD)
    wait_established(
        lambda *args: kubectl(control_plane, *args).strip(), "podmonitors.monitoring.coreos.com"
    )
    rendered = {
        "default": helm.template("--namespace", release_ns),
        "two replicas": helm.template("--namespace", release_ns, *sets(replicas="2")),
        "namespaced": helm.template(
            "--namespace",
            release_ns,
            *sets(
                namespaces="{" + ",".join(watched) + "}",
                artifacts__create="true",
                artifacts__storageClassName="standard",
                podMonitor__enabled="true",
                metrics__podMonitor__enabled="true",
                logFormat="json",
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
    # A Role and RoleBinding per namespace, and one for the Lease in the release namespace.
    assert kinds.count("Role") == 3 and kinds.count("RoleBinding") == 3
    assert kinds.count("PersistentVolumeClaim") == 2 and kinds.count("PodMonitor") == 2
    assert "ClusterRole" not in kinds and "ClusterRoleBinding" not in kinds  # Roles only
    default_kinds = [d["kind"] for d in yaml.safe_load_all(rendered["default"]) if d]
    assert default_kinds.count("Role") == 1 and default_kinds.count("ClusterRole") == 1
    lease_role = next(
        d for d in yaml.safe_load_all(rendered["default"]) if d and d["kind"] == "Role"
    )
    assert lease_role["metadata"]["namespace"] == release_ns
    assert {r for rule in lease_role["rules"] for r in rule["resources"]} == {"leases"}
    two = next(
        d for d in yaml.safe_load_all(rendered["two replicas"]) if d and d["kind"] == "Deployment"
    )
    assert two["spec"]["replicas"] == 2 and two["spec"]["strategy"]["type"] == "RollingUpdate"
    pod = two["spec"]["template"]["spec"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["MODELOPS_LEADER_ELECTION"]["value"] == "true"
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert pod["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"
    assert "PodDisruptionBudget" in [
        d["kind"] for d in yaml.safe_load_all(rendered["two replicas"]) if d
    ]


def _objects(manifest: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(manifest) if d}


def test_the_operators_metrics_port_podmonitor_and_log_format(helm: Helm) -> None:
    def operator(objects: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
        pod = objects[("Deployment", "t-modelops")]["spec"]["template"]
        return dict(pod["spec"]["containers"][0], labels=pod["metadata"]["labels"])

    def policy_ports(objects: dict[tuple[str, str], dict[str, Any]]) -> list[int]:
        [rule] = objects[("NetworkPolicy", "t-modelops")]["spec"]["ingress"]
        return [p["port"] for p in rule["ports"]]

    # By default: the port is served and admitted, text logs, no PodMonitor (it needs the
    # Prometheus Operator's CRDs).
    default = _objects(helm.template("--namespace", "ops"))
    container = operator(default)
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert (env["MODELOPS_METRICS_PORT"], env["MODELOPS_LOG_FORMAT"]) == ("8081", "text")
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "health": 8080,
        "metrics": 8081,
    }
    assert policy_ports(default) == [8080, 8081]
    assert not [key for key in default if key[0] == "PodMonitor"]

    on = _objects(
        helm.template(
            "--namespace",
            "ops",
            *sets(
                metrics__port="9102",
                metrics__podMonitor__enabled="true",
                metrics__podMonitor__labels__release="kps",
                metrics__podMonitor__interval="15s",
                logFormat="json",
            ),
        )
    )
    container = operator(on)
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert (env["MODELOPS_METRICS_PORT"], env["MODELOPS_LOG_FORMAT"]) == ("9102", "json")
    assert {"name": "metrics", "containerPort": 9102, "protocol": "TCP"} in container["ports"]
    assert policy_ports(on) == [8080, 9102]
    monitors = [key for key in on if key[0] == "PodMonitor"]
    assert monitors == [("PodMonitor", "t-modelops-operator")]  # not the serving pods' one
    monitor = on[monitors[0]]
    assert monitor["metadata"]["namespace"] == "ops"
    assert monitor["metadata"]["labels"]["release"] == "kps"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["ops"]}
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= container["labels"].items()  # it selects the operator's pods
    assert selector["app.kubernetes.io/component"] == "operator"
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("metrics", "/metrics")
    assert endpoint["interval"] == "15s"

    # Port 0: no metrics, nothing exposed or admitted; a PodMonitor then has nothing to scrape.
    off = _objects(helm.template("--namespace", "ops", *sets(metrics__port="0")))
    assert [p["name"] for p in operator(off)["ports"]] == ["health"]
    assert policy_ports(off) == [8080]
    args = ["template", "t", str(CHART), "--kube-version", helm.kube_version]
    refused = helm.run(*args, *sets(metrics__port="0", metrics__podMonitor__enabled="true"),
                       check=False)  # fmt: skip
    assert refused.returncode != 0 and "needs metrics.port" in refused.stderr
    for bad in (sets(logFormat="xml"), sets(metrics__port="80")):
        refused = helm.run("lint", str(CHART), *bad, check=False)
        assert refused.returncode != 0 and "schema" in refused.stdout + refused.stderr


def test_namespaced_install_reconciles_iris_as_its_service_account(
    node_helm: Helm,
    node: Node,
    node_api: client.ApiClient,
    node_namespace_factory: Callable[[str], str],
    release: str,
) -> None:
    helm = node_helm
    release_ns, ml, other = (node_namespace_factory(p) for p in ("chart-", "ml-", "other-"))
    # Pod Security admission refuses any pod below "restricted" in these namespaces: the chart's
    # operator pod, and the training and serving pods the operator creates.
    for namespace in (release_ns, ml):
        helm.kubectl(
            "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted"
        )
    installed = helm.run(
        "install",
        release,
        str(CHART),
        "--namespace",
        release_ns,
        "--wait",
        *no_pull(),
        *sets(namespaces="{" + ml + "}", artifacts__create="true"),
    )
    notes = installed.stdout.split("NOTES:", 1)[1]
    assert f"The operator watches only: {ml}" in notes
    assert "are part of this release: helm upgrade" in notes and "keeps them (crds.keep)" in notes
    sa = f"{release}-modelops"
    who = f"{release_ns}:{sa}"
    pod = eventually(lambda: operator_pod(node_api, release_ns, release), timeout=60)
    assert pod.spec.service_account_name == sa
    assert pod.spec.containers[0].image == "modelops/operator:0.1.0"
    assert pod.status.container_statuses[0].ready

    # What the ServiceAccount may do, as the API server's authorizer answers.
    assert helm.can_i(who, "create", "deployments.apps", ml)
    assert helm.can_i(who, "patch", "models.modelops.dev/status", ml)
    for namespace in (ml, other, release_ns):
        for verb in ("get", "list", "watch"):
            assert not helm.can_i(who, verb, "secrets", namespace), (verb, namespace)
    for verb, resource in [
        ("get", "models.modelops.dev"),
        ("list", "pods"),
        ("create", "jobs.batch"),
        ("patch", "deployments.apps"),
        ("create", "configmaps"),
        ("create", "events"),
    ]:
        assert not helm.can_i(who, verb, resource, other), (verb, resource)
    assert not helm.can_i(who, "get", f"namespaces/{other}", None)
    assert not helm.can_i(who, "create", "clusterrolebindings.rbac.authorization.k8s.io", None)

    model = Models(node_api, ml).reconcile_to_serving()
    assert model["status"]["observedGeneration"] == model["metadata"]["generation"]
    # Leader election is on by default: the one replica holds the release's Lease.
    lease = client.CoordinationV1Api(node_api).read_namespaced_lease(sa, release_ns)
    assert lease.spec.holder_identity.startswith(f"{pod.metadata.name}_")
    log = helm.kubectl("logs", "-n", release_ns, f"deployment/{sa}")
    assert "store seeded" in log
    assert denied(node, release_ns) == []

    # An upgrade with changed values: a second namespace gets its Role, the operator its settings.
    ml2 = node_namespace_factory("ml2-")
    helm.run(
        "upgrade",
        release,
        str(CHART),
        "--namespace",
        release_ns,
        *no_pull(),
        *sets(
            namespaces="{" + ml + "," + ml2 + "}",
            prometheus__url="http://prom:9090",
            runtime__image__tag="0.2.0",
        ),
    )
    assert helm.can_i(who, "create", "jobs.batch", ml2)
    deployment = client.AppsV1Api(node_api).read_namespaced_deployment(sa, release_ns)
    container = deployment.spec.template.spec.containers[0]
    env = {e.name: e.value for e in container.env}
    assert env["MODELOPS_PROMETHEUS_URL"] == "http://prom:9090"
    assert env["MODELOPS_RUNTIME_IMAGE"] == "modelops/runtime:0.2.0"
    assert container.args.count("--namespace") == 2 and ml2 in container.args

    helm.run("uninstall", release, "--namespace", release_ns, "--wait")
    assert not helm.can_i(who, "create", "jobs.batch", ml)
    # Left behind, as docs/operations.md says: the Model and what it serves, the artifact claim,
    # the namespace's NetworkPolicy.
    models = Models(node_api, ml)
    assert models.model()["status"]["stableVersion"] == "iris-v1"
    assert models.deployment() is not None
    core = client.CoreV1Api(node_api)
    assert core.read_namespaced_persistent_volume_claim("modelops-artifacts", ml)
    assert client.NetworkingV1Api(node_api).read_namespaced_network_policy("modelops-models", ml)
    gone = core.list_namespaced_service_account(release_ns, field_selector=f"metadata.name={sa}")
    assert gone.items == []
    remove_after_uninstall(models)


def test_roles_only_is_enough_and_other_namespaces_are_refused(
    node_helm: Helm,
    node: Node,
    node_api: client.ApiClient,
    node_namespace_factory: Callable[[str], str],
    release: str,
) -> None:
    """Namespaced mode installs no ClusterRole at all, and the operator needs none: it reconciles
    its namespace without a refusal. Where its Role is taken away it is refused, and only there
    (which also shows that `denied` finds a real RBAC refusal)."""
    helm = node_helm
    release_ns, ml = node_namespace_factory("chart-"), node_namespace_factory("ml-")
    other = node_namespace_factory("other-")
    helm.run(
        "install",
        release,
        str(CHART),
        "--namespace",
        release_ns,
        "--wait",
        *no_pull(),
        *sets(namespaces="{" + ml + "," + other + "}", artifacts__create="true"),
    )
    rendered = helm.run("get", "manifest", release, "--namespace", release_ns).stdout
    assert "kind: ClusterRole" not in rendered
    # Take the rights in `other` away, and start the operator again without them.
    helm.kubectl("delete", "rolebinding", "--all", "-n", other)
    helm.kubectl("rollout", "restart", f"deployment/{release}-modelops", "-n", release_ns)
    helm.kubectl(
        "rollout", "status", f"deployment/{release}-modelops", "-n", release_ns, "--timeout=120s"
    )
    Models(node_api, ml).reconcile_to_serving()
    refusals = eventually(lambda: denied(node, release_ns), timeout=60)
    assert all(other in r for r in refusals), refusals
    assert not any(ml in r for r in refusals), refusals
    helm.run("uninstall", release, "--namespace", release_ns, "--wait")


def test_cluster_wide_install_upgrade_and_uninstall(
    node_helm: Helm,
    node: Node,
    node_api: client.ApiClient,
    node_namespace_factory: Callable[[str], str],
    release: str,
    tmp_path: Path,
) -> None:
    helm = node_helm
    release_ns, ml = node_namespace_factory("chart-"), node_namespace_factory("ml-")
    helm.kubectl("apply", "-n", ml, "-f", "-", stdin=ARTIFACTS_CLAIM)
    helm.run("install", release, str(CHART), "--namespace", release_ns, "--wait", *no_pull())
    sa = f"{release}-modelops"
    who = f"{release_ns}:{sa}"
    assert helm.can_i(who, "create", "jobs.batch", ml)
    assert not helm.can_i(who, "get", "secrets", ml)
    assert not helm.can_i(who, "list", "secrets", None)
    assert not helm.can_i(who, "patch", "customresourcedefinitions.apiextensions.k8s.io", None)

    Models(node_api, ml).reconcile_to_serving()
    assert denied(node, release_ns) == []

    # The CRDs are the chart's templates: an upgrade to a chart whose CRD changed applies it.
    def crd() -> dict[str, Any]:
        return dict(yaml.safe_load(helm.kubectl("get", "crd", "models.modelops.dev", "-o", "yaml")))

    before = crd()
    assert before["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert before["metadata"]["annotations"]["meta.helm.sh/release-name"] == release
    assert before["metadata"]["labels"]["helm.sh/chart"] == "modelops-0.1.0"
    newer = tmp_path / "modelops"
    shutil.copytree(CHART, newer)
    chart_file = newer / "Chart.yaml"
    chart_file.write_text(
        chart_file.read_text().replace("\nversion: 0.1.0\n", "\nversion: 0.1.1\n")
    )
    template = newer / "templates" / "crds" / "modelops.dev_models.yaml"
    text = template.read_text()
    assert text.count("    - mdl\n") == 1
    template.write_text(text.replace("    - mdl\n", "    - mdl\n    - mdlnext\n"))
    helm.run(
        "upgrade",
        release,
        str(newer),
        "--namespace",
        release_ns,
        "--wait",
        *no_pull(),
        *sets(operator__resyncSeconds="30"),
    )
    upgraded = crd()
    assert upgraded["spec"]["names"]["shortNames"] == ["mdl", "mdlnext"]
    assert upgraded["metadata"]["generation"] == before["metadata"]["generation"] + 1
    assert upgraded["metadata"]["labels"]["helm.sh/chart"] == "modelops-0.1.1"
    # And back: the chart's own CRD again, with the Model still served.
    helm.run("upgrade", release, str(CHART), "--namespace", release_ns, "--wait", *no_pull())
    assert crd()["spec"]["names"]["shortNames"] == ["mdl"]
    assert crd()["metadata"]["labels"]["helm.sh/chart"] == "modelops-0.1.0"
    assert Models(node_api, ml).model()["status"]["stableVersion"] == "iris-v1"

    cluster_role = f"{release_ns}-{release}-modelops"[:52].rstrip("-")
    rbac = client.RbacAuthorizationV1Api(node_api)
    assert rbac.read_cluster_role(cluster_role)
    assert denied(node, release_ns) == []
    helm.run("uninstall", release, "--namespace", release_ns, "--wait")
    with pytest.raises(ApiException) as missing:
        rbac.read_cluster_role(cluster_role)
    assert missing.value.status == 404
    # crds.keep: the CRDs and the Models stay; uninstalling the operator never deletes a user's
    # model.
    helm.kubectl("get", "crd", "models.modelops.dev", "modelversions.modelops.dev")
    assert Models(node_api, ml).model()["status"]["stableVersion"] == "iris-v1"
    # Helm deletes the Lease's Role while the operator pod is still stopping; its last attempt to
    # hand the Lease over may then be refused, which is harmless. Nothing else may be.
    assert [d for d in denied(node, release_ns) if " leases " not in d] == []
    remove_after_uninstall(Models(node_api, ml))


ARTIFACTS_CLAIM = """
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: modelops-artifacts}
spec:
  accessModes: [ReadWriteMany]
  resources: {requests: {storage: 1Gi}}
"""


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
