"""A dataset's own credentials (spec.training.dataset.secretName): the training pod gets that
Secret's keys prefixed MODELOPS_DATASET_, and the runtime reads the dataset with them alone while
the archive keeps the store's AWS_* keys.

The unit tests check the filesystem the prefixed variables build and the redaction of their
secrets. The integration tests run `modelops train` in-process against a real SeaweedFS whose S3
identities are limited per bucket: the store's identity may use only the store's bucket, the
dataset's only read the data bucket, so a training succeeds only when each credential goes where it
belongs; and wrong dataset keys fail with the URI and the Secret's name, never a secret.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from training_helpers import iris_spec

from modelops_sandbox.objectstore import ObjectStore, generate_credentials, s3_identities
from modelops_training import storage
from modelops_training.result import TrainingError
from modelops_training.sources import HttpParams, load_builtin, read_object

PREFIX = "MODELOPS_DATASET_"
VARIABLES = tuple(
    f"{prefix}{key}"
    for prefix in ("", PREFIX)
    for key in (*storage.KEYS, "AWS_PROFILE", "AWS_DEFAULT_REGION")
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No AWS configuration but what a test sets (no ~/.aws either)."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    return monkeypatch


# --- unit: the filesystem of a prefix, redaction -------------------------------------------------


@pytest.mark.unit
def test_the_prefix_is_the_one_the_operator_gives_the_pod() -> None:
    from modelops_api import contract

    assert storage.DATASET_PREFIX == contract.ENV_DATASET_PREFIX == PREFIX


@pytest.mark.unit
def test_the_prefixed_variables_build_a_filesystem_with_those_keys_alone(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("AWS_ACCESS_KEY_ID", "STOREKEY")
    clean_env.setenv("AWS_SECRET_ACCESS_KEY", "store-secret")
    clean_env.setenv("AWS_ENDPOINT_URL", "http://store.example:9000")
    clean_env.setenv(f"{PREFIX}AWS_ACCESS_KEY_ID", "DATAKEY")
    clean_env.setenv(f"{PREFIX}AWS_SECRET_ACCESS_KEY", "data-secret")
    clean_env.setenv(f"{PREFIX}AWS_SESSION_TOKEN", "data-token")
    clean_env.setenv(f"{PREFIX}AWS_ENDPOINT_URL", "http://data.example:9000")
    clean_env.setenv(f"{PREFIX}AWS_REGION", "eu-west-3")

    assert storage.has_credentials(PREFIX)
    fs = storage.filesystem(timeout=5, prefix=PREFIX)
    assert (fs.key, fs.secret, fs.token) == ("DATAKEY", "data-secret", "data-token")
    assert fs.client_kwargs == {
        "endpoint_url": "http://data.example:9000",
        "region_name": "eu-west-3",
    }
    assert fs.config_kwargs == {"connect_timeout": 5, "read_timeout": 5}
    # without the prefix, botocore's own lookup (the store's AWS_*): nothing passed explicitly
    store = storage.filesystem()
    assert (store.key, store.secret, store.client_kwargs) == (None, None, {})


@pytest.mark.unit
def test_the_endpoint_and_region_default_to_the_stores(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv(f"{PREFIX}AWS_ACCESS_KEY_ID", "DATAKEY")
    clean_env.setenv(f"{PREFIX}AWS_SECRET_ACCESS_KEY", "data-secret")
    clean_env.setenv(f"{PREFIX}AWS_ENDPOINT_URL_S3", "http://s3-only.example")
    fs = storage.filesystem(prefix=PREFIX)
    assert fs.client_kwargs == {"endpoint_url": "http://s3-only.example"}
    clean_env.delenv(f"{PREFIX}AWS_ENDPOINT_URL_S3")
    assert storage.filesystem(prefix=PREFIX).client_kwargs == {}  # botocore's lookup then


@pytest.mark.unit
@pytest.mark.parametrize("missing", ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"])
def test_half_a_key_pair_is_refused_naming_the_missing_variable(
    clean_env: pytest.MonkeyPatch, missing: str
) -> None:
    clean_env.setenv("AWS_ACCESS_KEY_ID", "STOREKEY")  # never taken instead
    clean_env.setenv("AWS_SECRET_ACCESS_KEY", "store-secret")
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        if key != missing:
            clean_env.setenv(f"{PREFIX}{key}", "x" * 12)
    with pytest.raises(PermissionError, match=f"{PREFIX}{missing} is not set"):
        storage.filesystem(prefix=PREFIX)


@pytest.mark.unit
def test_redaction_covers_the_datasets_secrets_too(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("AWS_SECRET_ACCESS_KEY", "store-secret-value")
    clean_env.setenv(f"{PREFIX}AWS_SECRET_ACCESS_KEY", "dataset-secret-value")
    clean_env.setenv(f"{PREFIX}AWS_SESSION_TOKEN", "dataset-token-value")
    text = "a store-secret-value, a dataset-secret-value and a dataset-token-value"
    assert storage.redact(text) == "a ***, a *** and a ***"
    error = ValueError("signature for dataset-secret-value does not match")
    assert "dataset-secret-value" not in storage.describe(error)


@pytest.mark.unit
def test_a_named_secret_the_pod_did_not_get_is_refused_before_any_request(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("AWS_ACCESS_KEY_ID", "STOREKEY")  # the store's keys are not taken instead
    clean_env.setenv("AWS_SECRET_ACCESS_KEY", "store-secret")
    with pytest.raises(TrainingError) as caught:
        read_object("s3://data/iris.csv", HttpParams(), "data-creds")
    assert caught.value.reason == "StorageAccessDenied"
    message = str(caught.value)
    assert "s3://data/iris.csv" in message and "'data-creds'" in message
    assert f"{PREFIX}AWS_*" in message


# --- integration: a real S3 server with per-bucket identities ------------------------------------

STORE_BUCKET, DATA_BUCKET = "mstore", "mdata"
IRIS_CSV = load_builtin("iris").to_csv(index=False).encode()


@dataclass
class Identity:
    access_key: str
    secret_key: str


class ScopedObjectStore(ObjectStore):
    """The sandbox's SeaweedFS with two more identities, each limited to one bucket (SeaweedFS's
    `Action:bucket`): the store's may read, write and list STORE_BUCKET only; the dataset's may
    read and list DATA_BUCKET only. The first identity (every action) sets the buckets up."""

    store_identity: Identity
    data_identity: Identity

    def write_config(self) -> Path:
        self.store_identity = Identity(*generate_credentials())
        self.data_identity = Identity(*generate_credentials())
        document = s3_identities(self.access_key, self.secret_key)
        for name, identity, actions in (
            ("store", self.store_identity, ("Read", "Write", "List")),
            ("dataset", self.data_identity, ("Read", "List")),
        ):
            bucket = STORE_BUCKET if name == "store" else DATA_BUCKET
            document["identities"].append(
                {
                    "name": name,
                    "credentials": [
                        {"accessKey": identity.access_key, "secretKey": identity.secret_key}
                    ],
                    "actions": [f"{action}:{bucket}" for action in actions],
                }
            )
        descriptor = os.open(self.config_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(json.dumps(document))
        return self.config_file


@pytest.fixture(scope="module")
def scoped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScopedObjectStore]:
    with ScopedObjectStore(tmp_path_factory.mktemp("scoped-objectstore")) as running:
        running.create_bucket(STORE_BUCKET)
        running.create_bucket(DATA_BUCKET)
        running.filesystem().pipe(f"{DATA_BUCKET}/iris.csv", IRIS_CSV)
        yield running


@pytest.fixture
def pod_env(scoped: ScopedObjectStore, clean_env: pytest.MonkeyPatch) -> ScopedObjectStore:
    """The training pod's environment: the store's Secret as AWS_*, and the dataset's Secret
    (key, secret, endpoint, region) as MODELOPS_DATASET_AWS_*."""
    for prefix, identity in (("", scoped.store_identity), (PREFIX, scoped.data_identity)):
        clean_env.setenv(f"{prefix}AWS_ACCESS_KEY_ID", identity.access_key)
        clean_env.setenv(f"{prefix}AWS_SECRET_ACCESS_KEY", identity.secret_key)
        clean_env.setenv(f"{prefix}AWS_ENDPOINT_URL", scoped.endpoint_url)
        clean_env.setenv(f"{prefix}AWS_REGION", scoped.region)
    return scoped


def dataset_spec(**dataset: Any) -> dict[str, Any]:
    return iris_spec(
        dataset={"uri": f"s3://{DATA_BUCKET}/iris.csv", "target": "species", **dataset}
    )


def secrets_of(store: ScopedObjectStore) -> list[str]:
    return [
        store.secret_key,
        store.store_identity.secret_key,
        store.data_identity.secret_key,
    ]


def assert_no_secret(run: Any, secrets: list[str]) -> None:
    for text in (run.stdout, run.stderr, run.result_file.read_text(), json.dumps(run.result)):
        for secret in secrets:
            assert secret not in text


@pytest.mark.integration
def test_each_identity_reaches_its_own_bucket_only(scoped: ScopedObjectStore) -> None:
    """The premise of the tests below: SeaweedFS enforces the per-bucket actions."""
    as_store = scoped.filesystem(
        key=scoped.store_identity.access_key, secret=scoped.store_identity.secret_key
    )
    as_data = scoped.filesystem(
        key=scoped.data_identity.access_key, secret=scoped.data_identity.secret_key
    )
    assert as_data.cat_file(f"{DATA_BUCKET}/iris.csv") == IRIS_CSV
    with pytest.raises(PermissionError):
        as_store.cat_file(f"{DATA_BUCKET}/iris.csv")
    with pytest.raises(PermissionError):
        as_data.pipe(f"{STORE_BUCKET}/x", b"x")
    as_store.pipe(f"{STORE_BUCKET}/probe", b"x")
    as_store.rm(f"{STORE_BUCKET}/probe")


@pytest.mark.integration
def test_the_dataset_is_read_with_its_secret_and_the_archive_written_with_the_stores(
    pod_env: ScopedObjectStore,
    write_spec: Callable[..., Path],
    train: Callable[..., Any],
) -> None:
    root = f"s3://{STORE_BUCKET}/models/ml/uid-1"
    run = train(write_spec(dataset_spec(secretName="data-creds")), artifacts_uri=root)

    assert run.code == 0, run.result
    assert run.result["reason"] == "Trained"
    assert run.result["artifact"] == f"{root}/iris/iris-v1.bentomodel"
    assert run.result["rows"]["train"] + run.result["rows"]["test"] >= 140  # iris, deduplicated
    assert f"from s3://{DATA_BUCKET}/iris.csv" in run.stderr
    assert pod_env.filesystem().exists(run.result["artifact"].removeprefix("s3://"))
    assert_no_secret(run, secrets_of(pod_env))


@pytest.mark.integration
def test_without_the_datasets_secret_the_stores_keys_are_refused_naming_the_uri(
    pod_env: ScopedObjectStore,
    write_spec: Callable[..., Path],
    train: Callable[..., Any],
    clean_env: pytest.MonkeyPatch,
) -> None:
    """Today's default: no secretName, no prefixed variables; the store's identity may not read
    the data bucket."""
    for key in storage.KEYS:
        clean_env.delenv(f"{PREFIX}{key}", raising=False)
    run = train(write_spec(dataset_spec()), artifacts_uri=f"s3://{STORE_BUCKET}/models")
    assert run.code == 1 and run.result["reason"] == "StorageAccessDenied", run.result
    assert f"s3://{DATA_BUCKET}/iris.csv" in run.result["message"]
    assert "the Secret's AWS_ACCESS_KEY_ID" in run.result["message"]
    assert_no_secret(run, secrets_of(pod_env))


@pytest.mark.integration
@pytest.mark.parametrize("wrong", ["secret", "access key", "missing"])
def test_wrong_dataset_keys_fail_naming_the_uri_and_the_secret_never_a_value(
    pod_env: ScopedObjectStore,
    write_spec: Callable[..., Path],
    train: Callable[..., Any],
    clean_env: pytest.MonkeyPatch,
    wrong: str,
) -> None:
    bad = pod_env.data_identity.secret_key[::-1]
    if wrong == "secret":
        clean_env.setenv(f"{PREFIX}AWS_SECRET_ACCESS_KEY", bad)
    elif wrong == "access key":
        clean_env.setenv(f"{PREFIX}AWS_ACCESS_KEY_ID", "AKIANOTAKEYOFTHISONE")
    else:  # the Secret has no AWS_SECRET_ACCESS_KEY key
        clean_env.delenv(f"{PREFIX}AWS_SECRET_ACCESS_KEY")
    prefix = f"{STORE_BUCKET}/{uuid.uuid4().hex[:12]}"
    run = train(write_spec(dataset_spec(secretName="data-creds")), artifacts_uri=f"s3://{prefix}")
    assert run.code == 1 and run.result["phase"] == "Failed", run.result
    assert run.result["reason"] == "StorageAccessDenied"
    message = run.result["message"]
    assert f"s3://{DATA_BUCKET}/iris.csv" in message and "'data-creds'" in message
    if wrong == "missing":
        assert f"{PREFIX}AWS_SECRET_ACCESS_KEY is not set" in message
    assert "artifact" not in run.result
    assert_no_secret(run, [*secrets_of(pod_env), bad])
    assert pod_env.filesystem().find(prefix) == []  # nothing archived
