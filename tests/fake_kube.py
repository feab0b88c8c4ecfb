"""An in-memory API server behind the operator's `Kube`, for unit tests of whole reconcile passes.

`FakeKube` subclasses `modelops_operator.runtime.kube.Kube` and overrides only `request()`, the one
method that talks HTTP. Everything else is Kube's own code: `apply`, `ensure` (its digest and
generation bookkeeping), `create` (409 -> None), `get` (404 -> None), `list`, `delete` (404 ->
False), `patch_status`, `post_event`, and the store kept in sync with every answer (`_keep`,
`_gone`). So a test of a pass runs the very requests the operator makes, and a Kube that changes
how it speaks to the API server is checked by the same tests (a Kube code path that bypassed
`request()` would hit `_Unplugged` and fail loudly instead of reaching for a network).

The server holds objects by (kind, namespace, name), the kind read off the REST path with
`kube.PATHS` (plus core/v1 Events). It behaves as kube-apiserver does where the operator can tell:

- every write that changes an object gives it a new `resourceVersion` from one increasing counter
(an etcd revision); a write that changes nothing keeps it, as the real server does; -
`metadata.generation` starts at 1 and moves when anything but metadata and status changes
(Services, Pods and Events have none, as on a real cluster); `uid` and `creationTimestamp` are
assigned on creation; a create ignores `status` (the status subresource owns it); - server-side
apply (`application/apply-patch+yaml`) creates, or sets every field the body declares and drops
those the same manager declared before and no longer does (top-level fields, labels, annotations,
ownerReferences), keeping what others wrote (status, other labels); - a JSON merge patch (RFC 7386:
`None` removes a key) of `.status` or of the object, 404 when the object is absent; - lists filter
by label selector (`k=v`, `k!=v`, `k`, `!k`), namespace "" meaning all, and, like the real server,
items of built-in kinds come without `apiVersion` and `kind`; - a delete removes the object and, as
the garbage collector would (background propagation), whatever it owns, transitively; - Events are
kept in `events`.

The store sees every change as Kopf's watches would deliver it (handlers.py: Models, versions, and
the managed children), whether the operator or a test made it, so the next pass plans from what is.
Tests play the controllers a control plane without nodes lacks: `start_job` and `finish_job` (the
Job controller and the kubelet reporting the training pod's termination message, which
`training.outcome` reads), `make_ready` (the Deployment controller), `put` (a user's `kubectl
apply`), `set_status` and `remove`. None of them is recorded as a request.

Every request the operator makes is in `requests` (method, path, query, content type, body), so a
test can say "this pass made no request". `fail()` makes matching requests raise the `ApiException`
the real client raises, with a `Status` body.
"""

from __future__ import annotations

import copy
import datetime
import http
import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from modelops_api import contract
from modelops_operator.objects import Body
from modelops_operator.runtime.controller import TRAINING_PODS
from modelops_operator.runtime.kube import PATHS, Kube
from modelops_operator.runtime.store import Store

Key = tuple[str, str, str]  # kind, namespace, name

APPLY = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"
JOB_NAME = "batch.kubernetes.io/job-name"

# Every path the fake serves: the operator's kinds, and the Events it posts.
ROUTES: dict[str, tuple[str, str]] = {**PATHS, "Event": ("/api/v1", "events")}
# Kinds a real API server gives no metadata.generation.
NO_GENERATION = frozenset({"Service", "Pod", "Event"})
# Custom resources: their list items keep apiVersion and kind (built-in kinds' items do not).
CUSTOM = frozenset({"Model", "ModelVersion"})
# What the operator's watches deliver into its store (handlers.py): these kinds always ...
WATCHED_ALL = frozenset({"Model", "ModelVersion"})
# ... these when labelled as the operator's, and training pods (TRAINING_PODS).
WATCHED_MANAGED = frozenset(
    {"Job", "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"}
)


