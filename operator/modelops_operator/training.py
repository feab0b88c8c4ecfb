"""Pure builders for a training run: the ModelVersion and its Job; and the reading of the Job's
outcome into the version's status.

The Job carries its spec.training as an annotation of its pod template, which a downward API volume
mounts as the file `modelops train --spec` reads: no ConfigMap to write, own and collect per run.

The Job runs `modelops train` from the runtime image (docs/runtime-contract.md). Its result comes
back as the container's termination message, which the kubelet copies into the Pod's status: the
operator needs no access to the artifact store to learn what a training produced.

Each Model has its own directory in the store, `<root>/<namespace>/<Model UID>` (`model_store`):
Models of the same name in two namespaces never share archives, a Model deleted and made again
starts in a fresh directory, and a training can only report an archive of its own Model. The root
is `settings.artifacts_uri`: `file:///models` (the claim, mounted at that path), or an object store,
`s3://bucket/prefix`, which no pod mounts: training, serving and cleanup pods get its Secret's keys
(AWS_*) as environment instead (`store_env_from`); the operator never reads that Secret. An s3://
dataset may name a Secret of its own (`dataset_env_from`), which only the training pod gets, its
keys prefixed MODELOPS_DATASET_.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from modelops_api import contract
from modelops_api.spec import seconds
from modelops_operator.objects import Body
from modelops_operator.settings import Settings

SPEC_MOUNT = "/etc/modelops"
SPEC_FILE = "training.json"
SPEC_ANNOTATION = f"{contract.GROUP}/training-spec"
SPEC_FIELD = f"metadata.annotations['{SPEC_ANNOTATION}']"  # as the downward API names it
BENTOML_HOME = "/home/bentoml"
TERMINATION_LOG = "/dev/termination-log"
RESULT_KEYS = (
    "reason",
    "message",
    "tag",
    "artifact",
    "task",
    "metrics",
    "gates",
    "rows",
    "fingerprint",
    "sources",
)


def model_store(settings: Settings, namespace: str, model_uid: str) -> str:
    """The store directory (a URI, file:// or s3://) of the Model with `model_uid`."""
    return f"{store_root(settings)}/{namespace}/{model_uid}"


def owner_uid(obj: Mapping[str, Any]) -> str:
    """The UID of the object's controller (a ModelVersion's Model)."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref["uid"])
    raise ValueError(f"{obj['metadata']['name']} has no controller")


def owner_reference(owner: Mapping[str, Any]) -> Body:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def labels(model: str, component: str, version: str | None = None) -> dict[str, str]:
    result = {
        contract.LABEL_NAME: "modelops",
        contract.LABEL_MANAGED_BY: contract.MANAGED_BY,
        contract.LABEL_COMPONENT: component,
        contract.LABEL_MODEL: model,
    }
    if version:
        result[contract.LABEL_VERSION] = version
    return result


def scratch(settings: Settings) -> Body:
    """A pod's scratch volume (its BentoML home, its /tmp): node disk, bounded, so that no run
    fills the node; a pod over the bound is evicted, and the Job or Deployment says so."""
    return {"sizeLimit": settings.scratch_size_limit}


def store_volume(settings: Settings, read_only: bool = False) -> Body:
    """The artifact store's volume (the claim in the Model's namespace)."""
    claim: Body = {"claimName": settings.artifacts_claim}
    if read_only:
        claim["readOnly"] = True
    return {"name": "artifacts", "persistentVolumeClaim": claim}


def object_store(settings: Settings) -> bool:
    """Whether the artifact store is object storage (s3://) rather than the mounted claim."""
    return not settings.artifacts_uri.startswith("file:")


def store_root(settings: Settings) -> str:
    """The store's root URI without a trailing slash: file://<mount path> or s3://bucket/prefix."""
    if object_store(settings):
        return settings.artifacts_uri.rstrip("/")
    return f"file://{settings.artifacts_path.rstrip('/')}"


def store_volumes(settings: Settings, read_only: bool = False) -> list[Body]:
    """The pod's volumes for the store: the claim, or none for an object store."""
    return [] if object_store(settings) else [store_volume(settings, read_only)]


def store_mounts(settings: Settings, read_only: bool = False) -> list[Body]:
    """The container's mounts for the store: the claim at its path, or none for an object store."""
    if object_store(settings):
        return []
    mount: Body = {"name": "artifacts", "mountPath": settings.artifacts_path}
    if read_only:
        mount["readOnly"] = True
    return [mount]


def store_env_from(settings: Settings) -> list[Body]:
    """An object store's Secret as the container's environment (its keys are AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, AWS_REGION): referenced, never read."""
    if object_store(settings) and settings.artifacts_secret:
        return [{"secretRef": {"name": settings.artifacts_secret}}]
    return []


def dataset_env_from(training: Mapping[str, Any]) -> list[Body]:
    """The dataset's own Secret (`spec.training.dataset.secretName`), when it names one, as the
    training container's environment with the prefix MODELOPS_DATASET_ (`envFrom.prefix`), so that
    its AWS_* keys do not replace the store's: referenced, never read. Only the training pod
    gets it; without one, the dataset is read with the store's credentials."""
    secret = (training.get("dataset") or {}).get("secretName")
    if not secret:
        return []
    return [{"secretRef": {"name": secret}, "prefix": contract.ENV_DATASET_PREFIX}]


def with_store_env(container: Body, settings: Settings) -> Body:
    """`container` with the store's `envFrom`, when there is one."""
    env_from = store_env_from(settings)
    if env_from:
        container["envFrom"] = env_from
    return container


def pod_security_context() -> Body:
    """Restricted Pod Security Standard: non-root, RuntimeDefault seccomp."""
    return {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "fsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> Body:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def build_model_version(
    model: Mapping[str, Any], name: str, reason: str, training_hash: str
) -> Body:
    model_name = model["metadata"]["name"]
    return {
        "apiVersion": contract.API_VERSION,
        "kind": "ModelVersion",
        "metadata": {
            "name": name,
            "namespace": model["metadata"]["namespace"],
            "labels": labels(model_name, "version", name),
            "ownerReferences": [owner_reference(model)],
        },
        "spec": {
            "model": model_name,
            "reason": reason,
            "specHash": training_hash,
            "training": model["spec"]["training"],
        },
    }


def deadline_seconds(training: Mapping[str, Any], settings: Settings) -> int:
    """The Job's activeDeadlineSeconds: the spec's `deadline`, else the operator's default."""
    deadline = training.get("deadline")
    return int(seconds(deadline)) if deadline else settings.training_deadline_seconds


def build_training_job(version: Mapping[str, Any], settings: Settings) -> Body:
    meta, spec = version["metadata"], version["spec"]
    name, model = meta["name"], spec["model"]
    pod_labels = labels(model, "training", name)
    container: Body = {
        "name": contract.TRAINING_CONTAINER,
        "image": settings.runtime_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["modelops", "train"],
        "args": [
            "--spec",
            f"{SPEC_MOUNT}/{SPEC_FILE}",
            "--model",
            model,
            "--version",
            name,
            "--artifacts",
            model_store(settings, meta["namespace"], owner_uid(version)),
            "--result-file",
            TERMINATION_LOG,
        ],
        "env": [
            {"name": "BENTOML_HOME", "value": BENTOML_HOME},
            {"name": "HOME", "value": "/tmp"},
        ],
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": container_security_context(),
        "volumeMounts": [
            {"name": "spec", "mountPath": SPEC_MOUNT, "readOnly": True},
            *store_mounts(settings),
            {"name": "bentoml-home", "mountPath": BENTOML_HOME},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    with_store_env(container, settings)
    dataset_env = dataset_env_from(spec["training"])
    if dataset_env:
        container["envFrom"] = [*container.get("envFrom", []), *dataset_env]
    resources = spec["training"].get("resources") or settings.training_resources
    if resources:
        container["resources"] = resources
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": pod_labels,
            "ownerReferences": [owner_reference(version)],
        },
        "spec": {
            # A training that failed fails the same way again: no retry. A pod that was evicted,
            # preempted or lost with its node (the DisruptionTarget condition) did not fail:
            # the Job replaces it without counting it.
            "backoffLimit": 0,
            "podFailurePolicy": {
                "rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]
            },
            "activeDeadlineSeconds": deadline_seconds(spec["training"], settings),
            "template": {
                "metadata": {
                    "labels": pod_labels,
                    "annotations": {
                        SPEC_ANNOTATION: json.dumps(spec["training"], indent=2, sort_keys=True)
                    },
                },
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "securityContext": pod_security_context(),
                    "containers": [container],
                    "volumes": [
                        {
                            "name": "spec",
                            "downwardAPI": {
                                "items": [
                                    {
                                        "path": SPEC_FILE,
                                        "fieldRef": {"fieldPath": SPEC_FIELD},
                                    }
                                ]
                            },
                        },
                        *store_volumes(settings),
                        {"name": "bentoml-home", "emptyDir": scratch(settings)},
                        {"name": "tmp", "emptyDir": scratch(settings)},
                    ],
                },
            },
        },
    }


