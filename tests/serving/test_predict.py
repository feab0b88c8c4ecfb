"""`/predict`, `/readyz`, `/metadata` of a real `bentoml serve` process with two workers."""

from __future__ import annotations

import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import Server, model_env

from modelops_api.contract import ENV_CREDENTIALS
from modelops_serving.credentials import Credentials

pytestmark = pytest.mark.integration

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
MAX_BATCH = 50
MAX_BODY = 64 * 1024


@pytest.fixture(scope="module")
def server(start: Any, iris: Any) -> Server:
    env = model_env(
        iris,
        MODELOPS_WORKERS="2",
        MODELOPS_MAX_BATCH=str(MAX_BATCH),
        MODELOPS_MAX_BODY_BYTES=str(MAX_BODY),
        # each request writes its metrics, so that a scrape counts both workers' exactly
        MODELOPS_METRICS_FLUSH_SECONDS="0",
    )
    return start("iris-predict", env)


def labels(**extra: str) -> frozenset[tuple[str, str]]:
    return frozenset({"model": "iris", "version": "iris-v1", "track": "stable", **extra}.items())


def rejected(metrics: dict[Any, float], reason: str, endpoint: str = "predict") -> float:
    return metrics[("modelops_rejected_total", labels(endpoint=endpoint, reason=reason))]


def test_predictions_and_probabilities_equal_the_models_own(server: Server, iris: Any) -> None:
    frame = iris.frame.iloc[::5]
    rows: list[Any] = []
    for i, record in enumerate(frame.to_dict(orient="records")):
        rows.append(record if i % 2 else [record[f] for f in FEATURES])
    response = server.post("/predict", {"rows": rows})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["predictions"] == iris.pipeline.predict(frame).tolist()
    expected = iris.pipeline.predict_proba(frame)
    classes = [str(c) for c in iris.pipeline.classes_]
    assert body["probabilities"] == [dict(zip(classes, p, strict=True)) for p in expected.tolist()]
    assert body["model"] == "iris" and body["version"] == "iris-v1"
    assert body["request_id"].count(".") == 1  # a signed id (credentials.py)


def test_metadata_names_model_version_metrics_and_schema(server: Server, iris: Any) -> None:
    response = server.get("/metadata")
    assert response.status_code == 200
    meta = response.json()
    assert meta["state"] == "ready"
    assert (meta["model"], meta["version"], meta["track"]) == ("iris", "iris-v1", "stable")
    assert meta["task"] == "classification"
    assert [f["name"] for f in meta["features"]] == FEATURES
    assert meta["metrics"] == iris.metadata["metrics"]
    assert (
        meta["reference"]["petal_width"]["edges"]
        == iris.metadata["reference"]["petal_width"]["edges"]
    )
    assert server.get("/livez").status_code == 200
    assert server.get("/readyz").status_code == 200


GOOD = [5.1, 3.5, 1.4, 0.2]
GOOD_OBJ = dict(zip(FEATURES, GOOD, strict=True))

# (body as raw JSON, status, reason, row, field)
BAD_BODIES = [
    ('{"rows": [', 400, "invalid_json", None, "body"),
    ("[1, 2, 3]", 400, "invalid_json", None, "body"),
    ('{"rows": {"sepal_length": 1}}', 400, "invalid_body", None, "rows"),
    ('{"data": []}', 400, "invalid_body", None, "rows"),
    ('{"rows": []}', 400, "empty_batch", None, "rows"),
    (json.dumps({"rows": [GOOD] * (MAX_BATCH + 1)}), 400, "batch_too_large", None, "rows"),
    (json.dumps({"rows": [GOOD, "x"]}), 400, "invalid_row", 1, None),
    (
        json.dumps({"rows": [GOOD_OBJ, {k: v for k, v in GOOD_OBJ.items() if k != "sepal_width"}]}),
        400,
        "missing_feature",
        1,
        "sepal_width",
    ),
    (json.dumps({"rows": [GOOD, GOOD, [5.1, 3.5, 1.4]]}), 400, "missing_feature", 2, "petal_width"),
    (json.dumps({"rows": [{**GOOD_OBJ, "colour": "red"}]}), 400, "extra_feature", 0, "colour"),
    (json.dumps({"rows": [[*GOOD, 9.9]]}), 400, "extra_feature", 0, "[4]"),
    (json.dumps({"rows": [GOOD, [5.1, "3.5", 1.4, 0.2]]}), 400, "wrong_type", 1, "sepal_width"),
    (json.dumps({"rows": [[5.1, 3.5, True, 0.2]]}), 400, "wrong_type", 0, "petal_length"),
    ('{"rows": [[5.1, 3.5, 1.4, Infinity]]}', 400, "wrong_type", 0, "petal_width"),
    ('{"rows": [[5.1, 3.5, 1' + "0" * 400 + ", 0.2]]}", 400, "wrong_type", 0, "petal_length"),
    ('{"rows": [[5.1, 3.5, 1' + "0" * 5000 + ", 0.2]]}", 400, "invalid_json", None, "body"),
    (
        json.dumps({"rows": [GOOD, GOOD, GOOD, [None, 3.5, 1.4, 0.2]]}),
        400,
        "missing_value",
        3,
        "sepal_length",
    ),
    ('{"rows": [[5.1, NaN, 1.4, 0.2]]}', 400, "missing_value", 0, "sepal_width"),
]


