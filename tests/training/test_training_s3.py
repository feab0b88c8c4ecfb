"""`modelops train` with object storage, against a real S3 server (the sandbox's SeaweedFS): the
archive is uploaded to `s3://bucket/prefix/<model>/<version>.bentomodel`, data is read from
`s3://` URIs with the same size cap as files, and every bad case (missing bucket, refused
credentials, unreachable endpoint, missing key, a Parquet file without the declared columns) fails
with its own reason, never showing the secret key.

Credentials and endpoint reach the run only through the environment (AWS_*), as in a pod. One
server serves the module (it takes ~11 s to start).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from training_helpers import iris_spec, load_archive, staged_models

from modelops_sandbox.objectstore import ObjectStore
from modelops_training.sources import load_builtin

pytestmark = pytest.mark.integration

ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")


@pytest.fixture
def s3_env(store: ObjectStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ObjectStore:
    """The pod's environment: credentials, endpoint and region as AWS_* variables, no other
    configuration (no ~/.aws)."""
    for name in (*ENDPOINT_VARIABLES, "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", store.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", store.secret_key)
    monkeypatch.setenv("AWS_ENDPOINT_URL", store.endpoint_url)
    monkeypatch.setenv("AWS_REGION", store.region)
    return store


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def assert_secret_never_shown(run: Any, secret: str) -> None:
    for text in (run.stdout, run.stderr, run.result_file.read_text()):
        assert secret not in text


def expect(run: Any, reason: str, *words: str) -> None:
    assert run.code == 1, run.result
    assert run.result["phase"] == "Failed"
    assert run.result["reason"] == reason, run.result
    assert run.file_result["reason"] == reason
    for word in words:
        assert word in run.result["message"], (word, run.result["message"])
    assert "artifact" not in run.result


# --- the artifact store ---------------------------------------------------------------------


@pytest.mark.parametrize("endpoint_variable", ENDPOINT_VARIABLES)
def test_training_uploads_the_archive_to_the_bucket(
    s3_env: ObjectStore,
    bucket: str,
    write_spec: Callable[..., Path],
    train: Callable[..., Any],
    bentoml_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    endpoint_variable: str,
) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv(endpoint_variable, s3_env.endpoint_url)  # botocore reads either
    root = f"s3://{bucket}/models/default/0c5e-uid"
    run = train(write_spec(iris_spec()), artifacts_uri=root)

    assert run.code == 0, run.result
    assert run.result["reason"] == "Trained"
    expected = f"{root}/iris/iris-v1.bentomodel"
    assert run.result["artifact"] == expected
    fs = s3_env.filesystem()
    assert fs.find(f"{bucket}/models") == [expected.removeprefix("s3://")]  # no temporary key
    local = tmp_path / "downloaded.bentomodel"
    fs.get_file(expected.removeprefix("s3://"), str(local))
    pipeline, metadata, labels = load_archive(local, tmp_path / "import-home")
    assert metadata["model"] == "iris" and metadata["version"] == "iris-v1"
    assert labels["modelops.dev/approved"] == "true"
    rows = load_builtin("iris").drop(columns="species").head(3)
    assert len(pipeline.predict(rows)) == 3
    # nothing of the export stays in the pod-local home
    assert staged_models(bentoml_home) == []
    assert list(bentoml_home.rglob("*.bentomodel")) == []
    assert "uploaded" in run.stderr and expected in run.stderr


def test_a_second_run_of_a_version_replaces_its_archive(
    s3_env: ObjectStore, bucket: str, write_spec: Callable[..., Path], train: Callable[..., Any]
) -> None:
    root = f"s3://{bucket}/m"
    assert train(write_spec(iris_spec()), artifacts_uri=root).code == 0
    again = train(write_spec(iris_spec()), artifacts_uri=root)
    assert again.code == 0
    assert "replacing the existing archive" in again.stderr
    assert s3_env.filesystem().find(bucket) == [f"{bucket}/m/iris/iris-v1.bentomodel"]


def test_a_missing_bucket_is_bucket_not_found_and_is_not_created(
    s3_env: ObjectStore, write_spec: Callable[..., Path], train: Callable[..., Any]
) -> None:
    missing = f"missing-{uuid.uuid4().hex[:12]}"
    run = train(write_spec(iris_spec()), artifacts_uri=f"s3://{missing}/models")
    expect(run, "BucketNotFound", f"s3://{missing}/models", "does not exist")
    # SeaweedFS creates a bucket on PUT: the check before the fit is what refuses it
    assert not s3_env.filesystem().exists(missing)
    assert_secret_never_shown(run, s3_env.secret_key)


@pytest.mark.parametrize("wrong", ["secret", "access key"])
def test_refused_credentials_are_storage_access_denied_and_never_shown(
    s3_env: ObjectStore,
    bucket: str,
    write_spec: Callable[..., Path],
    train: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    wrong: str,
) -> None:
    if wrong == "secret":
        bad = s3_env.secret_key[::-1]
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", bad)
    else:
        bad = s3_env.secret_key
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIANOTAKEYOFTHISONE")
    run = train(write_spec(iris_spec()), artifacts_uri=f"s3://{bucket}/models")
    expect(run, "StorageAccessDenied", f"s3://{bucket}/models", "AWS_SECRET_ACCESS_KEY")
    assert_secret_never_shown(run, bad)
    assert_secret_never_shown(run, s3_env.secret_key)
    assert s3_env.filesystem().find(bucket) == []


def test_no_credentials_at_all_are_storage_access_denied(
    s3_env: ObjectStore,
    bucket: str,
    write_spec: Callable[..., Path],
    train: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    run = train(write_spec(iris_spec()), artifacts_uri=f"s3://{bucket}/models")
    expect(run, "StorageAccessDenied", f"s3://{bucket}/models")


def test_an_unreachable_endpoint_is_storage_unreachable(
    s3_env: ObjectStore,
    bucket: str,
    write_spec: Callable[..., Path],
    train: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed_port()}")
    run = train(write_spec(iris_spec()), artifacts_uri=f"s3://{bucket}/models")
    expect(run, "StorageUnreachable", f"s3://{bucket}/models", "AWS_ENDPOINT_URL")
    assert_secret_never_shown(run, s3_env.secret_key)


@pytest.mark.parametrize(
    "uri", ["s3://Bad_Bucket/models", "s3://bucket/a/../b", "s3://bucket//models", "s3://b?x=1"]
)
def test_a_malformed_s3_uri_is_invalid_arguments(
    write_spec: Callable[..., Path], train: Callable[..., Any], uri: str
) -> None:
    expect(train(write_spec(iris_spec()), artifacts_uri=uri), "InvalidArguments", uri)


# --- data from s3:// --------------------------------------------------------------------------


IRIS_CSV = load_builtin("iris").to_csv(index=False).encode()


def s3_spec(uri: str, **dataset: Any) -> dict[str, Any]:
    return iris_spec(dataset={"uri": uri, "target": "species", **dataset})


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_training_reads_its_data_from_s3(
    s3_env: ObjectStore,
    bucket: str,
    write_spec: Callable[..., Path],
    train: Callable[..., Any],
    fmt: str,
) -> None:
    fs = s3_env.filesystem()
    key = f"{bucket}/datasets/iris.{fmt}"
    if fmt == "csv":
        fs.pipe(key, IRIS_CSV)
    else:
        load_builtin("iris").to_parquet(f"s3://{key}", storage_options=s3_env.storage_options())
    spec = s3_spec(f"s3://{key}", format=fmt, params={"maxBytes": 1_000_000})
    run = train(write_spec(spec), artifacts_uri=f"s3://{bucket}/models")
    assert run.code == 0, run.result
    assert run.result["rows"]["train"] + run.result["rows"]["test"] >= 140
    assert f"from s3://{key}" in run.stderr


def test_an_object_over_max_bytes_is_refused_before_it_is_read(
    s3_env: ObjectStore, bucket: str, write_spec: Callable[..., Path], train: Callable[..., Any]
) -> None:
    s3_env.filesystem().pipe(f"{bucket}/iris.csv", IRIS_CSV)
    spec = s3_spec(f"s3://{bucket}/iris.csv", params={"maxBytes": len(IRIS_CSV) - 1})
    run = train(write_spec(spec))
    expect(run, "DataTooLarge", f"s3://{bucket}/iris.csv", str(len(IRIS_CSV) - 1))


@pytest.mark.parametrize("missing", ["key", "bucket"])
def test_a_missing_object_is_data_not_found(
    s3_env: ObjectStore,
    bucket: str,
    write_spec: Callable[..., Path],
    train: Callable[..., Any],
    missing: str,
) -> None:
    uri = f"s3://{bucket}/no/such.csv" if missing == "key" else "s3://no-such-bucket-x/a.csv"
    run = train(write_spec(s3_spec(uri)))
    expect(run, "DataNotFound", uri, "does not exist")
    assert_secret_never_shown(run, s3_env.secret_key)


def test_a_parquet_object_without_the_target_column_is_missing_target(
    s3_env: ObjectStore, bucket: str, write_spec: Callable[..., Path], train: Callable[..., Any]
) -> None:
    frame = load_builtin("iris").rename(columns={"species": "kind"})
    frame.to_parquet(f"s3://{bucket}/renamed.parquet", storage_options=s3_env.storage_options())
    run = train(write_spec(s3_spec(f"s3://{bucket}/renamed.parquet", format="parquet")))
    expect(run, "MissingTarget", "species", "kind")


def test_a_csv_object_read_as_parquet_is_unparseable(
    s3_env: ObjectStore, bucket: str, write_spec: Callable[..., Path], train: Callable[..., Any]
) -> None:
    s3_env.filesystem().pipe(f"{bucket}/iris.csv", IRIS_CSV)
    run = train(write_spec(s3_spec(f"s3://{bucket}/iris.csv", format="parquet")))
    expect(run, "UnparseableData", f"s3://{bucket}/iris.csv", "Parquet")


def test_data_behind_refused_credentials_is_storage_access_denied(
    s3_env: ObjectStore,
    bucket: str,
    write_spec: Callable[..., Path],
    train: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s3_env.filesystem().pipe(f"{bucket}/iris.csv", IRIS_CSV)
    wrong = s3_env.secret_key[::-1]
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", wrong)
    run = train(write_spec(s3_spec(f"s3://{bucket}/iris.csv")))
    expect(run, "StorageAccessDenied", f"s3://{bucket}/iris.csv")
    assert_secret_never_shown(run, wrong)
    assert_secret_never_shown(run, s3_env.secret_key)


def test_data_from_an_unreachable_endpoint_is_storage_unreachable(
    s3_env: ObjectStore,
    write_spec: Callable[..., Path],
    train: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed_port()}")
    spec = s3_spec("s3://bucket/iris.csv", params={"timeoutSeconds": 2})
    run = train(write_spec(spec))
    expect(run, "StorageUnreachable", "s3://bucket/iris.csv")


def test_the_spec_takes_s3_uris_and_their_params() -> None:
    from modelops_api.spec import DatasetSpec

    parsed = DatasetSpec.model_validate(
        {"uri": "s3://data/iris.csv", "target": "species", "params": {"maxBytes": 10}}
    )
    assert parsed.params is not None and parsed.params.max_bytes == 10
    for bad in ("s3://data", "s3://data/", "s3://Data/x.csv", "s3://data/x.csv?versionId=1"):
        with pytest.raises(ValueError, match="uri"):
            DatasetSpec.model_validate({"uri": bad, "target": "species"})


# --- cleanup of s3:// targets -----------------------------------------------------------------


def cleanup(*args: str) -> tuple[int, dict[str, Any], str]:
    run = subprocess.run(
        [sys.executable, "-m", "modelops_training.cleanup", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
    )
    return run.returncode, json.loads(run.stdout) if run.stdout.strip() else {}, run.stderr


def fill(store: ObjectStore, bucket: str) -> list[str]:
    fs = store.filesystem()
    keys = [
        "models/ml/uid-a/iris/iris-v1.bentomodel",
        "models/ml/uid-a/iris/iris-v2.bentomodel",
        "models/ml/uid-ab/iris/iris-v1.bentomodel",  # shares uid-a's first characters
        "models/prod/uid-c/iris/iris-v1.bentomodel",
        "outside/keep.txt",
    ]
    for key in keys:
        fs.pipe(f"{bucket}/{key}", b"archive")
    return keys


def test_cleanup_removes_an_archive_and_a_models_prefix_and_is_idempotent(
    s3_env: ObjectStore, bucket: str
) -> None:
    fill(s3_env, bucket)
    root = f"s3://{bucket}/models"
    archive = f"{root}/ml/uid-a/iris/iris-v1.bentomodel"
    model = f"{root}/prod/uid-c"
    code, report, stderr = cleanup("--store", root, archive, model)
    assert code == 0, stderr
    assert report == {"removed": [archive, model], "absent": [], "refused": {}}
    assert sorted(s3_env.filesystem().find(bucket)) == [
        f"{bucket}/models/ml/uid-a/iris/iris-v2.bentomodel",
        f"{bucket}/models/ml/uid-ab/iris/iris-v1.bentomodel",
        f"{bucket}/outside/keep.txt",
    ]
    # a retried Job: everything is already gone
    code, report, _ = cleanup("--store", root, archive, model)
    assert code == 0 and report == {"removed": [], "absent": [archive, model], "refused": {}}


def test_cleanup_of_a_prefix_leaves_a_sibling_that_shares_its_characters(
    s3_env: ObjectStore, bucket: str
) -> None:
    fill(s3_env, bucket)
    root = f"s3://{bucket}/models"
    code, report, stderr = cleanup("--store", root, f"{root}/ml/uid-a")
    assert code == 0, stderr
    assert report["removed"] == [f"{root}/ml/uid-a"]
    assert sorted(s3_env.filesystem().find(f"{bucket}/models/ml")) == [
        f"{bucket}/models/ml/uid-ab/iris/iris-v1.bentomodel"
    ]


def test_cleanup_refuses_outside_the_store_and_reports_refused_credentials(
    s3_env: ObjectStore, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = fill(s3_env, bucket)
    root = f"s3://{bucket}/models"
    outside = f"s3://{bucket}/outside/keep.txt"
    code, report, stderr = cleanup("--store", root, outside, f"s3://{bucket}/models")
    assert code == 1
    assert sorted(report["refused"]) == [f"s3://{bucket}/models", outside]
    assert "not inside the store" in stderr
    wrong = s3_env.secret_key[::-1]
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", wrong)
    target = f"{root}/ml/uid-a"
    code, report, stderr = cleanup("--store", root, target)
    assert code == 1 and list(report["refused"]) == [target]
    assert "PermissionError" in report["refused"][target]
    assert wrong not in stderr + json.dumps(report)
    assert sorted(s3_env.filesystem().find(bucket)) == sorted(f"{bucket}/{k}" for k in keys)
