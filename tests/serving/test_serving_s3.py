"""A real `bentoml serve` of the runtime loading its archive from `s3://` on a real S3 server (the
sandbox's SeaweedFS), with credentials and endpoint in the environment as a pod gets them: it
answers /predict, still answers once the store is gone, waits for an archive not uploaded yet, and
reports a store it cannot reach or that refuses it as a load error that never shows the secret.

One server serves the module; the test that stops it comes last.
"""

from __future__ import annotations

import socket
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import serving_models as models
from conftest import Server, model_env

from modelops_sandbox.objectstore import ObjectStore

pytestmark = pytest.mark.integration

ROW = [5.1, 3.5, 1.4, 0.2]


@pytest.fixture(scope="module")
def bucket(store: ObjectStore) -> str:
    name = f"serving-{uuid.uuid4().hex[:8]}"
    store.create_bucket(name)
    return name


def s3_env(store: ObjectStore, built: models.BuiltModel, uri: str, **extra: str) -> dict[str, str]:
    return {
        **model_env(built),
        "MODELOPS_ARTIFACT": uri,
        "AWS_ACCESS_KEY_ID": store.access_key,
        "AWS_SECRET_ACCESS_KEY": store.secret_key,
        "AWS_ENDPOINT_URL": store.endpoint_url,
        "AWS_REGION": store.region,
        "AWS_CONFIG_FILE": "/nonexistent/aws-config",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
        **extra,
    }


def upload(store: ObjectStore, built: models.BuiltModel, key: str) -> str:
    started = time.perf_counter()
    store.filesystem().put_file(str(built.archive), key)
    size = built.archive.stat().st_size
    print(f"uploaded {size} bytes to s3://{key} in {time.perf_counter() - started:.3f}s")
    return f"s3://{key}"


def settled(server: Server, deadline: float = 60.0) -> dict[str, Any]:
    """/metadata once the runtime stopped loading."""
    end = time.monotonic() + deadline
    while (meta := server.get("/metadata").json()).get("state") == "loading":
        assert time.monotonic() < end, meta
        time.sleep(0.2)
    return dict(meta)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_store_is_a_load_error(
    start: Any, store: ObjectStore, bucket: str, iris: models.BuiltModel
) -> None:
    uri = upload(store, iris, f"{bucket}/unreachable/iris/iris-v1.bentomodel")
    env = s3_env(store, iris, uri, AWS_ENDPOINT_URL=f"http://127.0.0.1:{closed_port()}")
    server = start("s3-unreachable", env, ready=False)
    server.wait("/livez")
    meta = settled(server)
    assert meta["state"] == "failed"
    assert "cannot be reached" in meta["error"] and uri in meta["error"]
    assert server.get("/readyz").status_code == 503
    assert store.secret_key not in server.log.read_text()


def test_refused_credentials_are_a_load_error_without_the_secret(
    start: Any, store: ObjectStore, bucket: str, iris: models.BuiltModel
) -> None:
    uri = upload(store, iris, f"{bucket}/refused/iris/iris-v1.bentomodel")
    wrong = store.secret_key[::-1]
    server = start("s3-refused", s3_env(store, iris, uri, AWS_SECRET_ACCESS_KEY=wrong), ready=False)
    server.wait("/livez")
    meta = settled(server)
    assert meta["state"] == "failed"
    assert "refused the credentials" in meta["error"] and uri in meta["error"]
    log = server.log.read_text()
    assert wrong not in log and store.secret_key not in log
    assert wrong not in str(meta) and store.secret_key not in str(meta)


def test_an_archive_not_uploaded_yet_is_waited_for(
    start: Any, store: ObjectStore, bucket: str, iris: models.BuiltModel
) -> None:
    key = f"{bucket}/late/iris/iris-v1.bentomodel"
    server = start("s3-late", s3_env(store, iris, f"s3://{key}"), ready=False)
    server.wait("/livez")
    time.sleep(1.0)
    meta = server.get("/metadata").json()
    assert meta["state"] == "loading"
    assert "does not exist" in meta["error"]
    upload(store, iris, key)
    server.wait("/readyz", deadline=30)
    assert server.post("/predict", {"rows": [ROW]}).status_code == 200


