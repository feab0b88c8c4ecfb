"""Packaging: the fitted Pipeline as a BentoML model, exported as a `.bentomodel` archive to the
artifact store.

BentoML's model classes are used directly, as `bentoml.models.create` and `export_model` do
(same archive, same model.yaml), without importing `bentoml.models`: that module brings BentoML's
cloud client and usage tracking, about 0.4 s of every training run's fixed cost.

The artifact store is named by a URI so object storage can be added as another scheme later; today
it is `file:///dir` (in a cluster, a mounted volume). The archive goes to
`<dir>/<model>/<version>.bentomodel`, exported under a hidden temporary name in the same directory
and renamed into place, so a reader never sees half an archive; a failed run leaves no staged model
and no archive behind.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .result import TrainingError

log = logging.getLogger("modelops.train")

PIPELINE_FILE = "pipeline.pkl"
ARCHIVE_SUFFIX = ".bentomodel"
# Model and version names are Kubernetes names of at most 63 characters (BentoML's limit for a
# tag's name and version).
NAME = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$")


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
    """Where archives go. Only `file://` is implemented."""

    root: Path

    @classmethod
    def parse(cls, uri: str) -> ArtifactStore:
        parts = urllib.parse.urlsplit(uri)
        if parts.scheme != "file":
            raise TrainingError(
                "UnsupportedArtifactStore",
                f"--artifacts {uri!r}: only file:///path is implemented (object storage is not, "
                "yet)",
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

    def check_apart(self, home: str) -> None:
        """Refuse a BENTOML_HOME on the artifact store: there it would be shared between pods."""
        root, local = self.root.resolve(), Path(home).resolve()
        if root == local or root in local.parents or local in root.parents:
            raise TrainingError(
                "InvalidArguments",
                f"BENTOML_HOME {home} overlaps the artifact store {self.root}; it must be "
                "pod-local (an emptyDir), never shared",
            )

    def path(self, model: str, version: str) -> Path:
        return self.root / model / f"{version}{ARCHIVE_SUFFIX}"

    def uri(self, model: str, version: str) -> str:
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
            raise TrainingError(
                "SaveFailed", f"saving {tag}: {type(error).__name__}: {error}"
            ) from None
        raise
    finally:
        if temporary and os.path.exists(temporary):
            os.unlink(temporary)
        if staged is not None:
            shutil.rmtree(staged.path, ignore_errors=True)


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
