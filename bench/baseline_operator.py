"""The scale benchmark's baseline: a minimal Kopf operator that creates the same child objects.

For each Model it creates what modelops creates on the way to serving (with modelops' own
builders, so both write the same objects): the ModelVersion and its training Job; when
the Job succeeds, the stable Deployment and the Service; when that Deployment is available, it
sets the Model's phase to Serving. No planning, no status beyond the phase, no canary, no
monitoring, no resync: what it costs is what any Kopf operator creating these objects costs, so
the benchmark's ratio to it is what modelops' own logic costs.

    python bench/baseline_operator.py   # with KUBECONFIG set; watches every namespace
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

import kopf
from kubernetes import config

from modelops_api import contract
from modelops_api.spec import ServingSpec
from modelops_operator import children, training
from modelops_operator.runtime.kube import Kube
from modelops_operator.settings import Settings
from modelops_operator.versions import VersionInfo

SETTINGS = Settings()


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    """The same Kopf storage settings as modelops (annotations, no status field)."""
    prefix = f"kopf.{contract.GROUP}"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=prefix)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=prefix, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{prefix}/finalizer"
    settings.execution.max_workers = 8
    memo.kube = Kube(config.new_client_from_config())
    memo.done = set()


@kopf.on.create(contract.GROUP, contract.VERSION, contract.MODELS)
def model_created(body: kopf.Body, memo: Any, **_: Any) -> None:
    model = {k: body[k] for k in ("apiVersion", "kind", "metadata", "spec")}
    name = f"{body['metadata']['name']}-v1"
    version = training.build_model_version(
        model, name, contract.REASON_INITIAL, contract.training_hash(model["spec"]["training"])
    )
    kube: Kube = memo.kube
    created = kube.create(version) or kube.get("ModelVersion", body["metadata"]["namespace"], name)
    assert created is not None
    kube.create(training.build_training_job(created, SETTINGS))


@kopf.on.event("batch", "v1", "jobs", labels=contract.MANAGED)
def job_event(body: kopf.Body, memo: Any, **_: Any) -> None:
    if not (body.get("status") or {}).get("succeeded"):
        return
    meta = body["metadata"]
    model_name, version = meta["labels"][contract.LABEL_MODEL], meta["name"]
    if ("job", meta["namespace"], version) in memo.done:
        return
    memo.done.add(("job", meta["namespace"], version))
    kube: Kube = memo.kube
    model = kube.get("Model", meta["namespace"], model_name)
    if model is None:
        return
    info = VersionInfo(
        name=version,
        index=1,
        spec_hash="",
        reason=contract.REASON_INITIAL,
        phase=contract.SUCCEEDED,
        artifact=f"file:///models/{model_name}/{version}.bentomodel",
    )
    serving = ServingSpec.model_validate(model["spec"].get("serving") or {})
    replicas = children.stable_replicas(serving)
    deployment = children.build_deployment(
        model, serving, info, children.STABLE, replicas, SETTINGS
    )
    kube.create(deployment)
    kube.create(children.build_service(model))


@kopf.on.event("apps", "v1", "deployments", labels=contract.MANAGED)
def deployment_event(body: kopf.Body, memo: Any, **_: Any) -> None:
    status = body.get("status") or {}
    available = any(
        c.get("type") == "Available" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    meta = body["metadata"]
    model = meta["labels"][contract.LABEL_MODEL]
    if not available or ("model", meta["namespace"], model) in memo.done:
        return
    memo.done.add(("model", meta["namespace"], model))
    memo.kube.patch_status("Model", meta["namespace"], model, {"phase": contract.PHASE_SERVING})


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="the scale benchmark's baseline operator")
    parser.add_argument("--liveness", help="Kopf's liveness endpoint")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    kopf.run(standalone=True, clusterwide=True, liveness_endpoint=args.liveness, memo=kopf.Memo())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
