"""Pure builders of a Model's serving children: the Deployment per track, the Service, HPA and PDB.

Serving pods mount the Model's credentials Secret (credentials.py) and nothing else of the API.

One Service selects every serving pod of a model; each track (stable, canary) is its own Deployment
whose selector adds the track label, so the Service spreads traffic by replica ratio on any cluster
(no mesh) while the two Deployments never adopt each other's pods. Each pod imports its version's
archive into its own emptyDir `BENTOML_HOME` (docs/runtime-contract.md says why it is never shared).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelops_api import contract
from modelops_api.spec import ServingSpec
from modelops_operator import credentials
from modelops_operator.objects import Body
from modelops_operator.settings import Settings
from modelops_operator.training import (
    BENTOML_HOME,
    container_security_context,
    labels,
    owner_reference,
    pod_security_context,
    scratch,
    store_mounts,
    store_volumes,
    with_store_env,
)
from modelops_operator.versions import VersionInfo

STABLE = contract.STABLE
CANARY = contract.CANARY
# Seconds a serving pod keeps answering after it is told to stop (its preStop hook).
DRAIN_SECONDS = 5


def deployment_name(model: str, track: str) -> str:
    return f"{model}-{track}"


def service_labels(model: str) -> dict[str, str]:
    """The labels the Service selects: every serving pod of the model, whatever its track."""
    return {contract.LABEL_MODEL: model, contract.LABEL_COMPONENT: "serving"}


def meta(model: Mapping[str, Any], name: str, extra: Mapping[str, str]) -> Body:
    """The metadata of a child: the Model's labels and `extra`, owned by the Model."""
    model_name = model["metadata"]["name"]
    return {
        "name": name,
        "namespace": model["metadata"]["namespace"],
        "labels": {**labels(model_name, "serving"), **extra},
        "ownerReferences": [owner_reference(model)],
    }


def recording_env(serving: ServingSpec) -> list[Body]:
    """The retention of production data, when the Model records it (spec.serving.recording)."""
    if serving.recording is None:
        return []
    retention = f"{serving.recording.retention_seconds:g}"
    return [{"name": contract.ENV_RECORDING_RETENTION, "value": retention}]


