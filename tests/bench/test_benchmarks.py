"""Every benchmark in bench/ runs, in a small size, so that none of them rots between runs.

The numbers they print here mean nothing (a few seconds on a busy machine); that each one runs to
the end, exits 0 and prints its table is what is checked. docs/benchmarks.md gives the commands
and sizes of the real runs.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support import Node

REPO = Path(__file__).resolve().parents[2]


def bench(script: str, *args: str, timeout: float = 900) -> str:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 0, f"{script} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.mark.integration
def test_training_overhead() -> None:
    out = bench("train_overhead.py", "--rows", "2000", "--repeat", "1")
    assert "| LogisticRegression |" in out


@pytest.mark.integration
def test_serving_record_cost() -> None:
    assert "| 100 |" in bench("serving_record_cost.py", "--repeat", "20")


@pytest.mark.integration
def test_serving_against_its_peers() -> None:
    out = bench("serving_peers.py", "--smoke")
    assert "MLServer" in out and "KServe" in out and "monitored ÷ unmonitored" in out


@pytest.mark.integration
def test_serving_paired_in_both_start_orders() -> None:
    out = bench("serving_peers.py", "--paired", "--control", "--smoke")
    assert "A ÷ B" in out and "| 100 rows |" in out
    one_row = next(line for line in out.splitlines() if line.startswith("| 1 row |"))
    assert " to " in one_row, "a round with each server started first"


@pytest.mark.integration
def test_artifact_store() -> None:
    out = bench("artifact_store.py", "--smoke")
    assert "| upload: training's export, the store part |" in out
    assert "| serving start, process start to `/readyz` 200 |" in out


@pytest.mark.integration
def test_analysis_queries() -> None:
    assert "| 3 |" in bench("analysis_queries.py", "--models", "3", "--passes", "1")


@pytest.mark.integration
def test_scale() -> None:
    out = bench(
        "scale.py", "--models", "3", "--settle", "5", "--window", "10", "--timeout", "300",
        "--count-events",
    )  # fmt: skip
    assert "| 3 | modelops |" in out and "| 3 | baseline |" in out
    events = out.split("| all |")[1]  # the watch events' table: every Model's ADDED at least
    assert "| 3 | baseline | " in events and "(not watched)" in events


@pytest.mark.e2e
def test_canary_rollback(node: Node) -> None:
    node.release()  # the benchmark starts a sandbox of its own, and a machine runs one node
    assert "RolledBack" in bench("canary_rollback.py", "--runs", "1", "--interval", "5")
