"""Packaging: the fitted Pipeline as a BentoML model, exported as a `.bentomodel` archive to the
artifact store.

BentoML's model classes are used directly, as `bentoml.models.create` and `export_model` do
(same archive, same model.yaml), without importing `bentoml.models`: that module brings BentoML's
cloud client and usage tracking, about 0.4 s of every training run's fixed cost.

The artifact store is named by a URI: `file:///dir` (in a cluster, a mounted volume) or
`s3://bucket/prefix` (object storage, through fsspec and s3fs, see storage.py). The archive goes to
`<root>/<model>/<version>.bentomodel`. A reader never sees half an archive, and a failed run leaves
no staged model and no archive behind:

- file://: exported under a hidden temporary name in the same directory and renamed into place.
- s3://: exported to the pod-local temporary directory, then uploaded to its final key with one
  PUT (or, over s3fs's 50 MiB block, one multipart upload). S3 makes an object visible only when
  its PUT or CompleteMultipartUpload finishes, whole, so the final key is written directly: a
  temporary key renamed afterwards would be a server-side copy and a delete (S3 has no rename),
  twice the I/O for no gain in atomicity. A failed multipart upload is aborted by s3fs.
  Before the model is fitted, the bucket is listed once (one key at most), so a missing bucket,
  refused credentials or an unreachable endpoint fail the run early with their own reason (an
  S3-compatible server may create a missing bucket on PUT: SeaweedFS does).

Importing BentoML's model classes (and joblib with them) takes a few tenths of a second that a run
needs only once the model is fitted. `preload` starts that import in a background thread at the
start of a run, so it overlaps loading, cleaning and fitting (numpy, pandas and scikit-learn
release the GIL in their heavy loops) instead of adding to the run's wall time; `save_and_export`
imports the same modules, which then are ready, or waits for the thread's import to finish (an
import in progress is locked per module, so the two never run it twice).
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import storage
from .result import TrainingError

log = logging.getLogger("modelops.train")

PIPELINE_FILE = "pipeline.pkl"
ARCHIVE_SUFFIX = ".bentomodel"
# Model and version names are Kubernetes names of at most 63 characters (BentoML's limit for a
# tag's name and version).
NAME = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$")


# The modules save_and_export imports, in the order it imports them.
_PACKAGING_MODULES = ("joblib", "bentoml._internal.models.model")


def preload() -> threading.Thread:
    """Start importing what packaging needs in a background thread; the thread, started.

    A failed import is left for save_and_export to meet (and report) when it imports the module.
    """

    def load() -> None:
        for name in _PACKAGING_MODULES:
            try:
                importlib.import_module(name)
            except Exception:  # save_and_export's own import raises it again, in the run
                return

    thread = threading.Thread(target=load, name="modelops-preload-packaging")
    thread.start()
    return thread


def check_name(value: str, what: str) -> str:
    if not NAME.match(value):
        raise TrainingError(
            "InvalidArguments",
            f"{what} {value!r} is not a Kubernetes name (lowercase letters, digits, '-' and '.', "
            "at most 63, starting and ending with a letter or digit)",
        )
    return value


@dataclass(frozen=True)
class ArtifactStore:
    """Where archives go: a local directory (`file://`) or an object store prefix (`s3://`)."""

    root: Path  # file://: the directory; s3://: unused (Path("/"))
    location: storage.ObjectURI | None = None  # s3://: the bucket and prefix

    @classmethod
    def parse(cls, uri: str) -> ArtifactStore:
        parts = urllib.parse.urlsplit(uri)
        if parts.scheme in storage.SCHEMES:
            try:
                return cls(Path("/"), storage.parse(uri))
            except ValueError as error:
                raise TrainingError(
                    "InvalidArguments", f"--artifacts {uri!r}: {error}; use s3://bucket/prefix"
                ) from None
        if parts.scheme != "file":
            raise TrainingError(
                "UnsupportedArtifactStore",
                f"--artifacts {uri!r}: only file:///path and s3://bucket/prefix are implemented",
            )
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise TrainingError(
                "InvalidArguments", f"--artifacts {uri!r}: use an absolute path, file:///models"
            )
        if parts.query or parts.fragment:
            raise TrainingError("InvalidArguments", f"--artifacts {uri!r}: no query or fragment")
        root = Path(urllib.parse.unquote(parts.path))
        if root.exists() and not root.is_dir():
            raise TrainingError("InvalidArguments", f"--artifacts {uri!r} is not a directory")
        return cls(root)

    @property
    def uri_root(self) -> str:
        return self.location.uri if self.location else self.root.as_uri()

    def check_apart(self, home: str) -> None:
        """Refuse a BENTOML_HOME on the artifact store: there it would be shared between pods."""
        if self.location is not None:
            return  # an object store is never a local directory
        root, local = self.root.resolve(), Path(home).resolve()
        if root == local or root in local.parents or local in root.parents:
            raise TrainingError(
                "InvalidArguments",
                f"BENTOML_HOME {home} overlaps the artifact store {self.root}; it must be "
                "pod-local (an emptyDir), never shared",
            )

    def check_reachable(self) -> None:
        """For an object store: list one key of the bucket, so a missing bucket, refused
        credentials or an unreachable endpoint fail now, before the model is fitted."""
        if self.location is None:
            return
        where = self.location
        try:
            storage.filesystem().call_s3(
                "list_objects_v2", Bucket=where.bucket, Prefix=where.key, MaxKeys=1
            )
        except Exception as error:
            storage.raise_for(
                error,
                where.uri,
                missing="BucketNotFound",
                missing_message=f"--artifacts {where.uri}: the bucket {where.bucket!r} does not "
                "exist; create it first",
                doing="listing the artifact store",
            )

    def path(self, model: str, version: str) -> Path:
        return self.root / model / f"{version}{ARCHIVE_SUFFIX}"

    def uri(self, model: str, version: str) -> str:
        if self.location is not None:
            return self.location.child(model, f"{version}{ARCHIVE_SUFFIX}").uri
        return self.path(model, version).as_uri()


def save_and_export(
    pipeline: Any,
    *,
    tag: str,
    metadata: dict[str, Any],
    labels: dict[str, str],
    store: ArtifactStore,
    model: str,
    version: str,
) -> str:
    """Write the model (its pipeline and model.yaml) and export it atomically; the archive's URI.

    The model is staged in a temporary directory under BENTOML_HOME (the training's only writable
    place, where cli.py points the temporary directory) and exported from there: no model store is
    needed, since the archive is what serving imports.
    """
    import joblib
    from bentoml._internal.models.model import Model, ModelContext

    temporary: str | None = None
    staged: Any = None
    try:
        staged = Model.create(
            tag,
            module="",
            api_version="v1",
            signatures={},
            labels=labels,
            metadata=metadata,
            context=ModelContext(framework_name="", framework_versions={}),
        )
        joblib.dump(pipeline, staged.path_of(PIPELINE_FILE))
        staged.flush()
        staged.validate()
        if store.location is not None:
            return _upload(staged, store, model, version)
        final = store.path(model, version)
        final.parent.mkdir(parents=True, exist_ok=True)
        handle, prefix = tempfile.mkstemp(
            prefix=f".{version}.", suffix=".partial", dir=final.parent
        )
        os.close(handle)
        os.unlink(prefix)
        temporary = prefix + ARCHIVE_SUFFIX  # where BentoML writes it (it appends the suffix)
        temporary = staged.export(prefix, output_format="bentomodel")
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        if final.exists():
            log.warning("replacing the existing archive %s", final)
        os.replace(temporary, final)
        temporary = None
        _fsync_directory(final.parent)
        return store.uri(model, version)
    except BaseException as error:  # also SIGTERM (Terminated): clean up, then go on raising
        if isinstance(error, Exception) and not isinstance(error, TrainingError):
            raise TrainingError("SaveFailed", f"saving {tag}: {storage.describe(error)}") from None
        raise
    finally:
        if temporary and os.path.exists(temporary):
            os.unlink(temporary)
        if staged is not None:
            shutil.rmtree(staged.path, ignore_errors=True)


def _upload(staged: Any, store: ArtifactStore, model: str, version: str) -> str:
    """Export the staged model to the pod-local temporary directory and upload it to its key."""
    uri = store.uri(model, version)
    scratch = tempfile.mkdtemp(prefix="modelops-export-")
    try:
        exported = staged.export(os.path.join(scratch, version), output_format="bentomodel")
        target = storage.parse(uri)
        size = os.path.getsize(exported)
        clock = time.perf_counter()
        try:
            fs = storage.filesystem()
            if fs.exists(target.path):
                log.warning("replacing the existing archive %s", uri)
            fs.put_file(exported, target.path)
        except Exception as error:
            storage.raise_for(
                error,
                uri,
                missing="BucketNotFound",
                missing_message=f"uploading {uri}: the bucket {target.bucket!r} does not exist",
                doing="uploading",
            )
        log.info("uploaded %d bytes to %s in %.2fs", size, uri, time.perf_counter() - clock)
        return uri
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _fsync_directory(directory: Path) -> None:
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
