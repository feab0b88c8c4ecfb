"""The training spec (a Model's `spec.training`): read it from YAML or JSON, reject unknown keys and
wrong values with a message naming the field, and hash it canonically.

The CRD validates the spec as well, but the runtime does not trust it: every check here holds for a
file written by hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from modelops_api.contract import spec_hash

from .result import TrainingError

TASKS = ("classification", "regression")
FORMATS = ("csv", "parquet")
MISSING = ("impute-median", "impute-mean", "impute-most-frequent", "drop")
SCALING = ("standard", "minmax", "robust", "none")
SELECTION = ("kbest", "variance", "none")
# Gates on these metrics are maxima (lower is better); gates on every other metric are minima.
LOWER_IS_BETTER = frozenset({"mae", "rmse"})
CLASSIFICATION_METRICS = ("accuracy", "f1_macro", "roc_auc")
REGRESSION_METRICS = ("r2", "mae", "rmse")
# The values a gate's threshold can take (accuracy 90 is a typo for 0.9, not a gate never passed).
GATE_RANGES: dict[str, tuple[float, float]] = {
    "accuracy": (0.0, 1.0),
    "f1_macro": (0.0, 1.0),
    "roc_auc": (0.0, 1.0),
    "r2": (-math.inf, 1.0),
    "mae": (0.0, math.inf),
    "rmse": (0.0, math.inf),
}

# Keys of spec.training that belong to the operator (scheduling, pod resources): accepted, unused.
OPERATOR_KEYS = ("schedule", "resources")


@dataclass(frozen=True)
class DatasetSpec:
    uri: str
    target: str
    format: str | None = None
    features: list[str] | None = None
    categorical: list[str] | None = None
    task: str | None = None
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CleaningSpec:
    drop_duplicates: bool = True
    missing: str = "impute-median"


@dataclass(frozen=True)
class SelectionSpec:
    method: str = "none"
    k: int | None = None
    threshold: float | None = None


@dataclass(frozen=True)
class PipelineSpec:
    cleaning: CleaningSpec = field(default_factory=CleaningSpec)
    scaling: str = "standard"
    selection: SelectionSpec = field(default_factory=SelectionSpec)
    oversample_minority: bool = False


@dataclass(frozen=True)
class EstimatorSpec:
    class_path: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ValidationSpec:
    test_size: float = 0.2
    random_state: int = 42
    gates: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainingSpec:
    dataset: DatasetSpec
    pipeline: PipelineSpec
    estimator: EstimatorSpec
    validation: ValidationSpec
    raw: dict[str, Any]

    @property
    def hash(self) -> str:
        return spec_hash(self.raw)


def load_spec(path: str) -> TrainingSpec:
    """Read and check the spec file; every problem is a TrainingError with reason InvalidSpec."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise TrainingError("InvalidSpec", f"cannot read the spec file {path}: {error}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise TrainingError(
            "InvalidSpec", f"the spec file {path} is not YAML/JSON: {first}"
        ) from None
    return parse_spec(raw)


def parse_spec(raw: Any) -> TrainingSpec:
    """Check a parsed spec (a Model's spec.training) and turn it into typed settings."""
    top = _mapping(raw, "spec.training")
    _known(top, "spec.training", ("dataset", "pipeline", "estimator", "validation", *OPERATOR_KEYS))
    for name in ("dataset", "estimator"):
        if name not in top:
            raise TrainingError("InvalidSpec", f"spec.training.{name} is required")
    return TrainingSpec(
        dataset=_dataset(top["dataset"]),
        pipeline=_pipeline(top.get("pipeline", {})),
        estimator=_estimator(top["estimator"]),
        validation=_validation(top.get("validation", {})),
        raw=top,
    )


def _dataset(raw: Any) -> DatasetSpec:
    where = "spec.training.dataset"
    data = _mapping(raw, where)
    _known(data, where, ("uri", "format", "target", "features", "categorical", "task", "params"))
    for name in ("uri", "target"):
        if name not in data:
            raise TrainingError("InvalidSpec", f"{where}.{name} is required")
    features = _names(data.get("features"), f"{where}.features")
    categorical = _names(data.get("categorical"), f"{where}.categorical")
    target = _string(data["target"], f"{where}.target")
    if features is not None:
        if not features:
            raise TrainingError(
                "InvalidSpec", f"{where}.features is empty; omit it to use every column"
            )
        if target in features:
            raise TrainingError("InvalidSpec", f"{where}.features lists the target {target!r}")
    if categorical is not None:
        if target in categorical:
            raise TrainingError("InvalidSpec", f"{where}.categorical lists the target {target!r}")
        outside = [name for name in categorical if features is not None and name not in features]
        if outside:
            raise TrainingError(
                "InvalidSpec", f"{where}.categorical names {outside[0]!r}, which is not in features"
            )
    return DatasetSpec(
        uri=_string(data["uri"], f"{where}.uri"),
        target=target,
        format=_choice(data.get("format"), f"{where}.format", FORMATS),
        features=features,
        categorical=categorical,
        task=_choice(data.get("task"), f"{where}.task", TASKS),
        params=_mapping(data.get("params", {}), f"{where}.params"),
    )