def api_version(kind: str) -> str:
    """`v1`, `apps/v1`, `modelops.dev/v1alpha1`: the group/version of `kind`'s path."""
    prefix = ROUTES[kind][0]
    return prefix.removeprefix("/api/").removeprefix("/apis/")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: mappings merge key by key, `None` removes, the rest replaces."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    merged: dict[str, Any] = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


def api_error(
    status: int,
    reason: str,
    message: str,
    *,
    kind: str = "",
    name: str = "",
    causes: Sequence[Mapping[str, Any]] = (),
) -> ApiException:
    """The ApiException the official client raises for a non-2xx answer, with the `Status` body
    kube-apiserver sends (`reason` is the Status' machine-readable reason, e.g. `Invalid`)."""
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": {"name": name, "kind": kind, "causes": [dict(c) for c in causes]},
        "code": status,
    }
    error = ApiException(status=status, reason=http.HTTPStatus(status).phrase)
    error.body = json.dumps(body)
    return error


@dataclass(frozen=True)
class Route:
    """What a REST path names: a kind, a namespace ("" for all), an object and a subresource."""

    kind: str
    namespace: str
    name: str | None = None
    sub: str | None = None


def route(url: str) -> Route:
    """The Route of `url`; 404 for a path the fake does not serve."""
    for kind, (prefix, plural) in ROUTES.items():
        if not url.startswith(prefix + "/"):
            continue
        parts = url[len(prefix) + 1 :].split("/")
        if len(parts) >= 3 and parts[0] == "namespaces" and parts[2] == plural:
            namespace, tail = parts[1], parts[3:]
        elif parts[0] == plural:
            namespace, tail = "", parts[1:]
        else:
            continue
        if len(tail) > 2 or (tail and not namespace) or "" in tail:
            break
        return Route(kind, namespace, tail[0] if tail else None, tail[1] if len(tail) > 1 else None)
    raise api_error(404, "NotFound", f"the server could not find the requested resource ({url})")


