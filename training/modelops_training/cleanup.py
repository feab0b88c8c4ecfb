"""`python -m modelops_training.cleanup`: removes archives from the artifact store.

    python -m modelops_training.cleanup --store URI TARGET [TARGET ...]

The operator never mounts the store (nor, for object storage, holds its credentials), so it
removes what it no longer needs with a short Job from the runtime image that runs this command:
the archives of the versions it pruned from a Model's history, or the whole directory of a Model
that was deleted. Each TARGET is a `file://` URI strictly inside the store's root (`--store`);
anything else is refused, so a wrong argument can never reach outside the store. A target that is
already gone counts as removed (a retried Job does the same work again), and directories left
empty are removed up to the root. One JSON line on stdout says what happened; the exit status is
1 when any target was refused or could not be removed.

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


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m modelops_training.cleanup",
        description="Remove archives (or a Model's directory) from the artifact store.",
    )
    p.add_argument("--store", required=True, help="the artifact store's root, e.g. file:///models")
    p.add_argument("targets", nargs="+", metavar="TARGET", help="file:// URIs inside the store")
    args = p.parse_args(argv)
    try:
        store = ArtifactStore.parse(args.store)
    except TrainingError as error:
        print(f"cleanup: {error.message}", file=sys.stderr)
        return 2
    done = remove(store.root, args.targets)
    print(done.to_json())
    for target, why in sorted(done.refused.items()):
        print(f"cleanup: {target}: {why}", file=sys.stderr)
    return 1 if done.refused else 0


if __name__ == "__main__":
    sys.exit(main())
