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
and each feature's sum are counted. Every series is created at start with a zero value so that
`increase()` sees its first increment.

A request does not write its increments to the files itself: each write to an mmap-backed value
takes prometheus_client's lock, and a 100-row request touches some forty buckets. A request adds
its increments to the worker's pending ones (`WriteBehind`), and a thread writes them at most
`MODELOPS_METRICS_FLUSH_SECONDS` (1 s) after the first one, each value once whatever the number of
requests since. A scrape of `/metrics` answered by this worker writes its pending increments
first (middleware.py); another worker's last second of traffic shows in the next scrape, and a
worker that is killed loses at most its last second of counts. With 0, each request writes its
own increments, as prometheus_client's `inc()` and `observe()` would.
"""

from __future__ import annotations

import atexit
import bisect
import itertools
import logging
import math
import threading
import time
from collections import Counter as Tally
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from prometheus_client import Counter, Histogram

from modelops_api import contract

from .schema import CATEGORICAL, Schema

log = logging.getLogger("bentoml.modelops")

Increments = list[tuple[Any, float]]  # (prometheus_client value, amount to add)

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


class WriteBehind:
    """The increments of this worker's values not written yet, and the thread that writes them
    `delay` seconds after the first (0: no thread, `add` writes at once)."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self._pending: dict[Any, float] = {}
        self._lock = threading.Lock()
        self._due = threading.Event()
        self._thread = threading.Thread(target=self._run, name="modelops-metrics", daemon=True)

    def start(self) -> WriteBehind:
        if self.delay > 0:
            self._thread.start()
            atexit.register(self.flush)  # a worker that stops writes what it counted
        return self

    def add(self, increments: Increments) -> None:
        """Counts `increments`; they are written within `delay` seconds."""
        if not increments:
            return
        if self.delay <= 0:
            for value, amount in increments:
                value.inc(amount)
            return
        with self._lock:
            pending = self._pending
            for value, amount in increments:
                pending[value] = pending.get(value, 0) + amount
        if not self._due.is_set():
            self._due.set()

    def flush(self) -> None:
        """Writes every pending increment now, one locked write per value."""
        with self._lock:
            pending, self._pending = self._pending, {}
        for value, amount in pending.items():
            value.inc(amount)

    def _run(self) -> None:
        while True:
            self._due.wait()
            time.sleep(self.delay)
            self._due.clear()
            try:
                self.flush()
            except Exception:  # the next increments are written all the same
                log.exception("monitoring: cannot write the metrics' increments")


class _Buckets:
    """One histogram series, counted a batch at a time."""

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

    def increments(self, values: np.ndarray) -> Increments:
        """What recording `values` adds to its buckets and sum (observed at once instead, should
        the buckets not be writable)."""
        if values.size == 0:
            return []
        cells, total = self._cells, self._sum
        if cells is None or total is None:
            for v in values.tolist():
                self._child.observe(v)
            return []
        if values.size <= SMALL_BATCH:
            out: Increments = [
                (cells[bisect.bisect_left(self.edges, v)], 1) for v in values.tolist()
            ]
        else:
            counts = bucket_counts(self.edges, values).tolist()
            out = [(cells[i], n) for i, n in enumerate(counts) if n]
        out.append((total, float(values.sum())))
        return out


class FeatureBins:
    """The histograms of all numeric features, counted a request at a time.

    The features' columns come stacked, one row per feature. A batch is binned with one
    `searchsorted` per feature into one flat index over every feature's buckets and counted with
    one `bincount`; a few values are binned with `bisect`, cheaper than numpy's call overhead.
    Either way a request then adds one increment per touched bucket and one per feature's sum,
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

    def increments(self, block: np.ndarray, present: np.ndarray | None) -> Increments:
        """`block`: one row of values per feature; `present`: where they are not NaN (None: all)."""
        if block.shape[1] <= SMALL_BATCH:
            return self._few(block.tolist(), None if present is None else present.tolist())
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
        out: Increments = [(cells[k], n) for k, n in enumerate(counts.tolist()) if n]
        out.extend(
            (cell, total)
            for cell, total, any_value in zip(self.sums, sums, seen, strict=True)
            if any_value
        )
        return out

    def _few(self, rows: list[list[float]], present: list[list[bool]] | None) -> Increments:
        out: Increments = []
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
            out.append((self.sums[j], math.fsum(values)))
        cells = self.cells
        out.extend((cells[k], n) for k, n in touched.items())
        return out


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
        flush_seconds: float = 0.0,
    ) -> None:
        base = {"model": model, "version": version, "track": track}
        self._writes = WriteBehind(flush_seconds).start()
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

    def flush(self) -> None:
        """Writes the pending increments now (before this worker answers a scrape)."""
        self._writes.flush()

    def record_inputs(self, columns: Sequence[Any]) -> None:
        out: Increments = []
        if self._numeric_at:
            out = self._numeric_increments(np.stack([columns[i] for i in self._numeric_at]))
        for i, _name, known, children in self._categorical:
            tally = Tally(columns[i])
            n_missing = tally.pop(None, 0)
            if n_missing:
                out.append((self._missing[i], n_missing))
            other = 0
            for value, n in tally.items():
                if value in known:
                    out.append((children[value], n))
                else:
                    other += n
            if other:
                out.append((children[OTHER], other))
        self._writes.add(out)

    def _numeric_increments(self, block: np.ndarray) -> Increments:
        """`block`: the numeric features' columns, one row per feature (`self._numeric` order)."""
        out: Increments = []
        nan = np.isnan(block)
        present = None
        if nan.any():
            present = ~nan
            for j, n in enumerate(nan.sum(axis=1).tolist()):
                if n:
                    out.append((self._missing[self._numeric_at[j]], n))
        if self._bins is not None:
            if self._binned is None:
                out += self._bins.increments(block, present)
            else:
                rows = self._binned
                out += self._bins.increments(
                    block[rows], None if present is None else present[rows]
                )
            return out
        for j, (_i, _name, buckets) in enumerate(self._numeric):  # prometheus_client's observe()
            if buckets is not None:
                out += buckets.increments(block[j] if present is None else block[j][present[j]])
        return out

    def record_predictions(self, predictions: Iterable[Any]) -> None:
        if self._prediction is not None:
            values = _finite(np.asarray(predictions, dtype=np.float64))
            self._writes.add(self._prediction.increments(values))
            return
        out: Increments = []
        for label, n in Tally(str(p) for p in predictions).items():
            child = self._classes.get(label)
            if child is None:
                child = self._class_family.labels(**self._base, **{"class": label})
                self._classes[label] = child
            out.append((child, n))
        self._writes.add(out)

    def record_outcomes(self, correct: int, incorrect: int, errors: Sequence[float]) -> None:
        if self.task == "classification":
            outcomes = [(self._correct, correct), (self._incorrect, incorrect)]
            self._writes.add([(value, n) for value, n in outcomes if n])
        elif self._feedback_error is not None and errors:
            values = _finite(np.abs(np.asarray(errors, dtype=np.float64)))
            self._writes.add(self._feedback_error.increments(values))

    def record_unmatched(self, reason: str, n: int = 1) -> None:
        self._writes.add([(self._unmatched[reason], n)])

    def record_rejected(self, endpoint: str, reason: str) -> None:
        child = self._rejected.get((endpoint, reason))
        if child is not None:
            self._writes.add([(child, 1)])


class Silent:
    """The recorder used when MODELOPS_MONITORING=off: records nothing."""

    enabled = False
    warnings: list[str] = []  # noqa: RUF012 - read-only

    def flush(self) -> None:
        pass

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
