"""Import of the model archive into the pod-local model store, and loading of the model from it.

The archive is the `.bentomodel` file training reported (`MODELOPS_ARTIFACT`, a `file://` URI or an
absolute path). Each worker process of the runtime loads the model; the first one imports the
archive into `$BENTOML_HOME/models` under a file lock, the others find it there. An archive that
does not exist yet is waited for (the runtime stays live but not ready); anything else that is
wrong — another scheme, a broken archive, metadata that breaks the contract, a tag that disagrees
with `MODELOPS_MODEL`/`MODELOPS_VERSION` — is a load error reported by `/readyz` and `/metadata`.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import joblib

from .schema import ContractError, Schema

PIPELINE_FILE = "pipeline.pkl"
TASKS = ("classification", "regression")


class ArtifactError(RuntimeError):
    """The archive cannot be used; the message says why."""


class ArtifactMissing(ArtifactError):
    """The archive does not exist (yet)."""


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to serve: its pipeline and what the contract says about it."""

    tag: str
    model: str
    version: str
    task: str
    schema: Schema
    classes: tuple[str, ...]
    metadata: dict[str, Any]
    pipeline: Any


def archive_path(uri: str) -> Path:
    """The local path of an artifact URI (file:// or an absolute path)."""
    if not uri:
        raise ArtifactError("MODELOPS_ARTIFACT is not set")
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ArtifactError(f"file URI {uri!r} names host {parsed.netloc!r}; use file:///path")
        return Path(unquote(parsed.path))
    if parsed.scheme == "" and uri.startswith("/"):
        return Path(uri)
    raise ArtifactError(f"artifact URI {uri!r}: only file:// URIs and absolute paths are supported")


def bentoml_home() -> Path:
    home = os.environ.get("BENTOML_HOME", "").strip()
    if not home:
        raise ArtifactError(
            "BENTOML_HOME is not set; give each runtime its own pod-local directory "
            "(BentoML clears its Prometheus directory there at start)"
        )
    return Path(home)


def check_home_apart(home: Path, archive: Path) -> None:
    """Refuse a BENTOML_HOME on the artifact store, where replicas would share it."""
    h, a = home.resolve(), archive.parent.resolve()
    if h == a or h in a.parents or a in h.parents:
        raise ArtifactError(
            f"BENTOML_HOME {home} overlaps the artifact store {archive.parent}; "
            "it must be pod-local (an emptyDir), never shared"
        )


def model_store(home: Path) -> Any:
    """The model store under `home`.

    Named explicitly rather than taken from BentoML's configuration, which binds its home once, at
    the first import of `bentoml` in the process, whatever BENTOML_HOME says later.
    """
    from bentoml._internal.models.model import ModelStore

    return ModelStore(home / "models")


def import_archive(archive: Path, home: Path) -> str:
    """Import the archive into the store under `home` once; return the model's tag."""
    import bentoml
    from bentoml.exceptions import BentoMLException

    marker = home / "modelops-imported.json"
    with open(home / "modelops-import.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if marker.exists():
                known = json.loads(marker.read_text())
                if known.get("archive") == str(archive):
                    return str(known["tag"])
            if not archive.is_file():
                raise ArtifactMissing(f"archive {archive} does not exist")
            try:
                model = bentoml.models.import_model(str(archive), _model_store=model_store(home))
            except BentoMLException as exc:
                raise ArtifactError(f"cannot import {archive}: {exc}") from exc
            except (OSError, ValueError) as exc:
                raise ArtifactError(f"cannot read archive {archive}: {exc}") from exc
            tag = str(model.tag)
            marker.write_text(json.dumps({"archive": str(archive), "tag": tag}))
            return tag
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def read_model(tag: str, home: Path, expected_model: str, expected_version: str) -> LoadedModel:
    """Load the pipeline from the store under `home` and check the metadata against the contract."""
    import bentoml

    stored = bentoml.models.get(tag, _model_store=model_store(home))
    meta = dict(stored.info.metadata)
    name, version = str(stored.tag.name), str(stored.tag.version)
    if expected_model and expected_model != name:
        raise ArtifactError(f"archive holds model {name!r}, MODELOPS_MODEL is {expected_model!r}")
    if expected_version and expected_version != version:
        raise ArtifactError(
            f"archive holds version {version!r}, MODELOPS_VERSION is {expected_version!r}"
        )
    task = meta.get("task")
    if task not in TASKS:
        raise ContractError(f"metadata 'task' is {task!r}, not one of {', '.join(TASKS)}")
    schema = Schema.from_metadata(meta.get("features"))
    classes: tuple[str, ...] = ()
    if task == "classification":
        raw = meta.get("classes")
        if not isinstance(raw, list) or not raw:
            raise ContractError("metadata 'classes' must list the class labels of a classifier")
        classes = tuple(str(c) for c in raw)
    path = Path(stored.path) / PIPELINE_FILE
    try:
        pipeline = joblib.load(path)
    except Exception as exc:  # a broken pickle can raise anything
        raise ArtifactError(f"cannot load {PIPELINE_FILE} of {tag}: {exc}") from exc
    if not hasattr(pipeline, "predict"):
        raise ContractError(f"{PIPELINE_FILE} of {tag} has no predict()")
    return LoadedModel(str(stored.tag), name, version, str(task), schema, classes, meta, pipeline)


def load(
    uri: str,
    expected_model: str,
    expected_version: str,
    *,
    wait_seconds: float,
    poll_seconds: float = 1.0,
    on_wait: Callable[[str], None] | None = None,
) -> LoadedModel:
    """Import and load the model, waiting up to `wait_seconds` for the archive to appear."""
    archive = archive_path(uri)
    home = bentoml_home()
    check_home_apart(home, archive)
    home.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            tag = import_archive(archive, home)
            break
        except ArtifactMissing as exc:
            if time.monotonic() >= deadline:
                raise ArtifactError(f"{exc} (waited {wait_seconds:g}s)") from None
            if on_wait is not None:
                on_wait(str(exc))
            time.sleep(poll_seconds)
    return read_model(tag, home, expected_model, expected_version)
