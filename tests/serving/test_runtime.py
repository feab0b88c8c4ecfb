"""A regressor trained by `modelops train`, readiness, load failures, monitoring off, and a
stable and a canary runtime side by side — all against real `bentoml serve` processes."""

from __future__ import annotations

import http.client
import json
import math
import select
import shutil
import subprocess
import sys
import tarfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
import serving_models as models
import support
from conftest import Server, launch, model_env

from modelops_api import contract

pytestmark = pytest.mark.integration

MODELOPS = Path(sys.executable).parent / "modelops"
ERROR_MULTIPLIERS = [0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0]


@pytest.fixture(scope="module")
def trained(serving_dir: Path) -> dict[str, Any]:
    """A price regressor (one numeric, one categorical feature) trained by the training runtime."""
    rng = np.random.default_rng(11)
    n = 400
    size = rng.uniform(20, 200, n).round(1)
    city = rng.choice(["berlin", "paris", "rome"], n)
    price = size * 3 + np.select([city == "berlin", city == "paris"], [50, 120], 10)
    price = price + rng.normal(0, 5, n)
    work = serving_dir / "trained"
    work.mkdir()
    data = work / "prices.csv"
    pd.DataFrame({"size": size, "city": city, "price": price.round(2)}).to_csv(data, index=False)
    spec = work / "spec.json"
    spec.write_text(
        json.dumps(
            {
                "dataset": {"uri": data.as_uri(), "format": "csv", "target": "price"},
                "pipeline": {"cleaning": {"missing": "impute-median"}, "scaling": "standard"},
                "estimator": {"class": "sklearn.linear_model.LinearRegression"},
                "validation": {"testSize": 0.2, "randomState": 1, "gates": {"r2": 0.5}},
            }
        )
    )
    home = work / "train-home"
    done = subprocess.run(
        [
            str(MODELOPS),
            "train",
            "--spec",
            str(spec),
            "--model",
            "price",
            "--version",
            "price-t1",
            "--artifacts",
            (serving_dir / "artifacts").as_uri(),
            "--result-file",
            str(work / "result.json"),
        ],
        env={"PATH": "/usr/bin:/bin", "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["phase"] == "Succeeded", result
    archive = serving_dir / "artifacts" / "price" / "price-t1.bentomodel"
    with tarfile.open(archive) as bentomodel:  # what training archived, read without BentoML
        bentomodel.extract("./pipeline.pkl", work, filter="data")
    return {"result": result, "pipeline": joblib.load(work / "pipeline.pkl")}


@pytest.fixture(scope="module")
def price_server(start: Any, trained: dict[str, Any], serving_dir: Path) -> Server:
    env = {
        **support.serving_credentials(serving_dir / "price-credentials"),
        "MODELOPS_ARTIFACT": trained["result"]["artifact"],
        "MODELOPS_MODEL": "price",
        "MODELOPS_VERSION": "price-t1",
        "MODELOPS_TRACK": "canary",
        "MODELOPS_NAN_POLICY": "allow",
    }
    return start("price", env)


def lbl(model: str, version: str, track: str, **extra: str) -> frozenset[tuple[str, str]]:
    return frozenset({"model": model, "version": version, "track": track, **extra}.items())


def buckets(metrics: dict[Any, float], name: str, **match: str) -> dict[float, float]:
    out = {}
    for (sample, labels), value in metrics.items():
        d = dict(labels)
        if sample == f"{name}_bucket" and all(d.get(k) == v for k, v in match.items()):
            out[float(d["le"])] = value
    return out


def cumulative(values: list[float], edges: list[float]) -> dict[float, float]:
    out = {float(e): float(sum(1 for v in values if v <= e)) for e in edges}
    out[math.inf] = float(len(values))
    return out


def test_trained_regressor_serves_its_own_predictions_and_exact_metrics(
    price_server: Server, trained: dict[str, Any]
) -> None:
    meta = price_server.get("/metadata").json()
    assert [f["name"] for f in meta["features"]] == ["size", "city"]
    assert meta["task"] == "regression" and meta["track"] == "canary"
    size_edges = meta["reference"]["size"]["edges"]
    pred_edges = meta["prediction"]["edges"]
    rng = np.random.default_rng(5)
    rows: list[Any] = []
    for i in range(150):
        city = ["berlin", "paris", "rome", "madrid", " paris "][i % 5]
        size = round(float(rng.uniform(0, 260)), 1)
        rows.append({"size": size, "city": city} if i % 2 else [size, city])
    rows.append({"size": None, "city": "rome"})  # let through: MODELOPS_NAN_POLICY=allow
    rows.append([size_edges[0], "berlin"])  # exactly on an edge
    before = price_server.metrics()
    response = price_server.post("/predict", {"rows": rows})
    assert response.status_code == 200, response.text
    predicted = response.json()["predictions"]
    after = price_server.metrics()

    sizes = [r["size"] if isinstance(r, dict) else r[0] for r in rows]
    cities = [r["city"] if isinstance(r, dict) else r[1] for r in rows]
    frame = pd.DataFrame(
        {"size": [math.nan if s is None else s for s in sizes], "city": [c.strip() for c in cities]}
    )
    assert predicted == trained["pipeline"].predict(frame).tolist()
    assert "probabilities" not in response.json()

    def delta(key: Any) -> float:
        return after[key] - before.get(key, 0.0)

    present = [s for s in sizes if s is not None]
    new, old = (buckets(m, "modelops_feature_value", feature="size") for m in (after, before))
    assert {le: new[le] - old.get(le, 0.0) for le in new} == cumulative(present, size_edges)
    assert (
        delta(
            ("modelops_feature_missing_total", lbl("price", "price-t1", "canary", feature="size"))
        )
        == 1
    )
    expected_cities = Counter(c.strip() for c in cities)
    expected_cities["__other__"] = expected_cities.pop("madrid")
    for city, n in expected_cities.items():
        key = (
            "modelops_feature_category_total",
            lbl("price", "price-t1", "canary", feature="city", category=city),
        )
        assert delta(key) == n, city
    new, old = (buckets(m, "modelops_prediction_value") for m in (after, before))
    assert {le: new[le] - old.get(le, 0.0) for le in new} == cumulative(predicted, pred_edges)

    # feedback: the absolute error histogram, bucketed by multiples of the holdout MAE
    truths = [p + d for p, d in zip(predicted, [0.0, -1.0, 3.0, 40.0, -0.5] * 4, strict=False)]
    rid = response.json()["request_id"]
    items = [{"request_id": rid, "row": i, "truth": t} for i, t in enumerate(truths)]
    answer = price_server.post("/feedback", {"items": items})
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"] == 20
    errors = [abs(p - t) for p, t in zip(predicted, truths, strict=False)]
    final = price_server.metrics()
    mae = meta["metrics"]["mae"]
    got = buckets(final, "modelops_feedback_error")
    expected = cumulative(errors, [mae * m for m in ERROR_MULTIPLIERS])
    assert sorted(got) == pytest.approx(sorted(expected))
    assert [got[k] for k in sorted(got)] == [expected[k] for k in sorted(expected)]


def test_readyz_is_not_ready_before_the_model_loads(
    start: Any, serving_dir: Path, iris: models.BuiltModel
) -> None:
    late = serving_dir / "late" / "iris" / "iris-v1.bentomodel"
    env = model_env(iris)
    env["MODELOPS_ARTIFACT"] = late.as_uri()
    server = start("late", env, ready=False)
    server.wait("/livez")
    assert server.get("/readyz").status_code == 503
    answer = server.post("/predict", {"rows": [[5.1, 3.5, 1.4, 0.2]]})
    assert answer.status_code == 503
    assert answer.json()["reason"] == "not_ready"
    assert "still loading" in answer.json()["error"]
    meta = server.get("/metadata")
    assert meta.status_code == 503
    assert meta.json()["state"] == "loading"
    assert "does not exist" in meta.json()["error"]
    late.parent.mkdir(parents=True)
    shutil.copy(iris.archive, late)
    server.wait("/readyz", deadline=30)
    assert server.post("/predict", {"rows": [[5.1, 3.5, 1.4, 0.2]]}).status_code == 200


@pytest.mark.parametrize(
    ("case", "change", "message"),
    [
        ("scheme", {"MODELOPS_ARTIFACT": "gs://bucket/iris.bentomodel"}, "only file://"),
        ("version", {"MODELOPS_VERSION": "iris-v9"}, "MODELOPS_VERSION is 'iris-v9'"),
        ("home", {}, "overlaps the artifact store"),
    ],
)
def test_a_model_that_cannot_load_keeps_the_runtime_unready(
    start: Any,
    serving_dir: Path,
    iris: models.BuiltModel,
    case: str,
    change: dict[str, str],
    message: str,
) -> None:
    home = iris.archive.parent / "home" if case == "home" else None
    server = start(f"broken-{case}", {**model_env(iris), **change}, home=home, ready=False)
    server.wait("/livez")
    deadline = time.monotonic() + 30
    while server.get("/metadata").json().get("state") == "loading":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    meta = server.get("/metadata").json()
    assert meta["state"] == "failed"
    assert message in meta["error"]
    assert server.get("/readyz").status_code == 503
    assert server.get("/livez").status_code == 200


def test_an_idle_keep_alive_connection_stays_open_longer_than_a_gateways(
    price_server: Server,
) -> None:
    """A gateway reuses its idle connections to a pod for up to its own idle timeout (Traefik:
    90 s): the runtime must not close one after uvicorn's default of 5 s, or a request the gateway
    sends on it as it closes is answered 502. Same command as a serving pod (SERVE_COMMAND)."""
    connection = http.client.HTTPConnection("127.0.0.1", price_server.port, timeout=10)
    try:
        connection.request("GET", "/livez")
        assert connection.getresponse().read() is not None
        time.sleep(7)
        readable, _, _ = select.select([connection.sock], [], [], 0)
        assert not readable, "the runtime closed an idle keep-alive connection after 7 s"
        connection.request("GET", "/livez")
        assert connection.getresponse().status == 200
    finally:
        connection.close()
    assert contract.KEEP_ALIVE_SECONDS > 90


def test_monitoring_off_serves_without_custom_series(start: Any, iris: models.BuiltModel) -> None:
    server = start("quiet", model_env(iris, MODELOPS_MONITORING="off"))
    answer = server.post("/predict", {"rows": [[5.1, 3.5, 1.4, 0.2]]})
    assert answer.status_code == 200
    assert (
        answer.json()["predictions"]
        == iris.pipeline.predict(
            pd.DataFrame([[5.1, 3.5, 1.4, 0.2]], columns=iris.frame.columns)
        ).tolist()
    )
    bad = server.post("/predict", {"rows": [[5.1]]})
    assert bad.status_code == 400
    text = server.get("/metrics").text
    assert "bentoml_service_request_total" in text
    assert "modelops_" not in text
    assert "request_id" not in answer.json()  # no feedback is taken: nothing to refer to
    feedback = server.post("/feedback", {"items": [{"request_id": "a", "truth": "a"}]})
    assert feedback.status_code == 409 and feedback.json()["reason"] == "feedback_off"


def test_stable_and_canary_side_by_side_keep_separate_exact_metrics(
    start: Any, serving_dir: Path, iris: models.BuiltModel
) -> None:
    canary_model = models.iris_classifier(serving_dir, version="iris-v2", c=0.05)
    # both archives live in one artifact directory, as on a shared volume
    assert canary_model.archive.parent == iris.archive.parent
    stable = start("side-stable", model_env(iris, track="stable"))
    canary = start("side-canary", model_env(canary_model, track="canary"))
    rng = np.random.default_rng(3)
    loads = {
        "stable": rng.uniform(4.0, 5.5, (30, 4)).round(2).tolist(),
        "canary": rng.uniform(5.5, 7.5, (11, 4)).round(2).tolist(),
    }
    for rows in loads["stable"][:15], loads["stable"][15:]:
        assert stable.post("/predict", {"rows": rows}).status_code == 200
    for row in loads["canary"]:
        assert canary.post("/predict", {"rows": [row]}).status_code == 200

    for server, built, track in ((stable, iris, "stable"), (canary, canary_model, "canary")):
        metrics = server.metrics()
        for (name, labels), _ in metrics.items():
            d = dict(labels)
            if name.startswith("modelops_"):
                assert (d["model"], d["version"], d["track"]) == ("iris", built.version, track)
        rows = loads[track]
        for i, feature in enumerate(["sepal_length", "sepal_width", "petal_length", "petal_width"]):
            edges = built.metadata["reference"][feature]["edges"]
            got = buckets(metrics, "modelops_feature_value", feature=feature)
            assert got == cumulative([r[i] for r in rows], edges), (track, feature)
        expected = Counter(built.pipeline.predict(pd.DataFrame(rows, columns=built.frame.columns)))
        for cls in built.metadata["classes"]:
            key = (
                "modelops_prediction_class_total",
                lbl("iris", built.version, track, **{"class": cls}),
            )
            assert metrics[key] == expected.get(cls, 0)

    # a second runtime pointed at the stable one's BENTOML_HOME refuses to start, and the
    # stable runtime's metrics survive it (BentoML would otherwise clear them at start)
    snapshot = stable.metrics()
    intruder = launch(serving_dir, "intruder", model_env(iris, track="canary"), home=stable.home)
    try:
        assert intruder.process.wait(timeout=60) != 0
    finally:
        intruder.stop()
    assert "in use by another serving runtime" in intruder.log.read_text()
    after = stable.metrics()
    for key, value in snapshot.items():
        if key[0].startswith("modelops_"):
            assert after[key] == value, key