def test_recorded_rows_and_their_feedback_are_the_next_trainings_rows(
    start: Any, iris: models.BuiltModel, store: ObjectStore, bucket: str, monkeypatch: Any
) -> None:
    """Production data end to end: the runtime records what it answered and the ground truth
    sent for it to the store, beside the archive; training's reader joins them back."""
    from modelops_api import contract
    from modelops_api.spec import ProductionSpec
    from modelops_training import production

    root = f"{bucket}/store/ns/uid-1"
    uri = upload(store, iris, f"{root}/iris/iris-v1.bentomodel")
    env = s3_env(
        store,
        iris,
        uri,
        **{contract.ENV_RECORDING_RETENTION: "3600", "MODELOPS_RECORDING_FLUSH_SECONDS": "0.5"},
    )
    server = start("recording", env)
    answers = [server.post("/predict", {"rows": [ROW, ROW]}).json() for _ in range(3)]
    labelled = [
        {"request_id": a["request_id"], "row": row, "truth": "setosa"}
        for a in answers[:2]
        for row in (0, 1)
    ]
    assert server.post("/feedback", {"items": labelled}).json()["accepted"] == 4
    forged = [{"request_id": "not-signed-by-this-model", "row": 0, "truth": "setosa"}]
    assert server.post("/feedback", {"items": forged}).status_code == 200

    folder = f"s3://{root}/iris/production"
    assert contract.production_uri(uri) == folder
    fs = store.filesystem()

    def batches() -> dict[str, list[str]]:
        found = fs.find(folder.removeprefix("s3://"))
        return {
            kind: [p for p in found if f"/{kind}/" in p and p.endswith(".parquet")]
            for kind in (contract.PRODUCTION_INPUTS, contract.PRODUCTION_LABELS)
        }

    deadline = time.monotonic() + 30
    while not all(batches().values()) and time.monotonic() < deadline:
        time.sleep(0.25)
    assert all(batches().values()), batches()

    for name, value in s3_env(store, iris, uri).items():
        if name.startswith("AWS_"):
            monkeypatch.setenv(name, value)
    spec = ProductionSpec(window="1h", min_rows=4)
    features = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    rows = production.load(folder, spec, features, "species", time.time() + 1)
    assert len(rows.frame) == 4 and rows.unlabelled == 2  # the forged id joined nothing
    assert list(rows.frame.columns) == [*features, "species"]
    assert rows.frame.iloc[0].tolist() == [*ROW, "setosa"]


def test_the_runtime_loads_from_s3_and_predicts_after_the_store_is_gone(
    start: Any, store: ObjectStore, bucket: str, iris: models.BuiltModel
) -> None:
    uri = upload(store, iris, f"{bucket}/default/uid-1/iris/iris-v1.bentomodel")
    started = time.monotonic()
    server = start("s3-iris", s3_env(store, iris, uri))
    print(f"ready {time.monotonic() - started:.1f}s after bentoml serve started")
    rows = iris.frame.head(5).to_numpy().tolist()
    expected = iris.pipeline.predict(iris.frame.head(5)).tolist()
    first = server.post("/predict", {"rows": rows})
    assert first.status_code == 200, first.text
    assert first.json()["predictions"] == expected
    assert server.get("/metadata").json()["version"] == "iris-v1"
    # the download was imported into the pod-local store and removed
    home: Path = server.home
    assert list((home / "downloads").iterdir()) == []
    assert list((home / "models").rglob("model.yaml"))

    store.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", int(store.endpoint_url.rsplit(":", 1)[1])), 2)
    again = server.post("/predict", {"rows": rows})
    assert again.status_code == 200, again.text
    assert again.json()["predictions"] == expected
    assert server.get("/readyz").status_code == 200
