"""Invalid Model manifests are rejected by the API server itself, with the offending field named.

The CRD's schema and CEL rules do the work, so `kubectl apply`, Argo CD and Flux all get the same
answer before the operator ever sees the object.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from manifests import CASES, EXAMPLE, mutate
from test_spec import VS_STABLE_CASES, with_vs_stable

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(("case", "changes", "expected"), CASES, ids=[c[0] for c in CASES])
def test_invalid_model_is_rejected_naming_the_field(
    crds: Path,
    kube_api: client.ApiClient,
    namespace: str,
    case: str,
    changes: dict[str, Any],
    expected: str,
) -> None:
    custom = client.CustomObjectsApi(kube_api)
    body = mutate(EXAMPLE, changes)
    with pytest.raises(ApiException) as error:
        custom.create_namespaced_custom_object(
            "modelops.dev", "v1alpha1", namespace, "models", body, field_validation="Strict"
        )
    assert error.value.status in (400, 422), error.value.body
    assert expected in error.value.body, error.value.body


def test_the_example_itself_is_valid(
    crds: Path, kube_api: client.ApiClient, namespace: str
) -> None:
    custom = client.CustomObjectsApi(kube_api)
    custom.create_namespaced_custom_object(
        "modelops.dev",
        "v1alpha1",
        namespace,
        "models",
        copy.deepcopy(EXAMPLE),
        field_validation="Strict",
    )


@pytest.mark.parametrize(
    ("case", "vs_stable", "field"), VS_STABLE_CASES, ids=[c[0] for c in VS_STABLE_CASES]
)
def test_the_api_server_bounds_vs_stable(
    crds: Path,
    kube_api: client.ApiClient,
    namespace: str,
    case: str,
    vs_stable: dict[str, Any],
    field: str,
) -> None:
    custom = client.CustomObjectsApi(kube_api)
    with pytest.raises(ApiException) as error:
        custom.create_namespaced_custom_object(
            "modelops.dev",
            "v1alpha1",
            namespace,
            "models",
            with_vs_stable(vs_stable),
            field_validation="Strict",
        )
    assert error.value.status in (400, 422), error.value.body
    assert f"spec.monitoring.checks.errorRate.{field}" in error.value.body, error.value.body


def test_the_api_server_fills_vs_stable_with_the_specs_defaults(
    crds: Path, kube_api: client.ApiClient, namespace: str
) -> None:
    custom = client.CustomObjectsApi(kube_api)
    created = custom.create_namespaced_custom_object(
        "modelops.dev",
        "v1alpha1",
        namespace,
        "models",
        with_vs_stable({}),
        field_validation="Strict",
    )
    assert created["spec"]["monitoring"]["checks"]["errorRate"]["vsStable"] == {
        "confidence": 0.95,
        "minSamples": 200,
    }
