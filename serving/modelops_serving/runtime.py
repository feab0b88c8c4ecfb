"""The model runtime of one worker process: loading, predicting, taking feedback.

Nothing here knows about HTTP. `Runtime` loads the model in a background thread (so the process is
live at once and ready only when the model is), then turns request bodies into answers or into
`Rejected` errors. The BentoML service (service.py) and the HTTP glue (middleware.py) call it.
"""

from __future__ import annotations

import logging
import threading
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from . import artifact
from .config import Settings
from .feedback import Memory, parse_items, score
from .metrics import Monitor, Silent
from .schema import ContractError, Problem, Rejected, validate_rows

log = logging.getLogger("bentoml.modelops")


class NotReady(Exception):
    """The model is not loaded (yet, or at all); the message says which."""


class Runtime:
    """One worker's view of the served model."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.model: artifact.LoadedModel | None = None
        self.monitor: Monitor | Silent = Silent()
        self.memory: Memory | None = None
        self.state = "loading"
        self.error = ""
        self._classes: list[str] = []
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
            model = artifact.load(
                s.artifact,
                s.model,
                s.version,
                wait_seconds=s.artifact_wait_seconds,
                on_wait=on_wait,
            )
            if s.monitoring:
                self.monitor = Monitor(
                    model=s.model or model.model,
                    version=s.version or model.version,
                    track=s.track,
                    task=model.task,
                    schema=model.schema,
                    reference=model.metadata.get("reference"),
                    classes=model.classes,
                    prediction=model.metadata.get("prediction"),
                    metrics=model.metadata.get("metrics"),
                )
                if s.feedback_memory > 0:
                    home = artifact.bentoml_home()
                    self.memory = Memory(
                        Path(home) / "modelops-predictions.sqlite", s.feedback_memory
                    )
            classes = getattr(model.pipeline, "classes_", None)
            self._classes = (
                [str(c) for c in classes] if classes is not None else list(model.classes)
            )
            self.model = model
            self.error = ""
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
                exc_info=not isinstance(exc, (artifact.ArtifactError, ContractError)),
            )

    def _require(self) -> artifact.LoadedModel:
        if self.model is None:
            what = "is still loading" if self.state == "loading" else "failed to load"
            raise NotReady(f"the model {what}" + (f": {self.error}" if self.error else ""))
        return self.model

    def reject(self, endpoint: str, error: Rejected) -> Rejected:
        self.monitor.record_rejected(endpoint, error.reason)
        return error

    def predict(self, rows: Any) -> dict[str, Any]:
        model = self._require()
        s = self.settings
        try:
            columns = validate_rows(
                model.schema, rows, max_batch=s.max_batch, allow_missing=s.nan_policy == "allow"
            )
        except Rejected as error:
            raise self.reject("predict", error) from None
        names = model.schema.names
        frame = pd.DataFrame(dict(zip(names, columns, strict=True)), columns=names)
        try:
            predictions, probabilities = self._score(model, frame)
        except Exception as exc:
            raise self.reject("predict", self._unscorable(model, frame, exc)) from exc
        labels = predictions.tolist()
        self.monitor.record_inputs(columns)
        self.monitor.record_predictions(labels)
        request_id = uuid.uuid4().hex
        if self.memory is not None:
            self.memory.remember(request_id, labels)
        out: dict[str, Any] = {
            "request_id": request_id,
            "model": model.model,
            "version": model.version,
            "predictions": labels,
        }
        if probabilities is not None:
            out["probabilities"] = [
                dict(zip(self._classes, row, strict=True)) for row in probabilities.tolist()
            ]
        return out

    def _score(
        self, model: artifact.LoadedModel, frame: pd.DataFrame
    ) -> tuple[np.ndarray, np.ndarray | None]:
        pipeline = model.pipeline
        wants_proba = model.task == "classification" and hasattr(pipeline, "predict_proba")
        if wants_proba and isinstance(pipeline, Pipeline) and len(pipeline.steps) > 1:
            # what Pipeline.predict and .predict_proba do, with the transforms run once for both
            estimator = pipeline.steps[-1][1]
            transformed = pipeline[:-1].transform(frame)
            return (
                np.asarray(estimator.predict(transformed)),
                np.asarray(estimator.predict_proba(transformed)),
            )
        predictions = np.asarray(pipeline.predict(frame))
        probabilities = np.asarray(pipeline.predict_proba(frame)) if wants_proba else None
        return predictions, probabilities

    def _unscorable(
        self, model: artifact.LoadedModel, frame: pd.DataFrame, exc: Exception
    ) -> Rejected:
        """Find the first row the pipeline refuses, to name it in a 422."""
        log.warning("the pipeline refused a batch: %s", exc)
        for r in range(len(frame)):
            try:
                self._score(model, frame.iloc[r : r + 1])
            except Exception as row_exc:
                message = f"row {r}: the model cannot score this row: {row_exc}"
                return Rejected([Problem("unscorable", message, r, None)], status=422)
        raise exc

    def feedback(self, items: Any) -> dict[str, Any]:
        model = self._require()
        if not self.monitor.enabled:
            raise Rejected(
                [Problem("monitoring_off", "feedback is off because MODELOPS_MONITORING=off")],
                status=409,
            )
        try:
            parsed = parse_items(items, task=model.task, max_items=self.settings.max_batch)
        except Rejected as error:
            raise self.reject("feedback", error) from None
        outcome = score(parsed, task=model.task, memory=self.memory, version=model.version)
        self.monitor.record_outcomes(outcome.correct, outcome.incorrect, outcome.errors)
        for reason, n in outcome.unmatched.items():
            self.monitor.record_unmatched(reason, n)
        return outcome.as_dict(model.task)

    def metadata(self) -> dict[str, Any]:
        s = self.settings
        out: dict[str, Any] = {
            "state": self.state,
            "track": s.track,
            "artifact": s.artifact,
            "monitoring": s.monitoring,
        }
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
            features=meta.get("features"),
            classes=list(model.classes) or None,
            metrics=meta.get("metrics"),
            gates=meta.get("gates"),
            approved=meta.get("approved"),
            fingerprint=meta.get("fingerprint"),
            specHash=meta.get("specHash"),
            reference=meta.get("reference"),
            prediction=meta.get("prediction"),
            limits={"maxBatch": s.max_batch, "nanPolicy": s.nan_policy},
        )
        if self.monitor.warnings:
            out["monitoringWarnings"] = list(self.monitor.warnings)
        return out
