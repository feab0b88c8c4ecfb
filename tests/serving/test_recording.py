"""The recorder of production data (recording.py) on a local store: what a flush writes, what
expires, the bound on memory, and a store that fails costing batches, never a request."""

from __future__ import annotations

import datetime
from pathlib import Path

import pandas as pd
import pytest

from modelops_api import contract
from modelops_serving.recording import ProductionLog, day_of, expired_days

pytestmark = pytest.mark.unit

NOW = datetime.datetime(2026, 12, 4, 12, 0, tzinfo=datetime.UTC).timestamp()
DAY = 86_400.0


def recorder(folder: Path, max_rows: int = 1000, flush_seconds: float = 10.0) -> ProductionLog:
    return ProductionLog(
        folder.as_uri(),
        ["x", "colour"],
        "m-v1",
        "classification",
        7 * DAY,
        max_rows=max_rows,
        flush_seconds=flush_seconds,
        clock=lambda: NOW,
    )


def batches(folder: Path, kind: str) -> list[Path]:
    return sorted((folder / kind).rglob("*.parquet"))


def test_a_flush_writes_the_answered_rows_and_their_labels(tmp_path: Path) -> None:
    log = recorder(tmp_path)
    log.inputs("id-1", [[1.5, 2.5], ["red", "blue"]])
    log.inputs("id-2", [[3.5], ["red"]])
    log.labels([("id-1", 1, "yes"), ("id-2", 0, 1)])
    log.flush()

    [inputs] = batches(tmp_path, contract.PRODUCTION_INPUTS)
    assert inputs.parent.name == "2026-12-04"
    frame = pd.read_parquet(inputs)
    assert frame[contract.PRODUCTION_ID].tolist() == ["id-1", "id-1", "id-2"]
    assert frame[contract.PRODUCTION_ROW].tolist() == [0, 1, 0]
    assert frame["x"].tolist() == [1.5, 2.5, 3.5]
    assert frame["colour"].tolist() == ["red", "blue", "red"]
    assert set(frame[contract.PRODUCTION_VERSION]) == {"m-v1"}
    assert set(frame[contract.PRODUCTION_TIME]) == {NOW}
    [labels] = batches(tmp_path, contract.PRODUCTION_LABELS)
    truth = pd.read_parquet(labels)[contract.PRODUCTION_TRUTH].tolist()
    assert truth == ["yes", "1"]  # a classifier's classes as text, as feedback compares them
    assert log.written == 5 and log.dropped == 0

    log.flush()  # nothing new: nothing written
    assert len(batches(tmp_path, contract.PRODUCTION_INPUTS)) == 1


def test_a_regressors_truth_is_a_number(tmp_path: Path) -> None:
    log = ProductionLog(tmp_path.as_uri(), ["x"], "p-v1", "regression", DAY, clock=lambda: NOW)
    log.labels([("id", 0, 3)])
    log.flush()
    [labels] = batches(tmp_path, contract.PRODUCTION_LABELS)
    assert pd.read_parquet(labels)[contract.PRODUCTION_TRUTH].tolist() == [3.0]


def test_rows_beyond_the_bound_are_dropped_and_counted(tmp_path: Path) -> None:
    log = recorder(tmp_path, max_rows=3)
    log.inputs("a", [[1.0, 2.0], ["r", "r"]])
    log.inputs("b", [[1.0, 2.0], ["r", "r"]])  # would make 4
    log.labels([("a", 0, "y"), ("a", 1, "y")])  # the second would make 4
    assert log.dropped == 3
    log.flush()
    assert log.written == 3
    log.inputs("b", [[1.0, 2.0], ["r", "r"]])  # room again after the write
    assert log.dropped == 3


def test_days_older_than_the_retention_are_deleted(tmp_path: Path) -> None:
    for kind in (contract.PRODUCTION_INPUTS, contract.PRODUCTION_LABELS):
        for day in ("2026-11-25", "2026-11-26", "2026-11-27", "2026-12-04", "notes"):
            (tmp_path / kind / day).mkdir(parents=True)
    log = recorder(tmp_path)  # 7 days: rows of 11-27 may be 6.5 days old, 11-26 ended 7.5 ago
    deleted = log.expire(NOW)
    old = ("2026-11-25", "2026-11-26")
    assert deleted == [f"{k}/{d}" for k in ("inputs", "labels") for d in old]
    assert sorted(p.name for p in (tmp_path / "inputs").iterdir()) == [
        "2026-11-27",
        "2026-12-04",
        "notes",
    ]
    assert expired_days(["2026-12-03"], NOW, 0.0) == ["2026-12-03"]
    assert day_of(NOW) == "2026-12-04"


def test_a_failing_store_costs_the_batch_never_the_caller(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the folder should be")
    log = recorder(blocker / "production")
    log.inputs("a", [[1.0], ["r"]])
    log.labels([("a", 0, "y")])
    log.flush()  # does not raise
    assert log.dropped == 2 and log.written == 0
    log.inputs("b", [[1.0], ["r"]])  # and recording goes on
    assert log.dropped == 2


def test_the_writer_thread_flushes_and_stop_writes_what_is_left(tmp_path: Path) -> None:
    log = recorder(tmp_path, flush_seconds=3600).start()
    log.inputs("a", [[1.0], ["r"]])
    log.stop()
    assert len(batches(tmp_path, contract.PRODUCTION_INPUTS)) == 1
