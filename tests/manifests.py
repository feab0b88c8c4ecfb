"""Invalid Model manifests, each with the field that the rejection must name.

The API server rejects them (tests/api/test_crd_validation.py) and so does the typed
spec the CRD is generated from (tests/api/test_spec.py): both read the same cases.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = yaml.safe_load((REPO / "examples" / "iris.yaml").read_text())
DELETE = object()

# The example as a regression Model (diabetes), for rules about regression metrics.
REGRESSION: dict[str, Any] = {
    "spec.training.dataset": {"uri": "builtin:diabetes", "target": "progression"},
    "spec.training.estimator.class": "sklearn.ensemble.RandomForestRegressor",
}

# (id, {dotted path: new value or DELETE}, text the API server's message must contain)
CASES: list[tuple[str, dict[str, Any], str]] = [
    ("no-training", {"spec.training": DELETE}, "spec.training: Required value"),
    (
        "no-dataset-uri",
        {"spec.training.dataset.uri": DELETE},
        "spec.training.dataset.uri: Required value",
    ),
    (
        "bad-uri-scheme",
        {"spec.training.dataset.uri": "ftp://data/x.csv"},
        "spec.training.dataset.uri",
    ),
    (
        "s3-uri-without-a-key",
        {"spec.training.dataset.uri": "s3://datasets/"},
        "spec.training.dataset.uri",
    ),
    (
        "s3-uri-not-a-bucket-name",
        {"spec.training.dataset.uri": "s3://Data_Sets/iris.csv"},
        "spec.training.dataset.uri",
    ),
    (
        "unknown-builtin-dataset",
        {"spec.training.dataset.uri": "builtin:nosuch"},
        "spec.training.dataset.uri",
    ),
    (
        "task-not-the-sources",
        {"spec.training.dataset.task": "regression", "spec.training.validation.gates": {}},
        "spec.training.dataset.task",
    ),
    (
        "params-on-a-builtin-dataset",
        {"spec.training.dataset.params": {"maxBytes": 1000}},
        "spec.training.dataset.params",
    ),
    (
        "secret-name-on-a-builtin-dataset",
        {"spec.training.dataset.secretName": "data-creds"},
        "spec.training.dataset.secretName",
    ),
    (
        "secret-name-not-a-dns-subdomain",
        {
            "spec.training.dataset.uri": "s3://data/iris.csv",
            "spec.training.dataset.secretName": "Data_Creds",
        },
        "spec.training.dataset.secretName",
    ),
    ("empty-target", {"spec.training.dataset.target": ""}, "spec.training.dataset.target"),
    ("zero-training-deadline", {"spec.training.deadline": "0s"}, "spec.training.deadline"),
    ("training-deadline-over-a-day", {"spec.training.deadline": "25h"}, "spec.training.deadline"),
    ("bad-format", {"spec.training.dataset.format": "xlsx"}, "spec.training.dataset.format"),
    (
        "target-among-features",
        {"spec.training.dataset.features": ["species", "petal_length"]},
        "spec.training.dataset.features",
    ),
    ("bad-scaling", {"spec.training.pipeline.scaling": "zscore"}, "spec.training.pipeline.scaling"),
    (
        "bad-missing-policy",
        {"spec.training.pipeline.cleaning.missing": "guess"},
        "spec.training.pipeline.cleaning.missing",
    ),
    (
        "kbest-without-k",
        {"spec.training.pipeline.selection": {"method": "kbest"}},
        "spec.training.pipeline.selection.k",
    ),
    (
        "estimator-not-sklearn",
        {"spec.training.estimator.class": "os.system"},
        "spec.training.estimator.class",
    ),
    (
        "test-size-too-large",
        {"spec.training.validation.testSize": 0.9},
        "spec.training.validation.testSize",
    ),
    (
        "unknown-gate",
        {"spec.training.validation.gates": {"speed": 3}},
        "spec.training.validation.gates",
    ),
    (
        "gate-out-of-range",
        {"spec.training.validation.gates": {"accuracy": 1.5}},
        "spec.training.validation.gates",
    ),
    (
        "r2-gate-above-one",
        {**REGRESSION, "spec.training.validation.gates": {"r2": 1.5}},
        "spec.training.validation.gates",
    ),
    (
        "negative-mae-gate",
        {**REGRESSION, "spec.training.validation.gates": {"mae": -0.5}},
        "spec.training.validation.gates",
    ),
    (
        "regression-gate-on-a-classifier",
        {"spec.training.validation.gates": {"r2": 0.5}},
        "spec.training.validation.gates",
    ),
    ("bad-schedule", {"spec.training.schedule": "every day"}, "spec.training.schedule"),
    ("schedule-minute-60", {"spec.training.schedule": "60 * * * *"}, "spec.training.schedule"),
    (
        "malformed-training-cpu",
        {"spec.training.resources": {"limits": {"cpu": "two"}}},
        "spec.training.resources.limits.cpu",
    ),
    (
        "negative-serving-memory",
        {"spec.serving.resources": {"requests": {"memory": -1}}},
        "spec.serving.resources.requests.memory",
    ),
    (
        "request-above-limit",
        {"spec.serving.resources": {"requests": {"cpu": "1500m"}, "limits": {"cpu": 1}}},
        "spec.serving.resources.requests",
    ),
    (
        "unknown-resources-field",
        {"spec.training.resources": {"limts": {"cpu": "1"}}},
        "spec.training.resources.limts",
    ),
    ("zero-replicas", {"spec.serving.replicas": 0}, "spec.serving.replicas"),
    (
        "min-above-max",
        {"spec.serving.autoscaling": {"minReplicas": 5, "maxReplicas": 2}},
        "spec.serving.autoscaling.minReplicas",
    ),
    ("steps-decreasing", {"spec.serving.canary.steps": [50, 10]}, "spec.serving.canary.steps"),
    ("step-out-of-range", {"spec.serving.canary.steps": [10, 100]}, "spec.serving.canary.steps[1]"),
    ("steps-repeated", {"spec.serving.canary.steps": [10, 10]}, "spec.serving.canary.steps[1]"),
    (
        "canary-of-thousands",
        {"spec.serving.replicas": 100, "spec.serving.canary.steps": [99]},
        "spec.serving.canary.steps",
    ),
    (
        "autoscaled-canary-of-thousands",
        {
            "spec.serving.autoscaling": {"minReplicas": 200, "maxReplicas": 400},
            "spec.serving.canary.steps": [10, 50],
        },
        "spec.serving.canary.steps",
    ),
    ("bad-interval", {"spec.serving.canary.interval": "5 minutes"}, "spec.serving.canary.interval"),
    ("zero-interval", {"spec.serving.canary.interval": "0s"}, "spec.serving.canary.interval"),
    (
        "sub-second-monitoring-interval",
        {"spec.monitoring.interval": "500ms"},
        "spec.monitoring.interval",
    ),
    (
        "deadline-shorter-than-interval",
        {"spec.serving.canary.progressDeadline": "30s"},
        "spec.serving.canary.progressDeadline",
    ),
    ("zero-threshold", {"spec.serving.canary.threshold": 0}, "spec.serving.canary.threshold"),
    (
        "bad-on-deadline",
        {"spec.serving.canary.onDeadline": "panic"},
        "spec.serving.canary.onDeadline",
    ),
    ("pin-names-another-model", {"spec.serving.version": "wine-v1"}, "spec.serving.version"),
    (
        "error-rate-above-one",
        {"spec.monitoring.checks.errorRate.max": 2},
        "spec.monitoring.checks.errorRate.max",
    ),
    (
        "negative-accuracy",
        {"spec.monitoring.checks.accuracy.min": -0.1},
        "spec.monitoring.checks.accuracy.min",
    ),
    (
        "zero-psi",
        {"spec.monitoring.checks.drift.psi.max": 0},
        "spec.monitoring.checks.drift.psi.max",
    ),
    (
        "retrain-on-drift-unchecked",
        {"spec.monitoring.checks.drift": DELETE},
        "spec.monitoring.retrainOn",
    ),
    (
        "unknown-retrain-trigger",
        {"spec.monitoring.retrainOn": ["weather"]},
        "spec.monitoring.retrainOn[0]",
    ),
    (
        "custom-check-without-bounds",
        {"spec.monitoring.checks.custom": [{"name": "qps", "query": "sum(rate(x[1m]))"}]},
        "spec.monitoring.checks.custom[0]",
    ),
    ("bad-cooldown", {"spec.monitoring.cooldown": "soon"}, "spec.monitoring.cooldown"),
    ("name-too-long", {"metadata.name": "m" * 51}, "metadata.name"),
    ("name-not-a-service-name", {"metadata.name": "1.iris"}, "metadata.name"),
    ("misspelt-field", {"spec.serving.replcas": 2}, "spec.serving.replcas"),
]


def mutate(body: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(body)
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = result
        for key in parents:
            node = node.setdefault(key, {})
        if value is DELETE:
            node.pop(last)
        else:
            node[last] = value
    return result
