"""The `modelops` command's access to the API server: the kubeconfig (file, context, namespace),
reading Models and ModelVersions, watching them (`get -w`), writing the annotations a person's
requests are.

Every failure a person can meet (no or an invalid kubeconfig, an unknown context or Model, the
CRDs missing, RBAC's 403, an API server that does not answer) becomes a `CliError` whose message
says what to do about it; the command prints it without a traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3
import yaml
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from modelops_api import contract
from modelops_operator.cli_model import ModelView, parse_model
from modelops_operator.cli_verdicts import EXIT_ERROR

# (connect, read) seconds of every call: a CLI answers or says why, it does not hang.
TIMEOUT = (5.0, 30.0)
# A watch asks the API server to end it after this many seconds, and is then opened again from the
# last resourceVersion it saw; a read of the stream waits a little longer than that.
WATCH_SECONDS = 240
WATCH_READ_TIMEOUT = WATCH_SECONDS + 30.0
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class CliError(Exception):
    """A failure to print as one line, with the exit status to end with."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


class NotFound(CliError):
    pass


def _default_kubeconfig() -> str:
    first = (os.environ.get("KUBECONFIG") or "").split(os.pathsep)[0]
    return first or str(Path.home() / ".kube" / "config")


def _status_message(error: ApiException) -> str:
    try:
        return str(json.loads(error.body or "")["message"])
    except (ValueError, KeyError, TypeError):
        return f"{error.status} {error.reason}".strip()


@dataclass(frozen=True)
class Connection:
    api: client.ApiClient
    namespace: str  # the one asked for, or the context's, or "default"
    server: str


def connect(kubeconfig: str | None, context: str | None, namespace: str | None) -> Connection:
    """A client from the kubeconfig (or, with none at all, inside a pod, the ServiceAccount's)."""
    path = kubeconfig or _default_kubeconfig()
    configuration = client.Configuration()
    in_cluster = (
        kubeconfig is None
        and not os.environ.get("KUBECONFIG")
        and not Path(path).exists()
        and bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
    )
    if in_cluster:
        try:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except config.ConfigException as error:
            raise CliError(f"cannot use the pod's ServiceAccount: {error}") from None
        default_ns = (
            SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
            if SERVICE_ACCOUNT_NAMESPACE.exists()
            else "default"
        )
    else:
        if not Path(path).is_file():
            raise CliError(
                f"kubeconfig {path} does not exist: give one with --kubeconfig or $KUBECONFIG"
            )
        try:
            contexts, active = config.list_kube_config_contexts(config_file=path)  # type: ignore[no-untyped-call]
            chosen = active
            if context is not None:
                chosen = next((c for c in contexts if c.get("name") == context), None)
                if chosen is None:
                    names = ", ".join(str(c.get("name")) for c in contexts) or "none"
                    raise CliError(f"kubeconfig {path} has no context {context!r} (it has {names})")
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=path, context=context, client_configuration=configuration
            )
        except CliError:
            raise
        except (config.ConfigException, yaml.YAMLError, OSError, ValueError) as error:
            raise CliError(f"invalid kubeconfig {path}: {_one_line(error)}") from None
        except (TypeError, KeyError, AttributeError) as error:  # YAML that is not a kubeconfig
            raise CliError(f"invalid kubeconfig {path}: unexpected {_one_line(error)}") from None
        default_ns = str(((chosen or {}).get("context") or {}).get("namespace") or "default")
    configuration.retries = 1  # one retry of a dropped connection, not urllib3's three
    return Connection(client.ApiClient(configuration), namespace or default_ns, configuration.host)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


@dataclass(frozen=True)
class Change:
    """An event of a watch: what a view shows may have changed. `failure` says why the watch
    ended for good."""

    kind: str  # Model, ModelVersion
    type: str  # ADDED, MODIFIED, DELETED; RESYNC after the watch started afresh; ERROR
    failure: str | None = None


