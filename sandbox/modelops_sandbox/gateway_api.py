"""The Gateway API CRDs at the pinned version, from the Go module cache.

`GATEWAY_API_VERSION` in hack/tools/versions.env pins the `sigs.k8s.io/gateway-api` module; its
standard channel's CRDs (`config/crd/standard/`) define the HTTPRoute that the operator's gateway
traffic router writes and the Gateway and GatewayClass that a Gateway API implementation serves.
`go mod download` fetches the module from the Go module proxy on first use (a few MB) and reads it
from the module cache afterwards. Only the CustomResourceDefinitions are returned: the channel's
ValidatingAdmissionPolicy guards upgrades between channels and is not needed here.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from pathlib import Path

from modelops_sandbox import tools
from modelops_sandbox.controlplane import run_kubectl

MODULE = "sigs.k8s.io/gateway-api"
GROUP = "gateway.networking.k8s.io"
CRD_PREFIX = f"{GROUP}_"
# The kinds the traffic router and a gateway need Established before they are used.
REQUIRED = ("gatewayclasses", "gateways", "httproutes", "referencegrants")
ESTABLISHED = "jsonpath={.status.conditions[?(@.type=='Established')].status}"


class GatewayAPIError(RuntimeError):
    """The module could not be downloaded or holds no CRDs where expected."""


def version() -> str:
    return tools.versions()["GATEWAY_API_VERSION"]


def module_dir(pinned: str | None = None) -> Path:
    """The module's directory in the Go module cache, downloading it when it is not there."""
    ref = f"{MODULE}@{pinned or version()}"
    result = subprocess.run(
        ["go", "mod", "download", "-json", ref],
        capture_output=True,
        text=True,
        check=False,
        cwd=tempfile.gettempdir(),  # outside any module: only the cache is written
    )
    try:
        answer = json.loads(result.stdout)
    except json.JSONDecodeError:
        answer = {}
    if result.returncode != 0 or "Dir" not in answer:
        detail = answer.get("Error") or result.stderr.strip() or f"exit {result.returncode}"
        raise GatewayAPIError(f"go mod download {ref} failed: {detail}")
    return Path(answer["Dir"])


def crd_manifests(pinned: str | None = None) -> list[Path]:
    """The standard channel's CRD files of the pinned version, sorted by name."""
    standard = module_dir(pinned) / "config" / "crd" / "standard"
    files = sorted(
        path
        for path in standard.glob(f"{CRD_PREFIX}*.yaml")
        if "\nkind: CustomResourceDefinition" in "\n" + path.read_text()
    )
    if not files:
        raise GatewayAPIError(f"no Gateway API CRDs in {standard}")
    return files


def install_crds(kubectl: Path, kubeconfig: Path, timeout: float = 60.0) -> list[str]:
    """Applies the CRDs with the `kubectl` binary against `kubeconfig` (server-side, so a second
    install is a no-op) and waits until the ones the router needs are Established; their names."""
    files = [arg for path in crd_manifests() for arg in ("-f", str(path))]
    run_kubectl(kubectl, kubeconfig, "apply", "--server-side", "--force-conflicts", *files)
    names = [f"{plural}.{GROUP}" for plural in REQUIRED]
    deadline = time.monotonic() + timeout
    for name in names:
        # Polled: `kubectl wait` fails at once on a new CRD whose status has no conditions yet.
        while (
            run_kubectl(
                kubectl, kubeconfig, "get", "crd", name, "-o", ESTABLISHED, check=False
            ).stdout.strip()
            != "True"
        ):
            if time.monotonic() > deadline:
                raise GatewayAPIError(f"CRD {name} not Established within {timeout:.0f}s")
            time.sleep(0.2)
    return names
