"""Reference distributions, stored with the model so serving can measure drift against them.

Numeric: about BINS quantile bins of the training split, right-closed like Prometheus buckets. The
interior edges b1 < … < b(n-1) are finite, strictly increasing floats (duplicates from repeated
values are merged; a constant feature gets one edge at its value); bin i is (b(i-1), b(i)] with -inf
and +inf at the ends, and proportions[i] is the share of the non-missing training values in bin i.
Categorical: the share of each category (the MAX_CATEGORIES most frequent; the rest go to "other").
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .columns import NUMERIC, Schema

BINS = 10
MAX_CATEGORIES = 100


def numeric_reference(values: pd.Series | np.ndarray, bins: int = BINS) -> dict[str, list[float]]:
    numbers = np.asarray(values, dtype=float)
    numbers = numbers[np.isfinite(numbers)]
    if numbers.size == 0:
        return {"edges": [0.0], "proportions": [0.0, 0.0]}
    quantiles = np.quantile(numbers, np.linspace(0, 1, bins + 1)[1:-1])
    edges = sorted({float(q) for q in quantiles if np.isfinite(q)})
    if not edges:
        edges = [float(numbers[0])]
    # Values at or below each edge, one vectorised comparison per edge (a binary search of every
    # value among the edges cost ten times as much at a million rows): bin i's count is the step.
    at_or_below = [int(np.count_nonzero(numbers <= edge)) for edge in edges]
    counts = np.diff(np.array([0, *at_or_below, numbers.size]))
    return {"edges": edges, "proportions": _shares(counts)}


def categorical_reference(values: pd.Series, limit: int = MAX_CATEGORIES) -> dict[str, Any]:
    present = values.dropna().astype(str)
    if present.empty:
        return {"categories": {}, "other": 0.0}
    counts = present.value_counts()
    kept = counts.iloc[:limit]
    total = float(counts.sum())
    return {
        "categories": {str(k): float(v) / total for k, v in kept.items()},
        "other": float(counts.iloc[limit:].sum()) / total,
    }


def feature_references(frame: pd.DataFrame, schema: Schema) -> dict[str, Any]:
    """The reference of every feature, from the training split as cleaned (before imputation)."""
    return {
        f.name: numeric_reference(frame[f.name])
        if f.type == NUMERIC
        else categorical_reference(frame[f.name])
        for f in schema.features
    }


def prediction_reference(predicted: np.ndarray, task: str) -> dict[str, Any]:
    """The reference of the predictions: class shares, or bins like a numeric feature."""
    if task == "classification":
        return categorical_reference(pd.Series(predicted).astype(str))
    return numeric_reference(np.asarray(predicted, dtype=float))


def _shares(counts: np.ndarray) -> list[float]:
    total = float(counts.sum())
    return [float(c) / total for c in counts] if total else [0.0] * len(counts)
