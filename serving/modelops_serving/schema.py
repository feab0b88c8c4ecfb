"""Validation of request rows against the feature schema stored with the model.

A row is an object keyed by feature name or a list of values in schema order. Validation turns a
batch into one column per feature (numeric columns as float arrays, categorical ones as lists of
strings, normalised as training normalises them: text stripped, 3.0 and 3 both "3") or raises
`Rejected`, whose problems each name the row index and the field, so that a bad body always
becomes a 4xx the caller can act on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

NUMERIC = "numeric"
CATEGORICAL = "categorical"
MAX_PROBLEMS = 20


class ContractError(ValueError):
    """The model's metadata does not follow docs/runtime-contract.md."""


@dataclass(frozen=True)
class Problem:
    """One reason a body was refused, located by row index and field where that applies."""

    reason: str
    message: str
    row: int | None = None
    field: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"reason": self.reason, "message": self.message}
        if self.row is not None:
            out["row"] = self.row
        if self.field is not None:
            out["field"] = self.field
        return out


class Rejected(Exception):
    """A request body that cannot be served; carries every problem found (up to a limit)."""

    def __init__(self, problems: Sequence[Problem], status: int = 400) -> None:
        super().__init__(problems[0].message)
        self.problems = list(problems)
        self.status = status

    @property
    def reason(self) -> str:
        return self.problems[0].reason

    def body(self) -> dict[str, Any]:
        first = self.problems[0]
        return {
            "error": first.message,
            "reason": first.reason,
            "problems": [p.as_dict() for p in self.problems],
        }


@dataclass(frozen=True)
class Feature:
    name: str
    kind: str
    categories: tuple[str, ...] = ()


@dataclass(frozen=True)
class Schema:
    """The features of a model, in the order its pipeline expects them."""

    features: tuple[Feature, ...]

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    @classmethod
    def from_metadata(cls, raw: Any) -> Schema:
        if not isinstance(raw, list) or not raw:
            raise ContractError("metadata 'features' must be a non-empty list")
        features: list[Feature] = []
        seen: set[str] = set()
        for i, item in enumerate(raw):
            if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
                raise ContractError(f"metadata features[{i}] must be an object with a name")
            name, kind = item["name"], item.get("type")
            if kind not in (NUMERIC, CATEGORICAL):
                raise ContractError(f"feature {name!r} has type {kind!r}")
            if name in seen:
                raise ContractError(f"feature {name!r} appears twice")
            seen.add(name)
            cats = tuple(str(c) for c in item.get("categories") or ())
            features.append(Feature(name, kind, cats if kind == CATEGORICAL else ()))
        return cls(tuple(features))


def describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:37] + "..."
        return f"the string {text!r}"
    if isinstance(value, (int, float)):
        text = repr(value)
        return f"the number {text if len(text) <= 40 else text[:37] + '...'}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


class _Collector:
    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, problem: Problem) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(problem)


def _check_value(
    feature: Feature, value: Any, row: int, allow_missing: bool, problems: _Collector
) -> Any:
    """The value as the pipeline takes it, or None after recording a problem."""
    if feature.kind == NUMERIC:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:  # JSON integers have no size limit
                number = math.inf
            if math.isnan(number):
                if allow_missing:
                    return number
                problems.add(
                    Problem(
                        "missing_value", f"row {row}: {feature.name!r} is NaN", row, feature.name
                    )
                )
            elif math.isinf(number):
                problems.add(
                    Problem(
                        "wrong_type",
                        f"row {row}: {feature.name!r} must be a finite number, "
                        f"got {describe(value)}",
                        row,
                        feature.name,
                    )
                )
            return number
        if value is None:
            if allow_missing:
                return math.nan
            problems.add(
                Problem("missing_value", f"row {row}: {feature.name!r} is null", row, feature.name)
            )
            return None
        problems.add(
            Problem(
                "wrong_type",
                f"row {row}: {feature.name!r} must be a number, got {describe(value)}",
                row,
                feature.name,
            )
        )
        return None
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return str(int(value)) if value.is_integer() else str(value)
    if value is None:
        if allow_missing:
            return None
        problems.add(
            Problem("missing_value", f"row {row}: {feature.name!r} is null", row, feature.name)
        )
        return None
    problems.add(
        Problem(
            "wrong_type",
            f"row {row}: {feature.name!r} must be a category (a string or a number), "
            f"got {describe(value)}",
            row,
            feature.name,
        )
    )
    return None


def validate_rows(
    schema: Schema, rows: Any, *, max_batch: int, allow_missing: bool = False
) -> list[Any]:
    """Columns in schema order (float arrays for numeric features, lists for categorical ones).

    Raises Rejected listing up to MAX_PROBLEMS problems, each with its row index and field.
    """
    if rows is None:
        raise Rejected(
            [Problem("invalid_body", "the body must be an object with a 'rows' list", None, "rows")]
        )
    if not isinstance(rows, list):
        raise Rejected(
            [
                Problem(
                    "invalid_body",
                    f"'rows' must be a list of rows, got {describe(rows)}",
                    None,
                    "rows",
                )
            ]
        )
    if not rows:
        raise Rejected([Problem("empty_batch", "'rows' is empty", None, "rows")])
    if len(rows) > max_batch:
        raise Rejected(
            [
                Problem(
                    "batch_too_large",
                    f"{len(rows)} rows exceed the limit of {max_batch} per request",
                    None,
                    "rows",
                )
            ]
        )
    features = schema.features
    width = len(features)
    known = {f.name for f in features}
    columns: list[list[Any]] = [[None] * len(rows) for _ in features]
    problems = _Collector()
    for r, row in enumerate(rows):
        if isinstance(row, dict):
            if len(row) != width or any(k not in known for k in row):
                for f in features:
                    if f.name not in row:
                        problems.add(
                            Problem(
                                "missing_feature",
                                f"row {r}: feature {f.name!r} is missing",
                                r,
                                f.name,
                            )
                        )
                for key in row:
                    if key not in known:
                        problems.add(
                            Problem(
                                "extra_feature",
                                f"row {r}: {key!r} is not a feature of this model",
                                r,
                                str(key),
                            )
                        )
            for c, f in enumerate(features):
                if f.name in row:
                    columns[c][r] = _check_value(f, row[f.name], r, allow_missing, problems)
        elif isinstance(row, list):
            if len(row) < width:
                for f in features[len(row) :]:
                    problems.add(
                        Problem(
                            "missing_feature",
                            f"row {r}: {len(row)} values for {width} features; "
                            f"{f.name!r} is missing",
                            r,
                            f.name,
                        )
                    )
            elif len(row) > width:
                problems.add(
                    Problem(
                        "extra_feature",
                        f"row {r}: {len(row)} values for {width} features; "
                        f"the value at position {width} has no feature",
                        r,
                        f"[{width}]",
                    )
                )
            for c, value in enumerate(row[:width]):
                columns[c][r] = _check_value(features[c], value, r, allow_missing, problems)
        else:
            problems.add(
                Problem(
                    "invalid_row",
                    f"row {r} must be an object keyed by feature or a list in schema order, "
                    f"got {describe(row)}",
                    r,
                    None,
                )
            )
    if problems.problems:
        raise Rejected(problems.problems)
    return [
        np.asarray(col, dtype=np.float64) if f.kind == NUMERIC else col
        for f, col in zip(features, columns, strict=True)
    ]
