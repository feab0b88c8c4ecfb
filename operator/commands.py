"""`modelops` verbs that act on a Model through the API server, as a person would with kubectl.

    modelops retrain NAME [-n NAMESPACE] [--kubeconfig FILE]

Each verb writes an annotation the operator acts on; the operator, not the CLI, does the work, so
the same request works from kubectl, a GitOps commit or this command.
"""

from __future__ import annotations

import argparse
import datetime
import sys

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from modelops_operator import api


def _parser(verb: str, text: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"modelops {verb}", description=text)
    p.add_argument("name", help="the Model")
    p.add_argument("-n", "--namespace", default=None, help="default: the kubeconfig's namespace")
    p.add_argument("--kubeconfig", default=None, help="default: $KUBECONFIG or ~/.kube/config")
    return p


def _namespace(explicit: str | None) -> str:
    if explicit:
        return explicit
    try:
        _, context = config.list_kube_config_contexts()  # type: ignore[no-untyped-call]
        return str((context or {}).get("context", {}).get("namespace") or "default")
    except config.ConfigException:
        return "default"


def retrain(argv: list[str]) -> int:
    args = _parser("retrain", "Train a new version of a Model now (reason: manual).").parse_args(
        argv
    )
    config.load_kube_config(config_file=args.kubeconfig)  # type: ignore[no-untyped-call]
    namespace = _namespace(args.namespace)
    token = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    patch = {"metadata": {"annotations": {api.ANNOTATION_RETRAIN: token}}}
    try:
        client.CustomObjectsApi().patch_namespaced_custom_object(
            api.GROUP, api.VERSION, namespace, api.MODELS, args.name, patch
        )
    except ApiException as error:
        what = "not found" if error.status == 404 else f"refused ({error.status} {error.reason})"
        print(f"modelops retrain: Model {namespace}/{args.name} {what}", file=sys.stderr)
        return 1
    print(f"model {namespace}/{args.name}: retrain requested ({api.ANNOTATION_RETRAIN}={token})")
    return 0
