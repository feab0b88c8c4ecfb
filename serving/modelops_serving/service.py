"""The BentoML service of the runtime: `bentoml serve modelops_serving.service:ModelService`.

Settings come from the environment (config.py; docs/serving.md lists them). BentoML starts
`MODELOPS_WORKERS` worker processes; each builds one `ModelService`, whose `Runtime` loads the model
in the background. `/livez` answers at once, `/readyz` only once the model is loaded. Errors the
runtime finds in a body are answered here as JSON 4xx with the `X-Modelops-Reason` header.
"""

from __future__ import annotations

from typing import Any, cast

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


@bentoml.service(
    name="modelops",
    workers=SETTINGS.workers,
    http={"host": SETTINGS.host},
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
    def predict(self, rows: Any = None) -> Any:
        """Predict for `rows`: objects keyed by feature name, or lists in schema order."""
        try:
            return self.runtime.predict(rows)
        except Rejected as error:
            return _rejected(error)
        except NotReady as error:
            return _not_ready(error)

    @bentoml.api(route="/feedback")  # type: ignore[untyped-decorator]
    def feedback(self, items: Any = None) -> Any:
        """Ground truth: items of {request_id, row, truth} or {prediction, truth}."""
        try:
            return self.runtime.feedback(items)
        except Rejected as error:
            return _rejected(error)
        except NotReady as error:
            return _not_ready(error)


cast(Any, ModelService).add_asgi_middleware(middleware.RuntimeMiddleware)
