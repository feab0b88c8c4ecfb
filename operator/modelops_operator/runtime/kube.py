"""The operator's I/O with the API server: server-side apply, create, get, list, delete, patch.

A thin layer over the official client's ApiClient that speaks in plain dicts (the builders' output)
and maps a kind to its REST path; everything that decides lives elsewhere. With a store, every
object the API server answers with is kept there (and one it answers 404 for is dropped), so a
reconcile that follows a write reads the write; `ensure` skips an apply that would change nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, NamedTuple

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from modelops_api import contract
from modelops_operator.objects import Body
from modelops_operator.runtime.store import Store

# kind -> (path prefix, plural)
PATHS: dict[str, tuple[str, str]] = {
    "Service": ("/api/v1", "services"),
    "Pod": ("/api/v1", "pods"),
    "Secret": ("/api/v1", "secrets"),
    "NetworkPolicy": ("/apis/networking.k8s.io/v1", "networkpolicies"),
    "Deployment": ("/apis/apps/v1", "deployments"),
    "Job": ("/apis/batch/v1", "jobs"),
    "HorizontalPodAutoscaler": ("/apis/autoscaling/v2", "horizontalpodautoscalers"),
    "PodDisruptionBudget": ("/apis/policy/v1", "poddisruptionbudgets"),
    "HTTPRoute": ("/apis/gateway.networking.k8s.io/v1", "httproutes"),
    "Model": (f"/apis/{contract.API_VERSION}", contract.MODELS),
    "ModelVersion": (f"/apis/{contract.API_VERSION}", contract.MODEL_VERSIONS),
}


def path(kind: str, namespace: str, name: str | None = None, sub: str | None = None) -> str:
    """The REST path; an empty `namespace` (with no name) means every namespace."""
    prefix, plural = PATHS[kind]
    result = f"{prefix}/namespaces/{namespace}/{plural}" if namespace else f"{prefix}/{plural}"
    if name:
        result += f"/{name}"
    if sub:
        result += f"/{sub}"
    return result


# Seconds to connect and to read each API answer: a hung API server fails a pass (retried, and
# reported on the Model) instead of holding a worker of the queue forever.
TIMEOUT = (5.0, 30.0)


class Applied(NamedTuple):
    """What `apply` last wrote to an object: the body's hash, the object's generation (or
    resourceVersion) after, and the Model it belongs to."""

    digest: str
    marker: str
    model: str


class Kube:
    """Requests the operator makes, each one API call."""

    def __init__(
        self,
        api_client: client.ApiClient,
        store: Store | None = None,
        timeout: tuple[float, float] = TIMEOUT,
    ) -> None:
        self.api_client = api_client
        self.store = store
        self.timeout = timeout
        # (kind, namespace, name) -> (hash of the body applied, generation or resourceVersion
        # after); forgotten with the object, or with its Model (`forget_model`)
        self._applied: dict[tuple[str, str, str], Applied] = {}

    def _keep(self, kind: str, body: Body) -> Body:
        if self.store is not None and body.get("metadata"):
            self.store.put(kind, body)
        return body

    def _gone(self, kind: str, namespace: str, name: str) -> None:
        self._applied.pop((kind, namespace, name), None)
        if self.store is not None:
            self.store.forget(kind, namespace, name)

    def forget(self, kind: str, namespace: str, name: str) -> None:
        """Someone deleted the object (a watch said so): nothing of it is kept."""
        self._gone(kind, namespace, name)

    def forget_model(self, namespace: str, model: str) -> None:
        """The Model is gone, and the garbage collector takes its children (some unwatched, like
        its Secret): nothing of them is kept."""
        owned = [k for k, a in self._applied.items() if k[1] == namespace and a.model == model]
        for key in owned:
            self._gone(*key)

    def request(
        self,
        method: str,
        url: str,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> Body:
        """One API call, within `timeout`; the JSON answer as a dict. Non-2xx raises
        ApiException; a timeout raises urllib3's error."""
        c = self.api_client
        method, full_url, headers, payload, _ = c.param_serialize(
            method,
            url,
            query_params=query or [],
            body=body,
            auth_settings=["BearerToken"],
            header_params={"Accept": "application/json", "Content-Type": content_type},
        )
        response = c.call_api(
            method, full_url, header_params=headers, body=payload, _request_timeout=self.timeout
        )
        data = response.read()  # type: ignore[no-untyped-call]
        if not 200 <= response.status <= 299:
            raise ApiException(http_resp=response)
        parsed = json.loads(data) if data else {}
        return parsed if isinstance(parsed, dict) else {}

    def apply(self, body: Mapping[str, Any]) -> Body:
        """Server-side apply under the operator's field manager; owns what it declares."""
        meta = body["metadata"]
        answer = self.request(
            "PATCH",
            path(body["kind"], meta["namespace"], meta["name"]),
            body=dict(body),
            query=[("fieldManager", contract.FIELD_MANAGER), ("force", "true")],
            content_type="application/apply-patch+yaml",
        )
        key = (body["kind"], meta["namespace"], meta["name"])
        model = (meta.get("labels") or {}).get(contract.LABEL_MODEL, "")
        self._applied[key] = Applied(_digest(body), _marker(answer), model)
        return self._keep(body["kind"], answer)

    def ensure(self, body: Mapping[str, Any]) -> Body:
        """`apply`, unless this very body was applied last and the object has not changed since
        (same generation, or resourceVersion for kinds without one): then the stored object."""
        meta = body["metadata"]
        key = (body["kind"], meta["namespace"], meta["name"])
        current = self.store.get(*key) if self.store is not None else None
        applied = self._applied.get(key)
        if (
            current is not None
            and applied is not None
            and (applied.digest, applied.marker) == (_digest(body), _marker(current))
        ):
            return current
        return self.apply(body)

    def create(self, body: Mapping[str, Any]) -> Body | None:
        """Creates the object; None when one of that name exists already."""
        meta = body["metadata"]
        try:
            answer = self.request(
                "POST",
                path(body["kind"], meta["namespace"]),
                body=dict(body),
                query=[("fieldManager", contract.FIELD_MANAGER)],
            )
            return self._keep(body["kind"], answer)
        except ApiException as error:
            if error.status == 409:
                return None
            raise

    def seen(self, kind: str, namespace: str, name: str) -> Body | None:
        """The object as the store has it (without a store, as the API server has it)."""
        if self.store is not None:
            return self.store.get(kind, namespace, name)
        return self.get(kind, namespace, name)

    def get(self, kind: str, namespace: str, name: str) -> Body | None:
        try:
            return self._keep(kind, self.request("GET", path(kind, namespace, name)))
        except ApiException as error:
            if error.status == 404:
                self._gone(kind, namespace, name)
                return None
            raise

    def list(self, kind: str, namespace: str, selector: Mapping[str, str]) -> list[Body]:
        """The objects of `kind` with the labels in `selector`; namespace "" means all."""
        labels = ",".join(f"{k}={v}" for k, v in selector.items())
        items = self.request("GET", path(kind, namespace), query=[("labelSelector", labels)])
        return list(items.get("items") or [])

    def delete(self, kind: str, namespace: str, name: str) -> bool:
        """Deletes with background propagation; False when it was already gone."""
        try:
            self.request(
                "DELETE", path(kind, namespace, name), body={"propagationPolicy": "Background"}
            )
        except ApiException as error:
            if error.status == 404:
                self._gone(kind, namespace, name)
                return False
            raise
        self._gone(kind, namespace, name)
        return True

    def patch_status(self, kind: str, namespace: str, name: str, status: Mapping[str, Any]) -> Body:
        """A JSON merge patch of the status subresource (None values remove fields), under the
        operator's field manager, so that managedFields say who wrote the status."""
        try:
            answer = self.request(
                "PATCH",
                path(kind, namespace, name, "status"),
                body={"status": dict(status)},
                query=[("fieldManager", contract.FIELD_MANAGER)],
                content_type="application/merge-patch+json",
            )
        except ApiException as error:
            if error.status == 404:
                self._gone(kind, namespace, name)
            raise
        return self._keep(kind, answer)

    def post_event(
        self, obj: Mapping[str, Any], event_type: str, reason: str, message: str, now: str
    ) -> None:
        """A core/v1 Event about `obj`, as `kubectl describe` and `kubectl get events` show."""
        meta = obj["metadata"]
        self.request(
            "POST",
            f"/api/v1/namespaces/{meta['namespace']}/events",
            body={
                "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
                "involvedObject": {
                    "apiVersion": obj.get("apiVersion"),
                    "kind": obj.get("kind"),
                    "name": meta["name"],
                    "namespace": meta["namespace"],
                    "uid": meta.get("uid"),
                },
                "type": event_type,
                "reason": reason,
                "message": message[:1024],
                "source": {"component": contract.FIELD_MANAGER},
                "reportingComponent": contract.FIELD_MANAGER,
                "reportingInstance": contract.FIELD_MANAGER,
                "firstTimestamp": now,
                "lastTimestamp": now,
                "count": 1,
            },
        )


def namespace_terminating(error: ApiException) -> bool:
    """Whether the API server refused a write because its namespace is being deleted (a 403 that
    is not an authorization decision: the cause `NamespaceTerminating`)."""
    if error.status != 403:
        return False
    try:
        causes = (json.loads(error.body or "{}").get("details") or {}).get("causes") or []
    except (ValueError, AttributeError):
        return False
    return any(isinstance(c, dict) and c.get("reason") == "NamespaceTerminating" for c in causes)


def _digest(body: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _marker(obj: Mapping[str, Any]) -> str:
    """What changes when someone changes the object's spec: its generation, if it has one."""
    meta = obj.get("metadata") or {}
    return f"g{meta['generation']}" if meta.get("generation") else f"r{meta.get('resourceVersion')}"
