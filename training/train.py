"""One training run, stage by stage: spec → data → schema → cleaning → split → fit → evaluation →
quality gate → packaging. Returns the result object; a TrainingError anywhere ends the run as Failed
with that error's reason, carrying whatever was known by then.
"""

from __future__ import annotations

import logging
import platform
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from . import cleaning, estimators, evaluation, features, reference, schema, sources, spec
from .packaging import ArtifactStore, check_name, save_and_export
from .result import REJECTED, SUCCEEDED, TrainingError, failed

log = logging.getLogger("modelops.train")
CONTRACT = 1


@dataclass(frozen=True)
class Request:
    """What the command line asks for."""

    spec_path: str
    model: str
    version: str
    artifacts: str
    bentoml_home: str


def run(request: Request) -> dict[str, Any]:
    """Run the training; never raises for bad input, returns the result object instead."""
    known: dict[str, Any] = {"model": request.model, "version": request.version}
    try:
        return _run(request, known)
    except TrainingError as error:
        log.error("failed: %s: %s", error.reason, error.message)
        return failed(error.reason, error.message, known)


def _run(request: Request, known: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    seconds: dict[str, float] = {}
    check_name(request.model, "--model")
    check_name(request.version, "--version")
    store = ArtifactStore.parse(request.artifacts)
    training = spec.load_spec(request.spec_path)
    known["specHash"] = training.hash
    estimator, task = estimators.build(
        training.estimator.class_path, training.estimator.params, training.validation.random_state
    )
    known["task"] = task
    evaluation.check_gates_apply(training.validation.gates, task)
    if training.pipeline.oversample_minority and task != "classification":
        raise TrainingError(
            "InvalidSpec",
            "spec.training.pipeline.augmentation.oversampleMinority applies to classification only",
        )

    clock = time.perf_counter()
    raw = sources.load(training.dataset)
    seconds["load"] = _since(clock)
    log.info(
        "loaded %d rows x %d columns from %s in %.2fs",
        len(raw),
        raw.shape[1],
        training.dataset.uri,
        seconds["load"],
    )

    clock = time.perf_counter()
    data_schema = schema.resolve(raw, training.dataset, task)
    cleaned = cleaning.clean(raw, data_schema, training.pipeline.cleaning)
    fingerprint = cleaning.fingerprint(cleaned.frame)
    rows: dict[str, int] = {"raw": cleaned.raw_rows, "clean": cleaned.rows}
    known.update(rows=rows, dropped=cleaned.dropped, fingerprint=fingerprint)
    seconds["clean"] = _since(clock)
    log.info(
        "cleaned: %d of %d rows kept (dropped %s; missing values left to impute: %s); "
        "%d numeric and %d categorical features",
        cleaned.rows,
        cleaned.raw_rows,
        ", ".join(f"{k} {v}" for k, v in cleaned.dropped.items()),
        cleaned.missing_values or "none",
        len(data_schema.numeric),
        len(data_schema.categorical),
    )

    parts = evaluation.split(cleaned.frame, data_schema, training.validation)
    rows.update(train=len(parts.y_train), test=len(parts.y_test))
    x_fit, y_fit = parts.x_train, parts.y_train
    if training.pipeline.oversample_minority:
        x_fit, y_fit = features.oversample_minority(x_fit, y_fit, training.validation.random_state)
        rows["oversampled"] = len(y_fit) - len(parts.y_train)
        log.info("oversampled the training split by %d rows", rows["oversampled"])

    pipeline = features.build_pipeline(
        data_schema, training.pipeline, training.pipeline.cleaning.missing, estimator
    )
    clock = time.perf_counter()
    _fit(pipeline, x_fit, y_fit)
    seconds["fit"] = _since(clock)
    log.info(
        "fitted %s on %d rows in %.2fs", training.estimator.class_path, len(y_fit), seconds["fit"]
    )

    clock = time.perf_counter()
    measured, support, predicted = evaluation.evaluate(pipeline, parts.x_test, parts.y_test, task)
    gates, approved = evaluation.gate(training.validation.gates, measured)
    seconds["evaluate"] = _since(clock)
    known.update(metrics=measured, gates=gates, approved=approved)
    if support:
        known["support"] = support
    log.info("holdout metrics: %s", ", ".join(f"{k}={v:.4f}" for k, v in measured.items()))
    for name, outcome in gates.items():
        log.info("gate %s: %s", name, "passed" if outcome["passed"] else "MISSED")

    tag = f"{request.model}:{request.version}"
    metadata = {
        "contract": CONTRACT,
        "model": request.model,
        "version": request.version,
        "task": task,
        "target": data_schema.target,
        "features": _feature_schema(data_schema, pipeline),
        "reference": reference.feature_references(parts.x_train, data_schema),
        "prediction": reference.prediction_reference(predicted, task),
        "metrics": measured,
        "support": support,
        "gates": gates,
        "approved": approved,
        "rows": rows,
        "dropped": cleaned.dropped,
        "fingerprint": fingerprint,
        "estimator": {
            "class": training.estimator.class_path,
            "params": estimators.effective_params(pipeline.named_steps["estimator"]),
        },
        "libraries": _libraries(),
        "specHash": training.hash,
        "dataset": training.dataset.uri,
    }
    if task == "classification":
        metadata["classes"] = [str(label) for label in pipeline.classes_]
    clock = time.perf_counter()
    artifact = save_and_export(
        pipeline,
        tag=tag,
        metadata=_without_nulls(metadata),
        labels={"modelops.dev/approved": str(approved).lower(), "modelops.dev/task": task},
        home=request.bentoml_home,
        store=store,
        model=request.model,
        version=request.version,
    )
    seconds["save"] = _since(clock)
    seconds["total"] = _since(started)
    log.info("saved %s and exported it to %s in %.2fs", tag, artifact, seconds["save"])

    missed = [name for name, outcome in gates.items() if not outcome["passed"]]
    result: dict[str, Any] = {
        "phase": SUCCEEDED if approved else REJECTED,
        "reason": "Trained" if approved else "QualityGateMissed",
        "message": (
            f"trained {tag} on {rows['train']} rows; passed {len(gates)} quality gate(s)"
            if approved
            else f"{tag} missed the quality gate(s) {', '.join(missed)}; archived, not deployable"
        ),
        "model": request.model,
        "version": request.version,
        "tag": tag,
        "artifact": artifact,
        "task": task,
        "approved": approved,
        "metrics": measured,
        "gates": gates,
        "rows": rows,
        "dropped": cleaned.dropped,
        "fingerprint": fingerprint,
        "specHash": training.hash,
        "support": support,
        "seconds": seconds,
    }
    if not support:
        del result["support"]
    return result


def _fit(pipeline: Any, x: pd.DataFrame, y: pd.Series) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            pipeline.fit(x, y)
        except (ValueError, TypeError, ArithmeticError, MemoryError) as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise TrainingError(
                "FitFailed", f"fitting failed: {type(error).__name__}: {first}"
            ) from None
    seen: set[str] = set()
    for warning in caught:
        text = f"{warning.category.__name__}: {warning.message}"
        if text not in seen:
            seen.add(text)
            log.warning("while fitting: %s", text)


def _feature_schema(data_schema: schema.Schema, pipeline: Any) -> list[dict[str, Any]]:
    """Names and types in schema order; for categorical features, the categories the fitted
    one-hot encoder knows (any other value encodes as all zeros)."""
    known: dict[str, list[str]] = {}
    if data_schema.categorical:
        columns = pipeline.named_steps["columns"].named_transformers_["categorical"]
        encoder = columns.named_steps["onehot"]
        for name, categories in zip(data_schema.categorical, encoder.categories_, strict=True):
            known[name] = [str(c) for c in categories]
    out: list[dict[str, Any]] = []
    for feature in data_schema.features:
        entry: dict[str, Any] = {"name": feature.name, "type": feature.type}
        if feature.name in known:
            entry["categories"] = known[feature.name]
        out.append(entry)
    return out


def _libraries() -> dict[str, str]:
    import bentoml
    import sklearn

    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "bentoml": bentoml.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
    }


def _without_nulls(value: Any) -> Any:
    """BentoML metadata cannot hold null: keys whose value is None are left out (an estimator
    param left out of `estimator.params` is None, its default in every allow-listed estimator)."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value if v is not None]
    return value


def _since(clock: float) -> float:
    return round(time.perf_counter() - clock, 3)
