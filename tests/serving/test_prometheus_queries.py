"""The queries docs/serving.md gives the operator, run by a real Prometheus scraping a stable and a
canary runtime: drift inputs per feature bucket, prediction counts and accuracy, exact per version.

`increase()` extrapolates to the ends of its window; every series starts at zero when the model
loads (so nothing is extrapolated before the first sample), and each version's query is evaluated
at the timestamp of that runtime's last scrape (so nothing is extrapolated after it): the results
are then the exact increases, which the test compares with counts it computes itself.
"""

from __future__ import annotations

import json
import math
import subprocess
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import serving_models as models
import yaml
from conftest import Server, free_port, model_env

from modelops_sandbox.processes import stop_group

pytestmark = pytest.mark.integration

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
WINDOW = "10m"
DRIFT_QUERY = (
    "sum by (namespace, model, version, feature, le) "
    f"(increase(modelops_feature_value_bucket[{WINDOW}]))"
)
CLASS_QUERY = (
    "sum by (namespace, model, version, class) "
    f"(increase(modelops_prediction_class_total[{WINDOW}]))"
)
CORRECT_QUERY = (
    "sum by (namespace, model, version) "
    f'(increase(modelops_feedback_total{{outcome="correct"}}[{WINDOW}]))'
)
FEEDBACK_QUERY = f"sum by (namespace, model, version) (increase(modelops_feedback_total[{WINDOW}]))"


