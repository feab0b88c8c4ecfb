"""One training run, stage by stage: spec → data → schema → cleaning → split → fit → evaluation →
quality gate → packaging. Returns the result object; a TrainingError anywhere ends the run as Failed
with that error's reason, carrying whatever was known by then.
"""

from __future__ import annotations

import logging
import platform
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from modelops_api import contract
from modelops_api.spec import DatasetSpec, Task, TrainingSpec

from . import (
    cleaning,
    columns,
    estimators,
    evaluation,
    features,
    production,
    reference,
    sources,
    spec,
)
from .packaging import ArtifactStore, check_name, save_and_export
from .result import TrainingError, failed

log = logging.getLogger("modelops.train")
CONTRACT = 1
# Labels of the archived model (docs/training.md, "Packaging"); read by no other component.
LABEL_APPROVED = f"{contract.GROUP}/approved"
LABEL_TASK = f"{contract.GROUP}/task"


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
        known.pop("approved", None)  # a failed run approves nothing, whatever its gates said
        return failed(error.reason, error.message, known)


@dataclass
class Fitted:
    """A model fitted and evaluated in memory, with everything its metadata is made from."""

    training: TrainingSpec
    spec_hash: str  # of the spec as written (spec.LoadedSpec.hash)
    task: Task
    schema: columns.Schema
    cleaned: cleaning.Cleaned
    split: evaluation.Split
    pipeline: Any
    fingerprint: str
    rows: dict[str, int]
    metrics: dict[str, float]
    support: dict[str, int]
    gates: dict[str, Any]
    approved: bool
    predicted: np.ndarray
    seconds: dict[str, float] = field(default_factory=dict)
    # Rows and fingerprint per source, when the dataset adds production rows.
    sources: dict[str, Any] = field(default_factory=dict)


