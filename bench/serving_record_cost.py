"""What monitoring adds to one request, measured in process: validation is shared by both modes;
recording (histograms, counters in multiprocess mode) and the signed prediction id are monitoring's.

    .venv/bin/python bench/serving_record_cost.py [--repeat 200]

A 4-feature classifier schema with 10-bin references, the same shape as iris trained by
`modelops train`. Prints microseconds per request for single rows and batches of 100: the fastest
of `--repeat` trials of 20 requests each, so that other work on a shared machine (which only ever
adds time) falls out. This is the part of the difference between monitoring on and off in
bench/serving_peers.py that the runtime's code controls, without the noise of HTTP.

*record metrics* is the runtime's default: a request adds its increments to the worker's pending
ones, which a thread writes at most once a second (a few dozen locked writes a second, whatever
the traffic, not counted here); the last column is each request writing its own, as with
`MODELOPS_METRICS_FLUSH_SECONDS=0`.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

# prometheus_client picks its value class at import: multiprocess mode, as in BentoML's workers
_DIR = tempfile.mkdtemp(prefix="modelops-record-")
atexit.register(shutil.rmtree, _DIR, True)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = _DIR

import numpy as np  # noqa: E402

from modelops_serving.config import load_settings  # noqa: E402
from modelops_serving.credentials import Credentials  # noqa: E402
from modelops_serving.metrics import Recorder  # noqa: E402
from modelops_serving.schema import Schema, validate_rows  # noqa: E402

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
CLASSES = ["setosa", "versicolor", "virginica"]


def fastest(action: Callable[[], object], trials: int, calls: int = 20) -> float:
    """Microseconds per call: the fastest of `trials` trials of `calls` calls."""
    best = float("inf")
    for _ in range(trials):
        start = time.perf_counter()
        for _ in range(calls):
            action()
        best = min(best, (time.perf_counter() - start) / calls)
    return best * 1e6


def record(monitor: Recorder, columns: list[Any], labels: list[str]) -> None:
    monitor.record_inputs(columns)
    monitor.record_predictions(labels)


def main() -> int:
    repeat = int(sys.argv[sys.argv.index("--repeat") + 1]) if "--repeat" in sys.argv else 200
    schema = Schema.from_metadata([{"name": f, "type": "numeric"} for f in FEATURES])
    reference = {f: {"edges": np.linspace(4.0, 7.0, 9).round(2).tolist()} for f in FEATURES}

    def recorder(flush_seconds: float) -> Recorder:
        return Recorder(
            model="iris",
            version="v1",
            track=f"flush-{flush_seconds}",
            task="classification",
            schema=schema,
            reference=reference,
            classes=CLASSES,
            prediction={},
            metrics={},
            flush_seconds=flush_seconds,
        )

    behind = recorder(load_settings({}).metrics_flush_seconds)  # the runtime's default
    at_once = recorder(0)
    keys = Path(_DIR) / "credentials"
    keys.mkdir()
    (keys / "token").write_text("bench-token")
    (keys / "signing-key").write_text("bench-signing-key")
    credentials = Credentials(keys)
    rng = np.random.default_rng(0)
    print(
        "| rows per request | validate µs | record metrics µs | sign id µs | monitoring µs "
        "| record metrics, written at once µs |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for batch in (1, 100):
        rows = rng.uniform(4.0, 8.0, (batch, 4)).round(1).tolist()
        labels = [CLASSES[i % 3] for i in range(batch)]
        columns = validate_rows(schema, rows, max_batch=1000)
        validate = fastest(partial(validate_rows, schema, rows, max_batch=1000), repeat)
        recording = fastest(partial(record, behind, columns, labels), repeat)
        immediate = fastest(partial(record, at_once, columns, labels), repeat)
        sign = fastest(partial(credentials.issue, "v1", labels), repeat)
        total = recording + sign
        print(
            f"| {batch} | {validate:.0f} | {recording:.0f} | {sign:.0f} | {total:.0f} "
            f"| {immediate:.0f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
