"""`modelops logs POD`: a sandbox pod's container logs, as `kubectl logs` shows a kubelet's.

The sandbox has no kubelet API for `kubectl logs` to reach; its node agent keeps each container's
log under its state directory, which the Node names in an annotation. This command finds the pod's
node through the API server and reads the log from there.
"""

from __future__ import annotations

import argparse
import sys

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from modelops_sandbox.logs import read_logs
from modelops_sandbox.node import STATE_DIR_ANNOTATION


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="modelops logs", description=__doc__)
    p.add_argument("pod")
    p.add_argument("-n", "--namespace", default="default")
    p.add_argument("-c", "--container", help="default: every container, each under a header")
    p.add_argument("--tail", type=int, help="only the last N lines")
    p.add_argument("-p", "--previous", action="store_true", help="the previous run's log")
    p.add_argument("--kubeconfig", help="default: $KUBECONFIG or ~/.kube/config")
    args = p.parse_args(argv)
    config.load_kube_config(config_file=args.kubeconfig)  # type: ignore[no-untyped-call]
    core = client.CoreV1Api()
    try:
        pod = core.read_namespaced_pod(args.pod, args.namespace)
        node_name = pod.spec.node_name if pod.spec else None
        if not node_name:
            print(
                f"modelops logs: pod {args.namespace}/{args.pod} has no node yet", file=sys.stderr
            )
            return 1
        node = core.read_node(node_name)
    except ApiException as error:
        print(f"modelops logs: {error.status} {error.reason}", file=sys.stderr)
        return 1
    annotations = (node.metadata.annotations if node.metadata else None) or {}
    state_dir = annotations.get(STATE_DIR_ANNOTATION)
    if not state_dir:
        print(
            f"modelops logs: node {node_name} is not a sandbox node; use kubectl logs",
            file=sys.stderr,
        )
        return 1
    try:
        text = read_logs(
            state_dir, args.namespace, args.pod, args.container, args.tail, args.previous
        )
    except (OSError, ValueError) as error:
        print(f"modelops logs: {error}", file=sys.stderr)
        return 1
    sys.stdout.write(text)
    return 0
