"""`modelops` verbs that act on a Model through the API server, as a person would with kubectl.

    modelops retrain NAME [-n NAMESPACE] [--kubeconfig FILE]
    modelops promote|abort|pause|resume NAME [-n NAMESPACE] [--kubeconfig FILE]   (the canary)

Each verb writes an annotation the operator acts on; the operator, not the CLI, does the work, so
the same request works from kubectl, a GitOps commit or this command.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from collections.abc import Callable

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from modelops_api import contract


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


def _annotate(verb: str, text: str, key: str, value: str | None, argv: list[str]) -> int:
    """Writes `key` on the Model; the value is `value` or, when None, a fresh token."""
    args = _parser(verb, text).parse_args(argv)
    config.load_kube_config(config_file=args.kubeconfig)  # type: ignore[no-untyped-call]
    namespace = _namespace(args.namespace)
    token = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    annotation = f"{value}/{token}" if value else token
    patch = {"metadata": {"annotations": {key: annotation}}}
    try:
        client.CustomObjectsApi().patch_namespaced_custom_object(
            contract.GROUP, contract.VERSION, namespace, contract.MODELS, args.name, patch
        )
    except ApiException as error:
        what = "not found" if error.status == 404 else f"refused ({error.status} {error.reason})"
        print(f"modelops {verb}: Model {namespace}/{args.name} {what}", file=sys.stderr)
        return 1
    print(f"model {namespace}/{args.name}: {verb} requested ({key}={annotation})")
    return 0


def retrain(argv: list[str]) -> int:
    text = "Train a new version of a Model now (reason: manual)."
    return _annotate("retrain", text, contract.ANNOTATION_RETRAIN, None, argv)


def canary(verb: str) -> Callable[[list[str]], int]:
    texts = {
        "promote": "Promote the running canary to stable now.",
        "abort": "Roll the running canary back now.",
        "pause": "Pause the running canary: no analysis, no step, no deadline.",
        "resume": "Resume a paused canary.",
    }

    def run(argv: list[str]) -> int:
        return _annotate(verb, texts[verb], contract.ANNOTATION_CANARY, verb, argv)

    return run


promote, abort, pause, resume = (
    canary("promote"),
    canary("abort"),
    canary("pause"),
    canary("resume"),
)