def refreshes(
    changes: queue.Queue[Change],
    interval: float,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[str | None]:
    """When `get -w` reads again: after each change the watches report (a burst of them is one
    read), or, once a watch failed, every `interval` seconds. Each yield carries the watch's
    failure, None while it works."""
    failure: str | None = None
    while True:
        if failure is not None:
            sleep(interval)
            yield failure
            continue
        try:
            batch = [changes.get(timeout=1.0)]  # a timeout, so that Ctrl-C is seen at once
        except queue.Empty:
            continue
        with contextlib.suppress(queue.Empty):
            while True:
                batch.append(changes.get_nowait())
        failure = next((c.failure for c in batch if c.failure is not None), None)
        yield failure


class Kube:
    """The calls the command makes, each translated into a CliError when it fails."""

    def __init__(self, connection: Connection) -> None:
        self.namespace = connection.namespace
        self.server = connection.server
        self._custom = client.CustomObjectsApi(connection.api)

    @contextlib.contextmanager
    def _call(self, what: str, namespace: str | None, name: str | None = None) -> Iterator[None]:
        where = f"namespace {namespace}" if namespace else "all namespaces"
        try:
            yield
        except ApiException as error:
            if error.status == 404 and name is not None:
                raise NotFound(f"Model {namespace}/{name} not found") from None
            if error.status == 404:
                raise CliError(
                    f"{what}: the API server has no {contract.MODELS}.{contract.GROUP} "
                    f"{contract.VERSION}: are the modelops CRDs installed? (crds/, or the chart)"
                ) from None
            if error.status == 403:
                raise CliError(f"{what} in {where}: forbidden: {_status_message(error)}") from None
            if error.status == 401:
                raise CliError(
                    f"{what}: the API server at {self.server} refused the kubeconfig's "
                    "credentials (401 Unauthorized)"
                ) from None
            raise CliError(f"{what} in {where}: {_status_message(error)}") from None
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise CliError(
                f"cannot reach the API server at {self.server}: {_reason(error)}"
            ) from None

    def model(self, name: str, namespace: str | None = None) -> dict[str, Any]:
        ns = namespace or self.namespace
        with self._call("reading the Model", ns, name):
            body = self._custom.get_namespaced_custom_object(
                contract.GROUP,
                contract.VERSION,
                ns,
                contract.MODELS,
                name,
                _request_timeout=TIMEOUT,
            )
        return _object(body)

    def models(self, all_namespaces: bool = False) -> list[dict[str, Any]]:
        ns = None if all_namespaces else self.namespace
        with self._call("listing Models", ns):
            if ns is None:
                listed = self._custom.list_cluster_custom_object(
                    contract.GROUP, contract.VERSION, contract.MODELS, _request_timeout=TIMEOUT
                )
            else:
                listed = self._custom.list_namespaced_custom_object(
                    contract.GROUP, contract.VERSION, ns, contract.MODELS, _request_timeout=TIMEOUT
                )
        return _items(listed)

    def versions(self, namespace: str | None) -> list[dict[str, Any]]:
        """The ModelVersions of one namespace (None: of all)."""
        with self._call("listing ModelVersions", namespace):
            if namespace is None:
                listed = self._custom.list_cluster_custom_object(
                    contract.GROUP,
                    contract.VERSION,
                    contract.MODEL_VERSIONS,
                    _request_timeout=TIMEOUT,
                )
            else:
                listed = self._custom.list_namespaced_custom_object(
                    contract.GROUP,
                    contract.VERSION,
                    namespace,
                    contract.MODEL_VERSIONS,
                    _request_timeout=TIMEOUT,
                )
        return _items(listed)

    def view(self, name: str) -> ModelView:
        """One Model with its versions."""
        body = self.model(name)
        return parse_model(body, self.versions(self.namespace))

    def views(self, all_namespaces: bool = False) -> list[ModelView]:
        """Every Model of the namespace (or of all), each with its versions, by namespace and
        name."""
        bodies = self.models(all_namespaces)
        versions = self.versions(None if all_namespaces else self.namespace) if bodies else []
        by_namespace: dict[str, list[dict[str, Any]]] = {}
        for v in versions:
            by_namespace.setdefault(str(v.get("metadata", {}).get("namespace")), []).append(v)
        views = [
            parse_model(b, by_namespace.get(str(b.get("metadata", {}).get("namespace")), []))
            for b in bodies
        ]
        return sorted(views, key=lambda m: (m.namespace, m.name))

    def follow(self, all_namespaces: bool, changes: queue.Queue[Change]) -> Callable[[], None]:
        """Watches the Models and ModelVersions `views` reads, each in a thread of its own that
        puts a Change on `changes` for every event; a watch that cannot go on puts one Change
        with its failure and ends. Returns what stops both."""
        namespace = None if all_namespaces else self.namespace
        stop = threading.Event()
        for kind, plural in (("Model", contract.MODELS), ("ModelVersion", contract.MODEL_VERSIONS)):
            threading.Thread(
                target=self._follow,
                args=(kind, plural, namespace, changes, stop),
                name=f"watch-{plural}",
                daemon=True,
            ).start()
        return stop.set

    def _follow(
        self,
        kind: str,
        plural: str,
        namespace: str | None,
        changes: queue.Queue[Change],
        stop: threading.Event,
    ) -> None:
        resource_version: str | None = None
        while not stop.is_set():
            stream = watch.Watch()  # type: ignore[no-untyped-call]
            if namespace is None:
                listing: Callable[..., Any] = self._custom.list_cluster_custom_object
                args: tuple[str, ...] = (contract.GROUP, contract.VERSION, plural)
            else:
                listing = self._custom.list_namespaced_custom_object
                args = (contract.GROUP, contract.VERSION, namespace, plural)
            since = {} if resource_version is None else {"resource_version": resource_version}
            try:
                with self._call(f"watching {kind}s", namespace):
                    try:
                        for event in stream.stream(  # type: ignore[no-untyped-call]
                            listing,
                            *args,
                            timeout_seconds=WATCH_SECONDS,
                            allow_watch_bookmarks=True,
                            _request_timeout=(TIMEOUT[0], WATCH_READ_TIMEOUT),
                            **since,
                        ):
                            if stop.is_set():
                                stream.stop()  # type: ignore[no-untyped-call]
                                return
                            resource_version = stream.resource_version or resource_version
                            if event.get("type") != "BOOKMARK":
                                changes.put(Change(kind, str(event.get("type"))))
                    except ApiException as error:
                        if error.status != 410:  # 410 Gone: too old to resume; start afresh
                            raise
                        resource_version = None
                        changes.put(Change(kind, "RESYNC"))
            except CliError as error:
                changes.put(Change(kind, "ERROR", failure=str(error)))
                return

    def annotate(self, name: str, annotations: Mapping[str, str]) -> None:
        patch = {"metadata": {"annotations": dict(annotations)}}
        with self._call("writing the Model's annotation", self.namespace, name):
            self._custom.patch_namespaced_custom_object(
                contract.GROUP,
                contract.VERSION,
                self.namespace,
                contract.MODELS,
                name,
                patch,
                _request_timeout=TIMEOUT,
            )


def _object(answer: object) -> dict[str, Any]:
    if not isinstance(answer, dict):
        raise CliError(f"the API server answered {type(answer).__name__}, not an object")
    return answer


def _items(answer: object) -> list[dict[str, Any]]:
    return [item for item in _object(answer).get("items") or [] if isinstance(item, dict)]


def _reason(error: BaseException) -> str:
    """The innermost cause of a connection failure (urllib3 wraps it in MaxRetryError)."""
    cause: BaseException = error
    while True:
        inner = getattr(cause, "reason", None)
        if not isinstance(inner, BaseException):
            return _one_line(cause)
        cause = inner
