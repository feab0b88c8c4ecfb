"""The holdout and the quality gate: split the cleaned rows (stratified for classification), compute
holdout metrics, and check them against `validation.gates`.

Classification: accuracy, f1_macro, roc_auc (binary problems only) and per-class support.
Regression: r2, mae, rmse. A gate on mae or rmse is a maximum (lower is better); on any other metric
a minimum. A missed gate makes the version Rejected: archived for inspection, not deployable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm
from sklearn.model_selection import train_test_split

from modelops_api.spec import LOWER_IS_BETTER, TASK_METRICS, Task, ValidationSpec

from .columns import Schema
from .result import TrainingError


@dataclass
class Split:
    x_train: pd.DataFrame
    x_test: pd.DataFrame
    y_train: pd.Series
    y_test: pd.Series


def check_gates_apply(gates: dict[str, float], task: Task) -> None:
    """Fail before training when a gate names a metric the task does not have."""
    known = TASK_METRICS[task]
    for name in gates:
        if name not in known:
            raise TrainingError(
                "InvalidSpec",
                f"spec.training.validation.gates.{name} is not a {task} metric "
                f"({', '.join(known)})",
            )


def split(frame: pd.DataFrame, schema: Schema, spec: ValidationSpec) -> Split:
    """The holdout split; raises SingleClass or TooFewRows when the rows cannot make one."""
    rows = len(frame)
    test_rows = math.ceil(spec.test_size * rows)
    train_rows = rows - test_rows
    y = frame[schema.target]
    stratify = None
    if schema.task == "classification":
        counts = y.value_counts()
        if len(counts) < 2:
            raise TrainingError(
                "SingleClass",
                f"the target {schema.target!r} has a single class ({counts.index[0]!r}) after "
                "cleaning; a classifier needs at least two",
            )
        rare = counts[counts < 2]
        if not rare.empty:
            raise TrainingError(
                "TooFewRows",
                f"class {rare.index[0]!r} has {int(rare.iloc[0])} row; a stratified holdout needs "
                "at least 2 rows of every class",
            )
        if test_rows < len(counts) or train_rows < len(counts):
            raise TrainingError(
                "TooFewRows",
                f"{rows} rows with testSize {spec.test_size} give {train_rows} training and "
                f"{test_rows} holdout rows; each needs at least one row per class ({len(counts)})",
            )
        stratify = y
    elif test_rows < 2 or train_rows < 2:
        raise TrainingError(
            "TooFewRows",
            f"{rows} rows with testSize {spec.test_size} give {train_rows} training and "
            f"{test_rows} holdout rows; each needs at least 2",
        )
    x_train, x_test, y_train, y_test = train_test_split(
        frame[schema.names],
        y,
        test_size=test_rows,
        random_state=spec.random_state,
        stratify=stratify,
    )
    return Split(
        x_train.reset_index(drop=True),
        x_test.reset_index(drop=True),
        y_train.reset_index(drop=True),
        y_test.reset_index(drop=True),
    )


def evaluate(
    pipeline: Any, x: pd.DataFrame, y: pd.Series, task: Task
) -> tuple[dict[str, float], dict[str, int], np.ndarray]:
    """Holdout metrics, per-class support (classification; empty for regression), predictions."""
    predicted = np.asarray(pipeline.predict(x))
    if task == "regression":
        truth = y.to_numpy(dtype=float)
        return (
            _defined(
                {
                    "r2": _finite(skm.r2_score(truth, predicted)),
                    "mae": _finite(skm.mean_absolute_error(truth, predicted)),
                    "rmse": _finite(math.sqrt(skm.mean_squared_error(truth, predicted))),
                }
            ),
            {},
            predicted,
        )
    truth = y.to_numpy()
    result = {
        "accuracy": _finite(skm.accuracy_score(truth, predicted)),
        "f1_macro": _finite(skm.f1_score(truth, predicted, average="macro", zero_division=0)),
    }
    classes = list(pipeline.classes_)
    if len(classes) == 2:
        score = _positive_score(pipeline, x)
        if score is not None:
            result["roc_auc"] = _finite(skm.roc_auc_score(truth == classes[1], score))
    support = {str(label): int((truth == label).sum()) for label in classes}
    return _defined(result), support, predicted


def gate(gates: dict[str, float], measured: dict[str, float]) -> tuple[dict[str, Any], bool]:
    """Each gate's outcome, `{"min"|"max": threshold, "value", "passed"}`, and whether all passed.

    A gate on a metric that could not be computed (roc_auc of an estimator without scores) fails.
    """
    outcomes: dict[str, Any] = {}
    for name, threshold in gates.items():
        value = measured.get(name)
        bound = "max" if name in LOWER_IS_BETTER else "min"
        if value is None:
            passed = False
        elif bound == "max":
            passed = value <= threshold
        else:
            passed = value >= threshold
        outcomes[name] = {bound: threshold, "value": value, "passed": passed}
    return outcomes, all(o["passed"] for o in outcomes.values())


def _positive_score(pipeline: Any, x: pd.DataFrame) -> np.ndarray | None:
    if hasattr(pipeline, "predict_proba"):
        try:
            return np.asarray(pipeline.predict_proba(x))[:, 1]
        except AttributeError:  # e.g. SVC(probability=False)
            pass
    if hasattr(pipeline, "decision_function"):
        return np.asarray(pipeline.decision_function(x))
    return None


def _finite(value: float) -> float:
    """Rounded for display; a metric that is not finite (r2 of a constant holdout) is left out."""
    number = float(value)
    return round(number, 6) if math.isfinite(number) else math.nan


def _defined(measured: dict[str, float]) -> dict[str, float]:
    return {name: value for name, value in measured.items() if math.isfinite(value)}
