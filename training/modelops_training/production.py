"""The Model's labelled production rows, for `spec.training.dataset.production`.

Serving records what it was asked to predict and the ground truth /feedback sent for it
(modelops_serving.recording) in the Model's production folder, beside its archives:
`<--artifacts>/<model>/production/{inputs,labels}/<YYYY-MM-DD>/*.parquet`. This module reads the
days of the window, keeps the rows recorded within it, and joins inputs with labels on
(prediction id, row): the first label of a row counts, a row without a label is never a training
target. The result has the dataset's feature columns and its target, ready to be appended to the
dataset's own rows.

Every failure is a TrainingError whose message names the folder (never a credential): a store that
cannot be reached or refuses, a window with fewer labelled rows than `minRows`, batches that lack
a feature the dataset has (the Model's inputs changed, or the folder is another Model's).
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelops_api import contract
from modelops_api.spec import ProductionSpec

from . import storage
from .result import TrainingError

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("modelops.training")


@dataclass(frozen=True)
class ProductionRows:
    """The labelled rows (features and target) and what was found besides."""

    frame: pd.DataFrame
    unlabelled: int  # recorded rows in the window that no feedback labelled
    batches: int  # Parquet files read


def folder(artifacts: str, model: str) -> str:
    """The Model's production folder, for the training's `--artifacts` directory."""
    return contract.production_uri(f"{artifacts.rstrip('/')}/{model}")


def window_days(now: float, window: float) -> list[str]:
    """The UTC day folders that can hold rows recorded in [now - window, now]."""
    first = datetime.datetime.fromtimestamp(now - window, datetime.UTC).date()
    last = datetime.datetime.fromtimestamp(now, datetime.UTC).date()
    days = []
    while first <= last:
        days.append(first.isoformat())
        first += datetime.timedelta(days=1)
    return days


def load(
    where: str,
    spec: ProductionSpec,
    features: Sequence[str],
    target: str,
    now: float,
) -> ProductionRows:
    """The labelled production rows of the window under `where` (file:// or s3://)."""
    import pandas as pd

    since = now - spec.window_seconds
    inputs, read_inputs = _read(where, contract.PRODUCTION_INPUTS, now, spec.window_seconds)
    labels, read_labels = _read(where, contract.PRODUCTION_LABELS, now, spec.window_seconds)
    if inputs is not None:
        missing = [f for f in features if f not in inputs.columns]
        if missing:
            raise TrainingError(
                "ProductionSchemaMismatch",
                f"the production rows under {where} have no column {missing[0]!r} of the "
                f"dataset's features ({len(missing)} missing); they were recorded for other "
                "inputs",
            )
        inputs = inputs[inputs[contract.PRODUCTION_TIME] >= since]
    if labels is not None:
        labels = labels[labels[contract.PRODUCTION_TIME] >= since]
    keys = [contract.PRODUCTION_ID, contract.PRODUCTION_ROW]
    if inputs is None or labels is None or inputs.empty or labels.empty:
        joined = pd.DataFrame(columns=[*features, target])
    else:
        first_labels = labels.drop_duplicates(keys, keep="first")
        first_labels = first_labels[[*keys, contract.PRODUCTION_TRUTH]]
        recorded = inputs.drop_duplicates(keys, keep="first")
        joined = recorded.merge(first_labels, on=keys, how="inner")
        joined = joined[[*features, contract.PRODUCTION_TRUTH]].rename(
            columns={contract.PRODUCTION_TRUTH: target}
        )
    rows_in_window = 0 if inputs is None else len(inputs.drop_duplicates(keys))
    if len(joined) < spec.min_rows:
        raise TrainingError(
            "NotEnoughProductionData",
            f"{len(joined)} labelled production rows under {where} in the last {spec.window} "
            f"({rows_in_window} recorded), fewer than dataset.production.minRows "
            f"{spec.min_rows}; send feedback for more predictions, widen the window, or lower "
            "minRows",
        )
    log.info(
        "production data: %d labelled rows of %d recorded in the last %s (%d batches)",
        len(joined),
        rows_in_window,
        spec.window,
        read_inputs + read_labels,
    )
    return ProductionRows(
        frame=joined.reset_index(drop=True),
        unlabelled=rows_in_window - len(joined),
        batches=read_inputs + read_labels,
    )


def _read(where: str, kind: str, now: float, window: float) -> tuple[pd.DataFrame | None, int]:
    """Every batch of `kind` in the window's day folders, concatenated; (None, 0) without any."""
    import pandas as pd

    filesystem, root = _filesystem(where)
    paths: list[str] = []
    for day in window_days(now, window):
        folder_path = f"{root}/{kind}/{day}"
        try:
            listed = filesystem.ls(folder_path, detail=False)
        except FileNotFoundError:
            continue
        except Exception as error:
            _fail(error, where, "listing")
        paths += sorted(p for p in listed if str(p).endswith(".parquet"))
    frames: list[Any] = []
    for path in paths:
        try:
            with filesystem.open(path, "rb") as stream:
                frames.append(pd.read_parquet(stream))
        except FileNotFoundError:
            continue  # expired by serving meanwhile
        except Exception as error:
            _fail(error, where, f"reading {path} of")
    if not frames:
        return None, 0
    return pd.concat(frames, ignore_index=True), len(frames)


def _filesystem(where: str) -> tuple[Any, str]:
    if where.startswith("s3://"):
        return storage.filesystem(), where.removeprefix("s3://").rstrip("/")
    if where.startswith("file://"):
        import fsspec

        return fsspec.filesystem("file"), where.removeprefix("file://").rstrip("/")
    raise TrainingError("InvalidArguments", f"production data under {where!r}: not file:// or s3://")


def _fail(error: BaseException, where: str, doing: str) -> None:
    if where.startswith("s3://"):
        storage.raise_for(
            error,
            where,
            missing="DataNotFound",
            missing_message=f"{doing} the production data {where}: not found",
            doing=doing,
        )
    raise TrainingError(
        "UnreadableData", f"{doing} the production data {where}: {storage.describe(error)}"
    ) from None
