"""A thin JSON door to the API server for the sandbox node agent, over the official client.

The agent reads and writes Pods, Nodes and Leases as plain dicts (camelCase, as the API server
serves them), so it uses the official client's authenticated connection pool and serialisation
of requests, but not its typed models: `request` returns the decoded JSON and raises the
client's `ApiException` on an error status (status 0 when the server cannot be reached);
`watch` yields watch events one by one.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import config
from kubernetes.client import ApiClient, Configuration
from kubernetes.client.exceptions import ApiException

Obj = dict[str, Any]

JSON = "application/json"
MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
POOL_SIZE = 32


class Kube:
    """Admin access to one API server, from a kubeconfig file."""

    def __init__(self, kubeconfig: Path | str) -> None:
        configuration = Configuration()
        # One connection per pod worker writing status at once, plus the watch.
        configuration.connection_pool_maxsize = POOL_SIZE
        self.client: ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig), client_configuration=configuration)
        self._streams: set[Any] = set()

    def close(self) -> None:
        for response in list(self._streams):
            _interrupt(response)
        self.client.close()  # type: ignore[no-untyped-call]

    def _send(
        self,
        method: str,
        path: str,
        body: Any,
        query: Mapping[str, Any] | None,
        content_type: str,
        timeout: float | tuple[float, float],
    ) -> Any:
        headers = {"Accept": JSON}
        if body is not None:
            headers["Content-Type"] = content_type
        params = list((query or {}).items())
        method, url, header_params, body, _ = self.client.param_serialize(
            method=method,
            resource_path=path,
            query_params=params,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        return self.client.call_api(
            method, url, header_params=header_params, body=body, _request_timeout=timeout
        )

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: Mapping[str, Any] | None = None,
        content_type: str = JSON,
        timeout: float = 30.0,
    ) -> Obj:
        try:
            response = self._send(method, path, body, query, content_type, timeout)
            data: bytes = response.read()
        except urllib3.exceptions.HTTPError as error:
            # Transport failures (the API server is gone, say) look like any failed request.
            raise ApiException(status=0, reason=f"{type(error).__name__}: {error}") from error
        if response.status >= 400:
            raise ApiException(status=response.status, reason=response.reason,
                               body=data.decode(errors="replace"))
        return json.loads(data) if data else {}

    def get(self, path: str, query: Mapping[str, Any] | None = None) -> Obj:
        return self.request("GET", path, query=query)

    def watch(self, path: str, query: Mapping[str, Any], timeout: float) -> Iterator[Obj]:
        """Yields the events of one watch request until the server ends it (or `close()`)."""
        query = {**query, "watch": "true"}
        response = self._send("GET", path, None, query, JSON, (10.0, timeout))
        raw = response.response
        if response.status >= 400:
            data = response.read()
            raise ApiException(status=response.status, reason=response.reason,
                               body=data.decode(errors="replace"))
        self._streams.add(raw)
        try:
            buffer = b""
            for chunk in raw.stream(amt=None, decode_content=False):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        yield json.loads(line)
        finally:
            self._streams.discard(raw)
            _close(raw)


def _interrupt(response: Any) -> None:
    """Ends a watch that another thread is blocked reading: shut its socket down."""
    sock = getattr(getattr(response, "connection", None), "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _close(response: Any) -> None:
    try:
        response.close()
        response.release_conn()
    except Exception:
        pass


def not_found(error: Exception) -> bool:
    return isinstance(error, ApiException) and error.status == 404
