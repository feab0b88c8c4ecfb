"""`make demo`: the modelops loop on this machine: a real control plane, no container engine.

Today it starts the local control plane, installs the CRDs, applies the iris example and shows it
through kubectl; the node agent, Prometheus and the operator join it as they land (docs/sandbox.md).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from modelops_sandbox.controlplane import ControlPlane

REPO = Path(__file__).resolve().parent.parent


def say(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="modelops demo", description=__doc__)
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the control plane running until Ctrl-C (prints the kubeconfig to use)",
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    say("starting a local control plane (etcd, kube-apiserver, controller-manager, scheduler)")
    with ControlPlane(progress=say) as cp:
        say(f"kubectl version: server {cp.server_version()}")
        say("installing the CRDs from crds/")
        cp.kubectl_run("apply", "--server-side", "-f", str(REPO / "crds"))
        cp.kubectl_run("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        cp.kubectl_run("create", "namespace", "ml")
        say("applying examples/iris.yaml in namespace ml")
        print(
            cp.kubectl_run("apply", "-n", "ml", "-f", str(REPO / "examples" / "iris.yaml")).stdout
        )
        print(cp.kubectl_run("get", "modelops", "-n", "ml", "-o", "wide").stdout)
        print(cp.kubectl_run("api-resources", "--api-group=modelops.dev").stdout)
        if args.keep:
            say(f"control plane kept running: export KUBECONFIG={cp.kubeconfig} (Ctrl-C stops it)")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
        say("stopping the control plane")
    say(f"done in {time.monotonic() - started:.0f}s; nothing left running")
    return 0


if __name__ == "__main__":
    sys.exit(main())
