"""The Open Inference Protocol (V2) of a real `bentoml serve` process: health, metadata, infer.

Requests are the protocol's tensor JSON, the first one as the KServe V2 / Triton REST examples
write it; answers are checked against the pipeline's own predictions and against `/predict`'s
answer for the same rows, and every refused request against its status, reason and field. Infer
must move the same series as `/predict` (feature histograms, prediction counts, BentoML's request
counters), and its prediction id must take feedback. A client that speaks the protocol,
tritonclient's HTTP client, calls the same server.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import Server, model_env

from modelops_api import contract
from modelops_serving import oip
from modelops_serving.schema import Feature, Rejected, Schema

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
IRIS = Schema(tuple(Feature(f, "numeric") for f in FEATURES))
INFER = "/v2/models/iris/infer"
MAX_BATCH = 50
MAX_BODY = 64 * 1024

# The protocol's own example request (KServe V2 / Triton REST docs), with iris's 4 features.
SPEC_EXAMPLE = {
    "id": "42",
    "inputs": [
        {
            "name": "input-0",
            "shape": [2, 4],
            "datatype": "FP32",
            "data": [6.8, 2.8, 4.8, 1.4, 6.0, 3.4, 4.5, 1.6],
        }
    ],
}


def tensor(name: str, shape: list[int], datatype: str, data: list[Any]) -> dict[str, Any]:
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


# -- the protocol, without a server ---------------------------------------------------------


@pytest.mark.unit
def test_the_specs_example_becomes_rows_in_schema_order() -> None:
    request = oip.parse_request(SPEC_EXAMPLE, IRIS, [oip.PREDICT, oip.PROBA])
    assert request.rows == [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]
    assert request.id == "42" and request.outputs is None
    nested = {"inputs": [tensor("x", [2, 4], "FP64", [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]])]}
    assert oip.parse_request(nested, IRIS, [oip.PREDICT]).rows == request.rows
    # one tensor per feature, in any order, [N] or [N, 1]
    columns = list(zip(*request.rows, strict=True))
    per_feature = {
        "inputs": [
            tensor(f, [2] if i % 2 else [2, 1], "FP32", list(columns[FEATURES.index(f)]))
            for i, f in enumerate(reversed(FEATURES))
        ],
        "outputs": [{"name": "predict"}],
    }
    parsed = oip.parse_request(per_feature, IRIS, [oip.PREDICT])
    assert parsed.rows == request.rows and parsed.outputs == ("predict",)


@pytest.mark.unit
def test_routes_of_the_protocol() -> None:
    assert oip.route("/v2/health/live") == oip.Route(oip.LIVE)
    assert oip.route("/v2/health/ready") == oip.Route(oip.READY)
    assert oip.route("/v2") == oip.Route(oip.SERVER)
    assert oip.route("/v2/models/iris") == oip.Route(oip.MODEL, "iris")
    assert oip.route("/v2/models/iris/ready") == oip.Route(oip.MODEL_READY, "iris")
    assert oip.route("/v2/models/iris/versions/v1/infer") == oip.Route(oip.INFER, "iris", "v1")
    assert oip.route("/v2/models/iris/explain") is None
    assert oip.route("/v2/repository/index") is None
    with pytest.raises(Rejected) as caught:
        oip.check_model(oip.Route(oip.INFER, "iris", "v2"), "iris", "v1")
    assert caught.value.status == 404 and caught.value.problems[0].field == "version"


# -- a served model ------------------------------------------------------------------------


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
    return start("iris-oip", env)


@pytest.fixture(scope="module")
def price_server(start: Any, price: Any) -> Server:
    return start("price-oip", model_env(price))


def labels(**extra: str) -> frozenset[tuple[str, str]]:
    return frozenset({"model": "iris", "version": "iris-v1", "track": "stable", **extra}.items())


@pytest.mark.integration
def test_health_and_server_metadata(server: Server) -> None:
    for path, body in (("/v2/health/live", {"live": True}), ("/v2/health/ready", {"ready": True})):
        response = server.get(path, auth=False)
        assert (response.status_code, response.json()) == (200, body)
    meta = server.get("/v2", auth=False).json()
    assert meta["name"] == "modelops" and meta["extensions"] == []
    assert server.client.head("/v2/health/live").status_code == 200
    ready = server.get("/v2/models/iris/ready", auth=False)
    assert (ready.status_code, ready.json()) == (200, {"name": "iris", "ready": True})
    assert server.get("/v2/models/iris/versions/iris-v1/ready").status_code == 200


@pytest.mark.integration
def test_model_metadata_has_the_protocols_shape(server: Server) -> None:
    response = server.get("/v2/models/iris", auth=False)
    assert response.status_code == 200
    meta = response.json()
    assert meta == {
        "name": "iris",
        "versions": ["iris-v1"],
        "platform": "scikit-learn",
        "inputs": [{"name": f, "datatype": "FP64", "shape": [-1]} for f in FEATURES],
        "outputs": [
            {"name": "predict", "datatype": "BYTES", "shape": [-1]},
            {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 3]},
        ],
    }
    assert server.get("/v2/models/iris/versions/iris-v1").json() == meta


@pytest.mark.integration
def test_the_specs_example_is_answered_as_predict_answers(server: Server, iris: Any) -> None:
    response = server.post(INFER, SPEC_EXAMPLE, auth=False)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model_name"], body["model_version"], body["id"]) == ("iris", "iris-v1", "42")
    rows = [SPEC_EXAMPLE["inputs"][0]["data"][:4], SPEC_EXAMPLE["inputs"][0]["data"][4:]]
    frame = pd.DataFrame(rows, columns=FEATURES)
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["predict"] == {
        "name": "predict",
        "datatype": "BYTES",
        "shape": [2],
        "data": iris.pipeline.predict(frame).tolist(),
    }
    proba = outputs["predict_proba"]
    assert (proba["datatype"], proba["shape"]) == ("FP64", [2, 3])
    classes = json.loads(proba["parameters"]["classes"])
    assert classes == [str(c) for c in iris.pipeline.classes_]
    assert proba["data"] == iris.pipeline.predict_proba(frame).ravel().tolist()
    # the same rows through /predict: the same predictions and probabilities
    predicted = server.post("/predict", {"rows": rows}).json()
    assert predicted["predictions"] == outputs["predict"]["data"]
    flat = [p[c] for p in predicted["probabilities"] for c in classes]
    assert flat == proba["data"]
    assert body["parameters"]["request_id"].count(".") == 1  # a signed id, as /predict's


@pytest.mark.integration
def test_per_feature_tensors_versions_path_and_chosen_outputs(server: Server, iris: Any) -> None:
    frame = iris.frame.iloc[::10]
    body = {
        "inputs": [tensor(f, [len(frame)], "FP64", frame[f].tolist()) for f in FEATURES],
        "outputs": [{"name": "predict"}],
    }
    response = server.post("/v2/models/iris/versions/iris-v1/infer", body, auth=False)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert [o["name"] for o in answer["outputs"]] == ["predict"]
    assert answer["outputs"][0]["data"] == iris.pipeline.predict(frame).tolist()
    # without an id of its own, the answer's id is the prediction id
    assert answer["id"] == answer["parameters"]["request_id"]


GOOD = [5.1, 3.5, 1.4, 0.2]


def one(datatype: str = "FP32", data: Any = None, shape: Any = None) -> dict[str, Any]:
    values = GOOD if data is None else data
    return {"inputs": [tensor("input-0", [1, 4] if shape is None else shape, datatype, values)]}


# (path, raw body, status, reason, field, a word the error must contain)
BAD = [
    ("/v2/models/rose/infer", json.dumps(one()), 404, "unknown_model", "model", "rose"),
    (
        "/v2/models/iris/versions/iris-v9/infer",
        json.dumps(one()),
        404,
        "unknown_model",
        "version",
        "iris-v9",
    ),
    (INFER, '{"inputs": [', 400, "invalid_json", "body", "JSON"),
    (INFER, "[1, 2]", 400, "invalid_body", "inputs", "inputs"),
    (INFER, '{"data": []}', 400, "invalid_body", "inputs", "inputs"),
    (INFER, '{"inputs": []}', 400, "empty_batch", "inputs", "empty"),
    (INFER, json.dumps(one(shape=[1, 3])), 400, "invalid_tensor", "inputs[0].data", "shape"),
    (
        INFER,
        json.dumps(one(data=GOOD * 2, shape=[4, 2])),
        400,
        "invalid_tensor",
        "inputs[0].shape",
        "[N, 4]",
    ),
    (INFER, json.dumps(one(shape="1x4")), 400, "invalid_tensor", "inputs[0].shape", "shape"),
    (
        INFER,
        json.dumps(one("BOOL", [True] * 4)),
        400,
        "unsupported_datatype",
        "inputs[0].datatype",
        "BOOL",
    ),
    (INFER, json.dumps(one("FP8")), 400, "unsupported_datatype", "inputs[0].datatype", "FP8"),
    (
        INFER,
        json.dumps(one("FP32", [5.1, "3.5", 1.4, 0.2])),
        400,
        "wrong_type",
        "sepal_width",
        "sepal_width",
    ),
    (
        INFER,
        json.dumps(one("BYTES", ["5.1", "3.5", "1.4", "0.2"])),
        400,
        "wrong_type",
        "sepal_length",
        "must be a number",
    ),
    (
        INFER,
        json.dumps(one("FP64", [5.1, 3.5, None, 0.2])),
        400,
        "missing_value",
        "petal_length",
        "petal_length",
    ),
    (
        INFER,
        '{"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", '
        '"data": [5.1, 3.5, 1.4, Infinity]}]}',
        400,
        "wrong_type",
        "petal_width",
        "finite",
    ),
    (
        INFER,
        json.dumps(one(data=GOOD * (MAX_BATCH + 1), shape=[MAX_BATCH + 1, 4])),
        400,
        "batch_too_large",
        "rows",
        "limit",
    ),
    (
        INFER,
        json.dumps({"inputs": [tensor(f, [1], "FP32", [1.0]) for f in FEATURES[:3]]}),
        400,
        "missing_feature",
        "petal_width",
        "petal_width",
    ),
    (
        INFER,
        json.dumps({"inputs": [tensor(f, [1], "FP32", [1.0]) for f in [*FEATURES, "colour"]]}),
        400,
        "extra_feature",
        "colour",
        "colour",
    ),
    (
        INFER,
        json.dumps(
            {
                "inputs": [
                    tensor(f, [i + 1], "FP32", [1.0] * (i + 1)) for i, f in enumerate(FEATURES)
                ]
            }
        ),
        400,
        "invalid_tensor",
        "inputs",
        "rows",
    ),
    (
        INFER,
        json.dumps({**one(), "outputs": [{"name": "explain"}]}),
        400,
        "invalid_tensor",
        "outputs[0].name",
        "explain",
    ),
]


@pytest.mark.integration
@pytest.mark.parametrize(("path", "raw", "status", "reason", "field", "word"), BAD)
def test_bad_requests_get_the_protocols_error_naming_the_field(
    server: Server, path: str, raw: str, status: int, reason: str, field: str, word: str
) -> None:
    before = server.metrics()
    response = server.post(path, content=raw.encode(), auth=False)
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body["error"], str) and word in body["error"], body
    assert body["reason"] == reason and response.headers["x-modelops-reason"] == reason
    assert body["problems"][0].get("field") == field
    after = server.metrics()
    key = ("modelops_rejected_total", labels(endpoint="infer", reason=reason))
    assert after[key] - before[key] == 1


@pytest.mark.integration
def test_other_refusals(server: Server) -> None:
    wrong_method = server.client.get(INFER)
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"
    assert "POST" in wrong_method.json()["error"]
    big = json.dumps(one(data=GOOD * 5000, shape=[5000, 4])).encode()
    too_large = server.post(INFER, content=big, auth=False)
    assert (too_large.status_code, too_large.json()["reason"]) == (413, "body_too_large")
    binary = server.client.post(
        INFER,
        content=b'{"inputs": []}' + b"\0" * 16,
        headers={"Inference-Header-Content-Length": "14"},
    )
    assert binary.status_code == 400 and "binary" in binary.json()["error"]
    assert server.get("/v2/models/rose", auth=False).status_code == 404
    assert server.get("/v2/models/rose/ready", auth=False).status_code == 404


def monitored(metrics: dict[Any, float]) -> dict[Any, float]:
    """The runtime's series of inputs and predictions."""
    names = ("modelops_feature_value_bucket", "modelops_feature_value_sum")
    return {
        key: value
        for key, value in metrics.items()
        if key[0] in names or key[0] == "modelops_prediction_class_total"
    }


