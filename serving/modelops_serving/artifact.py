"""Import of the model archive into the pod-local model store, and loading of the model from it.

The archive is the `.bentomodel` file training reported (`MODELOPS_ARTIFACT`, a `file://` URI, an
absolute path or an `s3://bucket/key` URI). Each worker process of the runtime loads the model; the
first one imports the archive into `$BENTOML_HOME/models` under a file lock, the others find it
there. An `s3://` archive is first downloaded (fsspec/s3fs, credentials and endpoint from the
environment: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL[_S3], AWS_REGION) to
`$BENTOML_HOME/downloads`, imported, and the download removed: once loaded, the model lives in the
pod and the store is not needed again. An archive that does not exist yet is waited for (the runtime
stays live but not ready); anything else that is wrong — another scheme, an object store that
refuses the credentials or cannot be reached, a broken archive, metadata that breaks the contract,
a tag that disagrees with `MODELOPS_MODEL`/`MODELOPS_VERSION` — is a load error reported by
`/readyz` and `/metadata`.

The few lines that build the s3fs filesystem duplicate training's storage.py on purpose: serving and
training are independent packages (pyproject's import-linter contract), and this is too small to
be worth a module of the API package.
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
OBJECT_SCHEMES = ("s3",)
# A bounded connect, so a store that drops packets is a load error in tens of seconds.
CONNECT_TIMEOUT = 10


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
    raise ArtifactError(
        f"artifact URI {uri!r}: only file://, s3:// URIs and absolute paths are supported"
    )


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


def is_object_uri(uri: str) -> bool:
    return urlparse(uri).scheme in OBJECT_SCHEMES


def object_path(uri: str) -> str:
    """`bucket/key` of an `s3://bucket/key` URI; ArtifactError when it names no object."""
    parsed = urlparse(uri)
    key = parsed.path.lstrip("/")
    if not parsed.netloc or not key or key.endswith("/") or parsed.query or parsed.fragment:
        raise ArtifactError(f"artifact URI {uri!r}: use s3://bucket/key.bentomodel")
    return f"{parsed.netloc}/{key}"


def object_filesystem() -> Any:
    """A fresh s3fs filesystem configured by the environment only (botocore reads AWS_*)."""
    import s3fs

    return s3fs.S3FileSystem(
        skip_instance_cache=True, config_kwargs={"connect_timeout": CONNECT_TIMEOUT}
    )


def describe(error: BaseException) -> str:
    """The error's type and the first line of its message (never more of a botocore error)."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def download(uri: str, target: Path) -> None:
    """Download the object `uri` to `target` (through a temporary name beside it)."""
    from botocore import exceptions as boto

    path = object_path(uri)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    try:
        object_filesystem().get_file(path, str(partial))
        os.replace(partial, target)
    except FileNotFoundError:
        raise ArtifactMissing(f"archive {uri} does not exist") from None
    except (PermissionError, boto.NoCredentialsError, boto.PartialCredentialsError) as exc:
        raise ArtifactError(
            f"cannot read archive {uri}: the object store refused the credentials or the request "
            f"({describe(exc)}); check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        ) from None
    except (
        boto.EndpointConnectionError,
        boto.ConnectTimeoutError,
        boto.ReadTimeoutError,
        TimeoutError,
        ConnectionError,
    ) as exc:
        raise ArtifactError(
            f"cannot read archive {uri}: the object store cannot be reached ({describe(exc)}); "
            "check AWS_ENDPOINT_URL"
        ) from None
    except OSError as exc:
        raise ArtifactError(f"cannot download archive {uri}: {describe(exc)}") from None
    finally:
        partial.unlink(missing_ok=True)


def import_archive(archive: Path, home: Path, uri: str | None = None) -> str:
    """Import the archive into the store under `home` once; return the model's tag. With `uri` (an
    object URI), the archive is downloaded first to `archive`, a path under `home`, and removed
    once imported."""
    import bentoml
    from bentoml.exceptions import BentoMLException

    source = uri or str(archive)
    marker = home / "modelops-imported.json"
    with open(home / "modelops-import.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if marker.exists():
                known = json.loads(marker.read_text())
                if known.get("archive") == source:
                    return str(known["tag"])
            if uri is not None:
                download(uri, archive)
            elif not archive.is_file():
                raise ArtifactMissing(f"archive {archive} does not exist")
            try:
                model = bentoml.models.import_model(str(archive), _model_store=model_store(home))
            except BentoMLException as exc:
                raise ArtifactError(f"cannot import {source}: {exc}") from exc
            except (OSError, ValueError) as exc:
                raise ArtifactError(f"cannot read archive {source}: {exc}") from exc
            finally:
                if uri is not None:
                    archive.unlink(missing_ok=True)
            tag = str(model.tag)
            marker.write_text(json.dumps({"archive": source, "tag": tag}))
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
    home = bentoml_home()
    remote: str | None = None
    if is_object_uri(uri):
        remote = uri
        archive = home / "downloads" / Path(object_path(uri)).name
    else:
        archive = archive_path(uri)
        check_home_apart(home, archive)
    home.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            tag = import_archive(archive, home, remote)
            break
        except ArtifactMissing as exc:
            if time.monotonic() >= deadline:
                raise ArtifactError(f"{exc} (waited {wait_seconds:g}s)") from None
            if on_wait is not None:
                on_wait(str(exc))
            time.sleep(poll_seconds)
    return read_model(tag, home, expected_model, expected_version)
