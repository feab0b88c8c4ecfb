"""The BentoML service of the runtime: `bentoml serve modelops_serving.service:ModelService`.

Settings come from the environment (config.py; docs/serving.md lists them). BentoML starts
`MODELOPS_WORKERS` worker processes; each builds one `ModelService`, whose `Runtime` loads the model
in the background. `/livez` answers at once, `/readyz` only once the model is loaded. Errors the
runtime finds in a body are answered here as JSON 4xx with the `X-Modelops-Reason` header.

The endpoints are coroutines: a request the model answers within 2 ms (most of them: the row count
`Runtime.inline_rows` is measured when the model loads) is answered on the event loop, with no
hand-off to a thread and back; a larger one goes to a worker thread, so that probes and other
requests are never held up for long. Answers are JSON responses built here, not by BentoML's
output models.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import anyio
import bentoml
from starlette.responses import JSONResponse

from . import home, middleware
from .config import load_settings
from .runtime import NotReady, Runtime
from .schema import Rejected

SETTINGS = load_settings()
try:
    home.claim()
except home.HomeInUse as exc:
    raise SystemExit(f"modelops serving: {exc}") from None


def _error(status: int, body: dict[str, Any], reason: str) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers={"X-Modelops-Reason": reason})


def _rejected(error: Rejected) -> JSONResponse:
    return _error(error.status, error.body(), error.reason)


def _not_ready(error: NotReady) -> JSONResponse:
    return _error(503, {"error": str(error), "reason": "not_ready"}, "not_ready")


# Feedback is scored against the prediction memory: a few hundred items take about a millisecond.
INLINE_FEEDBACK_ITEMS = 256


async def _answer(handler: Callable[[Any], dict[str, Any]], body: Any, inline: int) -> JSONResponse:
    """`handler(body)` as a JSON response: on the event loop when `body` is a list of at most
    `inline` items, else in a worker thread."""
    try:
        if isinstance(body, list) and len(body) <= inline:
            answer = handler(body)
        else:
            answer = await anyio.to_thread.run_sync(handler, body)
    except Rejected as error:
        return _rejected(error)
    except NotReady as error:
        return _not_ready(error)
    return JSONResponse(answer)


@bentoml.service(
    name="modelops",
    workers=SETTINGS.workers,
    http={"host": SETTINGS.host},
    # BentoML keeps a timer per request for this long, answered or not; every one of them is
    # garbage the collector walks, so a long timeout costs throughput (docs/serving.md).
    traffic={"timeout": SETTINGS.request_timeout},
    # named so that BentoML leaves the probes out of its access log
    endpoints={"livez": "/livez", "readyz": "/readyz"},
)
class ModelService:
    """Serves one model version; see docs/serving.md."""

    def __init__(self) -> None:
        self.runtime = Runtime(SETTINGS)
        middleware.current = self.runtime
        self.runtime.start()

    def __is_ready__(self) -> bool:
        return self.runtime.ready

    @bentoml.api(route="/predict")  # type: ignore[untyped-decorator]
    async def predict(self, rows: Any = None) -> Any:
        """Predict for `rows`: objects keyed by feature name, or lists in schema order."""
        return await _answer(self.runtime.predict, rows, self.runtime.inline_rows)

    @bentoml.api(route="/feedback")  # type: ignore[untyped-decorator]
    async def feedback(self, items: Any = None) -> Any:
        """Ground truth: items of {request_id, row, truth} or {prediction, truth}."""
        return await _answer(self.runtime.feedback, items, INLINE_FEEDBACK_ITEMS)


cast(Any, ModelService).add_asgi_middleware(middleware.RuntimeMiddleware)
