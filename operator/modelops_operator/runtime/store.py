"""What the operator has seen of the cluster: the latest body of each object it watches.

Kopf's watch events (handlers.py) and the answers to the operator's own writes (kube.py) feed it;
a reconcile reads it instead of asking the API server, so a reconcile that finds nothing to do
costs no request at all. Before the watches start, one list per kind seeds it (`seed`), so a
reconcile never plans from a half-filled store. A write answered 404 drops the object.

Bodies are kept without `managedFields`, and the kinds the operator only needs the state of keep
only metadata, `spec.replicas` and status (training pods: their containers' resources too): a
thousand Models' worth stays small.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any

from modelops_api import contract
from modelops_operator.objects import Body

Key = tuple[str, str, str]  # kind, namespace, name

# Kinds whose spec the operator never reads back (it writes it): state is enough.
# A Secret's data is never kept.
STATE_ONLY = frozenset({"Job", "Deployment", "Service", "HorizontalPodAutoscaler",
                        "PodDisruptionBudget", "Secret", "NetworkPolicy"})  # fmt: skip
# Training pods keep their state and their containers' names and resources: a run's outcome
# reads the container's memory limit (an OOMKilled run's reason names it). HTTPRoutes are kept
# whole: a promotion keeps the canary's weight in the route while it hands over.


def slim(kind: str, body: Mapping[str, Any]) -> Body:
    """What the store keeps of `body`."""
    meta = {k: v for k, v in (body.get("metadata") or {}).items() if k != "managedFields"}
    if kind == "Pod":
        containers = ((body.get("spec") or {}).get("containers")) or []
        resources = [
            {"name": c.get("name"), "resources": c.get("resources") or {}} for c in containers
        ]
        return {
            "kind": kind,
            "metadata": meta,
            "spec": {"containers": resources},
            "status": body.get("status") or {},
        }
    if kind not in STATE_ONLY:
        return {**body, "kind": kind, "metadata": meta}
    kept: Body = {"kind": kind, "metadata": meta, "status": body.get("status") or {}}
    replicas = (body.get("spec") or {}).get("replicas")
    if replicas is not None:
        kept["spec"] = {"replicas": replicas}
    return kept


def _newer(candidate: Mapping[str, Any], current: Mapping[str, Any] | None) -> bool:
    """Whether `candidate` is at least as recent as `current` (resource versions are etcd
    revisions on every real API server; anything unparsable is taken as newer)."""
    if current is None:
        return True
    try:
        return int(candidate["metadata"]["resourceVersion"]) >= int(
            current["metadata"]["resourceVersion"]
        )
    except (KeyError, TypeError, ValueError):
        return True


class Store:
    """Thread-safe latest bodies by (kind, namespace, name), indexed by the owning Model."""

    def __init__(self) -> None:
        self._objects: dict[Key, Body] = {}
        self._by_model: dict[tuple[str, str, str], set[str]] = {}
        # The UIDs of Models that went away and whose archives are still to be removed.
        self._departed: dict[tuple[str, str], list[str]] = {}
        self._lock = threading.Lock()

    def put(self, kind: str, body: Mapping[str, Any]) -> Body:
        """Keeps `body` unless the store holds a newer one; returns what the store holds."""
        meta = body.get("metadata") or {}
        key = (kind, meta.get("namespace", ""), meta.get("name", ""))
        kept = slim(kind, body)
        with self._lock:
            current = self._objects.get(key)
            if not _newer(kept, current):
                assert current is not None
                return current
            self._objects[key] = kept
            model = _model_of(kind, kept)
            if model:
                self._by_model.setdefault((kind, key[1], model), set()).add(key[2])
            return kept

    def forget(self, kind: str, namespace: str, name: str) -> None:
        with self._lock:
            gone = self._objects.pop((kind, namespace, name), None)
            uid = ((gone or {}).get("metadata") or {}).get("uid")
            if kind == "Model" and uid:
                self._departed.setdefault((namespace, name), []).append(str(uid))
            model = _model_of(kind, gone) if gone else None
            if model:
                self._by_model.get((kind, namespace, model), set()).discard(name)

    def departed(self, namespace: str, name: str) -> list[str]:
        """The UIDs of the Models `namespace/name` that went away since the last call."""
        with self._lock:
            return self._departed.pop((namespace, name), [])

    def get(self, kind: str, namespace: str, name: str) -> Body | None:
        with self._lock:
            return self._objects.get((kind, namespace, name))

    def owned(self, kind: str, namespace: str, model: str) -> list[Body]:
        """The objects of `kind` labelled as `model`'s."""
        with self._lock:
            names = self._by_model.get((kind, namespace, model), set())
            return [self._objects[(kind, namespace, n)] for n in sorted(names)]

    def names(self, kind: str) -> list[tuple[str, str]]:
        """(namespace, name) of every stored object of `kind`."""
        with self._lock:
            return sorted((ns, name) for k, ns, name in self._objects if k == kind)

    def seed(self, kind: str, items: Iterable[Mapping[str, Any]]) -> None:
        for item in items:
            self.put(kind, item)

    def __len__(self) -> int:
        with self._lock:
            return len(self._objects)


def _model_of(kind: str, body: Mapping[str, Any]) -> str | None:
    if kind == "ModelVersion":
        return str((body.get("spec") or {}).get("model") or "") or None
    labels = (body.get("metadata") or {}).get("labels") or {}
    return labels.get(contract.LABEL_MODEL)
