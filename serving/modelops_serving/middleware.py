"""HTTP glue around the BentoML service: `GET /metadata`, the Open Inference Protocol's `/v2`
endpoints, the credential check of `/feedback`, and one error shape for every bad body. Before
BentoML answers `GET /metrics`, this worker's pending metric increments are written.

The `/v2` endpoints (oip.py) are answered here, inside BentoML's own middlewares (request
series, timeout), so they are counted and bounded as `/predict` is; `infer` reads its body under
the same limit and is answered by `Runtime.infer`, which serves the rows through `/predict`'s path.

A body longer than `MODELOPS_MAX_BODY_BYTES` is answered 413, `body_too_large`, as soon as its
declared length or what arrived says so, without holding more of it.

`POST /feedback` needs the Model's bearer token (credentials.py): without it the answer is 401,
`unauthorized`, before the body is read. `GET /metadata` answers anyone what a client needs to call
the model (names and types of the features, the task, the limits); with the token it adds what
the data looks like (categories, classes, metrics, reference distributions).

BentoML parses the JSON body before the API method runs and answers a body that is not JSON (or not
a JSON object) with its own 400. This ASGI middleware rewrites those answers into the runtime's
error shape (`{"error", "reason", "problems": [{"reason", "message", "row", "field"}]}`) and counts
them as rejected with reason `invalid_json`; answers the runtime produced itself carry the
`X-Modelops-Reason` header and pass untouched. The endpoints speak JSON only: whatever content type
a request declares (`curl -d` says form-urlencoded; BentoML would also parse multipart forms and
pickles), its body is read as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio

from . import oip
from .config import MAX_BODY_BYTES
from .runtime import NotReady, Runtime
from .schema import Rejected

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

REASON_HEADER = b"x-modelops-reason"
BINARY_HEADER = b"inference-header-content-length"  # Triton's binary tensor extension
ENDPOINTS = {"/predict": "predict", "/feedback": "feedback"}

# Set by the service instance of this worker process.
current: Runtime | None = None


def _json_message(
    status: int, body: dict[str, Any], reason: str, *extra: tuple[bytes, bytes]
) -> tuple[Message, Message]:
    data = json.dumps(body).encode()
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(data)).encode()),
            (REASON_HEADER, reason.encode()),
            *extra,
        ],
    }
    return start, {"type": "http.response.body", "body": data, "more_body": False}


async def _send_json(
    send: Send, status: int, body: dict[str, Any], reason: str, *headers: tuple[bytes, bytes]
) -> None:
    start, message = _json_message(status, body, reason, *headers)
    await send(start)
    await send(message)


async def _refuse(
    send: Send,
    endpoint: str,
    status: int,
    reason: str,
    message: str,
    *headers: tuple[bytes, bytes],
    field: str = "body",
) -> None:
    """Answers a refused request in the runtime's error shape, and counts it."""
    body = {
        "error": message,
        "reason": reason,
        "problems": [{"reason": reason, "message": message, "field": field}],
    }
    if current is not None:
        current.recorder.record_rejected(endpoint, reason)
    start, body_message = _json_message(status, body, reason, *headers)
    await send(start)
    await send(body_message)


def _authorization(scope: Scope) -> bytes | None:
    return next((v for k, v in scope.get("headers", []) if k.lower() == b"authorization"), None)


def _explain(raw: bytes) -> str:
    """BentoML's pydantic error detail, as one sentence."""
    try:
        payload = json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")[:200]
    if isinstance(payload, list) and payload:
        payload = payload[0]
    if isinstance(payload, dict):
        details = payload.get("detail")
        if isinstance(details, list) and details and isinstance(details[0], dict):
            return "; ".join(str(d.get("msg", d)) for d in details[:3])
        if "error" in payload:
            return str(payload["error"])
    return str(payload)[:200]


