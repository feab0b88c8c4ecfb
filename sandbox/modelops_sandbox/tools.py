"""Where the Go-built binaries of the sandbox live, and building them when they are missing.

The versions are pinned in `hack/tools/versions.env`; `hack/tools/build.sh` builds each component
from the Go module proxy into the cache (`$MODELOPS_CACHE`, default `~/.cache/modelops`) under
`tools/<component>-<version>/bin/`. This module only reads those two facts and calls the script.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TOOLS_DIR = REPO / "hack" / "tools"
VERSIONS_FILE = TOOLS_DIR / "versions.env"

# binary -> (component, key of its version in versions.env)
BINARIES: dict[str, tuple[str, str]] = {
    "kube-apiserver": ("kubernetes", "KUBERNETES_VERSION"),
    "kube-controller-manager": ("kubernetes", "KUBERNETES_VERSION"),
    "kube-scheduler": ("kubernetes", "KUBERNETES_VERSION"),
    "kubectl": ("kubernetes", "KUBERNETES_VERSION"),
    "kubelet": ("kubernetes", "KUBERNETES_VERSION"),
    "kube-proxy": ("kubernetes", "KUBERNETES_VERSION"),
    "containerd": ("containerd", "CONTAINERD_VERSION"),
    "containerd-shim-runc-v2": ("containerd", "CONTAINERD_VERSION"),
    "ctr": ("containerd", "CONTAINERD_VERSION"),
    "etcd": ("etcd", "ETCD_VERSION"),
    "helm": ("helm", "HELM_VERSION"),
    "prometheus": ("prometheus", "PROMETHEUS_VERSION"),
    "vegeta": ("vegeta", "VEGETA_VERSION"),
    "weed": ("seaweedfs", "SEAWEEDFS_VERSION"),
    "traefik": ("traefik", "TRAEFIK_VERSION"),
}


class ToolError(RuntimeError):
    """A binary is missing and could not be built."""


def versions(path: Path = VERSIONS_FILE) -> dict[str, str]:
    """The pinned versions, parsed from the shell-style `KEY=VALUE` lines of versions.env."""
    pinned: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            pinned[key.strip()] = value.strip()
    return pinned


def cache_dir() -> Path:
    if "MODELOPS_CACHE" in os.environ:
        return Path(os.environ["MODELOPS_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "modelops"


@dataclass(frozen=True)
class Tool:
    name: str
    component: str
    version: str

    @property
    def path(self) -> Path:
        return cache_dir() / "tools" / f"{self.component}-{self.version}" / "bin" / self.name


def tool(name: str) -> Tool:
    component, key = BINARIES[name]
    return Tool(name, component, versions()[key])


def ensure(*names: str) -> dict[str, Path]:
    """Paths of the named binaries, building the components that are missing (minutes when cold)."""
    tools = [tool(n) for n in names]
    missing = sorted({t.component for t in tools if not t.path.exists()})
    if missing:
        result = subprocess.run([str(TOOLS_DIR / "build.sh"), *missing], check=False)
        if result.returncode != 0:
            raise ToolError(f"hack/tools/build.sh {' '.join(missing)} failed ({result.returncode})")
    for t in tools:
        if not t.path.exists():
            raise ToolError(f"{t.name} {t.version} is not at {t.path} after the build")
    return {t.name: t.path for t in tools}