def build_deployment(
    model: Mapping[str, Any],
    serving: ServingSpec,
    version: VersionInfo,
    track: str,
    replicas: int | None,
    settings: Settings,
) -> Body:
    """The Deployment serving `version` on `track`; `replicas` None leaves them to the HPA."""
    name = model["metadata"]["name"]
    selector = {**service_labels(name), contract.LABEL_TRACK: track}
    pod_labels = {**labels(name, "serving", version.name), contract.LABEL_TRACK: track}
    container: Body = {
        "name": contract.SERVING_CONTAINER,
        "image": settings.runtime_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": list(contract.SERVE_COMMAND),
        "args": ["--port", str(contract.SERVING_PORT)],
        "env": [
            {"name": contract.ENV_ARTIFACT, "value": version.artifact},
            {"name": contract.ENV_MODEL, "value": name},
            {"name": contract.ENV_VERSION, "value": version.name},
            {"name": contract.ENV_TRACK, "value": track},
            {"name": contract.ENV_HOST, "value": "0.0.0.0"},
            {"name": contract.ENV_CREDENTIALS, "value": credentials.MOUNT},
            {"name": "BENTOML_HOME", "value": BENTOML_HOME},
            {"name": "HOME", "value": "/tmp"},
            *recording_env(serving),
        ],
        "ports": [{"name": "http", "containerPort": contract.SERVING_PORT, "protocol": "TCP"}],
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "http"},
            "periodSeconds": 5,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": "/livez", "port": "http"},
            "initialDelaySeconds": 10,
            "periodSeconds": 10,
            "failureThreshold": 6,
        },
        "startupProbe": {
            "httpGet": {"path": "/livez", "port": "http"},
            "periodSeconds": 2,
            "failureThreshold": 90,
        },
        # A pod on its way out keeps answering while the endpoints controller and every node's
        # kube-proxy take it out of the Service, so a rollout, a promotion or a scale-down loses
        # no request (then SIGTERM; BentoML finishes what it is answering).
        "lifecycle": {"preStop": {"sleep": {"seconds": DRAIN_SECONDS}}},
        "securityContext": container_security_context(),
        "volumeMounts": [
            # Recording writes production data beside the archives; else the store is read-only.
            *store_mounts(settings, read_only=serving.recording is None),
            {"name": credentials.VOLUME, "mountPath": credentials.MOUNT, "readOnly": True},
            {"name": "bentoml-home", "mountPath": BENTOML_HOME},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    with_store_env(container, settings)
    resources = serving.resources or settings.serving_resources
    if resources:
        container["resources"] = resources
    spec: Body = {
        "selector": {"matchLabels": selector},
        "template": {
            "metadata": {
                "labels": pod_labels,
                "annotations": {
                    "prometheus.io/scrape": "true",
                    "prometheus.io/port": str(contract.SERVING_PORT),
                    "prometheus.io/path": "/metrics",
                },
            },
            "spec": {
                "automountServiceAccountToken": False,
                "securityContext": pod_security_context(),
                "containers": [container],
                "volumes": [
                    *store_volumes(settings, read_only=serving.recording is None),
                    {
                        "name": credentials.VOLUME,
                        "secret": {"secretName": contract.credentials_secret(name)},
                    },
                    {"name": "bentoml-home", "emptyDir": scratch(settings)},
                    {"name": "tmp", "emptyDir": scratch(settings)},
                ],
            },
        },
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(
            model,
            deployment_name(name, track),
            {contract.LABEL_TRACK: track, contract.LABEL_VERSION: version.name},
        ),
        "spec": spec,
    }


def build_service(model: Mapping[str, Any]) -> Body:
    name = model["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(model, name, {}),
        "spec": {
            "selector": service_labels(name),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


# The NetworkPolicy: what may reach the Models' pods. Egress stays open: a training reads its data
# from wherever `dataset.uri` says. Effective where the cluster's network plugin enforces them.
NETWORK_POLICY = "modelops-models"


def build_network_policy(namespace: str) -> Body:
    """One policy for every Model of the namespace: their pods, serving and training, take traffic
    on the serving port only (predictions, feedback, scrapes); nothing listens on it in a training
    pod, so nothing reaches one.

    One per namespace rather than per Model: it is written once, not once for each Model (one of
    the ten or so requests of each Model's rollout, docs/benchmarks.md). It belongs to no Model,
    so it stays when the last one goes, selecting no pod (docs/operations.md, "Uninstall")."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": NETWORK_POLICY,
            "namespace": namespace,
            "labels": {
                contract.LABEL_NAME: "modelops",
                contract.LABEL_MANAGED_BY: contract.MANAGED_BY,
                contract.LABEL_COMPONENT: "network-policy",
            },
        },
        "spec": {
            "podSelector": {
                "matchLabels": {contract.LABEL_MANAGED_BY: contract.MANAGED_BY},
                "matchExpressions": [
                    {"key": contract.LABEL_MODEL, "operator": "Exists"},
                    {
                        "key": contract.LABEL_COMPONENT,
                        "operator": "In",
                        "values": ["serving", "training"],
                    },
                ],
            },
            "policyTypes": ["Ingress"],
            "ingress": [{"ports": [{"protocol": "TCP", "port": contract.SERVING_PORT}]}],
        },
    }


def build_autoscaler(model: Mapping[str, Any], serving: ServingSpec) -> Body | None:
    """An HPA for the stable Deployment when `spec.serving.autoscaling` is set."""
    autoscaling = serving.autoscaling
    if autoscaling is None:
        return None
    name = model["metadata"]["name"]
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": meta(model, name, {}),
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": deployment_name(name, STABLE),
            },
            "minReplicas": autoscaling.min_replicas,
            "maxReplicas": autoscaling.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": autoscaling.target_cpu_utilization,
                        },
                    },
                }
            ],
        },
    }


def stable_replicas(serving: ServingSpec) -> int | None:
    """The stable Deployment's replicas; None when an HPA owns the count."""
    return None if serving.autoscaling is not None else serving.replicas


def least_replicas(serving: ServingSpec) -> int:
    """The fewest stable pods the spec allows: the HPA's minimum, or the fixed count."""
    return serving.autoscaling.min_replicas if serving.autoscaling else serving.replicas


def build_disruption_budget(model: Mapping[str, Any], serving: ServingSpec) -> Body | None:
    """A PDB that keeps serving through voluntary disruptions, when there is more than one pod."""
    if least_replicas(serving) <= 1:
        return None
    name = model["metadata"]["name"]
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": meta(model, name, {}),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": service_labels(name)}},
    }
