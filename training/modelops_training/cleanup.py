"""`python -m modelops_training.cleanup`: removes archives from the artifact store.

    python -m modelops_training.cleanup --store URI TARGET [TARGET ...]

The operator never mounts the store (nor, for object storage, holds its credentials), so it
removes what it no longer needs with a short Job from the runtime image that runs this command:
the archives of the versions it pruned from a Model's history, or the whole directory of a Model
that was deleted. Each TARGET is a URI strictly inside the store's root (`--store`), of the same
scheme; anything else is refused, so a wrong argument can never reach outside the store. A target
that is already gone counts as removed (a retried Job does the same work again). One JSON line on
stdout says what happened; the exit status is 1 when any target was refused or could not be
removed.

- `file://` store: a target is a file or a directory; directories left empty are removed up to
  the root.
- `s3://bucket/prefix` store (credentials and endpoint from the environment, storage.py): a target
  is an object, or a prefix, which stands for every key under `<target>/` (S3 has no directories:
  a Model's "directory" is the keys that start with it). The same bucket, and the root's prefix
  followed by at least one more path segment, or it is refused.

It imports no scikit-learn and no BentoML: the Job starts in a fraction of a second.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import storage
from .packaging import ArtifactStore
from .result import TrainingError


@dataclass
class Removal:
    """What one run removed, found gone already, or refused (target -> why)."""

    removed: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {"removed": self.removed, "absent": self.absent, "refused": self.refused},
            sort_keys=True,
        )


def inside(root: Path, target: str) -> Path:
    """The local path of `target`, a `file://` URI strictly inside `root`; ValueError if not."""
    parts = urllib.parse.urlsplit(target)
    if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
        raise ValueError("not a file:// URI")
    if parts.query or parts.fragment:
        raise ValueError("a query or fragment")
    path = Path(urllib.parse.unquote(parts.path))
    if not path.is_absolute() or ".." in path.parts:
        raise ValueError("not an absolute path without '..'")
    if path == root or root not in path.parents:
        raise ValueError(f"not inside the store {root}")
    return path


def _prune_empty(path: Path, root: Path) -> None:
    """Removes the empty directories from `path` up to (not including) `root`."""
    while path != root and root in path.parents:
        try:
            path.rmdir()
        except OSError:  # not empty, or gone: either way, stop here
            return
        path = path.parent


def remove(root: Path, targets: Sequence[str]) -> Removal:
    done = Removal()
    for target in targets:
        try:
            path = inside(root, target)
        except ValueError as error:
            done.refused[target] = str(error)
            continue
        try:
            if path.is_symlink() or path.is_file():
                path.unlink()
            elif path.is_dir():
                shutil.rmtree(path)
            else:
                done.absent.append(target)
                continue
        except OSError as error:
            done.refused[target] = error.strerror or str(error)
            continue
        done.removed.append(target)
        _prune_empty(path.parent, root)
    return done


def inside_objects(root: storage.ObjectURI, target: str) -> storage.ObjectURI:
    """The object URI `target`, strictly inside `root` (same scheme and bucket, at least one path
    segment under its prefix); ValueError if not."""
    try:
        where = storage.parse(target)
    except ValueError as error:
        raise ValueError(f"not an {root.scheme}:// URI of an object or prefix: {error}") from None
    prefix = f"{root.key}/" if root.key else ""
    if where.scheme != root.scheme or where.bucket != root.bucket:
        raise ValueError(f"not inside the store {root.uri}")
    if not where.key or not where.key.startswith(prefix) or where.key == root.key:
        raise ValueError(f"not inside the store {root.uri}")
    return where


def remove_objects(root: storage.ObjectURI, targets: Sequence[str]) -> Removal:
    """Removes each target inside `root`: the object of that key, and every key under it."""
    done = Removal()
    fs: Any = None
    for target in targets:
        try:
            where = inside_objects(root, target)
        except ValueError as error:
            done.refused[target] = str(error)
            continue
        try:
            fs = fs or storage.filesystem()
            keys = _keys(fs, where)
            if not keys:
                done.absent.append(target)
                continue
            _delete(fs, where.bucket, keys)
        except Exception as error:
            done.refused[target] = storage.describe(error)
            continue
        done.removed.append(target)
    return done


def _keys(fs: Any, where: storage.ObjectURI) -> list[str]:
    """The keys that are `where`'s own or under `where/`, from S3's listing itself (s3fs's find
    reports a prefix that some servers keep as an empty directory as if it were an object)."""
    keys: list[str] = []
    request: dict[str, Any] = {"Bucket": where.bucket, "Prefix": where.key}
    while True:
        page = fs.call_s3("list_objects_v2", **request)
        for item in page.get("Contents") or []:
            key = str(item["Key"])
            if key == where.key or key.startswith(f"{where.key}/"):
                keys.append(key)
        if not page.get("IsTruncated"):
            return keys
        request["ContinuationToken"] = page["NextContinuationToken"]


def _delete(fs: Any, bucket: str, keys: list[str]) -> None:
    """Deletes the keys, 1000 to a request (S3's limit); OSError naming the first that failed."""
    for start in range(0, len(keys), 1000):
        batch = [{"Key": key} for key in keys[start : start + 1000]]
        answer = fs.call_s3("delete_objects", Bucket=bucket, Delete={"Objects": batch})
        errors = answer.get("Errors") or []
        if errors:
            first = errors[0]
            raise OSError(f"{first.get('Key')}: {first.get('Code')} {first.get('Message', '')}")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m modelops_training.cleanup",
        description="Remove archives (or a Model's directory) from the artifact store.",
    )
    p.add_argument(
        "--store",
        required=True,
        help="the artifact store's root, e.g. file:///models or s3://bucket/models",
    )
    p.add_argument(
        "targets", nargs="+", metavar="TARGET", help="file:// or s3:// URIs inside the store"
    )
    args = p.parse_args(argv)
    try:
        store = ArtifactStore.parse(args.store)
    except TrainingError as error:
        print(f"cleanup: {error.message}", file=sys.stderr)
        return 2
    if store.location is not None:
        done = remove_objects(store.location, args.targets)
    else:
        done = remove(store.root, args.targets)
    print(done.to_json())
    for target, why in sorted(done.refused.items()):
        print(f"cleanup: {target}: {why}", file=sys.stderr)
    return 1 if done.refused else 0


if __name__ == "__main__":
    sys.exit(main())
