"""`python -m modelops_training.cleanup`: the command of the Job that removes archives from the
store. It removes what it is given inside the store, nothing outside, and is safe to run twice."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from modelops_training.cleanup import remove

pytestmark = pytest.mark.unit


def store(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    archives = ("ml/uid-a/iris/iris-v1", "ml/uid-a/iris/iris-v2", "ml/uid-b/iris/iris-v1",
                "prod/uid-c/iris/iris-v1")  # fmt: skip
    for relative in (f"{a}.bentomodel" for a in archives):
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"archive")
    (tmp_path / "outside").write_text("keep me")
    return root


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_pruned_archives_go_and_nothing_else(tmp_path: Path) -> None:
    root = store(tmp_path)
    target = (root / "ml/uid-a/iris/iris-v1.bentomodel").as_uri()
    done = remove(root, [target])
    assert done.removed == [target] and not done.refused
    assert "ml/uid-a/iris/iris-v1.bentomodel" not in files(root)
    assert "ml/uid-a/iris/iris-v2.bentomodel" in files(root)
    again = remove(root, [target])  # a retried Job
    assert again.absent == [target] and not again.removed and not again.refused


def test_a_deleted_models_directory_goes_with_its_empty_parents(tmp_path: Path) -> None:
    root = store(tmp_path)
    done = remove(root, [(root / "prod/uid-c").as_uri()])
    assert done.removed and not done.refused
    assert not (root / "prod").exists()  # left empty: removed up to the root
    assert root.is_dir() and "ml/uid-b/iris/iris-v1.bentomodel" in files(root)


@pytest.mark.parametrize(
    "target",
    [
        "file:///etc/passwd",
        "OUTSIDE",  # a sibling of the store
        "ROOT",  # the store itself
        "ROOT/ml/../../outside",
        "s3://bucket/ml/x.bentomodel",
        "file://host/models/ml",
        "ROOT/ml?x=1",
    ],
)
def test_anything_outside_the_store_is_refused(tmp_path: Path, target: str) -> None:
    root = store(tmp_path)
    before = files(root)
    uri = target.replace("ROOT", root.as_uri()).replace("OUTSIDE", (tmp_path / "outside").as_uri())
    done = remove(root, [uri])
    assert list(done.refused) == [uri] and not done.removed
    assert files(root) == before and (tmp_path / "outside").read_text() == "keep me"


def test_the_command_reports_in_json_and_fails_on_a_refusal(tmp_path: Path) -> None:
    root = store(tmp_path)
    good = (root / "ml/uid-a").as_uri()
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelops_training.cleanup",
            "--store",
            root.as_uri(),
            good,
            "file:///etc/passwd",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1, run.stderr
    report = json.loads(run.stdout)
    assert report["removed"] == [good] and list(report["refused"]) == ["file:///etc/passwd"]
    assert "file:///etc/passwd: not inside the store" in run.stderr
    assert not (root / "ml/uid-a").exists()


S3_ROOT = "s3://artifacts/models"


@pytest.mark.parametrize(
    "target",
    [
        "s3://artifacts/models",  # the store itself
        "s3://artifacts/models/",
        "s3://artifacts/modelsx/ml/uid-a",  # a sibling sharing the prefix's first letters
        "s3://artifacts/other/ml/uid-a",
        "s3://elsewhere/models/ml/uid-a",  # another bucket
        "s3://artifacts/models/ml/../../x",
        "s3://artifacts/models//ml",
        "s3://artifacts/models/ml?versionId=1",
        "file:///models/ml/uid-a",
        "gs://artifacts/models/ml/uid-a",
    ],
)
def test_an_object_target_outside_the_object_store_is_refused(target: str) -> None:
    from modelops_training import storage
    from modelops_training.cleanup import inside_objects, remove_objects

    root = storage.parse(S3_ROOT)
    with pytest.raises(ValueError):
        inside_objects(root, target)
    # refused before any filesystem is built: no credentials, no endpoint needed
    done = remove_objects(root, [target])
    assert list(done.refused) == [target] and not done.removed and not done.absent


def test_an_object_target_inside_the_store_is_its_key() -> None:
    from modelops_training import storage
    from modelops_training.cleanup import inside_objects

    got = inside_objects(storage.parse(S3_ROOT), f"{S3_ROOT}/ml/uid-a/iris/v1.bentomodel")
    assert got.path == "artifacts/models/ml/uid-a/iris/v1.bentomodel"
    bucket_root = storage.parse("s3://artifacts")
    assert inside_objects(bucket_root, "s3://artifacts/ml/uid-a").key == "ml/uid-a"