def requests(metrics: dict[Any, float], endpoint: str, name: str) -> float:
    return sum(
        value
        for (sample, lbls), value in metrics.items()
        if sample == name
        and dict(lbls).get("endpoint") == endpoint
        and dict(lbls).get("http_response_code") == "200"
    )


@pytest.mark.integration
def test_infer_moves_the_same_series_as_predict(server: Server, iris: Any) -> None:
    rows = iris.frame.iloc[::7].values.tolist()
    flat = [v for row in rows for v in row]
    body = {"inputs": [tensor("input-0", [len(rows), 4], "FP64", flat)]}

    def delta(send: Any) -> dict[Any, float]:
        before = monitored(server.metrics())
        assert send().status_code == 200
        after = monitored(server.metrics())
        return {k: after[k] - before.get(k, 0.0) for k in after if after[k] != before.get(k, 0.0)}

    by_predict = delta(lambda: server.post("/predict", {"rows": rows}))
    by_infer = delta(lambda: server.post(INFER, body, auth=False))
    assert by_infer == pytest.approx(by_predict)  # sums of floats, added in another order
    assert sum(v for k, v in by_infer.items() if k[0] == "modelops_prediction_class_total") == len(
        rows
    )
    # BentoML's request counter and latency histogram, under the protocol's path
    before = server.metrics()
    assert server.post(INFER, body, auth=False).status_code == 200
    after = server.metrics()
    for name in ("bentoml_service_request_total", "bentoml_service_request_duration_seconds_count"):
        assert requests(after, INFER, name) - requests(before, INFER, name) == 1, name


