"""The estimator: a class path from an allow-list of scikit-learn classifiers and regressors (a
class path is code to import, so nothing else is ever imported), constructed with the spec's params
and checked by scikit-learn's own parameter validation before any data is touched."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from sklearn.base import is_classifier, is_regressor

from modelops_api.spec import Task

from .result import TrainingError

ALLOWED: frozenset[str] = frozenset(
    {
        # linear models
        "sklearn.linear_model.LogisticRegression",
        "sklearn.linear_model.RidgeClassifier",
        "sklearn.linear_model.SGDClassifier",
        "sklearn.linear_model.Perceptron",
        "sklearn.linear_model.LinearRegression",
        "sklearn.linear_model.Ridge",
        "sklearn.linear_model.Lasso",
        "sklearn.linear_model.ElasticNet",
        "sklearn.linear_model.SGDRegressor",
        "sklearn.linear_model.HuberRegressor",
        "sklearn.linear_model.BayesianRidge",
        # trees and ensembles
        "sklearn.tree.DecisionTreeClassifier",
        "sklearn.tree.DecisionTreeRegressor",
        "sklearn.ensemble.RandomForestClassifier",
        "sklearn.ensemble.RandomForestRegressor",
        "sklearn.ensemble.ExtraTreesClassifier",
        "sklearn.ensemble.ExtraTreesRegressor",
        "sklearn.ensemble.GradientBoostingClassifier",
        "sklearn.ensemble.GradientBoostingRegressor",
        "sklearn.ensemble.HistGradientBoostingClassifier",
        "sklearn.ensemble.HistGradientBoostingRegressor",
        "sklearn.ensemble.AdaBoostClassifier",
        "sklearn.ensemble.AdaBoostRegressor",
        # others
        "sklearn.neighbors.KNeighborsClassifier",
        "sklearn.neighbors.KNeighborsRegressor",
        "sklearn.svm.SVC",
        "sklearn.svm.SVR",
        "sklearn.svm.LinearSVC",
        "sklearn.svm.LinearSVR",
        "sklearn.naive_bayes.GaussianNB",
        "sklearn.neural_network.MLPClassifier",
        "sklearn.neural_network.MLPRegressor",
    }
)

# Param values are data from a manifest: scalars, lists and mappings of them. Never objects.
_SCALARS = (str, int, float, bool, type(None))


def build(class_path: str, params: dict[str, Any], random_state: int) -> tuple[Any, Task]:
    """An unfitted estimator and its task ("classification" or "regression").

    `random_state` is set from validation.randomState when the estimator takes one and the params do
    not, so a run is reproducible.
    """
    if class_path not in ALLOWED:
        raise TrainingError(
            "EstimatorNotAllowed",
            f"estimator {class_path!r} is not on the allow-list; allowed: "
            + ", ".join(sorted(ALLOWED)),
        )
    module_name, _, class_name = class_path.rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    for key, value in params.items():
        if not _plain(value):
            raise TrainingError(
                "InvalidParams", f"{class_path} param {key!r} must be a number, string, list or map"
            )
    accepted = inspect.signature(cls).parameters
    unknown = [key for key in params if key not in accepted]
    if unknown:
        raise TrainingError(
            "InvalidParams",
            f"{class_path} has no param {unknown[0]!r} (params: {', '.join(sorted(accepted))})",
        )
    params = dict(params)
    if "random_state" in accepted and "random_state" not in params:
        params["random_state"] = random_state
    try:
        estimator = cls(**params)
        validate = getattr(estimator, "_validate_params", None)
        if callable(validate):
            validate()
    except (TypeError, ValueError) as error:
        raise TrainingError("InvalidParams", f"{class_path}: {error}") from None
    if is_classifier(estimator):
        return estimator, "classification"
    if is_regressor(estimator):
        return estimator, "regression"
    raise TrainingError(
        "EstimatorNotAllowed", f"{class_path} is neither a classifier nor a regressor"
    )


def effective_params(estimator: Any) -> dict[str, Any]:
    """The estimator's params as JSON-able values (for the metadata)."""
    return {k: v for k, v in estimator.get_params(deep=False).items() if _plain(v)}


def _plain(value: Any) -> bool:
    if isinstance(value, _SCALARS):
        return True
    if isinstance(value, list | tuple):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False
