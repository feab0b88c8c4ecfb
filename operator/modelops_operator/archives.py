"""Archives the operator no longer needs: which ones, and the Job that removes them.

The operator never mounts the artifact store. When a pass prunes versions from a Model's history
(`versions.plan_history`) or a Model is deleted, a short Job in the Model's namespace runs
`python -m modelops_training.cleanup` from the runtime image with the store mounted (or, for an
s3:// store, its Secret's keys as environment) and removes the pruned versions' archives, or the
deleted Model's whole directory (`training.model_store`; on object storage, every key under it).

The Job is named after what it removes, so a pass that runs again finds the Job instead of making
a second one. It has no owner: a Job owned by a deleted Model would be collected before it ran. It
is deleted `ttlSecondsAfterFinished` after it ends. Only archives inside the store are named (the
command refuses anything else too). A Model deleted while no operator was running leaves its
directory behind (docs/operations.md, "Artifact store", says how to find one).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from modelops_api import contract
from modelops_operator.objects import Body
from modelops_operator.settings import Settings
from modelops_operator.training import (
    container_security_context,
    in_store,
    labels,
    model_store,
    pod_security_context,
    store_mounts,
    store_root,
    store_volumes,
    with_store_env,
)
from modelops_operator.versions import VersionInfo

COMPONENT = "cleanup"
TTL_SECONDS = 3600
DEADLINE_SECONDS = 600
RESOURCES = {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}


def pruned(doomed: Iterable[VersionInfo], settings: Settings) -> list[str]:
    """The archives (URIs) of the versions `doomed` that are in the store: a Rejected version
    has one too."""
    root = store_root(settings)
    return sorted({v.artifact for v in doomed if in_store(v.artifact, root)})


def of_deleted_model(settings: Settings, namespace: str, model_uid: str) -> list[str]:
    """What a deleted Model leaves in the store: its directory."""
    return [model_store(settings, namespace, model_uid)]


def job_name(model: str, targets: Sequence[str]) -> str:
    """A name unique to what is removed (at most 63 characters, as a Job's pods need)."""
    digest = hashlib.sha256("\n".join(sorted(targets)).encode()).hexdigest()[:10]
    return f"{model[:43].rstrip('-.')}-cleanup-{digest}"


def cleanup_job(settings: Settings, namespace: str, model: str, targets: Sequence[str]) -> Body:
    """The Job that removes `targets` (URIs inside the store) from the store."""
    pod_labels = labels(model, COMPONENT)
    container: Body = {
        "name": COMPONENT,
        "image": settings.runtime_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["python", "-m", "modelops_training.cleanup"],
        "args": ["--store", store_root(settings), *targets],
        "resources": RESOURCES,
        "securityContext": container_security_context(),
        "volumeMounts": store_mounts(settings),
    }
    with_store_env(container, settings)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(model, targets),
            "namespace": namespace,
            "labels": pod_labels,
            "annotations": {f"{contract.GROUP}/removes": "\n".join(targets)},
        },
        "spec": {
            "backoffLimit": 3,
            "activeDeadlineSeconds": DEADLINE_SECONDS,
            "ttlSecondsAfterFinished": TTL_SECONDS,
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "securityContext": pod_security_context(),
                    "containers": [container],
                    "volumes": store_volumes(settings),
                },
            },
        },
    }