@pytest.mark.parametrize(("raw", "status", "reason", "row", "field"), BAD_BODIES)
def test_bad_bodies_get_a_4xx_naming_row_and_field(
    server: Server, raw: str, status: int, reason: str, row: int | None, field: str | None
) -> None:
    before = server.metrics()
    response = server.post("/predict", content=raw.encode())
    assert response.status_code == status, response.text
    body = response.json()
    assert body["reason"] == reason
    first = body["problems"][0]
    assert first.get("row") == row
    assert first.get("field") == field
    assert body["error"] == first["message"]
    if field is not None:
        assert field.strip("[]") in first["message"] or field in first["message"]
    if row is not None:
        assert f"row {row}" in first["message"]
    after = server.metrics()
    assert rejected(after, reason) - rejected(before, reason) == 1


def test_every_problem_of_a_body_is_listed(server: Server) -> None:
    rows = [GOOD, [5.1, "a", 1.4, 0.2], {"sepal_length": 5.0}, GOOD]
    response = server.post("/predict", {"rows": rows})
    assert response.status_code == 400
    problems = [(p["row"], p["field"], p["reason"]) for p in response.json()["problems"]]
    assert problems == [
        (1, "sepal_width", "wrong_type"),
        (2, "sepal_width", "missing_feature"),
        (2, "petal_length", "missing_feature"),
        (2, "petal_width", "missing_feature"),
    ]


def expected_cumulative(values: list[float], edges: list[float]) -> dict[str, float]:
    """Cumulative right-closed counts by `le`, computed without the runtime's code."""
    out = {}
    for edge in edges:
        out[str(edge)] = float(sum(1 for v in values if v <= edge))
    out["+Inf"] = float(len(values))
    return out


def bucket_series(metrics: dict[Any, float], feature: str) -> dict[str, float]:
    out = {}
    for (name, lbls), value in metrics.items():
        d = dict(lbls)
        if name == "modelops_feature_value_bucket" and d["feature"] == feature:
            assert (d["model"], d["version"], d["track"]) == ("iris", "iris-v1", "stable")
            out[d["le"]] = value
    return out


def test_feature_buckets_count_exactly_across_workers(server: Server, iris: Any) -> None:
    rng = np.random.default_rng(20261201)
    reference = iris.metadata["reference"]
    sent: dict[str, list[float]] = {f: [] for f in FEATURES}
    batches: list[list[list[float]]] = []
    for size in [1] * 120 + [7] * 20 + [MAX_BATCH] * 4:
        batch = []
        for _ in range(size):
            row = [round(float(rng.uniform(0.0, 8.0)), 1) for _ in FEATURES]
            batch.append(row)
        batches.append(batch)
    # values exactly on the edges land in the bucket whose `le` they equal (right-closed bins)
    batches.append([[reference[f]["edges"][i % 4] for f in FEATURES] for i in range(8)])
    for batch in batches:
        for row in batch:
            for f, v in zip(FEATURES, row, strict=True):
                sent[f].append(v)
    before = server.metrics()

    def send(batch: list[list[float]]) -> list[Any]:
        response = server.post("/predict", {"rows": batch})
        assert response.status_code == 200, response.text
        return list(response.json()["predictions"])

    with ThreadPoolExecutor(max_workers=6) as pool:
        predicted = [p for result in pool.map(send, batches) for p in result]
    after = server.metrics()

    for f in FEATURES:
        edges = reference[f]["edges"]
        old, new = bucket_series(before, f), bucket_series(after, f)
        delta = {le: new[le] - old.get(le, 0.0) for le in new}
        assert delta == expected_cumulative(sent[f], edges), f
        key = ("modelops_feature_value_sum", labels(feature=f))
        assert after[key] - before.get(key, 0.0) == pytest.approx(sum(sent[f]))

    frame = pd.DataFrame({f: sent[f] for f in FEATURES}, columns=FEATURES)
    expected_classes = Counter(iris.pipeline.predict(frame).tolist())
    assert Counter(predicted) == expected_classes
    for cls in iris.metadata["classes"]:
        key = ("modelops_prediction_class_total", labels(**{"class": cls}))
        assert after[key] - before[key] == expected_classes.get(cls, 0)

    # both workers served part of the load, so the counts above were merged across processes
    pids = {
        dict(lbls)["pid"]
        for (name, lbls) in after
        if name == "bentoml_service_last_request_timestamp_seconds"
    }
    assert len(pids) == 2