class Prometheus:
    def __init__(self, directory: Path, targets: list[str]) -> None:
        from modelops_sandbox import tools

        binary = tools.ensure("prometheus")["prometheus"]
        directory.mkdir(parents=True, exist_ok=True)
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {
                    "job_name": "modelops-serving",
                    "honor_labels": True,
                    "static_configs": [{"targets": targets, "labels": {"namespace": "ml"}}],
                }
            ],
        }
        (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.port = free_port()
        self.log = directory / "prometheus.log"
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                [
                    str(binary),
                    f"--config.file={directory / 'prometheus.yml'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    f"--storage.tsdb.path={directory / 'data'}",
                ],
                cwd=directory,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def api(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.port}{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        return list(self.api("/api/v1/query", **params)["result"])

    def wait_ready(self, deadline: float = 60.0) -> None:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if self.process.poll() is not None:
                pytest.fail(f"prometheus exited:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        pytest.fail(f"prometheus not ready:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        stop_group(self.process, 20)


def eventually(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    end = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            pytest.fail(f"not true after {timeout}s: {value!r}")
        time.sleep(0.2)


def wait_for_scrape(prometheus: Prometheus, version: str, selector: str, rows: int) -> None:
    """Until Prometheus holds a scrape taken after the load and the feedback of `version`."""
    eventually(
        lambda: [
            r
            for r in prometheus.query(f"modelops_feature_value_count{selector}")
            if float(r["value"][1]) == rows
        ]
    )
    eventually(
        lambda: [
            r
            for r in prometheus.query(f'modelops_feedback_total{{version="{version}"}}')
            if float(r["value"][1]) > 0
        ]
    )


def one(prometheus: Prometheus, query: str, version: str, at: float) -> float:
    found = [r for r in prometheus.query(query, at) if r["metric"]["version"] == version]
    assert len(found) == 1, found
    return float(found[0]["value"][1])


@pytest.fixture(scope="module")
def runtimes(
    start: Any, serving_dir: Path, iris: models.BuiltModel
) -> dict[str, tuple[Server, models.BuiltModel]]:
    canary = models.iris_classifier(serving_dir, version="iris-v3", c=0.2)
    return {
        "stable": (start("prom-stable", model_env(iris, track="stable")), iris),
        "canary": (start("prom-canary", model_env(canary, track="canary")), canary),
    }


@pytest.fixture(scope="module")
def prometheus(
    serving_dir: Path, runtimes: dict[str, tuple[Server, models.BuiltModel]]
) -> Iterator[Prometheus]:
    targets = [f"127.0.0.1:{server.port}" for server, _ in runtimes.values()]
    prom = Prometheus(serving_dir / "prometheus", targets)
    try:
        prom.wait_ready()
        yield prom
    finally:
        prom.stop()


def test_documented_queries_give_exact_drift_inputs_and_accuracy(
    runtimes: dict[str, tuple[Server, models.BuiltModel]], prometheus: Prometheus
) -> None:
    # every runtime scraped (its series at zero) before any traffic
    eventually(
        lambda: len(prometheus.query('count_over_time(up{job="modelops-serving"}[1m]) >= 2')) == 2
    )
    rng = np.random.default_rng(99)
    loads = {
        "stable": rng.normal(5.5, 1.0, (57, 4)).round(2),
        "canary": rng.normal(6.2, 1.5, (23, 4)).round(2),
    }
    truth: dict[str, list[str]] = {}
    for track, (server, built) in runtimes.items():
        rows = loads[track].tolist()
        answer = server.post("/predict", {"rows": rows})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        # feedback: the first 10 rows, every third one marked wrong
        items = []
        for i, predicted in enumerate(body["predictions"][:10]):
            other = next(c for c in built.metadata["classes"] if c != predicted)
            items.append(
                {
                    "request_id": body["request_id"],
                    "row": i,
                    "truth": other if i % 3 == 0 else predicted,
                }
            )
        assert server.post("/feedback", {"items": items}).status_code == 200
        truth[track] = body["predictions"]

    for track, (_, built) in runtimes.items():
        version = built.version
        rows = loads[track]
        selector = f'{{version="{version}", feature="sepal_length"}}'
        # wait for a scrape after the load, then evaluate exactly at that scrape's timestamp
        wait_for_scrape(prometheus, version, selector, len(rows))
        at = float(
            prometheus.query(f"timestamp(modelops_feature_value_count{selector})")[0]["value"][1]
        )

        drift = prometheus.query(DRIFT_QUERY, at)
        mine = [r["metric"] for r in drift if r["metric"]["version"] == version]
        assert {(m["namespace"], m["model"]) for m in mine} == {("ml", "iris")}
        for i, feature in enumerate(FEATURES):
            edges = built.metadata["reference"][feature]["edges"]
            got = {
                float(r["metric"]["le"]): float(r["value"][1])
                for r in drift
                if r["metric"]["version"] == version and r["metric"]["feature"] == feature
            }
            values = rows[:, i].tolist()
            expected = {e: float(sum(1 for v in values if v <= e)) for e in edges}
            expected[math.inf] = float(len(values))
            assert sorted(got) == sorted(expected), (track, feature)
            for le, count in expected.items():
                assert got[le] == pytest.approx(count, abs=1e-9), (track, feature, le)
            # PSI inputs: the observed share of each reference bin
            cumulative = [got[e] for e in [*edges, math.inf]]
            shares = np.diff([0.0, *cumulative]) / cumulative[-1]
            bins = np.bincount(
                np.searchsorted(edges, values, side="left"), minlength=len(edges) + 1
            )
            assert shares.tolist() == pytest.approx((bins / len(values)).tolist())

        classes = {
            r["metric"]["class"]: float(r["value"][1])
            for r in prometheus.query(CLASS_QUERY, at)
            if r["metric"]["version"] == version
        }
        frame = pd.DataFrame(rows, columns=built.frame.columns)
        expected_classes = Counter(built.pipeline.predict(frame).tolist())
        assert expected_classes == Counter(truth[track])
        for cls in built.metadata["classes"]:
            assert classes[cls] == pytest.approx(expected_classes.get(cls, 0), abs=1e-9)

        correct = one(prometheus, CORRECT_QUERY, version, at)
        assert correct == pytest.approx(6, abs=1e-9)  # rows 1, 2, 4, 5, 7, 8
        assert one(prometheus, FEEDBACK_QUERY, version, at) == pytest.approx(10, abs=1e-9)
