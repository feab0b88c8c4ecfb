"""Shared fixtures: one real control plane per test session, a fresh namespace per test, and a
local cluster with a real node for the tests that need pods to run.

The folders mirror the packages (api, operator, training, serving, chart, sandbox, bench, and loop
for the whole loop); tiers are markers only: `unit` (pure, seconds), `integration` (real control
plane or real processes), `e2e` (the real node). Every test has exactly one tier marker (a
module's `pytestmark` or the test's own); collection fails otherwise.

The session's `control_plane` has no node: the operator's integration tests write the pod
statuses they need (a kubelet's part, as kubebuilder's envtest leaves it to the test), so that
each outcome is exact. `node` is the other cluster: control plane, containerd, kubelet and
kube-proxy, started on first use (one per machine) and stopped at the end of the session.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from kubernetes import client, config
from support import Node, wait_established

from modelops_api import contract
from modelops_sandbox.cluster import Cluster
from modelops_sandbox.controlplane import ControlPlane

if TYPE_CHECKING:
    from modelops_sandbox.objectstore import ObjectStore

TIERS = ("unit", "integration", "e2e")
REPO = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    wrong = [
        item.nodeid
        for item in items
        if len({m.name for m in item.iter_markers() if m.name in TIERS}) != 1
    ]
    if wrong:
        raise pytest.UsageError(f"tests without exactly one tier marker {TIERS}: {wrong[:5]}")


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """A real etcd + kube-apiserver + controller-manager + scheduler for the whole session."""
    cp = ControlPlane(keep_dir=bool(os.environ.get("MODELOPS_KEEP_CONTROLPLANE")))
    cp.start()
    try:
        yield cp
    finally:
        cp.stop()


@contextlib.contextmanager
def admin_client(kubeconfig: Path) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=str(kubeconfig))
    try:
        yield api
    finally:
        api.close()


@pytest.fixture(scope="session")
def kube_api(control_plane: ControlPlane) -> Iterator[client.ApiClient]:
    """An official-client ApiClient with admin rights on the session's control plane."""
    with admin_client(control_plane.kubeconfig) as api:
        yield api


@contextlib.contextmanager
def namespaces(
    api: client.ApiClient, request: pytest.FixtureRequest
) -> Iterator[Callable[[str], str]]:
    """Creates namespaces named `<prefix><test name>-<random>`; deletes them (not waiting) after."""
    core = client.CoreV1Api(api)
    created: list[str] = []

    def make(prefix: str = "") -> str:
        stem = request.node.name.lower().replace("_", "-")
        stem = "".join(c for c in stem if c.isalnum() or c == "-")[: 40 - len(prefix)].strip("-")
        name = f"{prefix}{stem}-{uuid.uuid4().hex[:6]}"
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        created.append(name)
        return name

    try:
        yield make
    finally:
        for name in created:
            core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture
def namespace_factory(
    kube_api: client.ApiClient, request: pytest.FixtureRequest
) -> Iterator[Callable[[str], str]]:
    """Namespaces of the session's control plane (no node)."""
    with namespaces(kube_api, request) as make:
        yield make


@pytest.fixture
def namespace(namespace_factory: Callable[[str], str]) -> str:
    """A namespace of its own for one test."""
    return namespace_factory("")


@pytest.fixture(scope="session")
def crds(control_plane: ControlPlane) -> Path:
    """The project's CRDs, installed from crds/ and Established."""
    control_plane.kubectl_run("apply", "--server-side", "-f", str(REPO / "crds"))
    wait_established(
        lambda *args: control_plane.kubectl_run(*args).stdout.strip(),
        f"{contract.MODELS}.{contract.GROUP}",
        f"{contract.MODEL_VERSIONS}.{contract.GROUP}",
    )
    return REPO / "crds"


@pytest.fixture(scope="session")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    holder = Node(tmp_path_factory.mktemp("node"))
    try:
        yield holder
    finally:
        holder.release()


@pytest.fixture(scope="module")
def node_cluster(node: Node) -> Cluster:
    """The cluster with a real node, running (started if it was not)."""
    return node.cluster()


@pytest.fixture(scope="module")
def node_api(node_cluster: Cluster) -> Iterator[client.ApiClient]:
    """An official-client ApiClient with admin rights on the cluster with a real node."""
    with admin_client(node_cluster.kubeconfig) as api:
        yield api


@pytest.fixture
def node_namespace_factory(
    node_api: client.ApiClient, request: pytest.FixtureRequest
) -> Iterator[Callable[[str], str]]:
    """Namespaces of the cluster with a real node."""
    with namespaces(node_api, request) as make:
        yield make


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStore]:
    """A real S3 server (SeaweedFS) for the module's tests (~11 s to start), with credentials."""
    from modelops_sandbox.objectstore import ObjectStore

    with ObjectStore(tmp_path_factory.mktemp("objectstore")) as running:
        yield running


@pytest.fixture
def bucket(store: ObjectStore) -> str:
    """A fresh bucket's name."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    assert store.create_bucket(name) == f"s3://{name}"
    return name