def _max_body() -> int:
    return current.settings.max_body_bytes if current is not None else MAX_BODY_BYTES


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None as soon as it is longer than `limit` (by its declared
    Content-Length, or by what arrives): a body is never held beyond the limit."""
    declared = next((v for k, v in scope.get("headers", []) if k.lower() == b"content-length"), b"")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break  # the client went away: the app sees an empty body
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the app the body already read, then whatever comes next."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def _may_give_feedback(scope: Scope) -> bool:
    """Whether the request carries the token; a runtime without credentials (or not loaded yet)
    lets the endpoint answer why it takes no feedback."""
    if current is None or current.credentials is None:
        return True
    return current.authorized(_authorization(scope))


class RuntimeMiddleware:
    """Serves GET /metadata and reshapes BentoML's own 4xx answers on the runtime's endpoints."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if path == "/metrics" and current is not None:
            current.recorder.flush()  # what this worker counted is in the answer (metrics.py)
        if path == "/metadata" and scope.get("method") in ("GET", "HEAD"):
            await self._metadata(scope, send)
            return
        if path.startswith("/v2"):
            protocol = oip.route(path)
            if protocol is not None:
                await self._protocol(protocol, scope, receive, send)
                return
        endpoint = ENDPOINTS.get(path)
        if endpoint is None or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        if endpoint == "feedback" and not _may_give_feedback(scope):
            await self._unauthorized(send)
            return
        body = await _read_body(scope, receive, _max_body())
        if body is None:
            await self._too_large(endpoint, send)
            return
        receive = _replay(body, receive)
        scope = dict(scope)
        scope["headers"] = [
            (k, v) for k, v in scope.get("headers", []) if k.lower() != b"content-type"
        ] + [(b"content-type", b"application/json")]
        pending: list[Message] = []

        async def guarded_send(message: Message) -> None:
            if pending:
                if message["type"] == "http.response.body":
                    pending.append(message)
                    if not message.get("more_body", False):
                        await self._replace(endpoint, pending, send)
                return
            if (
                message["type"] == "http.response.start"
                and 400 <= message["status"] < 500
                and not any(k == REASON_HEADER for k, _ in message.get("headers", []))
            ):
                pending.append(message)
                return
            await send(message)

        await self.app(scope, receive, guarded_send)

    async def _replace(self, endpoint: str, messages: list[Message], send: Send) -> None:
        status = int(messages[0]["status"])
        raw = b"".join(m.get("body", b"") for m in messages[1:])
        detail = _explain(raw)
        if status == 400:
            await _refuse(
                send, endpoint, status, "invalid_json", f"the body is not a JSON object: {detail}"
            )
        else:
            await _refuse(send, endpoint, status, "invalid_body", detail)

    async def _too_large(self, endpoint: str, send: Send) -> None:
        message = f"the body is larger than {_max_body()} bytes (MODELOPS_MAX_BODY_BYTES)"
        await _refuse(send, endpoint, 413, "body_too_large", message, (b"connection", b"close"))

    async def _unauthorized(self, send: Send) -> None:
        message = "feedback needs the Model's token: Authorization: Bearer <token>"
        header = (b"www-authenticate", b"Bearer")
        await _refuse(send, "feedback", 401, "unauthorized", message, header, field="Authorization")

    async def _protocol(self, route: oip.Route, scope: Scope, receive: Receive, send: Send) -> None:
        """The Open Inference Protocol's endpoints (oip.py): health, metadata, infer."""
        method = scope.get("method")
        if method != route.method and not (route.method == "GET" and method == "HEAD"):
            message = f"{scope.get('path')} takes {route.method}"
            allow = (b"allow", route.method.encode())
            await _send_json(send, 405, {"error": message}, "method_not_allowed", allow)
            return
        runtime = current
        if route.kind == oip.LIVE:
            await _send_json(send, 200, {"live": True}, "live")
        elif route.kind == oip.SERVER:
            await _send_json(send, 200, oip.server_metadata(), "metadata")
        elif runtime is None:
            await _send_json(send, 503, {"error": "the runtime is starting"}, "not_ready")
        elif route.kind == oip.READY:
            ready = runtime.ready
            await _send_json(send, 200 if ready else 503, {"ready": ready}, "ready")
        elif route.kind == oip.INFER:
            await self._infer(runtime, route, scope, receive, send)
        else:
            try:
                meta = runtime.model_metadata(route)
            except Rejected as error:
                await _send_json(send, error.status, error.body(), error.reason)
                return
            except NotReady as error:
                if route.kind == oip.MODEL_READY:
                    body = {"name": route.model, "ready": False, "error": str(error)}
                else:
                    body = {"error": str(error), "reason": "not_ready"}
                await _send_json(send, 503, body, "not_ready")
                return
            if route.kind == oip.MODEL_READY:
                meta = {"name": meta["name"], "ready": True}
            await _send_json(send, 200, meta, "metadata")

    async def _infer(
        self, runtime: Runtime, route: oip.Route, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """`POST /v2/models/<name>/infer`: the body is read as `/predict`'s is (the same limit),
        then answered by `Runtime.infer`, on the event loop when small (as `/predict` is)."""
        if any(k.lower() == BINARY_HEADER for k, _ in scope.get("headers", [])):
            message = (
                "binary tensor data (Triton's extension) is not supported: send the values "
                "as JSON in each input's 'data'"
            )
            await _refuse(send, "infer", 400, "invalid_tensor", message)
            return
        raw = await _read_body(scope, receive, _max_body())
        if raw is None:
            await self._too_large("infer", send)
            return
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError) as error:
            await _refuse(send, "infer", 400, "invalid_json", f"the body is not JSON: {error}")
            return
        try:
            if oip.rows_hint(body) <= runtime.inline_rows:
                answer = runtime.infer(route, body)
            else:
                answer = await anyio.to_thread.run_sync(runtime.infer, route, body)
        except Rejected as error:
            await _send_json(send, error.status, error.body(), error.reason)
            return
        except NotReady as error:
            await _send_json(send, 503, {"error": str(error), "reason": "not_ready"}, "not_ready")
            return
        await _send_json(send, 200, answer, "infer")

    async def _metadata(self, scope: Scope, send: Send) -> None:
        if current is None:
            body: dict[str, Any] = {"state": "starting"}
            status = 503
        else:
            body = current.metadata(full=current.authorized(_authorization(scope)))
            status = 200 if current.ready else 503
        start, message = _json_message(status, body, "metadata" if status == 200 else "not_ready")
        await send(start)
        await send(message)