@dataclass(frozen=True)
class Request:
    """One request the operator made."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    content_type: str = "application/json"
    body: Any = None

    @property
    def kind(self) -> str | None:
        try:
            return route(self.path).kind
        except ApiException:
            return None


@dataclass
class Failure:
    """Requests to refuse: `method` on `kind` (and `name`, `sub` when given), `times` times
    (None: until `clear_failures`)."""

    method: str
    kind: str
    name: str | None
    sub: str | None
    status: int
    reason: str
    message: str
    causes: tuple[Mapping[str, Any], ...] = ()
    times: int | None = 1

    def matches(self, method: str, where: Route) -> bool:
        return (
            self.method == method
            and self.kind == where.kind
            and self.name in (None, where.name)
            and self.sub in (None, where.sub)
        )


@dataclass(frozen=True)
class Declared:
    """What one field manager's last apply declared, so the next apply can drop what it no longer
    declares (server-side apply's ownership, for the one manager the operator is)."""

    fields: frozenset[str] = frozenset()
    labels: frozenset[str] = frozenset()
    annotations: frozenset[str] = frozenset()
    owners: bool = False


@dataclass
class _Server:
    objects: dict[Key, Body] = field(default_factory=dict)
    declared: dict[Key, Declared] = field(default_factory=dict)
    revision: int = 0


class _Unplugged:
    """Stands where Kube keeps its ApiClient: FakeKube answers every request itself."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"FakeKube: a Kube code path used api_client.{name}, not request()")


def _utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _selector(text: str) -> Callable[[Mapping[str, str]], bool]:
    """A label selector's test (equality, inequality and existence terms, comma-separated)."""
    terms: list[tuple[str, str, str]] = []  # (operator, key, value)
    for term in filter(None, (t.strip() for t in text.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            terms.append(("!=", key, value))
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            terms.append(("=", key, value))
        elif set(term) & set(" ()"):
            raise api_error(400, "BadRequest", f"unsupported label selector {text!r}")
        elif term.startswith("!"):
            terms.append(("!", term[1:], ""))
        else:
            terms.append(("exists", term, ""))

    def matches(labels: Mapping[str, str]) -> bool:
        for operator, key, value in terms:
            if operator == "=" and labels.get(key) != value:
                return False
            if operator == "!=" and labels.get(key) == value:
                return False
            if operator == "!" and key in labels:
                return False
            if operator == "exists" and key not in labels:
                return False
        return True

    return matches


def _spec_part(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What moves metadata.generation: everything but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


class FakeKube(Kube):
    """Kube over an in-memory API server (see the module's docstring)."""

    def __init__(
        self,
        store: Store | None = None,
        *,
        namespace: str = "default",
        now: Callable[[], str] = _utc_now,
    ) -> None:
        super().__init__(cast(client.ApiClient, _Unplugged()), store)
        self.namespace = namespace  # the helpers' default namespace
        self.now = now
        self.requests: list[Request] = []
        self.events: list[Body] = []
        self._server = _Server()
        self._failures: list[Failure] = []
        self._uids = itertools.count(1)
        self._suffixes = itertools.count(1)

    # --- the one method Kube sends everything through ---------------------------------------

    def request(
        self,
        method: str,
        url: str,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> Body:
        params = tuple(query or ())
        self.requests.append(Request(method, url, params, content_type, copy.deepcopy(body)))
        where = route(url)
        self._maybe_fail(method, where)
        options = dict(params)
        if method == "GET":
            return self._list(where, options) if where.name is None else self._get(where)
        if method == "POST" and where.name is None and where.namespace:
            return self._create(where, body, options)
        if method == "PATCH" and where.name is not None:
            if where.sub == "status":
                if content_type != MERGE_PATCH:
                    raise api_error(415, "UnsupportedMediaType", f"{content_type} on status")
                return self._patch_status(where, body)
            if where.sub is None and content_type == APPLY:
                return self._apply(where, body, options)
            if where.sub is None and content_type == MERGE_PATCH:
                return self._merge(where, body)
            raise api_error(415, "UnsupportedMediaType", f"{content_type} on {url}")
        if method == "DELETE" and where.name is not None and where.sub is None:
            return self._delete(where, body)
        raise api_error(405, "MethodNotAllowed", f"{method} {url} is not served by FakeKube")

    def reconnect(self) -> FakeKube:
        """A new client of the same server, as a restarted operator has: an empty store, nothing
        applied yet, no requests, no injected failures."""
        other = FakeKube(Store(), namespace=self.namespace, now=self.now)
        other._server, other.events = self._server, self.events
        other._uids, other._suffixes = self._uids, self._suffixes
        return other

    # --- what tests read ----------------------------------------------------------------------

    def calls(self) -> list[tuple[str, str]]:
        """(method, path) of every request so far."""
        return [(r.method, r.path) for r in self.requests]

    def writes(self) -> list[tuple[str, str]]:
        """(method, path) of every request but reads."""
        return [(r.method, r.path) for r in self.requests if r.method != "GET"]

    def object(self, kind: str, name: str, namespace: str | None = None) -> Body | None:
        """The object as the server holds it (a copy), or None; not a request."""
        found = self._server.objects.get((kind, namespace or self.namespace, name))
        return copy.deepcopy(found) if found is not None else None

    def names(self, kind: str, namespace: str | None = None) -> list[str]:
        """Names of the objects of `kind` in the namespace, sorted; not a request."""
        ns = namespace or self.namespace
        return sorted(n for k, s, n in self._server.objects if k == kind and s == ns)

    def event_reasons(self) -> list[str]:
        return [str(e.get("reason")) for e in self.events]

    # --- injected failures --------------------------------------------------------------------

    def fail(
        self,
        method: str,
        kind: str,
        *,
        name: str | None = None,
        sub: str | None = None,
        status: int = 422,
        reason: str = "Invalid",
        message: str = "refused by FakeKube",
        causes: Sequence[Mapping[str, Any]] = (),
        times: int | None = 1,
    ) -> None:
        """Makes the next `times` matching requests raise ApiException(status) with a Status body
        (they are recorded as made; the server is left as it was)."""
        self._failures.append(
            Failure(method, kind, name, sub, status, reason, message, tuple(causes), times)
        )

    def clear_failures(self) -> None:
        self._failures.clear()

    def _maybe_fail(self, method: str, where: Route) -> None:
        for failure in self._failures:
            if not failure.matches(method, where):
                continue
            if failure.times is not None:
                failure.times -= 1
                if failure.times <= 0:
                    self._failures.remove(failure)
            raise api_error(
                failure.status,
                failure.reason,
                failure.message,
                kind=ROUTES[where.kind][1],
                name=where.name or "",
                causes=failure.causes,
            )

    # --- the other clients: users and the controllers a control plane without nodes lacks ------

    def put(self, body: Mapping[str, Any]) -> Body:
        """What a user's `kubectl apply` (or any other client) does: creates the object, or
        replaces its labels, annotations and every field but status. Not a request."""
        meta = body["metadata"]
        key = (body["kind"], meta.get("namespace") or self.namespace, meta["name"])
        current = self._server.objects.get(key)
        if current is None:
            return self._insert(key, body, keep_status=True)
        updated = copy.deepcopy(current)
        for k in list(_spec_part(updated)):
            updated.pop(k)
        updated.update(copy.deepcopy(_spec_part(body)))
        for part in ("labels", "annotations"):
            if meta.get(part) is not None:
                updated["metadata"][part] = copy.deepcopy(dict(meta[part]))
            else:
                updated["metadata"].pop(part, None)
        return self._replace(key, current, updated)

    def set_status(
        self, kind: str, name: str, status: Mapping[str, Any], namespace: str | None = None
    ) -> Body:
        """A controller's merge patch of the object's status. Not a request."""
        key = (kind, namespace or self.namespace, name)
        current = self._server.objects[key]
        updated = {**current, "status": merge_patch(current.get("status") or {}, status)}
        return self._replace(key, current, updated)

    def remove(self, kind: str, name: str, namespace: str | None = None) -> bool:
        """Someone else's delete (with the garbage collector's cascade). Not a request."""
        key = (kind, namespace or self.namespace, name)
        if key not in self._server.objects:
            return False
        self._remove(key)
        return True

    def start_job(self, name: str, namespace: str | None = None, *, running: bool = True) -> Body:
        """The Job controller starts the Job's pod: running (ready, no result yet), or, unless
        `running`, waiting to be scheduled or for its image (active, not ready)."""
        ns = namespace or self.namespace
        self._job_pod(name, ns)
        status = {"active": 1, "ready": int(running), "startTime": self.now()}
        return self.set_status("Job", name, status, ns)

    def finish_job(
        self,
        name: str,
        result: Mapping[str, Any] | str | None,
        succeeded: bool = True,
        *,
        namespace: str | None = None,
        terminated_reason: str | None = None,
        job_reason: str = "BackoffLimitExceeded",
        job_message: str = "Job has reached the specified backoff limit",
    ) -> Body:
        """The kubelet and the Job controller finish the training: the Job's pod (created if the
        Job had not started) terminated with `result` as its termination message (a mapping is
        written as JSON, as `modelops train --result-file` does; a string as it is; None leaves
        none), and the Job `Complete` or, unless `succeeded`, `Failed` with `job_reason`."""
        ns = namespace or self.namespace
        pod = self._job_pod(name, ns)
        message = json.dumps(dict(result)) if isinstance(result, Mapping) else result
        terminated: Body = {
            "exitCode": 0 if succeeded else 1,
            "reason": terminated_reason or ("Completed" if succeeded else "Error"),
            "startedAt": self.now(),
            "finishedAt": self.now(),
        }
        if message is not None:
            terminated["message"] = message
        containers = pod["spec"].get("containers") or [{"name": contract.TRAINING_CONTAINER}]
        self.set_status(
            "Pod",
            pod["metadata"]["name"],
            {
                "phase": "Succeeded" if succeeded else "Failed",
                "conditions": [{"type": "Ready", "status": "False", "reason": "PodCompleted"}],
                "containerStatuses": [
                    {
                        "name": c["name"],
                        "ready": False,
                        "restartCount": 0,
                        "image": c.get("image", ""),
                        "state": {"terminated": terminated},
                    }
                    for c in containers
                ],
            },
            ns,
        )
        job = self._server.objects[("Job", ns, name)]
        start = (job.get("status") or {}).get("startTime") or self.now()
        condition = "Complete" if succeeded else "Failed"
        done: Body = {
            "type": condition,
            "status": "True",
            "lastProbeTime": self.now(),
            "lastTransitionTime": self.now(),
        }
        if not succeeded:
            done.update(reason=job_reason, message=job_message)
        status: Body = {
            "active": None,
            "ready": 0,
            "startTime": start,
            "conditions": [done],
            "succeeded" if succeeded else "failed": 1,
        }
        if succeeded:
            status["completionTime"] = self.now()
        return self.set_status("Job", name, status, ns)

    def make_ready(self, deployment: str, namespace: str | None = None) -> Body:
        """The Deployment controller (and kubelets) report the Deployment rolled out: every
        replica of its current generation updated, ready and available."""
        ns = namespace or self.namespace
        current = self._server.objects[("Deployment", ns, deployment)]
        replicas = int((current.get("spec") or {}).get("replicas", 1))
        status: Body = {
            "observedGeneration": current["metadata"].get("generation", 1),
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
            ],
        }
        key = ("Deployment", ns, deployment)
        return self._replace(key, current, {**current, "status": status})

    def _job_pod(self, job_name: str, namespace: str) -> Body:
        """The Job's pod, created from its template the first time."""
        for (kind, ns, _), existing in self._server.objects.items():
            labels = existing["metadata"].get("labels") or {}
            if kind == "Pod" and ns == namespace and labels.get(JOB_NAME) == job_name:
                return existing
        job = self._server.objects[("Job", namespace, job_name)]
        template = job["spec"].get("template") or {}
        uid = job["metadata"]["uid"]
        labels = {
            **((template.get("metadata") or {}).get("labels") or {}),
            JOB_NAME: job_name,
            "job-name": job_name,
            "batch.kubernetes.io/controller-uid": uid,
            "controller-uid": uid,
        }
        name = f"{job_name}-{next(self._suffixes):05d}"
        pod: Body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": labels,
                "annotations": dict((template.get("metadata") or {}).get("annotations") or {}),
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": job_name,
                        "uid": uid,
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": copy.deepcopy(template.get("spec") or {}),
            "status": {"phase": "Running", "startTime": self.now()},
        }
        return self._insert(("Pod", namespace, name), pod, keep_status=True)

    # --- the server --------------------------------------------------------------------------

    def _next_revision(self) -> str:
        self._server.revision += 1
        return str(self._server.revision)

    def _insert(self, key: Key, body: Mapping[str, Any], keep_status: bool = False) -> Body:
        kind, namespace, name = key
        obj = copy.deepcopy(dict(body))
        obj["apiVersion"], obj["kind"] = api_version(kind), kind
        meta = {
            k: v
            for k, v in (obj.get("metadata") or {}).items()
            if k not in ("resourceVersion", "uid", "generation", "deletionTimestamp")
        }
        meta.pop("generateName", None)
        meta.update(
            name=name,
            namespace=namespace,
            uid=f"00000000-0000-4000-8000-{next(self._uids):012d}",
            creationTimestamp=self.now(),
            resourceVersion=self._next_revision(),
        )
        if kind not in NO_GENERATION:
            meta["generation"] = 1
        obj["metadata"] = meta
        if not keep_status:
            obj.pop("status", None)
        self._server.objects[key] = obj
        self._announce(kind, obj)
        return copy.deepcopy(obj)

    def _replace(self, key: Key, current: Mapping[str, Any], updated: Body) -> Body:
        """Stores `updated` in place of `current`: a new resourceVersion if anything changed, a
        new generation if its spec did."""
        if updated == current:
            return copy.deepcopy(dict(current))
        meta = dict(updated["metadata"])
        if key[0] not in NO_GENERATION and _spec_part(updated) != _spec_part(current):
            meta["generation"] = int(meta.get("generation") or 0) + 1
        meta["resourceVersion"] = self._next_revision()
        updated = {**updated, "metadata": meta}
        self._server.objects[key] = updated
        self._announce(key[0], updated)
        return copy.deepcopy(updated)

    def _remove(self, key: Key) -> Body:
        gone = self._server.objects.pop(key)
        self._server.declared.pop(key, None)
        if self.store is not None and self._watched(key[0], gone):
            self.store.forget(*key)
        uid = gone["metadata"].get("uid")
        # The garbage collector: background propagation deletes the dependents afterwards.
        owned = [
            k
            for k, o in self._server.objects.items()
            if k[1] == key[1]
            and any(r.get("uid") == uid for r in o["metadata"].get("ownerReferences") or [])
        ]
        for dependent in owned:
            if dependent in self._server.objects:
                self._remove(dependent)
        return gone

    def _watched(self, kind: str, obj: Mapping[str, Any]) -> bool:
        if kind in WATCHED_ALL:
            return True
        labels = (obj.get("metadata") or {}).get("labels") or {}
        if kind == "Pod":
            return TRAINING_PODS.items() <= labels.items()
        return (
            kind in WATCHED_MANAGED and labels.get(contract.LABEL_MANAGED_BY) == contract.MANAGED_BY
        )

    def _announce(self, kind: str, obj: Mapping[str, Any]) -> None:
        """What the operator's watch would deliver into its store."""
        if self.store is not None and self._watched(kind, obj):
            self.store.put(kind, copy.deepcopy(dict(obj)))

    def _found(self, where: Route) -> tuple[Key, Body]:
        assert where.name is not None
        key = (where.kind, where.namespace, where.name)
        current = self._server.objects.get(key)
        if current is None:
            plural = ROUTES[where.kind][1]
            raise api_error(
                404,
                "NotFound",
                f'{plural} "{where.name}" not found',
                kind=plural,
                name=where.name,
            )
        return key, current

    def _check_body(self, where: Route, body: Any) -> Mapping[str, Any]:
        if not isinstance(body, Mapping) or not isinstance(body.get("metadata"), Mapping):
            raise api_error(400, "BadRequest", "the body is not an object with metadata")
        meta = body["metadata"]
        if body.get("kind") not in (None, where.kind):
            raise api_error(400, "BadRequest", f"kind {body.get('kind')} sent to {where.kind}")
        if meta.get("namespace") not in (None, where.namespace):
            raise api_error(
                400, "BadRequest", "the namespace of the provided object does not match"
            )
        if where.name is not None and meta.get("name") not in (None, where.name):
            raise api_error(400, "BadRequest", "the name of the object does not match the URL")
        return body

    def _get(self, where: Route) -> Body:
        return copy.deepcopy(self._found(where)[1])

    def _list(self, where: Route, options: Mapping[str, str]) -> Body:
        matches = _selector(options.get("labelSelector", ""))
        items = []
        for (kind, namespace, _), obj in sorted(self._server.objects.items()):
            if kind != where.kind or (where.namespace and namespace != where.namespace):
                continue
            if not matches(obj["metadata"].get("labels") or {}):
                continue
            item = copy.deepcopy(obj)
            if kind not in CUSTOM:
                item.pop("apiVersion", None)
                item.pop("kind", None)
            items.append(item)
        return {
            "apiVersion": api_version(where.kind),
            "kind": f"{where.kind}List",
            "metadata": {"resourceVersion": str(self._server.revision)},
            "items": items,
        }

    def _create(self, where: Route, body: Any, options: Mapping[str, str]) -> Body:
        meta = self._check_body(where, body)["metadata"]
        name = meta.get("name")
        if not name and meta.get("generateName"):
            name = f"{meta['generateName']}{next(self._suffixes):05x}"
        if not name:
            raise api_error(422, "Invalid", "metadata.name: Required value")
        key = (where.kind, where.namespace, str(name))
        if key in self._server.objects:
            plural = ROUTES[where.kind][1]
            raise api_error(
                409, "AlreadyExists", f'{plural} "{name}" already exists', kind=plural, name=name
            )
        created = self._insert(key, body, keep_status=where.kind == "Event")
        if where.kind == "Event":
            self.events.append(copy.deepcopy(created))
        return created

    def _apply(self, where: Route, body: Any, options: Mapping[str, str]) -> Body:
        applied = self._check_body(where, body)
        if not options.get("fieldManager"):
            raise api_error(400, "BadRequest", "fieldManager is required for apply patch")
        if not applied.get("apiVersion") or not applied.get("kind"):
            raise api_error(400, "BadRequest", "apiVersion and kind are required to apply")
        assert where.name is not None
        key = (where.kind, where.namespace, where.name)
        meta = applied["metadata"]
        declared = Declared(
            fields=frozenset(k for k in _spec_part(applied) if k not in ("apiVersion", "kind")),
            labels=frozenset(meta.get("labels") or {}),
            annotations=frozenset(meta.get("annotations") or {}),
            owners="ownerReferences" in meta,
        )
        current = self._server.objects.get(key)
        if current is None:
            self._server.declared[key] = declared
            return self._insert(key, applied)
        before = self._server.declared.get(key, Declared())
        updated = copy.deepcopy(current)
        for k in before.fields - declared.fields:
            updated.pop(k, None)
        for k in declared.fields:
            updated[k] = copy.deepcopy(applied[k])
        new_meta = updated["metadata"]
        for part, now_declared, was_declared in (
            ("labels", declared.labels, before.labels),
            ("annotations", declared.annotations, before.annotations),
        ):
            values = {k: v for k, v in (new_meta.get(part) or {}).items()}
            for k in was_declared - now_declared:
                values.pop(k, None)
            values.update(meta.get(part) or {})
            if values:
                new_meta[part] = values
            else:
                new_meta.pop(part, None)
        if declared.owners:
            new_meta["ownerReferences"] = copy.deepcopy(meta["ownerReferences"])
        elif before.owners:
            new_meta.pop("ownerReferences", None)
        self._server.declared[key] = declared
        return self._replace(key, current, updated)

    def _merge(self, where: Route, body: Any) -> Body:
        key, current = self._found(where)
        if not isinstance(body, Mapping):
            raise api_error(400, "BadRequest", "a merge patch must be an object")
        patch = {k: v for k, v in body.items() if k != "status"}
        updated = merge_patch(current, patch)
        updated["status"] = copy.deepcopy(current.get("status"))
        if updated["status"] is None:
            updated.pop("status")
        return self._replace(key, current, updated)

    def _patch_status(self, where: Route, body: Any) -> Body:
        key, current = self._found(where)
        status = body.get("status") if isinstance(body, Mapping) else None
        if not isinstance(status, Mapping):
            return copy.deepcopy(current)
        updated = {**current, "status": merge_patch(current.get("status") or {}, status)}
        return self._replace(key, current, updated)

    def _delete(self, where: Route, body: Any) -> Body:
        key, _ = self._found(where)
        policy = (body or {}).get("propagationPolicy") if isinstance(body, Mapping) else None
        if policy == "Orphan":
            gone = self._server.objects.pop(key)
            self._server.declared.pop(key, None)
            if self.store is not None and self._watched(key[0], gone):
                self.store.forget(*key)
        else:
            gone = self._remove(key)
        return copy.deepcopy(gone)