def _condition(job: Mapping[str, Any], condition_type: str) -> Mapping[str, Any] | None:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == condition_type and condition.get("status") == "True":
            return dict(condition)
    return None


def job_finished(job: Mapping[str, Any]) -> bool:
    return bool(_condition(job, "Complete") or _condition(job, "Failed"))


def job_running(job: Mapping[str, Any]) -> bool:
    """Whether the Job's training pod runs: ready, as the Job counts it (`status.ready`). A Job
    whose pod waits to be scheduled or for its image is not training yet; a cluster older than
    Kubernetes 1.24 counts no ready pods, and there an active pod is taken for a running one."""
    status = job.get("status") or {}
    if "ready" in status:
        return bool(status["ready"])
    return bool(status.get("active"))


RERUN = "the pod that trained was deleted after it finished, and its result with it; training again"


def result_lost(
    job: Mapping[str, Any], pod: Mapping[str, Any] | None, status: Mapping[str, Any]
) -> bool:
    """Whether a Job succeeded but no pod with its result is left (a pod evicted or deleted as it
    finished takes its termination message along), and the version has not been run again yet."""
    return pod is None and _condition(job, "Complete") is not None and not status.get("rerun")


def result_pod(pods: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The pod whose termination message is the Job's result: the one that succeeded (a Job
    whose first pod was evicted has two, often created within the same second), else the
    newest."""
    ordered = sorted(
        pods,
        key=lambda p: (
            ((p.get("status") or {}).get("phase") == "Succeeded"),
            (p.get("metadata") or {}).get("creationTimestamp") or "",
        ),
    )
    return ordered[-1] if ordered else None


def termination(pod: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The training container's `terminated` state, if it has terminated."""
    for status in ((pod or {}).get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == contract.TRAINING_CONTAINER:
            terminated = (status.get("state") or {}).get("terminated")
            if terminated:
                return dict(terminated)
    return None


def termination_message(pod: Mapping[str, Any] | None) -> str | None:
    """The training container's termination message, if it has terminated."""
    terminated = termination(pod)
    return None if terminated is None else str(terminated.get("message") or "")


def memory_limit(pod: Mapping[str, Any] | None) -> str:
    for container in ((pod or {}).get("spec") or {}).get("containers") or []:
        if container.get("name") == contract.TRAINING_CONTAINER:
            return str(((container.get("resources") or {}).get("limits") or {}).get("memory", ""))
    return ""


# How long a training pod may wait for its container's configuration (a Secret it names that is
# missing) before its version fails: long enough for a Secret applied together with
# the Model (Argo CD, Flux) to arrive.
CONFIG_ERROR_GRACE_SECONDS = 120
CONFIG_ERRORS = ("CreateContainerConfigError",)


def age(obj: Mapping[str, Any], now: datetime.datetime) -> float:
    """Seconds since the object was created (0 when it has no creationTimestamp yet)."""
    created = (obj.get("metadata") or {}).get("creationTimestamp")
    if not created:
        return 0.0
    since = datetime.datetime.fromisoformat(str(created).replace("Z", "+00:00"))
    return (now - since).total_seconds()


def config_error(
    pods: Sequence[Mapping[str, Any]],
    now: datetime.datetime,
    grace: float = CONFIG_ERROR_GRACE_SECONDS,
) -> Body | None:
    """The Failed status of a version whose training pod has been unable to start for `grace`
    seconds or more because the kubelet cannot make its container's configuration (the reason
    CreateContainerConfigError: a Secret named by spec.training.dataset.secretName or by the
    artifact store is missing, or the image would run as root); None while it may still start.
    The message is the kubelet's, which names the Secret, never a value."""
    for pod in pods:
        waited = age(pod, now)
        if waited < grace:
            continue
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (status.get("state") or {}).get("waiting") or {}
            if status.get("name") == contract.TRAINING_CONTAINER and (
                waiting.get("reason") in CONFIG_ERRORS
            ):
                detail = str(waiting.get("message") or "no message")[:300]
                hint = (
                    "; create the Secret in the Model's namespace (spec.training.dataset."
                    "secretName, or the artifact store's) or fix its name"
                    if "secret" in detail.lower()
                    else ""
                )
                return {
                    "phase": contract.FAILED,
                    "approved": False,
                    "reason": str(waiting["reason"]),
                    "message": f"the training pod could not start for {int(waited)}s: {detail}"
                    + hint,
                }
    return None


def store_uri(directory: str) -> str:
    """A store directory as a URI: a bare absolute path means file://."""
    return f"file://{directory}" if directory.startswith("/") else directory


def in_store(artifact: object, directory: str) -> bool:
    """Whether `artifact` is a URI of a file or object strictly under `directory` (a URI such as
    `model_store` gives, file:// or s3://, or a bare path meaning file://): the same scheme and
    host or bucket, no query, no `..`, `.` or empty path segment."""
    if not isinstance(artifact, str):
        return False
    root, got = urlsplit(store_uri(directory)), urlsplit(artifact)
    if got.scheme not in ("file", "s3") or (got.scheme, got.netloc) != (root.scheme, root.netloc):
        return False
    if got.query or got.fragment or not got.path.startswith("/"):
        return False
    segments = got.path.split("/")[1:]
    if any(s in ("", ".", "..") for s in segments):
        return False
    path, base = PurePosixPath(got.path), PurePosixPath(root.path or "/")
    return path.is_relative_to(base) and path != base


def outcome(job: Mapping[str, Any], pod: Mapping[str, Any] | None, store: str) -> Body:
    """The version's status fields once its Job has finished.

    The result in the termination message decides (Succeeded, Rejected or Failed); a Job that failed
    without one is Failed: `OOMKilled` when the kernel killed the container at its memory limit,
    else with the Job's reason (deadline, crash before the result). A success whose archive is not
    in its Model's store directory (`store`, see `model_store`) is Failed: serving loads only from
    there.
    """
    failed = _condition(job, "Failed")
    text = termination_message(pod)
    result: Mapping[str, Any] | None = None
    if text:
        try:
            parsed = json.loads(text)
            result = parsed if isinstance(parsed, dict) else None
        except ValueError:
            result = None
    if result is not None and result.get("phase") in (
        contract.SUCCEEDED,
        contract.REJECTED,
        contract.FAILED,
    ):
        status: Body = {"phase": result["phase"]}
        status.update({k: result[k] for k in RESULT_KEYS if k in result})
        status["approved"] = result["phase"] == contract.SUCCEEDED
        if status["phase"] == contract.SUCCEEDED and not status.get("artifact"):
            status.update(
                phase=contract.FAILED,
                approved=False,
                reason="NoArtifact",
                message="the training reported success but no archive",
            )
        elif status["phase"] == contract.SUCCEEDED and not in_store(status["artifact"], store):
            status.update(
                phase=contract.FAILED,
                approved=False,
                reason="ArtifactOutsideStore",
                message="the training reported an archive outside its Model's store "
                f"{store_uri(store)}",
            )
            del status["artifact"]
        return status
    if (termination(pod) or {}).get("reason") == "OOMKilled":
        limit = memory_limit(pod)
        return {
            "phase": contract.FAILED,
            "approved": False,
            "reason": "OOMKilled",
            "message": "the training ran out of memory: the kernel killed it at its limit"
            + (f" of {limit}" if limit else "")
            + "; raise spec.training.resources.limits.memory or train on less data",
        }
    if failed is not None:
        reason = failed.get("reason") or "JobFailed"
        message = failed.get("message") or "the training Job failed"
        if text:
            message = f"{message}; last output: {text[-500:]}"
        return {"phase": contract.FAILED, "approved": False, "reason": reason, "message": message}
    detail = f": {text[:500]!r}" if text else ""
    return {
        "phase": contract.FAILED,
        "approved": False,
        "reason": "NoResult",
        "message": f"the training Job completed without a readable result{detail}",
    }
