"""The schema of the training data: the target, the features in order, each feature's type
(numeric or categorical), and the task (classification or regression).

Features are declared (`dataset.features`) or every column but the target. Categorical columns are
declared (`dataset.categorical`; then every other feature is numeric) or inferred: a column is
numeric when its dtype is numeric or when at least NUMERIC_SHARE of its values parse as numbers;
otherwise categorical. The task is declared (`dataset.task`) or the estimator's kind, and the two
must agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from .result import TrainingError

if TYPE_CHECKING:  # serving imports this module (through features); the spec classes cost ~0.1 s
    from modelops_api.spec import DatasetSpec, Task

NUMERIC = "numeric"
CATEGORICAL = "categorical"
# An object column is numeric when at least this share of its present values parse as numbers; the
# rest are then unparseable, and cleaning drops their rows.
NUMERIC_SHARE = 0.9


@dataclass(frozen=True)
class Feature:
    name: str
    type: str  # NUMERIC | CATEGORICAL


@dataclass(frozen=True)
class Schema:
    target: str
    features: tuple[Feature, ...]
    task: Task

    @property
    def names(self) -> list[str]:
        return [feature.name for feature in self.features]

    @property
    def numeric(self) -> list[str]:
        return [f.name for f in self.features if f.type == NUMERIC]

    @property
    def categorical(self) -> list[str]:
        return [f.name for f in self.features if f.type == CATEGORICAL]


def resolve(frame: pd.DataFrame, dataset: DatasetSpec, estimator_task: Task) -> Schema:
    """The schema of `frame` under the spec; raises TrainingError for what cannot be trained on."""
    columns = [str(column) for column in frame.columns]
    if len(set(columns)) != len(columns):
        duplicate = next(c for c in columns if columns.count(c) > 1)
        raise TrainingError("UnparseableData", f"the data has the column {duplicate!r} twice")
    frame.columns = pd.Index(columns)
    if len(frame) == 0:
        raise TrainingError("EmptyData", "the data has no rows")
    if dataset.target not in columns:
        raise TrainingError(
            "MissingTarget",
            f"the target column {dataset.target!r} is not in the data (columns: "
            f"{_listing(columns)})",
        )
    if dataset.task and dataset.task != estimator_task:
        raise TrainingError(
            "TaskMismatch",
            f"spec.training.dataset.task is {dataset.task} but the estimator is a "
            f"{'classifier' if estimator_task == 'classification' else 'regressor'}",
        )
    if dataset.features is not None:
        for name in dataset.features:
            if name not in columns:
                raise TrainingError(
                    "MissingFeature",
                    f"the feature column {name!r} is not in the data "
                    f"(columns: {_listing(columns)})",
                )
        names = list(dataset.features)
    else:
        names = [c for c in columns if c != dataset.target]
    if not names:
        raise TrainingError(
            "NoFeatures", f"the data has no column besides the target {dataset.target!r}"
        )
    if dataset.categorical is not None:
        for name in dataset.categorical:
            if name not in names:
                raise TrainingError(
                    "MissingFeature", f"the categorical column {name!r} is not in the data"
                )
        declared = set(dataset.categorical)
        features = tuple(Feature(n, CATEGORICAL if n in declared else NUMERIC) for n in names)
    else:
        features = tuple(Feature(n, infer_type(frame[n])) for n in names)
    return Schema(target=dataset.target, features=features, task=estimator_task)


def infer_type(column: pd.Series) -> str:
    """NUMERIC or CATEGORICAL, from the column's dtype or, for text, from how much of it parses."""
    if pd.api.types.is_bool_dtype(column.dtype) or pd.api.types.is_numeric_dtype(column.dtype):
        return NUMERIC
    present = column.dropna()
    if present.empty:
        return NUMERIC  # no value at all: cleaning reports the column as empty
    parsed = pd.to_numeric(present.astype(str).str.strip(), errors="coerce")
    return NUMERIC if parsed.notna().mean() >= NUMERIC_SHARE else CATEGORICAL


# "Column names" that are rather a line of data (a file without a header row, or not in the
# declared format, such as JSON read as CSV): a status message never shows data.
NAME_LIMIT = 64
NOT_IN_NAMES = set('{}[]"')
DELIMITERS = set(",;\t|")


def _looks_like_data(columns: list[str]) -> bool:
    if len(columns) == 1 and DELIMITERS & set(columns[0]):
        return True
    return any(
        len(c) > NAME_LIMIT or not c.isprintable() or NOT_IN_NAMES & set(c) or _number(c)
        for c in columns
    )


def _number(text: str) -> bool:
    """A number as a column name: the first row of a file without a header."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def _listing(columns: list[str], limit: int = 20) -> str:
    """The column names for a message, unless they look like data rather than names."""
    if _looks_like_data(columns):
        return (
            f"{len(columns)} column(s) whose names look like data, not shown: is the file in "
            "the declared format, with a header row?"
        )
    shown = ", ".join(repr(c) for c in columns[:limit])
    return shown + (f", … ({len(columns)} in all)" if len(columns) > limit else "")