@pytest.mark.integration
def test_the_prediction_id_of_infer_takes_feedback(server: Server) -> None:
    answer = server.post(INFER, {"inputs": SPEC_EXAMPLE["inputs"]}, auth=False).json()
    rid = answer["parameters"]["request_id"]
    predicted = answer["outputs"][0]["data"]
    before = server.metrics()
    items = [
        {"request_id": rid, "row": 0, "truth": predicted[0]},
        {"request_id": rid, "row": 1, "truth": "not-" + predicted[1]},
    ]
    result = server.post("/feedback", {"items": items})
    assert result.status_code == 200, result.text
    assert (result.json()["correct"], result.json()["incorrect"]) == (1, 1)
    after = server.metrics()
    for outcome in ("correct", "incorrect"):
        key = ("modelops_feedback_total", labels(outcome=outcome))
        assert after[key] - before[key] == 1


@pytest.mark.integration
def test_a_model_with_categories_takes_one_tensor_per_feature(
    price_server: Server, price: Any
) -> None:
    meta = price_server.get("/v2/models/price").json()
    assert meta["inputs"] == [
        {"name": "size", "datatype": "FP64", "shape": [-1]},
        {"name": "city", "datatype": "BYTES", "shape": [-1]},
    ]
    assert meta["outputs"] == [{"name": "predict", "datatype": "FP64", "shape": [-1]}]
    frame = price.frame.iloc[:5]
    body = {
        "inputs": [
            tensor("city", [5, 1], "BYTES", frame["city"].tolist()),
            tensor("size", [5], "FP32", frame["size"].tolist()),
        ]
    }
    response = price_server.post("/v2/models/price/infer", body)
    assert response.status_code == 200, response.text
    (output,) = response.json()["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("predict", "FP64", [5])
    assert np.allclose(output["data"], price.pipeline.predict(frame), rtol=1e-12)
    body["inputs"][0]["data"][2] = 3  # a number in a BYTES tensor
    refused = price_server.post("/v2/models/price/infer", body)
    assert refused.status_code == 400
    assert refused.json()["problems"][0] == {
        "reason": "wrong_type",
        "message": refused.json()["error"],
        "row": 2,
        "field": "city",
    }


@pytest.mark.integration
def test_infer_records_production_data_as_predict_does(
    start: Any, iris: Any, tmp_path: Path
) -> None:
    """With recording on, the rows infer answered and the feedback sent for them reach the
    production folder beside the archive, under the prediction id of the answer."""
    archive = tmp_path / "models" / "iris" / iris.archive.name
    archive.parent.mkdir(parents=True)
    shutil.copy(iris.archive, archive)
    env = {
        **model_env(iris),
        "MODELOPS_ARTIFACT": archive.as_uri(),
        contract.ENV_RECORDING_RETENTION: "3600",
        "MODELOPS_RECORDING_FLUSH_SECONDS": "0.5",
    }
    server = start("iris-oip-recording", env)
    answer = server.post(INFER, SPEC_EXAMPLE, auth=False).json()
    rid = answer["parameters"]["request_id"]
    items = [{"request_id": rid, "row": 1, "truth": "virginica"}]
    assert server.post("/feedback", {"items": items}).json()["accepted"] == 1
    folder = archive.parent / contract.PRODUCTION

    def batches(kind: str) -> list[Path]:
        return sorted((folder / kind).rglob("*.parquet"))

    deadline = time.monotonic() + 30
    kinds = (contract.PRODUCTION_INPUTS, contract.PRODUCTION_LABELS)
    while not all(batches(k) for k in kinds) and time.monotonic() < deadline:
        time.sleep(0.25)
    inputs = pd.concat(pd.read_parquet(p) for p in batches(contract.PRODUCTION_INPUTS))
    assert inputs[contract.PRODUCTION_ID].tolist() == [rid, rid]
    assert inputs[contract.PRODUCTION_ROW].tolist() == [0, 1]
    values = inputs[FEATURES].to_numpy().ravel().tolist()
    assert values == SPEC_EXAMPLE["inputs"][0]["data"]
    labels_ = pd.concat(pd.read_parquet(p) for p in batches(contract.PRODUCTION_LABELS))
    assert labels_[[contract.PRODUCTION_ID, contract.PRODUCTION_ROW]].values.tolist() == [[rid, 1]]


@pytest.mark.integration
def test_a_model_still_loading_is_not_ready_on_the_protocol_either(
    start: Any, iris: Any, tmp_path: Path
) -> None:
    late = tmp_path / "late" / "iris" / iris.archive.name
    server = start(
        "iris-oip-late", {**model_env(iris), "MODELOPS_ARTIFACT": late.as_uri()}, ready=False
    )
    server.wait("/v2/health/live")
    ready = server.get("/v2/health/ready")
    assert (ready.status_code, ready.json()) == (503, {"ready": False})
    model_ready = server.get("/v2/models/iris/ready")
    assert model_ready.status_code == 503 and model_ready.json()["ready"] is False
    assert server.get("/v2/models/iris").status_code == 503
    answer = server.post(INFER, SPEC_EXAMPLE)
    assert answer.status_code == 503 and "still loading" in answer.json()["error"]
    late.parent.mkdir(parents=True)
    shutil.copy(iris.archive, late)
    server.wait("/v2/health/ready", deadline=30)
    assert server.post(INFER, SPEC_EXAMPLE).status_code == 200


# -- a client library that speaks the protocol -----------------------------------------------


@pytest.mark.integration
def test_tritonclient_calls_the_model(server: Server, iris: Any) -> None:
    import tritonclient.http as httpclient  # the dev extra's; imported here: it brings gevent
    from tritonclient.utils import InferenceServerException

    client = httpclient.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("iris") and not client.is_model_ready("rose")
        meta = client.get_model_metadata("iris")
        assert meta["versions"] == ["iris-v1"]
        assert [i["name"] for i in meta["inputs"]] == FEATURES

        frame = iris.frame.iloc[[0, 60, 120]]
        data = frame.to_numpy(dtype=np.float32)
        matrix = httpclient.InferInput("input-0", list(data.shape), "FP32")
        matrix.set_data_from_numpy(data, binary_data=False)
        wanted = [
            httpclient.InferRequestedOutput("predict", binary_data=False),
            httpclient.InferRequestedOutput("predict_proba", binary_data=False),
        ]
        result = client.infer("iris", [matrix], outputs=wanted, request_id="r-1")
        expected = iris.pipeline.predict(pd.DataFrame(data.astype(np.float64), columns=FEATURES))
        assert result.as_numpy("predict").tolist() == expected.tolist()
        proba = result.as_numpy("predict_proba")
        assert proba.shape == (3, 3) and np.allclose(proba.sum(axis=1), 1.0)
        response = result.get_response()
        assert response["id"] == "r-1" and "request_id" in response["parameters"]

        # one tensor per feature, and no outputs named: tritonclient asks for binary outputs,
        # which the runtime answers as JSON, which the client reads as well
        per_feature = []
        for j, name in enumerate(FEATURES):
            column = httpclient.InferInput(name, [3], "FP64")
            column.set_data_from_numpy(data[:, j].astype(np.float64), binary_data=False)
            per_feature.append(column)
        result = client.infer("iris", per_feature)
        assert result.as_numpy("predict").tolist() == expected.tolist()

        # tritonclient's default, binary input data, is refused with a clear message
        binary = httpclient.InferInput("input-0", list(data.shape), "FP32")
        binary.set_data_from_numpy(data)
        with pytest.raises(InferenceServerException, match="binary tensor data"):
            client.infer("iris", [binary])
        with pytest.raises(InferenceServerException, match="no model 'rose'"):
            client.infer("rose", [matrix])
    finally:
        client.close()
