"""Cleaning: from the raw table to the rows the model is fitted and evaluated on, counting every
dropped row by reason.

In order: keep the schema's columns; coerce numeric features (and a regression target) to numbers,
treating text that does not parse and infinities as unparseable; drop rows without a target; drop
unparseable rows; drop duplicate rows (if enabled); with `missing: drop`, drop rows with a missing
feature value (otherwise the Pipeline imputes them, so serving imputes the same way). Categorical
values become text. A row is counted under the first reason that drops it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from modelops_api.spec import CleaningSpec

from .columns import Schema
from .result import TrainingError

DROP_REASONS = ("missing_target", "unparseable", "duplicate", "missing_feature")


@dataclass
class Cleaned:
    frame: pd.DataFrame
    raw_rows: int
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))
    missing_values: dict[str, int] = field(default_factory=dict)  # left for the imputer

    @property
    def rows(self) -> int:
        return len(self.frame)


def to_numbers(column: pd.Series) -> pd.Series:
    """Numbers from a column of numbers or numeric text; anything else (and ±inf) becomes NaN."""
    if pd.api.types.is_bool_dtype(column.dtype):
        return column.astype(float)
    if pd.api.types.is_numeric_dtype(column.dtype):
        numbers = column.astype(float)
    else:
        text = column.astype(object).where(column.notna(), None)
        numbers = pd.to_numeric(
            pd.Series([None if v is None else str(v).strip() for v in text], index=column.index),
            errors="coerce",
        ).astype(float)
    return numbers.where(np.isfinite(numbers), np.nan)


def to_text(column: pd.Series) -> pd.Series:
    """Categorical values as text; missing stays missing. Integral floats lose their '.0'."""

    def one(value: object) -> object:
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return np.nan
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value).strip()

    return pd.Series([one(v) for v in column.astype(object)], index=column.index, dtype=object)


def normalise_labels(target: pd.Series) -> pd.Series:
    """Classification labels: whole numbers as int, everything else as text."""
    present = target.dropna()
    if pd.api.types.is_numeric_dtype(target.dtype) and not pd.api.types.is_bool_dtype(target.dtype):
        values = present.astype(float)
        if np.all(np.isfinite(values)) and np.all(values == np.round(values)):
            return present.astype(np.int64)
    return to_text(present)


def clean(raw: pd.DataFrame, schema: Schema, spec: CleaningSpec) -> Cleaned:
    frame = raw[[*schema.names, schema.target]].copy()
    result = Cleaned(frame=frame, raw_rows=len(frame))
    if result.raw_rows == 0:
        raise TrainingError("EmptyData", "the data has no rows")

    unparseable = pd.Series(False, index=frame.index)
    for name in schema.numeric:
        numbers = to_numbers(frame[name])
        unparseable |= numbers.isna() & frame[name].notna()
        frame[name] = numbers
    for name in schema.categorical:
        frame[name] = to_text(frame[name])

    target = frame[schema.target]
    no_target = target.isna() | target.astype(str).str.strip().eq("")
    if schema.task == "regression":
        numbers = to_numbers(target)
        unparseable |= numbers.isna() & ~no_target
        frame[schema.target] = numbers

    result.dropped["missing_target"] = int(no_target.sum())
    result.dropped["unparseable"] = int((unparseable & ~no_target).sum())
    frame = frame[~no_target & ~unparseable]
    if frame.empty:
        raise TrainingError(
            "EmptyData",
            f"no rows left after cleaning: {result.dropped['missing_target']} without a target, "
            f"{result.dropped['unparseable']} unparseable, of {result.raw_rows}",
        )
    for name in schema.names:
        if frame[name].isna().all():
            raise TrainingError("EmptyFeature", f"the feature column {name!r} has no value")
    if schema.task == "classification":
        frame[schema.target] = normalise_labels(frame[schema.target])

    if spec.drop_duplicates:
        before = len(frame)
        frame = frame.drop_duplicates()
        result.dropped["duplicate"] = before - len(frame)
        if before > 1 and len(frame) == 1:
            raise TrainingError(
                "AllDuplicates", f"all {before} rows are copies of one row; nothing to learn from"
            )

    missing = frame[schema.names].isna()
    if spec.missing == "drop":
        incomplete = missing.any(axis=1)
        result.dropped["missing_feature"] = int(incomplete.sum())
        frame = frame[~incomplete]
        if frame.empty:
            raise TrainingError(
                "EmptyData", "no rows left after dropping rows with missing feature values"
            )
    else:
        result.missing_values = {n: int(c) for n, c in missing.sum().items() if c}

    result.frame = frame.reset_index(drop=True)
    return result


def fingerprint(frame: pd.DataFrame) -> str:
    """`sha256:` of the cleaned data: column names, dtypes and every value, in row order."""
    digest = hashlib.sha256()
    digest.update("\x1f".join(f"{c}:{frame[c].dtype}" for c in frame.columns).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return "sha256:" + digest.hexdigest()
