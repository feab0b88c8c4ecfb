"""The sandbox's object store is a real SeaweedFS serving S3, reached through s3fs as the project
reaches object storage: objects round-trip, listings see prefixes, a wrong or missing credential is
refused, a missing bucket is a FileNotFoundError, and pandas writes and reads Parquet on s3://.

One server serves the module; the test of its life cycle starts its own.
"""

from __future__ import annotations

import socket
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import pytest
import s3fs

from modelops_sandbox.controlplane import StartupError
from modelops_sandbox.objectstore import ObjectStore

pytestmark = pytest.mark.integration


def s3(store: ObjectStore, **credentials: Any) -> Any:
    """An s3fs filesystem on the store, as a client configures one: endpoint via client_kwargs."""
    options: dict[str, Any] = {"key": store.access_key, "secret": store.secret_key, **credentials}
    return s3fs.S3FileSystem(
        client_kwargs={"endpoint_url": store.endpoint_url, "region_name": store.region},
        skip_instance_cache=True,
        **options,
    )


def test_an_object_round_trips_lists_under_its_prefix_and_is_deleted(
    store: ObjectStore, bucket: str
) -> None:
    fs = s3(store)
    payload = bytes(range(256)) * 4096  # 1 MiB, several of the filer's chunks
    fs.pipe(f"{bucket}/runs/iris/model.bin", payload)
    fs.pipe(f"{bucket}/runs/iris/metrics.json", b'{"accuracy": 0.97}')
    fs.pipe(f"{bucket}/other/readme.txt", b"not under runs/")

    assert fs.cat(f"{bucket}/runs/iris/model.bin") == payload
    with fs.open(f"{bucket}/runs/iris/metrics.json", "rb") as f:
        assert f.read() == b'{"accuracy": 0.97}'
    assert sorted(fs.ls(f"{bucket}/runs/iris", detail=False)) == [
        f"{bucket}/runs/iris/metrics.json",
        f"{bucket}/runs/iris/model.bin",
    ]
    assert fs.info(f"{bucket}/runs/iris/model.bin")["size"] == len(payload)
    assert sorted(fs.find(f"{bucket}/runs")) == [
        f"{bucket}/runs/iris/metrics.json",
        f"{bucket}/runs/iris/model.bin",
    ]

    fs.rm(f"{bucket}/runs/iris/model.bin")
    fs.invalidate_cache()
    assert not fs.exists(f"{bucket}/runs/iris/model.bin")
    assert fs.ls(f"{bucket}/runs/iris", detail=False) == [f"{bucket}/runs/iris/metrics.json"]
    with pytest.raises(FileNotFoundError):
        fs.cat(f"{bucket}/runs/iris/model.bin")


def test_a_wrong_secret_key_is_refused(store: ObjectStore, bucket: str) -> None:
    s3(store).pipe(f"{bucket}/secret.txt", b"only for the right key")
    wrong = s3(store, secret=store.secret_key[::-1])
    # A listing's error body names the cause; a HEAD answer (s3fs's first step of a read) has no
    # body, so only its status says Forbidden.
    with pytest.raises(PermissionError, match="signature we calculated does not match"):
        wrong.ls(bucket)
    with pytest.raises(PermissionError):
        wrong.cat(f"{bucket}/secret.txt")
    with pytest.raises(PermissionError):
        wrong.pipe(f"{bucket}/forged.txt", b"x")
    assert not s3(store).exists(f"{bucket}/forged.txt")


def test_an_unknown_access_key_and_an_anonymous_request_are_refused(
    store: ObjectStore, bucket: str
) -> None:
    s3(store).pipe(f"{bucket}/secret.txt", b"only for the right key")
    with pytest.raises(PermissionError):
        s3(store, key="AKIANOTAKEYOFTHISONE").cat(f"{bucket}/secret.txt")
    anonymous = s3fs.S3FileSystem(
        anon=True, client_kwargs={"endpoint_url": store.endpoint_url}, skip_instance_cache=True
    )
    with pytest.raises(PermissionError):
        anonymous.cat(f"{bucket}/secret.txt")
    with pytest.raises(PermissionError):
        anonymous.ls(bucket)


def test_a_missing_bucket_or_key_is_file_not_found(store: ObjectStore, bucket: str) -> None:
    fs = s3(store)
    missing = f"missing-{uuid.uuid4().hex[:12]}"
    with pytest.raises(FileNotFoundError):
        fs.cat(f"{missing}/anything.txt")
    with pytest.raises(FileNotFoundError):
        fs.ls(missing)
    with pytest.raises(FileNotFoundError):
        fs.cat(f"{bucket}/no/such/key")


def test_pandas_writes_and_reads_parquet_on_s3(store: ObjectStore, bucket: str) -> None:
    frame = pd.DataFrame(
        {
            "sepal_length": [5.1, 4.9, 6.3],
            "species": ["setosa", "setosa", "virginica"],
            "label": [0, 0, 2],
        }
    )
    url = f"s3://{bucket}/datasets/iris/part-0.parquet"
    frame.to_parquet(url, engine="pyarrow", storage_options=store.storage_options())

    assert s3(store).cat(url)[:4] == b"PAR1"
    back = pd.read_parquet(url, engine="pyarrow", storage_options=store.storage_options())
    pd.testing.assert_frame_equal(back, frame)


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_stop_ends_the_server_and_leaves_its_files_in_the_run_directory(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "run").start()
    pid = store.pid
    ports = [*store.ports.values(), *store.grpc_ports.values()]
    assert pid is not None and all(listening(p) for p in ports)
    assert (tmp_path / "run" / "s3.json").stat().st_mode & 0o077 == 0
    sockets = [Path(f"/tmp/seaweedfs-{s}-grpc-{p}.sock") for s, p in store.grpc_ports.items()]

    store.stop()
    store.stop()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not any(listening(p) for p in ports)
    assert not any(s.exists() for s in sockets)
    assert (tmp_path / "run" / "weed.log").stat().st_size > 0
    assert (tmp_path / "run" / "data").is_dir()


def test_a_server_that_is_not_ready_in_time_fails_with_its_log(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path, startup_timeout=0.01)
    with pytest.raises(StartupError, match=r"not ready after 0\.01s") as failure:
        store.start()
    assert "lines of its log" in str(failure.value)
    assert store.process is None
