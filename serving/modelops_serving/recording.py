"""Production data: the rows a Model is asked to predict and the ground truth sent for them.

Opt-in per Model (`spec.serving.recording`; the operator sets MODELOPS_RECORDING_RETENTION): the
inputs a model sees can be sensitive. Each worker keeps what it answered and the feedback it took
in memory and writes them every `flush_seconds` as Parquet batches to the Model's production
folder in the artifact store (`contract.production_uri`, beside its archives):

    <store>/<namespace>/<uid>/<model>/production/inputs/<YYYY-MM-DD>/<time>-<random>.parquet
        prediction_id, row, time, version, and one column per feature
    <store>/<namespace>/<uid>/<model>/production/labels/<YYYY-MM-DD>/<time>-<random>.parquet
        prediction_id, row, time, truth

Training joins the two on (prediction_id, row) (modelops_training.production); a row nobody
labelled is never a training target. A label is recorded only for an id this Model signed.

A request never waits for the store: recording is an append to a list; writing happens in a
thread. A store that fails (gone, refusing) costs the batches written meanwhile, never a
prediction: the batch is dropped with a warning and counted. What a worker holds when it is
killed (at most `flush_seconds` of rows; a stopped worker writes first) is lost. Memory is
bounded: beyond `max_rows` buffered rows, new ones are dropped and counted until the next write.
Day folders older than the retention are deleted by the writers, at most once an hour.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelops_api import contract

from . import artifact

log = logging.getLogger("bentoml.modelops")

FLUSH_SECONDS = 10.0
MAX_ROWS = 200_000
EXPIRE_EVERY = 3600.0
DAY = 86_400.0


def day_of(seconds: float) -> str:
    """The UTC day folder of an epoch time: YYYY-MM-DD."""
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%d")


def expired_days(days: Iterable[str], now: float, retention: float) -> list[str]:
    """The day folders whose every row is older than `retention` seconds (a day ends at its
    next midnight, UTC); names that are not days are left alone."""
    out = []
    for name in days:
        try:
            start = datetime.datetime.strptime(name, "%Y-%m-%d").replace(tzinfo=datetime.UTC)
        except ValueError:
            continue
        if start.timestamp() + DAY <= now - retention:
            out.append(name)
    return sorted(out)


@dataclass
class _Buffer:
    inputs: list[tuple[str, float, Sequence[Sequence[Any]]]] = field(default_factory=list)
    labels: list[tuple[str, int, float, Any]] = field(default_factory=list)
    rows: int = 0


class ProductionLog:
    """One worker's recorder of production data; `start()` runs its writer, `stop()` writes what
    is left and ends it."""

    def __init__(
        self,
        folder: str,
        features: Sequence[str],
        version: str,
        task: str,
        retention: float,
        *,
        flush_seconds: float = FLUSH_SECONDS,
        max_rows: int = MAX_ROWS,
        clock: Callable[[], float] = time.time,
        filesystem: Any = None,
    ) -> None:
        self.folder = folder.rstrip("/")
        self.features = list(features)
        self.version = version
        self.task = task
        self.retention = retention
        self.flush_seconds = flush_seconds
        self.max_rows = max_rows
        self.clock = clock
        self._filesystem = filesystem
        self._buffer = _Buffer()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._expired_at = 0.0
        self.dropped = 0  # rows and labels not recorded: over the bound, or a failed write
        self.written = 0

    # --- the request path: appends only -----------------------------------------------------

    def inputs(self, prediction_id: str, columns: Sequence[Sequence[Any]]) -> None:
        """Remembers the rows of one answered request (its validated feature columns)."""
        rows = len(columns[0]) if columns else 0
        with self._lock:
            if self._buffer.rows + rows > self.max_rows:
                self.dropped += rows
                return
            self._buffer.inputs.append((prediction_id, self.clock(), columns))
            self._buffer.rows += rows

    def labels(self, items: Iterable[tuple[str, int, Any]]) -> None:
        """Remembers ground truth: (prediction id, row, truth) for ids this Model signed."""
        now = self.clock()
        with self._lock:
            for prediction_id, row, truth in items:
                if self._buffer.rows >= self.max_rows:
                    self.dropped += 1
                    continue
                self._buffer.labels.append((prediction_id, row, now, truth))
                self._buffer.rows += 1

    # --- the writer --------------------------------------------------------------------------

    def start(self) -> ProductionLog:
        self._thread = threading.Thread(target=self._run, name="modelops-recording", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            self.flush()

    def filesystem(self) -> Any:
        if self._filesystem is None:
            self._filesystem = _filesystem_for(self.folder)
        return self._filesystem

    def flush(self) -> None:
        """Writes the buffered inputs and labels as one Parquet batch each; then expires old
        days if an hour has passed. Never raises: a failure is logged, its rows counted."""
        with self._lock:
            taken, self._buffer = self._buffer, _Buffer()
        now = self.clock()
        for kind, frame in (
            (contract.PRODUCTION_INPUTS, self._inputs_frame(taken.inputs)),
            (contract.PRODUCTION_LABELS, _labels_frame(taken.labels, self.task)),
        ):
            if frame is None:
                continue
            path = f"{self.folder}/{kind}/{day_of(now)}/{int(now)}-{uuid.uuid4().hex[:12]}.parquet"
            try:
                with self.filesystem().open(_path(path), "wb") as out:
                    frame.to_parquet(out, index=False)
                self.written += len(frame)
            except Exception as error:
                self.dropped += len(frame)
                log.warning(
                    "production data: %d %s rows not written to %s: %s",
                    len(frame),
                    kind,
                    path,
                    artifact.describe(error),
                )
        if now - self._expired_at >= EXPIRE_EVERY:
            self._expired_at = now
            self.expire(now)

    def expire(self, now: float) -> list[str]:
        """Deletes the day folders older than the retention; the folders deleted."""
        deleted = []
        filesystem = self.filesystem()
        for kind in (contract.PRODUCTION_INPUTS, contract.PRODUCTION_LABELS):
            base = _path(f"{self.folder}/{kind}")
            try:
                days = [p.rstrip("/").rsplit("/", 1)[-1] for p in filesystem.ls(base, detail=False)]
            except FileNotFoundError:
                continue
            except Exception as error:
                log.warning("production data: cannot list %s: %s", base, artifact.describe(error))
                continue
            for day in expired_days(days, now, self.retention):
                try:
                    filesystem.rm(f"{base}/{day}", recursive=True)
                    deleted.append(f"{kind}/{day}")
                except FileNotFoundError:
                    pass  # another worker was first
                except Exception as error:
                    log.warning(
                        "production data: cannot delete %s/%s: %s",
                        base,
                        day,
                        artifact.describe(error),
                    )
        if deleted:
            kept = self.retention
            log.info("production data: deleted %s (retention %.0fs)", ", ".join(deleted), kept)
        return deleted

    def _inputs_frame(self, taken: list[tuple[str, float, Sequence[Sequence[Any]]]]) -> Any:
        if not taken:
            return None
        import pandas as pd

        ids: list[str] = []
        rows: list[int] = []
        times: list[float] = []
        values: list[list[Any]] = [[] for _ in self.features]
        for prediction_id, at, columns in taken:
            n = len(columns[0])
            ids += [prediction_id] * n
            rows += range(n)
            times += [at] * n
            for i, column in enumerate(columns):
                values[i] += list(column)
        frame = pd.DataFrame(
            {
                contract.PRODUCTION_ID: ids,
                contract.PRODUCTION_ROW: rows,
                contract.PRODUCTION_TIME: times,
                contract.PRODUCTION_VERSION: self.version,
            }
        )
        for name, column in zip(self.features, values, strict=True):
            frame[name] = column
        return frame


def _labels_frame(taken: list[tuple[str, int, float, Any]], task: str) -> Any:
    if not taken:
        return None
    import pandas as pd

    ids, rows, times, truths = zip(*taken, strict=True)
    # One type per column whatever the clients sent: a class as text (feedback compares classes
    # as text), a regressor's target as a float (feedback validated it as a finite number).
    convert = str if task == "classification" else float
    return pd.DataFrame(
        {
            contract.PRODUCTION_ID: list(ids),
            contract.PRODUCTION_ROW: list(rows),
            contract.PRODUCTION_TIME: list(times),
            contract.PRODUCTION_TRUTH: [convert(t) for t in truths],
        }
    )


def _path(uri: str) -> str:
    """The path fsspec's filesystem takes: `bucket/key` for s3://, the local path for file://."""
    return uri.split("://", 1)[1] if "://" in uri else uri


def _filesystem_for(folder: str) -> Any:
    if folder.startswith("s3://"):
        return artifact.object_filesystem()
    import fsspec

    return fsspec.filesystem("file", auto_mkdir=True)
