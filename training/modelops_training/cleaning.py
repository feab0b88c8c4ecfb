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
    fingerprint: str = ""  # fingerprint(frame), from the row hashes cleaning computed anyway

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


def _numbers(column: pd.Series) -> tuple[np.ndarray, np.ndarray | None]:
    """`to_numbers` as an array, and where a present value did not parse (None: nowhere).

    A column of NumPy numbers is not copied when every value is finite already (the common case
    at a million rows); anything else goes through `to_numbers`.
    """
    dtype = column.dtype
    if isinstance(dtype, np.dtype) and dtype == np.float64:
        values = column.to_numpy()
        finite = np.isfinite(values)
        if finite.all():
            return values, None
        return np.where(finite, values, np.nan), ~finite & ~np.isnan(values)
    if isinstance(dtype, np.dtype) and dtype.kind in "iuf":
        return column.to_numpy(dtype=float), None
    numbers = to_numbers(column).to_numpy(dtype=float)
    return numbers, np.isnan(numbers) & column.notna().to_numpy()


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
    """The cleaned rows, each column coerced once and the rows selected once at the end: no copy
    of a column that needs no coercion, and duplicates found by hashing (see `_duplicated`)."""
    raw_rows = len(raw)
    if raw_rows == 0:
        raise TrainingError("EmptyData", "the data has no rows")
    names = schema.names
    columns: dict[str, pd.Series | np.ndarray] = {}
    missing = np.empty((raw_rows, len(names)), dtype=bool)  # per feature, before any row is dropped
    unparseable = np.zeros(raw_rows, dtype=bool)
    categorical = set(schema.categorical)
    for index, name in enumerate(names):
        if name in categorical:
            text = to_text(raw[name])
            columns[name] = text
            missing[:, index] = text.isna().to_numpy()
        else:
            numbers, bad = _numbers(raw[name])
            if bad is not None:
                unparseable |= bad
            columns[name] = numbers
            missing[:, index] = np.isnan(numbers)

    target = raw[schema.target]
    if target.dtype.kind in "iufb":  # numbers are never blank text
        no_target = target.isna().to_numpy()
    else:
        no_target = (target.isna() | target.astype(str).str.strip().eq("")).to_numpy()
    target_values: pd.Series | np.ndarray = target
    if schema.task == "regression":
        numbers, bad = _numbers(target)
        if bad is not None:
            unparseable |= bad & ~no_target
        target_values = numbers

    result = Cleaned(frame=pd.DataFrame(), raw_rows=raw_rows)
    result.dropped["missing_target"] = int(no_target.sum())
    result.dropped["unparseable"] = int((unparseable & ~no_target).sum())
    keep = ~no_target & ~unparseable
    if not keep.any():
        raise TrainingError(
            "EmptyData",
            f"no rows left after cleaning: {result.dropped['missing_target']} without a target, "
            f"{result.dropped['unparseable']} unparseable, of {result.raw_rows}",
        )
    every_row = bool(keep.all())
    if not every_row:
        missing = missing[keep]
    empty = missing.all(axis=0)
    if empty.any():
        name = names[int(np.argmax(empty))]
        raise TrainingError("EmptyFeature", f"the feature column {name!r} has no value")

    kept = None if every_row else np.flatnonzero(keep)
    series = {name: _rows(column, kept) for name, column in columns.items()}
    labels = _rows(target_values, kept)
    if schema.task == "classification":
        labels = normalise_labels(labels)
    frame = pd.DataFrame({**series, schema.target: labels}, columns=[*names, schema.target])

    hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    rows = np.ones(len(frame), dtype=bool)  # the rows kept from here on
    if spec.drop_duplicates:
        before = len(frame)
        rows = ~_duplicated(frame, hashes)
        result.dropped["duplicate"] = before - int(rows.sum())
        if before > 1 and int(rows.sum()) == 1:
            raise TrainingError(
                "AllDuplicates", f"all {before} rows are copies of one row; nothing to learn from"
            )

    if spec.missing == "drop":
        incomplete = missing.any(axis=1) & rows
        result.dropped["missing_feature"] = int(incomplete.sum())
        rows &= ~incomplete
        if not rows.any():
            raise TrainingError(
                "EmptyData", "no rows left after dropping rows with missing feature values"
            )
    else:
        counts = missing[rows].sum(axis=0)
        result.missing_values = {n: int(c) for n, c in zip(names, counts, strict=True) if c}

    if not rows.all():
        frame = frame[rows]
        hashes = hashes[rows]
    result.frame = frame.reset_index(drop=True)
    result.fingerprint = _digest(frame, hashes)
    return result


def _rows(column: pd.Series | np.ndarray, kept: np.ndarray | None) -> pd.Series:
    """The column's kept rows (all when `kept` is None) as a Series with a fresh index; a Series
    keeps its dtype (text stays object)."""
    if isinstance(column, pd.Series):
        values = column.to_numpy() if kept is None else column.to_numpy()[kept]
        return pd.Series(values, dtype=column.dtype, copy=False)
    return pd.Series(column if kept is None else column[kept], copy=False)


def _duplicated(frame: pd.DataFrame, hashes: np.ndarray) -> np.ndarray:
    """`frame.duplicated()` (every later copy of a row), from the rows' 64-bit hashes: only rows
    whose hash is shared are compared, by pandas itself, so a hash collision drops nothing.

    Comparing every row (pandas factorises each column of the whole frame) took 3 s of a 1M-row
    run. Equal rows hash equally: text by value, missing values alike, and cleaning leaves one
    NaN; only -0.0 (equal to 0.0 but hashed apart) sends the frame to pandas whole.
    """
    for name in frame.columns:
        values = frame[name].to_numpy()
        if values.dtype.kind == "f" and np.signbit(values[values == 0]).any():
            return np.asarray(frame.duplicated().to_numpy(), dtype=bool)
    shared = pd.Series(hashes).duplicated(keep=False).to_numpy()
    duplicated = np.zeros(len(frame), dtype=bool)
    if shared.any():
        duplicated[shared] = frame[shared].duplicated().to_numpy()
    return duplicated


def fingerprint(frame: pd.DataFrame) -> str:
    """`sha256:` of the cleaned data: column names, dtypes and every value, in row order."""
    return _digest(frame, pd.util.hash_pandas_object(frame, index=False).to_numpy())


def _digest(frame: pd.DataFrame, hashes: np.ndarray) -> str:
    digest = hashlib.sha256()
    digest.update("\x1f".join(f"{c}:{frame[c].dtype}" for c in frame.columns).encode())
    digest.update(hashes.tobytes())
    return "sha256:" + digest.hexdigest()
