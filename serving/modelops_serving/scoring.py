"""Scoring validated rows with the model's fitted pipeline: the same estimators, no pandas.

A model trained by `modelops train` is a scikit-learn Pipeline of a known shape
(modelops_training.features.build_pipeline): a ColumnCoercer, a ColumnTransformer that sends named
columns to fitted sub-pipelines (impute, scale, one-hot), an optional selector, the estimator.
Called with a small DataFrame, scikit-learn spends milliseconds per step on pandas indexing, input
validation and output wrapping, while the arithmetic takes microseconds: that was most of the time
of a one-row `/predict` (docs/benchmarks.md, "Serving against its peers").

`Scorer` feeds each fitted sub-pipeline a NumPy block of its columns, stacks their outputs as the
ColumnTransformer would, and runs the remaining steps on the array. The fitted objects and their
arithmetic are scikit-learn's own; only the dispatch around them is skipped. The columns come from
`schema.validate_rows`, which already normalises them as the ColumnCoercer would (numbers as
floats, categories as stripped text, missing as NaN/None). When the model loads, the plan is
checked against the Pipeline itself on probe rows; a pipeline of any other shape, or any
difference, and every request goes through the Pipeline as it is.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline

from modelops_training.features import ColumnCoercer, category_text

from .schema import CATEGORICAL, Schema

log = logging.getLogger("bentoml.modelops")
Columns = Sequence[Any]  # one per feature, in schema order (see schema.validate_rows)


def frame(schema: Schema, columns: Columns) -> pd.DataFrame:
    names = schema.names
    return pd.DataFrame(dict(zip(names, columns, strict=True)), columns=names)


def _without_feature_names(transformer: Any) -> Any:
    """A copy of a fitted transformer that takes arrays: fitted on a DataFrame slice, it would
    warn about every array that has no column names."""
    clone = copy.deepcopy(transformer)
    steps = [step for _, step in clone.steps] if hasattr(clone, "steps") else [clone]
    for step in steps:
        if "feature_names_in_" in getattr(step, "__dict__", {}):
            del step.feature_names_in_
    return clone


@dataclass(frozen=True)
class _Block:
    """One sub-pipeline of the ColumnTransformer and the feature positions it reads."""

    transformer: Any  # "passthrough" or a fitted transformer taking arrays
    positions: tuple[int, ...]
    numeric: bool


class Scorer:
    """Predictions (and class probabilities) for validated columns."""

    def __init__(self, schema: Schema, pipeline: Any, task: str) -> None:
        self.schema, self.pipeline, self.task = schema, pipeline, task
        self.wants_proba = task == "classification" and hasattr(pipeline, "predict_proba")
        self.fast = False
        self._blocks: list[_Block] = []
        self._rest: list[Any] = []
        self._estimator: Any = None
        try:
            self._compile()
        except _Unsupported as why:
            log.info("scoring through the Pipeline itself: %s", why)
            return
        mismatch = self._check()
        if mismatch:
            log.warning("scoring through the Pipeline itself: %s", mismatch)
            return
        self.fast = True

    def rows_within(
        self, seconds: float, limit: int = 256, trials: int = 25, budget: float = 0.5
    ) -> int:
        """How many rows this model scores within `seconds`, from timing it on probe rows (one
        row, then a full probe batch): 0 when one row takes longer.

        Both are timed alternately, up to `trials` times (at least 3, within about `budget`
        seconds), and the fastest of each counts: other work on the machine only ever adds time,
        and a busy node at start must not send every request of this worker to a thread.
        """
        columns = probe_columns(self.schema, missing=False)
        batch = len(columns[0])
        single = [c[:1] for c in columns]
        one = many = math.inf
        begun = time.perf_counter()
        try:
            for trial in range(trials):
                started = time.perf_counter()
                self.score(single)
                middle = time.perf_counter()
                self.score(columns)
                ended = time.perf_counter()
                one, many = min(one, middle - started), min(many, ended - middle)
                if trial >= 2 and ended - begun > budget:
                    break
        except Exception:
            return 0
        if one > seconds:
            return 0
        per_row = max(many - one, 0.0) / (batch - 1)
        return limit if per_row == 0 else min(limit, 1 + int((seconds - one) / per_row))

    def score(self, columns: Columns) -> tuple[np.ndarray, np.ndarray | None]:
        if self.fast:
            return self._score_fast(columns)
        return self._score_pipeline(frame(self.schema, columns))

    # -- the Pipeline as it is --------------------------------------------------------------

    def _score_pipeline(self, data: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
        pipeline = self.pipeline
        steps = getattr(pipeline, "steps", None)
        if self.wants_proba and steps and len(steps) > 1:
            # what Pipeline.predict and .predict_proba do, with the transforms run once for both
            estimator = steps[-1][1]
            transformed = pipeline[:-1].transform(data)
            return (
                np.asarray(estimator.predict(transformed)),
                np.asarray(estimator.predict_proba(transformed)),
            )
        predictions = np.asarray(pipeline.predict(data))
        probabilities = np.asarray(pipeline.predict_proba(data)) if self.wants_proba else None
        return predictions, probabilities

    # -- the plan --------------------------------------------------------------------------

    def _compile(self) -> None:
        pipeline = self.pipeline
        if not isinstance(pipeline, Pipeline) or len(pipeline.steps) < 3:
            raise _Unsupported("not a Pipeline of modelops_training's shape")
        (_, coercer), (_, columns) = pipeline.steps[0], pipeline.steps[1]
        if not isinstance(coercer, ColumnCoercer) or not isinstance(columns, ColumnTransformer):
            raise _Unsupported("its first steps are not a ColumnCoercer and a ColumnTransformer")
        if columns.remainder != "drop" or columns.sparse_threshold != 0.0:
            raise _Unsupported("its ColumnTransformer keeps other columns or sparse output")
        position = {name: i for i, name in enumerate(self.schema.names)}
        kinds = {f.name: f.kind for f in self.schema.features}
        for _, transformer, names in columns.transformers_:
            if isinstance(transformer, str) and transformer == "drop":
                continue
            if isinstance(names, str) or not all(n in position for n in names):
                raise _Unsupported("its ColumnTransformer selects columns by other than name")
            if not names:
                continue
            numeric = all(kinds[n] != CATEGORICAL for n in names)
            fitted = (
                transformer if transformer == "passthrough" else _without_feature_names(transformer)
            )
            self._blocks.append(_Block(fitted, tuple(position[n] for n in names), numeric))
        if not self._blocks:
            raise _Unsupported("its ColumnTransformer uses no column")
        self._rest = [step for _, step in pipeline.steps[2:-1]]
        self._estimator = pipeline.steps[-1][1]

    def _score_fast(self, columns: Columns) -> tuple[np.ndarray, np.ndarray | None]:
        parts = []
        for block in self._blocks:
            if block.numeric:
                data = np.column_stack(
                    [np.asarray(columns[p], dtype=float) for p in block.positions]
                )
                data[~np.isfinite(data)] = np.nan
            else:
                data = np.empty((len(columns[block.positions[0]]), len(block.positions)), object)
                for j, p in enumerate(block.positions):
                    data[:, j] = [category_text(v) for v in columns[p]]
            out = data if block.transformer == "passthrough" else block.transformer.transform(data)
            parts.append(np.asarray(out, dtype=float))
        features = np.hstack(parts) if len(parts) > 1 else parts[0]
        for step in self._rest:
            features = step.transform(features)
        predictions = np.asarray(self._estimator.predict(features))
        probabilities = (
            np.asarray(self._estimator.predict_proba(features)) if self.wants_proba else None
        )
        return predictions, probabilities

    def _check(self) -> str:
        """'' when the plan answers exactly as the Pipeline on probe rows, else what differs.
        Rows with missing values are probed only if the Pipeline itself takes them."""
        for missing in (False, True):
            columns = probe_columns(self.schema, missing)
            try:
                slow = self._score_pipeline(frame(self.schema, columns))
            except Exception:
                if missing:
                    continue  # a model without an imputer: requests with gaps are refused anyway
                raise
            try:
                fast = self._score_fast(columns)
            except Exception as error:
                return f"the plan failed on probe rows: {error}"
            if not np.array_equal(fast[0], slow[0]):
                return "the plan's predictions differ from the Pipeline's on probe rows"
            if (fast[1] is None) != (slow[1] is None) or (
                fast[1] is not None
                and slow[1] is not None
                and not np.allclose(fast[1], slow[1], rtol=1e-12, atol=1e-12)
            ):
                return "the plan's probabilities differ from the Pipeline's on probe rows"
        return ""


class _Unsupported(Exception):
    """The pipeline is not of the shape the plan knows."""


NUMBERS = (0.0, 1.0, -1.0, 2.5, 1e3, -1e-3, 7.0)


def probe_columns(schema: Schema, missing: bool) -> list[Any]:
    """Rows that exercise every path: ordinary and extreme numbers, each known category and one
    the model never saw; with `missing`, the last row misses every value."""
    columns: list[Any] = []
    for f in schema.features:
        if f.kind == CATEGORICAL:
            known = list(f.categories) or ["a"]
            values: list[Any] = [known[i % len(known)] for i in range(len(NUMBERS) - 1)]
            columns.append([*values, None if missing else "never-seen-category"])
        else:
            numbers = [*NUMBERS[:-1], math.nan if missing else NUMBERS[-1]]
            columns.append(np.array(numbers, dtype=float))
    return columns
