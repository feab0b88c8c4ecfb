"""What monitoring adds to one request, measured in process: validation is shared by both modes;
recording (histograms, counters in multiprocess mode) and the signed prediction id are monitoring's.

    .venv/bin/python bench/serving_record_cost.py [--repeat 3000]

A 4-feature classifier schema with 10-bin references, the same shape as iris trained by
`modelops train`. Prints microseconds per request for single rows and batches of 100. This is
the part of bench/serving_overhead.py's difference that the runtime's code controls, without the
noise of HTTP and a shared machine.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

# prometheus_client picks its value class at import: multiprocess mode, as in BentoML's workers
_DIR = tempfile.mkdtemp(prefix="modelops-record-")
atexit.register(shutil.rmtree, _DIR, True)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = _DIR

import numpy as np  # noqa: E402

from modelops_serving.credentials import Credentials  # noqa: E402
from modelops_serving.metrics import Recorder  # noqa: E402
from modelops_serving.schema import Schema, validate_rows  # noqa: E402

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
CLASSES = ["setosa", "versicolor", "virginica"]


def main() -> int:
    repeat = int(sys.argv[sys.argv.index("--repeat") + 1]) if "--repeat" in sys.argv else 3000
    schema = Schema.from_metadata([{"name": f, "type": "numeric"} for f in FEATURES])
    reference = {f: {"edges": np.linspace(4.0, 7.0, 9).round(2).tolist()} for f in FEATURES}
    monitor = Recorder(
        model="iris",
        version="v1",
        track="stable",
        task="classification",
        schema=schema,
        reference=reference,
        classes=CLASSES,
        prediction={},
        metrics={},
    )
    keys = Path(_DIR) / "credentials"
    keys.mkdir()
    (keys / "token").write_text("bench-token")
    (keys / "signing-key").write_text("bench-signing-key")
    credentials = Credentials(keys)
    rng = np.random.default_rng(0)
    print("| rows per request | validate µs | record metrics µs | sign id µs | monitoring µs |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for batch in (1, 100):
        rows = rng.uniform(4.0, 8.0, (batch, 4)).round(1).tolist()
        labels = [CLASSES[i % 3] for i in range(batch)]
        start = time.perf_counter()
        for _ in range(repeat):
            columns = validate_rows(schema, rows, max_batch=1000)
        validate = (time.perf_counter() - start) / repeat * 1e6
        start = time.perf_counter()
        for _ in range(repeat):
            monitor.record_inputs(columns)
            monitor.record_predictions(labels)
        record = (time.perf_counter() - start) / repeat * 1e6
        start = time.perf_counter()
        for _ in range(repeat):
            credentials.issue("v1", labels)
        sign = (time.perf_counter() - start) / repeat * 1e6
        total = record + sign
        print(f"| {batch} | {validate:.0f} | {record:.0f} | {sign:.0f} | {total:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
