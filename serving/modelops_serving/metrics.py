"""The runtime's own Prometheus series: feature distributions, predictions, feedback, rejections.

BentoML runs the service in worker processes with prometheus_client in multiprocess mode
(`PROMETHEUS_MULTIPROC_DIR` under `BENTOML_HOME`); every value below is an mmap-backed value in that
directory, and `/metrics` merges the files of all workers. The merge groups histogram buckets by
label set, so one family, `modelops_feature_value`, carries each feature's own reference bin edges
as its `le` bounds: each feature gets its own (unregistered) `Histogram` object with the same
family name and its own buckets.

A batch is recorded with one increment per touched bucket, not one `observe()` per value, which
keeps the cost per request nearly independent of the batch size: the numeric features of a
request are binned together, as one block (`FeatureBins`), and only the buckets a request touched
and each feature's sum are written. Every series is created at start with a zero value so that
`increase()` sees its first increment.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import math
from collections import Counter as Tally
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from prometheus_client import Counter, Histogram

from modelops_api import contract

from .schema import CATEGORICAL, Schema

log = logging.getLogger("bentoml.modelops")

OTHER = "__other__"
BASE_LABELS = ("model", "version", "track")
REJECT_REASONS = (
    "invalid_json",
    "invalid_body",
    "empty_batch",
    "batch_too_large",
    "invalid_row",
    "missing_feature",
    "extra_feature",
    "wrong_type",
    "missing_value",
    "unscorable",
    "unauthorized",
    "body_too_large",
    "invalid_tensor",
    "unsupported_datatype",
    "unknown_model",
)
REJECT_ENDPOINTS = ("predict", "feedback", "infer")
UNMATCHED_REASONS = ("forged", "expired", "unknown_row", "duplicate", "other_version")
ERROR_MULTIPLIERS = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
MAX_CATEGORIES = 100  # series per categorical feature when the reference names none
SMALL_BATCH = 16  # below this, bisect per value is cheaper than numpy's binning


def check_edges(edges: Any) -> list[float]:
    """Interior bin edges as floats; ValueError unless finite and strictly increasing."""
    if not isinstance(edges, list) or not edges:
        raise ValueError("edges must be a non-empty list")
    out = [float(e) for e in edges]
    if any(not math.isfinite(e) for e in out):
        raise ValueError("edges must be finite")
    if any(b <= a for a, b in itertools.pairwise(out)):
        raise ValueError("edges must be strictly increasing")
    return out


def bucket_counts(edges: Sequence[float], values: np.ndarray) -> np.ndarray:
    """Counts per right-closed bin (-inf, b1], (b1, b2], ..., (b(n-1), +inf) (length n)."""
    index = np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="left")
    return np.bincount(index, minlength=len(edges) + 1)


def error_edges(metrics: Any, prediction_edges: Sequence[float]) -> list[float]:
    """Bucket bounds of the absolute-error histogram, scaled by the holdout error.

    The scale is the holdout MAE (or RMSE) when training reported one, else the mean width of the
    prediction reference bins, else 1; bounds are the scale times 1/8, 1/4, ..., 8.
    """
    scale = 0.0
    if isinstance(metrics, dict):
        for key in ("mae", "mean_absolute_error", "rmse", "root_mean_squared_error"):
            value = metrics.get(key)
            if isinstance(value, (int, float)) and math.isfinite(value) and value > 0:
                scale = float(value)
                break
    if scale == 0.0 and len(prediction_edges) >= 2:
        scale = (prediction_edges[-1] - prediction_edges[0]) / (len(prediction_edges) - 1)
    if not scale > 0:
        scale = 1.0
    return [scale * m for m in ERROR_MULTIPLIERS]


def _finite(values: np.ndarray) -> np.ndarray:
    """The finite values (a NaN would poison a histogram's _sum for good)."""
    finite = np.isfinite(values)
    return values if finite.all() else values[finite]


class _Buckets:
    """One histogram series, written a batch at a time."""

    def __init__(self, name: str, doc: str, labels: dict[str, str], edges: list[float]) -> None:
        self.family = Histogram(name, doc, list(labels), buckets=edges, registry=None)
        self._child = self.family.labels(**labels)
        self.edges = edges
        self._cells = getattr(self._child, "_buckets", None)
        self._sum = getattr(self._child, "_sum", None)
        if self._cells is None or self._sum is None or len(self._cells) != len(edges) + 1:
            log.warning("prometheus_client internals changed; %s falls back to observe()", name)
            self._cells = None

    @property
    def writable(self) -> bool:
        """Whether its bucket values can be written directly (else only `observe()` works)."""
        return self._cells is not None and self._sum is not None

    def cells(self) -> list[Any]:
        assert self._cells is not None
        return list(self._cells)

    def sum_cell(self) -> Any:
        assert self._sum is not None
        return self._sum

    def record(self, values: np.ndarray) -> None:
        if values.size == 0:
            return
        if self._cells is None or self._sum is None:
            for v in values.tolist():
                self._child.observe(v)
            return
        if values.size <= SMALL_BATCH:
            for v in values.tolist():
                self._cells[bisect.bisect_left(self.edges, v)].inc(1)
        else:
            counts = bucket_counts(self.edges, values)
            for i in np.flatnonzero(counts).tolist():
                self._cells[i].inc(int(counts[i]))
        self._sum.inc(float(values.sum()))


class FeatureBins:
    """The histograms of all numeric features, written a request at a time.

    The features' columns come stacked, one row per feature. A batch is binned with one
    `searchsorted` per feature into one flat index over every feature's buckets and counted with
    one `bincount`; a few values are binned with `bisect`, cheaper than numpy's call overhead.
    Either way a request then costs one increment per touched bucket and one per feature's sum,
    whatever its row count.
    """

    def __init__(self, features: Sequence[_Buckets]) -> None:
        self.edges = [b.edges for b in features]
        self.arrays = [np.asarray(b.edges, dtype=np.float64) for b in features]
        # bucket k of feature j is cell offsets[j] + k of the flat count vector
        self.offsets = list(itertools.accumulate((len(e) + 1 for e in self.edges[:-1]), initial=0))
        self._column_offsets = np.asarray(self.offsets, dtype=np.intp)[:, None]
        self.cells = [cell for b in features for cell in b.cells()]
        self.sums = [b.sum_cell() for b in features]

    def record(self, block: np.ndarray, present: np.ndarray | None) -> None:
        """`block`: one row of values per feature; `present`: where they are not NaN (None: all)."""
        if block.shape[1] <= SMALL_BATCH:
            self._record_few(block.tolist(), None if present is None else present.tolist())
            return
        index = np.empty(block.shape, dtype=np.intp)
        for j, edges in enumerate(self.arrays):
            index[j] = np.searchsorted(edges, block[j], side="left")
        index += self._column_offsets
        if present is None:
            counts = np.bincount(index.ravel(), minlength=len(self.cells))
            sums = block.sum(axis=1).tolist()
            seen: list[bool] = [True] * len(self.sums)
        else:
            counts = np.bincount(index[present], minlength=len(self.cells))
            sums = np.where(present, block, 0.0).sum(axis=1).tolist()
            seen = [bool(b) for b in np.any(present, axis=1).tolist()]
        cells = self.cells
        for k in np.flatnonzero(counts).tolist():
            cells[k].inc(int(counts[k]))
        for cell, total, any_value in zip(self.sums, sums, seen, strict=True):
            if any_value:
                cell.inc(total)

    def _record_few(self, rows: list[list[float]], present: list[list[bool]] | None) -> None:
        touched: dict[int, int] = {}
        for j, values in enumerate(rows):
            if present is not None:
                values = list(itertools.compress(values, present[j]))
                if not values:
                    continue
            edges, offset = self.edges[j], self.offsets[j]
            for v in values:
                k = offset + bisect.bisect_left(edges, v)
                touched[k] = touched.get(k, 0) + 1
            self.sums[j].inc(math.fsum(values))
        cells = self.cells
        for k, n in touched.items():
            cells[k].inc(n)


class Recorder:
    """Records what one runtime sees; one instance per worker process."""

    enabled = True

    def __init__(
        self,
        *,
        model: str,
        version: str,
        track: str,
        task: str,
        schema: Schema,
        reference: Any,
        classes: Sequence[str],
        prediction: Any,
        metrics: Any,
    ) -> None:
        base = {"model": model, "version": version, "track": track}
        self.warnings: list[str] = []
        self.task = task
        reference = reference if isinstance(reference, dict) else {}
        self._numeric: list[tuple[int, str, _Buckets | None]] = []
        self._categorical: list[tuple[int, str, frozenset[str], Any]] = []
        missing = Counter(
            "modelops_feature_missing",
            "Missing (null or NaN) feature values that were let through, by feature",
            [*BASE_LABELS, "feature"],
            registry=None,
        )
        self._missing = {}
        categories_family = Counter(
            "modelops_feature_category",
            "Values of a categorical feature, by category (__other__ for unseen ones)",
            [*BASE_LABELS, "feature", "category"],
            registry=None,
        )
        for i, feature in enumerate(schema.features):
            self._missing[i] = missing.labels(**base, feature=feature.name)
            if feature.kind == CATEGORICAL:
                ref = reference.get(feature.name)
                # the reference's categories (training keeps the most frequent ones, the rest is
                # its "other"), so that the series match the reference one to one and stay few
                if isinstance(ref, dict) and isinstance(ref.get("categories"), dict):
                    known = {str(c) for c in ref["categories"]}
                else:
                    known = set(feature.categories[:MAX_CATEGORIES])
                children = {
                    c: categories_family.labels(**base, feature=feature.name, category=c)
                    for c in [*sorted(known), OTHER]
                }
                self._categorical.append((i, feature.name, frozenset(known), children))
                continue
            ref = reference.get(feature.name)
            try:
                given = ref.get(contract.REFERENCE_EDGES) if isinstance(ref, dict) else None
                edges = check_edges(given)
            except ValueError as exc:
                self.warnings.append(f"feature {feature.name!r}: no histogram, reference {exc}")
                self._numeric.append((i, feature.name, None))
                continue
            self._numeric.append(
                (
                    i,
                    feature.name,
                    _Buckets(
                        "modelops_feature_value",
                        "Values of a numeric feature, bucketed by its reference bin edges",
                        {**base, "feature": feature.name},
                        edges,
                    ),
                )
            )
        self._numeric_at = [i for i, _name, _buckets in self._numeric]
        binned = [(j, b) for j, (_i, _name, b) in enumerate(self._numeric) if b is not None]
        self._bins: FeatureBins | None = None
        self._binned: list[int] | None = None  # rows of the numeric block that have histograms
        if binned and all(b.writable for _, b in binned):
            self._bins = FeatureBins([b for _, b in binned])
            if len(binned) < len(self._numeric):
                self._binned = [j for j, _ in binned]
        self._classes: dict[str, Any] = {}
        self._prediction: _Buckets | None = None
        self._feedback_error: _Buckets | None = None
        if task == "classification":
            family = Counter(
                "modelops_prediction_class",
                "Predictions by predicted class",
                [*BASE_LABELS, "class"],
                registry=None,
            )
            self._classes = {c: family.labels(**base, **{"class": c}) for c in classes}
            self._class_family = family
            self._base = base
            outcomes = Counter(
                "modelops_feedback",
                "Ground-truth feedback on classifications, by outcome",
                [*BASE_LABELS, "outcome"],
                registry=None,
            )
            self._correct = outcomes.labels(**base, outcome="correct")
            self._incorrect = outcomes.labels(**base, outcome="incorrect")
        else:
            pred_ref = prediction if isinstance(prediction, dict) else {}
            pred_edges: list[float] = []
            try:
                pred_edges = check_edges(pred_ref.get(contract.REFERENCE_EDGES))
                self._prediction = _Buckets(
                    "modelops_prediction_value",
                    "Predicted values, bucketed by the reference bin edges of the predictions",
                    base,
                    pred_edges,
                )
            except ValueError as exc:
                self.warnings.append(f"prediction: no histogram, reference {exc}")
            self._feedback_error = _Buckets(
                "modelops_feedback_error",
                "Absolute error |prediction - truth| of regression feedback",
                base,
                error_edges(metrics, pred_edges),
            )
        unmatched = Counter(
            "modelops_feedback_unmatched",
            "Feedback that could not be scored, by reason",
            [*BASE_LABELS, "reason"],
            registry=None,
        )
        self._unmatched = {r: unmatched.labels(**base, reason=r) for r in UNMATCHED_REASONS}
        rejected = Counter(
            "modelops_rejected",
            "Requests refused with a 4xx, by endpoint and reason",
            [*BASE_LABELS, "endpoint", "reason"],
            registry=None,
        )
        self._rejected = {
            (e, r): rejected.labels(**base, endpoint=e, reason=r)
            for e in REJECT_ENDPOINTS
            for r in REJECT_REASONS
        }
        for warning in self.warnings:
            log.warning("monitoring: %s", warning)

    def record_inputs(self, columns: Sequence[Any]) -> None:
        if self._numeric_at:
            self._record_numeric(np.stack([columns[i] for i in self._numeric_at]))
        for i, _name, known, children in self._categorical:
            tally = Tally(columns[i])
            n_missing = tally.pop(None, 0)
            if n_missing:
                self._missing[i].inc(n_missing)
            other = 0
            for value, n in tally.items():
                if value in known:
                    children[value].inc(n)
                else:
                    other += n
            if other:
                children[OTHER].inc(other)

    def _record_numeric(self, block: np.ndarray) -> None:
        """`block`: the numeric features' columns, one row per feature (`self._numeric` order)."""
        nan = np.isnan(block)
        present = None
        if nan.any():
            present = ~nan
            for j, n in enumerate(nan.sum(axis=1).tolist()):
                if n:
                    self._missing[self._numeric_at[j]].inc(n)
        if self._bins is not None:
            if self._binned is None:
                self._bins.record(block, present)
            else:
                rows = self._binned
                self._bins.record(block[rows], None if present is None else present[rows])
            return
        for j, (_i, _name, buckets) in enumerate(self._numeric):  # prometheus_client's observe()
            if buckets is not None:
                buckets.record(block[j] if present is None else block[j][present[j]])

    def record_predictions(self, predictions: Iterable[Any]) -> None:
        if self._prediction is not None:
            self._prediction.record(_finite(np.asarray(predictions, dtype=np.float64)))
            return
        for label, n in Tally(str(p) for p in predictions).items():
            child = self._classes.get(label)
            if child is None:
                child = self._class_family.labels(**self._base, **{"class": label})
                self._classes[label] = child
            child.inc(n)

    def record_outcomes(self, correct: int, incorrect: int, errors: Sequence[float]) -> None:
        if self.task == "classification":
            if correct:
                self._correct.inc(correct)
            if incorrect:
                self._incorrect.inc(incorrect)
        elif self._feedback_error is not None and errors:
            self._feedback_error.record(_finite(np.abs(np.asarray(errors, dtype=np.float64))))

    def record_unmatched(self, reason: str, n: int = 1) -> None:
        self._unmatched[reason].inc(n)

    def record_rejected(self, endpoint: str, reason: str) -> None:
        child = self._rejected.get((endpoint, reason))
        if child is not None:
            child.inc()


class Silent:
    """The recorder used when MODELOPS_MONITORING=off: records nothing."""

    enabled = False
    warnings: list[str] = []  # noqa: RUF012 - read-only

    def record_inputs(self, columns: Sequence[Any]) -> None:
        pass

    def record_predictions(self, predictions: Iterable[Any]) -> None:
        pass

    def record_outcomes(self, correct: int, incorrect: int, errors: Sequence[float]) -> None:
        pass

    def record_unmatched(self, reason: str, n: int = 1) -> None:
        pass

    def record_rejected(self, endpoint: str, reason: str) -> None:
        pass