def _pipeline(raw: Any) -> PipelineSpec:
    where = "spec.training.pipeline"
    data = _mapping(raw, where)
    _known(data, where, ("cleaning", "scaling", "selection", "augmentation"))
    cleaning = _mapping(data.get("cleaning", {}), f"{where}.cleaning")
    _known(cleaning, f"{where}.cleaning", ("dropDuplicates", "missing"))
    selection = _mapping(data.get("selection", {}), f"{where}.selection")
    _known(selection, f"{where}.selection", ("method", "k", "threshold"))
    augmentation = _mapping(data.get("augmentation", {}), f"{where}.augmentation")
    _known(augmentation, f"{where}.augmentation", ("oversampleMinority",))

    method = _choice(selection.get("method"), f"{where}.selection.method", SELECTION) or "none"
    k = selection.get("k")
    threshold = selection.get("threshold")
    if method == "kbest":
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise TrainingError(
                "InvalidSpec",
                f"{where}.selection.k must be a whole number >= 1 for kbest, got {k!r}",
            )
    elif k is not None:
        raise TrainingError("InvalidSpec", f"{where}.selection.k applies to method kbest only")
    if method == "variance":
        threshold = 0.0 if threshold is None else _number(threshold, f"{where}.selection.threshold")
        if threshold < 0:
            raise TrainingError("InvalidSpec", f"{where}.selection.threshold must be >= 0")
    elif threshold is not None:
        raise TrainingError(
            "InvalidSpec", f"{where}.selection.threshold applies to method variance only"
        )
    return PipelineSpec(
        cleaning=CleaningSpec(
            drop_duplicates=_bool(
                cleaning.get("dropDuplicates", True), f"{where}.cleaning.dropDuplicates"
            ),
            missing=_choice(cleaning.get("missing"), f"{where}.cleaning.missing", MISSING)
            or "impute-median",
        ),
        scaling=_choice(data.get("scaling"), f"{where}.scaling", SCALING) or "standard",
        selection=SelectionSpec(method=method, k=k, threshold=threshold),
        oversample_minority=_bool(
            augmentation.get("oversampleMinority", False),
            f"{where}.augmentation.oversampleMinority",
        ),
    )


def _estimator(raw: Any) -> EstimatorSpec:
    where = "spec.training.estimator"
    data = _mapping(raw, where)
    _known(data, where, ("class", "params"))
    if "class" not in data:
        raise TrainingError("InvalidSpec", f"{where}.class is required")
    params = _mapping(data.get("params", {}), f"{where}.params")
    return EstimatorSpec(class_path=_string(data["class"], f"{where}.class"), params=params)


def _validation(raw: Any) -> ValidationSpec:
    where = "spec.training.validation"
    data = _mapping(raw, where)
    _known(data, where, ("testSize", "randomState", "gates"))
    test_size = _number(data.get("testSize", 0.2), f"{where}.testSize")
    if not 0 < test_size < 1:
        raise TrainingError(
            "InvalidSpec", f"{where}.testSize must be between 0 and 1, got {test_size}"
        )
    random_state = data.get("randomState", 42)
    if isinstance(random_state, bool) or not isinstance(random_state, int) or random_state < 0:
        raise TrainingError("InvalidSpec", f"{where}.randomState must be a whole number >= 0")
    gates_raw = _mapping(data.get("gates", {}), f"{where}.gates")
    _known(gates_raw, f"{where}.gates", CLASSIFICATION_METRICS + REGRESSION_METRICS)
    gates = {name: _number(value, f"{where}.gates.{name}") for name, value in gates_raw.items()}
    for name, value in gates.items():
        low, high = GATE_RANGES[name]
        if not low <= value <= high:
            raise TrainingError(
                "InvalidSpec",
                f"{where}.gates.{name} must be in [{low:g}, {high:g}], got {value:g}",
            )
    return ValidationSpec(test_size=test_size, random_state=random_state, gates=gates)


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TrainingError("InvalidSpec", f"{where} must be a mapping, got {type(value).__name__}")
    for key in value:
        if not isinstance(key, str):
            raise TrainingError("InvalidSpec", f"{where} has a key that is not a string: {key!r}")
    return value


def _known(data: dict[str, Any], where: str, known: tuple[str, ...]) -> None:
    for key in data:
        if key not in known:
            raise TrainingError(
                "InvalidSpec", f"{where}.{key}: unknown key (known keys: {', '.join(known)})"
            )


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise TrainingError("InvalidSpec", f"{where} must be a non-empty string, got {value!r}")
    return value


def _names(value: Any, where: str) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise TrainingError("InvalidSpec", f"{where} must be a list of column names")
    names = [_string(item, f"{where}[{index}]") for index, item in enumerate(value)]
    if len(set(names)) != len(names):
        raise TrainingError("InvalidSpec", f"{where} lists a column twice")
    return names


def _choice(value: Any, where: str, choices: tuple[str, ...]) -> str | None:
    if value is None:
        return None
    if value not in choices:
        raise TrainingError(
            "InvalidSpec", f"{where} must be one of {', '.join(choices)}, got {value!r}"
        )
    return str(value)


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TrainingError("InvalidSpec", f"{where} must be a finite number, got {value!r}")
    return float(value)


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise TrainingError("InvalidSpec", f"{where} must be true or false, got {value!r}")
    return value
