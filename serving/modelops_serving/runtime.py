"""The model runtime of one worker process: loading, predicting, taking feedback.

Nothing here knows about HTTP. `Runtime` loads the model in a background thread (so the process is
live at once and ready only when the model is), then turns request bodies into answers or into
`Rejected` errors. The BentoML service (service.py) and the HTTP glue (middleware.py) call it.
"""

from __future__ import annotations

import gc
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelops_api import contract

from . import artifact, oip
from .config import RuntimeConfig
from .credentials import Credentials, CredentialsError
from .feedback import Claims, parse_items, score
from .metrics import Recorder, Silent
from .recording import ProductionLog
from .schema import ContractError, Problem, Rejected, validate_rows
from .scoring import Scorer

log = logging.getLogger("bentoml.modelops")


# How long the event loop may be held by one request's scoring.
INLINE_SECONDS = 0.002


# Young-generation threshold of the garbage collector while serving (Python's default: 700).
GC_YOUNG_THRESHOLD = 20_000


def settle_garbage_collection() -> None:
    """Tunes the garbage collector for a request server, once the model is loaded.

    What is loaded by then (BentoML, scikit-learn, the model) lives as long as the process: frozen,
    no collection walks it again. Each request leaves reference cycles behind (the ASGI stack's
    closures); with Python's default young threshold, every collection promotes the requests in
    flight, and only a full collection frees them: under load, a pause of 100-200 ms every few
    seconds (docs/serving.md, "Performance"). A higher threshold lets them die young.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 20)


# Load errors whose message says it all: logged without a traceback.
EXPLAINED = (artifact.ArtifactError, ContractError, CredentialsError)


@dataclass(frozen=True)
class Served:
    """What the model answered for one validated batch (`Runtime.serve`)."""

    model: artifact.LoadedModel
    predictions: list[Any]
    probabilities: list[list[float]] | None  # classifiers: one row per prediction, class order
    request_id: str | None  # the signed prediction id, when feedback is taken


class NotReady(Exception):
    """The model is not loaded (yet, or at all); the message says which."""


class Runtime:
    """One worker's view of the served model."""

    def __init__(self, settings: RuntimeConfig) -> None:
        self.settings = settings
        self.model: artifact.LoadedModel | None = None
        self.recorder: Recorder | Silent = Silent()
        self.credentials: Credentials | None = None
        self.claims: Claims | None = None
        self.production: ProductionLog | None = None
        self.state = "loading"
        self.error = ""
        self._classes: list[str] = []
        self.scorer: Scorer | None = None
        # Requests of at most this many rows are scored on the event loop (service.py).
        self.inline_rows = 0
        self._thread = threading.Thread(target=self._load, name="modelops-load", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    def _load(self) -> None:
        s = self.settings

        def on_wait(message: str) -> None:
            if self.error != message:
                log.warning("waiting for the model archive: %s", message)
            self.error = message

        try:
            if s.credentials:
                self.credentials = Credentials(Path(s.credentials))
            model = artifact.load(
                s.artifact,
                s.model,
                s.version,
                wait_seconds=s.artifact_wait_seconds,
                on_wait=on_wait,
            )
            if s.monitoring:
                self.recorder = Recorder(
                    model=s.model or model.model,
                    version=s.version or model.version,
                    track=s.track,
                    task=model.task,
                    schema=model.schema,
                    reference=model.metadata.get(contract.REFERENCE),
                    classes=model.classes,
                    prediction=model.metadata.get("prediction"),
                    metrics=model.metadata.get("metrics"),
                    flush_seconds=s.metrics_flush_seconds,
                )
                if s.credentials:
                    home = artifact.bentoml_home()
                    self.claims = Claims(Path(home) / "modelops-claims.sqlite", s.feedback_memory)
            classes = getattr(model.pipeline, "classes_", None)
            self._classes = (
                [str(c) for c in classes] if classes is not None else list(model.classes)
            )
            self.production = self._production_log(model)
            self.scorer = Scorer(model.schema, model.pipeline, model.task)
            self.inline_rows = self.scorer.rows_within(INLINE_SECONDS)
            self.model = model
            self.error = ""
            settle_garbage_collection()
            self.state = "ready"
            log.info(
                "serving %s (%s, %d features)", model.tag, model.task, len(model.schema.features)
            )
        except Exception as exc:
            self.state = "failed"
            self.error = str(exc)
            log.error(
                "cannot serve the model: %s",
                exc,
                exc_info=not isinstance(exc, EXPLAINED),
            )

    def _production_log(self, model: artifact.LoadedModel) -> ProductionLog | None:
        """The recorder of production data, when the Model asks for it (and ids are issued:
        labels refer to them)."""
        s = self.settings
        if not s.recording_retention:
            return None
        if self.claims is None:
            log.warning(
                "production data is not recorded: it needs monitoring on and the Model's "
                "credentials (%s), which issue the prediction ids labels refer to",
                contract.ENV_CREDENTIALS,
            )
            return None
        folder = contract.production_uri(s.artifact)
        log.info("recording production data to %s for %.0fs", folder, s.recording_retention)
        return ProductionLog(
            folder,
            [f.name for f in model.schema.features],
            model.version,
            model.task,
            s.recording_retention,
            flush_seconds=s.recording_flush_seconds,
        ).start()

    def _require(self) -> artifact.LoadedModel:
        if self.model is None:
            what = "is still loading" if self.state == "loading" else "failed to load"
            raise NotReady(f"the model {what}" + (f": {self.error}" if self.error else ""))
        return self.model

    def reject(self, endpoint: str, error: Rejected) -> Rejected:
        self.recorder.record_rejected(endpoint, error.reason)
        return error

    def serve(self, rows: Any, endpoint: str) -> Served:
        """What `/predict` and the Open Inference Protocol's `infer` both do with a batch: validate
        it against the schema, score it, record its inputs and predictions, sign its prediction id
        and record the rows as production data. A refused batch is counted under `endpoint`."""
        model = self._require()
        s = self.settings
        try:
            columns = validate_rows(
                model.schema, rows, max_batch=s.max_batch, allow_missing=s.nan_policy == "allow"
            )
        except Rejected as error:
            raise self.reject(endpoint, error) from None
        try:
            assert self.scorer is not None  # set with the model
            predictions, probabilities = self.scorer.score(columns)
        except Exception as exc:
            raise self.reject(endpoint, self._unscorable(columns, exc)) from exc
        labels = predictions.tolist()
        self.recorder.record_inputs(columns)
        self.recorder.record_predictions(labels)
        request_id = None
        if self.claims is not None and self.credentials is not None:  # feedback is taken
            request_id = self.credentials.issue(model.version, labels)
            if self.production is not None:
                self.production.inputs(request_id, columns)
        return Served(
            model, labels, None if probabilities is None else probabilities.tolist(), request_id
        )

    def predict(self, rows: Any) -> dict[str, Any]:
        served = self.serve(rows, "predict")
        model = served.model
        out: dict[str, Any] = {"model": model.model, "version": model.version}
        if served.request_id is not None:
            out["request_id"] = served.request_id
        out["predictions"] = served.predictions
        if served.probabilities is not None:
            classes = self._classes
            out["probabilities"] = [
                dict(zip(classes, row, strict=True)) for row in served.probabilities
            ]
        return out

    def infer(self, route: oip.Route, body: Any) -> dict[str, Any]:
        """An Open Inference Protocol `infer` request, answered through `serve`."""
        model = self._require()
        try:
            oip.check_model(route, model.model, model.version)
            request = oip.parse_request(body, model.schema, self._outputs())
        except Rejected as error:
            raise self.reject("infer", error) from None
        served = self.serve(request.rows, "infer")
        return oip.response(
            request,
            model=model.model,
            version=model.version,
            request_id=served.request_id,
            predictions=served.predictions,
            probabilities=served.probabilities,
            classes=self._classes,
            task=model.task,
        )

    def _outputs(self) -> list[str]:
        wants_proba = self.scorer is not None and self.scorer.wants_proba
        return [oip.PREDICT, oip.PROBA] if wants_proba else [oip.PREDICT]

    def model_metadata(self, route: oip.Route) -> dict[str, Any]:
        """The Open Inference Protocol's metadata of the served model (NotReady, or Rejected 404
        for another model's name)."""
        model = self._require()
        oip.check_model(route, model.model, model.version)
        return oip.model_metadata(
            model.schema,
            model.model,
            model.version,
            model.task,
            self._classes,
            proba=oip.PROBA in self._outputs(),
        )

    def _unscorable(self, columns: list[Any], exc: Exception) -> Rejected:
        """Find the first row the pipeline refuses, to name it in a 422."""
        log.warning("the pipeline refused a batch: %s", exc)
        for r in range(len(columns[0])):
            try:
                assert self.scorer is not None
                self.scorer.score([column[r : r + 1] for column in columns])
            except Exception as row_exc:
                message = f"row {r}: the model cannot score this row: {row_exc}"
                return Rejected([Problem("unscorable", message, r, None)], status=422)
        raise exc

    def feedback(self, items: Any) -> dict[str, Any]:
        model = self._require()
        if self.credentials is None or self.claims is None:
            why = (
                "MODELOPS_MONITORING=off"
                if not self.recorder.enabled
                else f"no credentials ({contract.ENV_CREDENTIALS})"
            )
            raise Rejected([Problem("feedback_off", f"feedback is off: {why}")], status=409)
        try:
            parsed = parse_items(items, task=model.task, max_items=self.settings.max_batch)
        except Rejected as error:
            raise self.reject("feedback", error) from None
        outcome = score(
            parsed,
            task=model.task,
            credentials=self.credentials,
            claims=self.claims,
            version=model.version,
            window=self.settings.feedback_window,
        )
        if self.production is not None:
            self.production.labels((i.request_id, i.row, i.truth) for i in outcome.signed)
        self.recorder.record_outcomes(outcome.correct, outcome.incorrect, outcome.errors)
        for reason, n in outcome.unmatched.items():
            self.recorder.record_unmatched(reason, n)
        return outcome.as_dict(model.task)

    def authorized(self, header: bytes | None) -> bool:
        """Whether a request's `Authorization` header carries the Model's token."""
        return self.credentials is not None and self.credentials.authorized(header)

    def metadata(self, full: bool) -> dict[str, Any]:
        """What a client needs to call the model; `full` (an authorized caller, such as the
        operator) adds what the data looks like: classes, metrics, reference distributions."""
        s = self.settings
        out: dict[str, Any] = {"state": self.state, "track": s.track, "monitoring": s.monitoring}
        if self.error:
            out["error"] = self.error
        model = self.model
        if model is None:
            out.update(model=s.model, version=s.version)
            return out
        meta = model.metadata
        out.update(
            model=model.model,
            version=model.version,
            tag=model.tag,
            task=model.task,
            target=meta.get("target"),
            features=[
                {"name": f.get("name"), "type": f.get("type")} for f in meta.get("features") or []
            ],
            limits={"maxBatch": s.max_batch, "nanPolicy": s.nan_policy},
        )
        if not full:
            return out
        out.update(
            artifact=s.artifact,
            features=meta.get("features"),
            classes=list(model.classes) or None,
            metrics=meta.get("metrics"),
            gates=meta.get("gates"),
            approved=meta.get("approved"),
            fingerprint=meta.get("fingerprint"),
            specHash=meta.get("specHash"),
            reference=meta.get(contract.REFERENCE),
            prediction=meta.get("prediction"),
        )
        if self.recorder.warnings:
            out["monitoringWarnings"] = list(self.recorder.warnings)
        return out
