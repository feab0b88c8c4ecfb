"""The Go tools modules build exactly the versions that hack/tools/versions.env pins."""

from __future__ import annotations

import re

import pytest

from modelops_sandbox import tools

pytestmark = pytest.mark.unit

MODULES = {
    "kubernetes": ("k8s.io/kubernetes", "KUBERNETES_VERSION"),
    "containerd": ("github.com/containerd/containerd/v2", "CONTAINERD_VERSION"),
    "etcd": ("go.etcd.io/etcd/server/v3", "ETCD_VERSION"),
    "helm": ("helm.sh/helm/v3", "HELM_VERSION"),
    "prometheus": ("github.com/prometheus/prometheus", "PROMETHEUS_VERSION"),
    "vegeta": ("github.com/tsenart/vegeta/v12", "VEGETA_VERSION"),
    "seaweedfs": ("github.com/seaweedfs/seaweedfs", "SEAWEEDFS_VERSION"),
    "traefik": ("github.com/traefik/traefik/v3", "TRAEFIK_VERSION"),
}


def required(go_mod: str, module: str) -> str:
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)} (v\S+)", go_mod, re.MULTILINE)
    assert match, f"{module} is not required"
    return match.group(1)


@pytest.mark.parametrize("component", sorted(MODULES))
def test_module_requires_the_pinned_version(component: str) -> None:
    module, key = MODULES[component]
    go_mod = (tools.TOOLS_DIR / component / "go.mod").read_text()
    assert required(go_mod, module) == tools.versions()[key]


def test_every_staging_module_is_replaced_with_the_matching_release() -> None:
    pinned = tools.versions()["KUBERNETES_VERSION"]
    staging = "v0." + pinned.removeprefix("v1.")
    go_mod = (tools.TOOLS_DIR / "kubernetes" / "go.mod").read_text()
    replaces = dict(re.findall(r"^replace (k8s\.io/\S+) => \S+ (v\S+)$", go_mod, re.MULTILINE))
    assert {"k8s.io/api", "k8s.io/client-go", "k8s.io/apiserver"} <= set(replaces)
    assert set(replaces.values()) == {staging}


def test_every_binary_has_a_pinned_component() -> None:
    pinned = tools.versions()
    for name, (component, key) in tools.BINARIES.items():
        assert component in MODULES and key in pinned
        path = tools.tool(name).path
        assert path.parts[-3:] == (f"{component}-{pinned[key]}", "bin", name)