def test_feedback_moves_the_accuracy_counters(server: Server, iris: Any) -> None:
    frame = iris.frame.iloc[[0, 60, 120, 130]]
    response = server.post("/predict", {"rows": frame.values.tolist()})
    assert response.status_code == 200
    body = response.json()
    predicted = body["predictions"]
    rid = body["request_id"]
    before = server.metrics()
    # truths: rows 0 and 1 agree with the prediction, row 2 does not
    wrong = next(c for c in iris.metadata["classes"] if c != predicted[2])
    payload, _, signature = rid.partition(".")
    # what a pod of another version of the Model (same Secret) would have answered
    other_version = Credentials(Path(model_env(iris)[ENV_CREDENTIALS])).issue("iris-v0", ["a"])
    items = [
        {"request_id": rid, "row": 0, "truth": predicted[0]},
        {"request_id": rid, "row": 1, "truth": predicted[1]},
        {"request_id": rid, "row": 2, "truth": wrong},
        {"request_id": rid, "row": 0, "truth": predicted[0]},  # the same row again
        {"request_id": rid, "row": 9, "truth": "setosa"},
        {"request_id": "0" * 32, "truth": "setosa"},  # made up
        {"request_id": f"{payload[:-2]}AA.{signature}", "truth": "setosa"},  # tampered with
        {"request_id": other_version, "truth": "setosa"},
    ]
    # send them one by one so that the two workers share the claimed rows
    totals: Counter[str] = Counter()
    with ThreadPoolExecutor(max_workers=4) as pool:
        for answer in pool.map(lambda item: server.post("/feedback", {"items": [item]}), items):
            assert answer.status_code == 200, answer.text
            result = answer.json()
            totals["correct"] += result["correct"]
            totals["incorrect"] += result["incorrect"]
            for reason, n in result["unmatched"].items():
                totals[reason] += n
    assert totals == Counter(
        correct=2, incorrect=1, duplicate=1, unknown_row=1, forged=2, other_version=1
    )
    after = server.metrics()

    def delta(name: str, **extra: str) -> float:
        key = (name, labels(**extra))
        return after[key] - before[key]

    assert delta("modelops_feedback_total", outcome="correct") == 2
    assert delta("modelops_feedback_total", outcome="incorrect") == 1
    assert delta("modelops_feedback_unmatched_total", reason="duplicate") == 1
    assert delta("modelops_feedback_unmatched_total", reason="unknown_row") == 1
    assert delta("modelops_feedback_unmatched_total", reason="forged") == 2
    assert delta("modelops_feedback_unmatched_total", reason="other_version") == 1


def test_feedback_needs_the_models_token(server: Server, iris: Any) -> None:
    """Nobody without the token steers the model: no feedback is read, nothing is counted."""
    rid = server.post("/predict", {"rows": iris.frame.iloc[:1].values.tolist()}).json()
    items = {"items": [{"request_id": rid["request_id"], "truth": "setosa"}]}
    before = server.metrics()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
        answer = server.client.post("/feedback", json=items, headers=headers)
        assert answer.status_code == 401, answer.text
        assert answer.headers["www-authenticate"] == "Bearer"
        assert answer.json()["reason"] == "unauthorized"
    after = server.metrics()
    assert rejected(after, "unauthorized", "feedback") - rejected(
        before, "unauthorized", "feedback"
    ) == 3
    key = ("modelops_feedback_total", labels(outcome="correct"))
    assert after[key] == before[key]