def _run(request: Request, known: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    check_name(request.model, "--model")
    check_name(request.version, "--version")
    store = ArtifactStore.parse(request.artifacts)
    store.check_apart(request.bentoml_home)
    fitted = fit(
        spec.load_spec(request.spec_path),
        known,
        production_folder=production.folder(request.artifacts, request.model),
    )

    tag = f"{request.model}:{request.version}"
    clock = time.perf_counter()
    artifact = save_and_export(
        fitted.pipeline,
        tag=tag,
        metadata=metadata(fitted, request.model, request.version),
        labels={LABEL_APPROVED: str(fitted.approved).lower(), LABEL_TASK: fitted.task},
        store=store,
        model=request.model,
        version=request.version,
    )
    seconds = fitted.seconds
    seconds["package"] = _since(clock)
    seconds["total"] = _since(started)
    log.info("saved %s and exported it to %s in %.2fs", tag, artifact, seconds["package"])

    gates = fitted.gates
    missed = [name for name, outcome in gates.items() if not outcome["passed"]]
    result: dict[str, Any] = {
        "phase": contract.SUCCEEDED if fitted.approved else contract.REJECTED,
        "reason": contract.TRAINED_REASON if fitted.approved else contract.GATE_MISSED,
        "message": (
            f"trained {tag} on {fitted.rows['train']} rows; "
            + (f"passed {len(gates)} quality gate(s)" if gates else "no quality gate declared")
            if fitted.approved
            else f"{tag} missed the quality gate(s) {', '.join(missed)}; archived, not deployable"
        ),
        "model": request.model,
        "version": request.version,
        "tag": tag,
        "artifact": artifact,
        "task": fitted.task,
        "approved": fitted.approved,
        "metrics": fitted.metrics,
        "gates": gates,
        "rows": fitted.rows,
        "dropped": fitted.cleaned.dropped,
        "fingerprint": fitted.fingerprint,
        "specHash": fitted.spec_hash,
        "seconds": seconds,
    }
    if fitted.support:
        result["support"] = fitted.support
    if fitted.sources:
        result["sources"] = fitted.sources
    return result


def fit(
    loaded: spec.LoadedSpec,
    known: dict[str, Any] | None = None,
    production_folder: str | None = None,
) -> Fitted:
    """Every stage before packaging: load, schema, clean, split, fit, evaluate, gate.

    `known` collects what is known so far, for the result of a run that fails later;
    `production_folder` is where the Model's production data is, for dataset.production.
    """
    known = {} if known is None else known
    seconds: dict[str, float] = {}
    training = loaded.training
    known["specHash"] = loaded.hash
    estimator, task = estimators.build(
        training.estimator.class_path, training.estimator.params, training.validation.random_state
    )
    known["task"] = task
    evaluation.check_gates_apply(training.validation.gates, task)
    oversample = training.pipeline.augmentation.oversample_minority
    if oversample and task != "classification":
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
    if training.dataset.production is not None:
        if production_folder is None:
            raise TrainingError(
                "InvalidArguments", "dataset.production needs the Model's store (--artifacts)"
            )
        raw, known["sources"] = with_production(raw, training.dataset, production_folder)

    clock = time.perf_counter()
    data_schema = columns.resolve(raw, training.dataset, task)
    cleaned = cleaning.clean(raw, data_schema, training.pipeline.cleaning)
    fingerprint = cleaned.fingerprint
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
    classes = parts.y_train.nunique() if task == "classification" else 0
    if "roc_auc" in training.validation.gates and classes != 2:
        raise TrainingError(
            "InvalidSpec",
            f"spec.training.validation.gates.roc_auc applies to binary problems; the target "
            f"{data_schema.target!r} has {classes} classes",
        )
    rows.update(train=len(parts.y_train), test=len(parts.y_test))
    x_fit, y_fit = parts.x_train, parts.y_train
    if oversample:
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
    return Fitted(
        training=training,
        spec_hash=loaded.hash,
        task=task,
        schema=data_schema,
        cleaned=cleaned,
        split=parts,
        pipeline=pipeline,
        fingerprint=fingerprint,
        rows=rows,
        metrics=measured,
        support=support,
        gates=gates,
        approved=approved,
        predicted=predicted,
        seconds=seconds,
        sources=known.get("sources") or {},
    )


def with_production(
    raw: pd.DataFrame, dataset: DatasetSpec, folder: str, now: float | None = None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The dataset's rows followed by the labelled production rows; and the rows and fingerprint
    of each source, for the result."""
    assert dataset.production is not None
    target = dataset.target
    if target not in raw.columns:
        return raw, {}  # columns.resolve says what is wrong with the dataset
    features = list(dataset.features or [c for c in raw.columns if c != target])
    found = production.load(
        folder, dataset.production, features, target, time.time() if now is None else now
    )
    added = found.frame
    if pd.api.types.is_numeric_dtype(raw[target]):
        truth = pd.to_numeric(added[target], errors="coerce")
        if truth.isna().any():
            example = added[target][truth.isna()].iloc[0]
            raise TrainingError(
                "ProductionSchemaMismatch",
                f"the production labels under {folder} are not numbers like the dataset's "
                f"{target!r} (for example {str(example)[:40]!r})",
            )
        added = added.assign(**{target: truth})
    by_source = {
        "dataset": {"rows": len(raw), "fingerprint": cleaning.fingerprint(raw)},
        "production": {
            "rows": len(added),
            "unlabelled": found.unlabelled,
            "window": dataset.production.window,
            "fingerprint": cleaning.fingerprint(added),
        },
    }
    log.info("added %d labelled production rows to the %d of the dataset", len(added), len(raw))
    return pd.concat([raw, added], ignore_index=True), by_source


def metadata(fitted: Fitted, model: str, version: str) -> dict[str, Any]:
    """The model's metadata (docs/runtime-contract.md), ready for BentoML (no nulls)."""
    training = fitted.training
    meta: dict[str, Any] = {
        "contract": CONTRACT,
        "model": model,
        "version": version,
        "task": fitted.task,
        "target": fitted.schema.target,
        "features": _feature_schema(fitted.schema, fitted.pipeline),
        "reference": reference.feature_references(fitted.split.x_train, fitted.schema),
        "prediction": reference.prediction_reference(fitted.predicted, fitted.task),
        "metrics": fitted.metrics,
        "support": fitted.support,
        "gates": fitted.gates,
        "approved": fitted.approved,
        "rows": fitted.rows,
        "dropped": fitted.cleaned.dropped,
        "fingerprint": fitted.fingerprint,
        "estimator": {
            "class": training.estimator.class_path,
            "params": estimators.effective_params(fitted.pipeline.named_steps["estimator"]),
        },
        "libraries": _libraries(),
        "specHash": fitted.spec_hash,
        "dataset": training.dataset.uri,
    }
    if fitted.task == "classification":
        meta["classes"] = [str(label) for label in fitted.pipeline.classes_]
    clean: dict[str, Any] = _without_nulls(meta)
    return clean


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


def _feature_schema(data_schema: columns.Schema, pipeline: Any) -> list[dict[str, Any]]:
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
    import sklearn

    # bentoml.__version__ is this constant; the top-level package costs ~0.1 s more to import
    # (its serving API), which packaging never uses.
    from bentoml._internal.configuration import BENTOML_VERSION

    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "bentoml": BENTOML_VERSION,
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