def test_metadata_tells_strangers_only_how_to_call_the_model(server: Server) -> None:
    public = server.get("/metadata", auth=False).json()
    assert public["model"] == "iris" and public["task"] == "classification"
    assert public["features"][0] == {"name": "sepal_length", "type": "numeric"}
    for secret in ("reference", "prediction", "classes", "metrics", "artifact", "fingerprint"):
        assert secret not in public, secret
    assert "reference" in server.get("/metadata").json()


@pytest.mark.parametrize(
    ("items", "row", "field", "reason"),
    [
        ([{"truth": "setosa"}], 0, "request_id", "missing_feature"),
        (
            [{"request_id": "a", "truth": "setosa"}, {"request_id": 5, "truth": "x"}],
            1,
            "request_id",
            "wrong_type",
        ),
        ([{"request_id": "a"}], 0, "truth", "missing_feature"),
        ([{"request_id": "a", "truth": None}], 0, "truth", "missing_value"),
        ([{"prediction": "setosa", "truth": "setosa"}], 0, "prediction", "extra_feature"),
        ([{"request_id": "a", "row": -1, "truth": "setosa"}], 0, "row", "wrong_type"),
        ([{"request_id": "a", "truth": "x", "comment": 1}], 0, "comment", "extra_feature"),
        ([], None, "items", "empty_batch"),
    ],
)
def test_bad_feedback_gets_a_4xx_naming_item_and_field(
    server: Server, items: Any, row: int | None, field: str, reason: str
) -> None:
    before = server.metrics()
    response = server.post("/feedback", {"items": items})
    assert response.status_code == 400, response.text
    first = response.json()["problems"][0]
    assert (first.get("row"), first["field"], first["reason"]) == (row, field, reason)
    after = server.metrics()
    assert rejected(after, reason, "feedback") - rejected(before, reason, "feedback") == 1


def test_a_body_over_the_limit_gets_a_413_without_being_read(server: Server) -> None:
    big = json.dumps({"rows": [[5.1, 3.5, 1.4, 0.2]] * 5000}).encode()  # about 100 KB
    before = server.metrics()
    declared = server.post("/predict", content=big)

    def chunked() -> Any:
        for start in range(0, len(big), 4096):
            yield big[start : start + 4096]

    streamed = server.client.post(
        "/predict", content=chunked(), headers={"content-type": "application/json"}
    )
    for answer in (declared, streamed):
        assert answer.status_code == 413, answer.text
        assert answer.json()["reason"] == "body_too_large"
    after = server.metrics()
    assert rejected(after, "body_too_large", "predict") - rejected(
        before, "body_too_large", "predict"
    ) == 2
    assert server.post("/predict", {"rows": [[5.1, 3.5, 1.4, 0.2]]}).status_code == 200


def test_bentoml_request_series_are_kept(server: Server) -> None:
    text = server.get("/metrics").text
    assert 'bentoml_service_request_total{endpoint="/predict",http_response_code="200"' in text
    assert "bentoml_service_request_duration_seconds_bucket" in text
    for line in text.splitlines():
        if line.startswith("modelops_"):
            assert 'model="iris"' in line and 'version="iris-v1"' in line, line
            assert 'track="stable"' in line, line


@pytest.mark.parametrize(
    "content_type",
    [
        "application/x-www-form-urlencoded",
        "multipart/form-data",
        "application/vnd.bentoml+pickle",
        "text/plain",
    ],
)
def test_bodies_are_json_whatever_their_declared_type(server: Server, content_type: str) -> None:
    body = json.dumps({"rows": [GOOD]}).encode()
    response = server.client.post("/predict", content=body, headers={"content-type": content_type})
    assert response.status_code == 200, response.text
    garbage = server.client.post(
        "/predict", content=b"rows=1&x=2", headers={"content-type": content_type}
    )
    assert garbage.status_code == 400
    assert garbage.json()["reason"] == "invalid_json"


def test_probes_stay_out_of_the_access_log(server: Server) -> None:
    for _ in range(3):
        assert server.get("/livez").status_code == 200
        assert server.get("/readyz").status_code == 200
    assert server.post("/predict", {"rows": [GOOD]}).status_code == 200
    deadline = time.monotonic() + 10
    while "path=/predict" not in server.log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    log = server.log.read_text()
    assert "path=/predict" in log
    assert "path=/livez" not in log and "path=/readyz" not in log
