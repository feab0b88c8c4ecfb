"""Data sources: turn `dataset.uri` into a pandas DataFrame.

- `builtin:<name>`: a dataset scikit-learn ships (iris, wine, breast_cancer, diabetes), with
  snake_case feature names and a named target (species, cultivar, diagnosis, progression).
- `synthetic:classification?rows=..&features=..` and `synthetic:regression?...`: generated data; its
  parameters live in the URI's query (the one place for them), see SYNTHETIC_PARAMS.
- `file:///path.csv` (or Parquet with `format: parquet`): read up to a size limit
  (`dataset.params.maxBytes`, as for http).
- `http://` and `https://`: downloaded with a timeout and a size limit (`dataset.params`).
- `s3://bucket/key.csv` (or Parquet): an object, read through fsspec/s3fs (storage.py, credentials
  and endpoint from the environment) up to the same size limit, with `timeoutSeconds` as botocore's
  connect and read timeouts.

The spec is parsed already (`modelops_api.spec.DatasetSpec`): the URI's form, the format and
`dataset.params` (its defaults, its bounds, and that it applies to http(s), file and s3 sources
only) are checked
there; what is checked here is what only the source can tell (builtin names, synthetic parameters).
"""

from __future__ import annotations

import http.client
import io
import logging
import math
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modelops_api.spec import DatasetSpec, HttpParams

from . import storage
from .result import TrainingError

log = logging.getLogger("modelops.train")

# builtin name -> (loader name in sklearn.datasets, target column, task)
BUILTIN: dict[str, tuple[str, str, str]] = {
    "iris": ("load_iris", "species", "classification"),
    "wine": ("load_wine", "cultivar", "classification"),
    "breast_cancer": ("load_breast_cancer", "diagnosis", "classification"),
    "diabetes": ("load_diabetes", "progression", "regression"),
}

# synthetic parameter -> (type, default, minimum, maximum, applies to)
SYNTHETIC_PARAMS: dict[str, tuple[type, float, float, float, tuple[str, ...]]] = {
    "rows": (int, 1000, 1, 10_000_000, ("classification", "regression")),
    "features": (int, 10, 1, 1000, ("classification", "regression")),
    "informative": (int, 0, 1, 1000, ("classification", "regression")),  # 0: see below
    "classes": (int, 2, 2, 100, ("classification",)),
    "noise": (float, 0.1, 0.0, 1e6, ("regression",)),
    "seed": (int, 0, 0, 2**32 - 1, ("classification", "regression")),
    "shift": (float, 0.0, -1e6, 1e6, ("classification", "regression")),
}
SYNTHETIC_TARGET = "target"
_CHUNK = 1024 * 1024


def load(dataset: DatasetSpec) -> pd.DataFrame:
    """Load the dataset the spec names; every problem is a TrainingError with a specific reason."""
    uri = dataset.uri.strip()
    scheme, _, rest = uri.partition(":")
    if scheme == "builtin":
        return load_builtin(rest)
    if scheme == "synthetic":
        return load_synthetic(rest)
    if scheme == "file":
        return read_file(file_path(uri), dataset.format, (dataset.params or HttpParams()).max_bytes)
    if scheme in ("http", "https"):
        return parse_bytes(download(uri, dataset.params or HttpParams()), dataset.format, uri)
    if scheme in storage.SCHEMES:
        body = read_object(uri, dataset.params or HttpParams(), dataset.secret_name)
        return parse_bytes(body, dataset.format, uri)
    raise TrainingError(
        "InvalidSpec",
        f"spec.training.dataset.uri {uri!r}: unsupported source; use builtin:, synthetic:, "
        "file://, http(s):// or s3://",
    )


def load_builtin(name: str) -> pd.DataFrame:
    if name not in BUILTIN:
        raise TrainingError(
            "InvalidSpec",
            f"builtin:{name} is not a builtin dataset (known: {', '.join(sorted(BUILTIN))})",
        )
    from sklearn import datasets

    loader_name, target, task = BUILTIN[name]
    loader: Callable[..., Any] = getattr(datasets, loader_name)
    bunch = loader()
    frame = pd.DataFrame(bunch.data, columns=[snake_case(str(c)) for c in bunch.feature_names])
    if task == "classification":
        names = [str(label) for label in bunch.target_names]
        frame[target] = [names[int(code)] for code in bunch.target]
    else:
        frame[target] = np.asarray(bunch.target, dtype=float)
    return frame


def snake_case(name: str) -> str:
    """'sepal length (cm)' -> 'sepal_length_cm'."""
    return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_")


def synthetic_params(kind: str, query: str) -> dict[str, float]:
    if kind not in ("classification", "regression"):
        raise TrainingError(
            "InvalidSpec",
            f"synthetic:{kind} is not a synthetic dataset (known: classification, regression)",
        )
    try:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise TrainingError(
            "InvalidSpec", f"synthetic:{kind}: cannot parse the query {query!r}"
        ) from None
    values: dict[str, float] = {}
    for key, text in pairs:
        if key not in SYNTHETIC_PARAMS or kind not in SYNTHETIC_PARAMS[key][4]:
            known = [k for k, v in SYNTHETIC_PARAMS.items() if kind in v[4]]
            raise TrainingError(
                "InvalidSpec",
                f"synthetic:{kind}: unknown parameter {key!r} (known: {', '.join(known)})",
            )
        if key in values:
            raise TrainingError("InvalidSpec", f"synthetic:{kind}: parameter {key!r} given twice")
        kind_of, _, low, high, _ = SYNTHETIC_PARAMS[key]
        try:
            value = float(int(text)) if kind_of is int else float(text)
        except ValueError:
            raise TrainingError(
                "InvalidSpec", f"synthetic:{kind}: {key}={text!r} is not a {kind_of.__name__}"
            ) from None
        if not math.isfinite(value) or not low <= value <= high:
            raise TrainingError(
                "InvalidSpec", f"synthetic:{kind}: {key}={text} is out of range [{low:g}, {high:g}]"
            )
        values[key] = value
    for key, (_, default, _, _, kinds) in SYNTHETIC_PARAMS.items():
        if kind in kinds:
            values.setdefault(key, default)
    if not values["informative"]:
        # half the features, and enough for make_classification's 2 clusters per class
        needed = math.ceil(math.log2(2 * values.get("classes", 2)))
        values["informative"] = min(
            values["features"], max(1, int(values["features"]) // 2, needed)
        )
    if values["informative"] > values["features"]:
        raise TrainingError("InvalidSpec", f"synthetic:{kind}: informative must be <= features")
    return values


def load_synthetic(rest: str) -> pd.DataFrame:
    kind, _, query = rest.partition("?")
    p = synthetic_params(kind, query)
    rows, features, informative, seed = (
        int(p["rows"]),
        int(p["features"]),
        int(p["informative"]),
        int(p["seed"]),
    )
    from sklearn import datasets

    try:
        if kind == "classification":
            x, y = datasets.make_classification(
                n_samples=rows,
                n_features=features,
                n_informative=informative,
                n_redundant=0,
                n_classes=int(p["classes"]),
                random_state=seed,
            )
        else:
            x, y = datasets.make_regression(
                n_samples=rows,
                n_features=features,
                n_informative=informative,
                noise=p["noise"],
                random_state=seed,
            )
    except ValueError as error:
        raise TrainingError("InvalidSpec", f"synthetic:{kind}: {error}") from None
    if p["shift"]:  # no copy of the generated rows when there is nothing to add
        x += p["shift"]
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(features)], copy=False)
    frame[SYNTHETIC_TARGET] = y
    return frame


def file_path(uri: str) -> Path:
    parts = urllib.parse.urlsplit(uri)
    if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
        raise TrainingError(
            "InvalidSpec", f"{uri!r}: a file URI names an absolute local path, file:///data/x.csv"
        )
    return Path(urllib.parse.unquote(parts.path))


def read_file(path: Path, fmt: str, max_bytes: int) -> pd.DataFrame:
    """The file's rows; a file over `max_bytes` is refused before it is read (and one that grows
    while it is read, as soon as it passes the limit)."""
    if not path.exists():
        raise TrainingError("DataNotFound", f"the dataset file {path} does not exist")
    if not path.is_file():
        raise TrainingError("DataNotFound", f"the dataset path {path} is not a file")
    too_large = TrainingError(
        "DataTooLarge",
        f"{path} is over the limit of {max_bytes} bytes (spec.training.dataset.params.maxBytes)",
    )
    try:
        if path.stat().st_size > max_bytes:
            raise too_large
        with path.open("rb") as file:
            body = file.read(max_bytes + 1)
    except OSError as error:
        raise TrainingError(
            "DataNotFound", f"cannot read the dataset file {path}: {error.strerror or error}"
        ) from None
    if len(body) > max_bytes:
        raise too_large
    return parse_bytes(body, fmt, str(path))


def parse_bytes(body: bytes, fmt: str, name: str) -> pd.DataFrame:
    """Parse a file's bytes in the given format."""
    if fmt == "parquet":
        try:
            return pd.read_parquet(io.BytesIO(body))
        except ImportError:
            raise TrainingError(
                "UnsupportedFormat",
                "Parquet needs pyarrow, which this runtime image does not include; use CSV",
            ) from None
        except Exception as error:  # pyarrow raises its own error types
            raise TrainingError(
                "UnparseableData", f"{name} is not valid Parquet: {error}"
            ) from None
    if not body.strip():
        raise TrainingError("EmptyData", f"{name} is empty")
    try:
        return pd.read_csv(io.BytesIO(body))
    except pd.errors.EmptyDataError:
        raise TrainingError("EmptyData", f"{name} has no columns") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise TrainingError("UnparseableData", f"{name} is not valid CSV: {first}") from None


class _SameOrigin(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only within the origin (scheme, host and port) of the dataset's URI: a
    redirect must not take a training to another server, nor from https down to http."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        old, new = urllib.parse.urlsplit(req.full_url), urllib.parse.urlsplit(newurl)
        if (old.scheme, old.netloc) != (new.scheme, new.netloc):
            raise TrainingError(
                "DownloadFailed",
                f"{req.full_url} redirects (HTTP {code}) to another origin, "
                f"{new.scheme}://{new.netloc}: only redirects within the origin are followed",
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_SameOrigin)


def download(uri: str, params: HttpParams) -> bytes:
    """GET the URI with a timeout, stopping as soon as the body exceeds maxBytes; redirects are
    followed within the URI's origin only."""
    timeout, max_bytes = params.timeout_seconds, params.max_bytes
    request = urllib.request.Request(uri, headers={"User-Agent": "modelops-train"})
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > max_bytes:
                raise TrainingError(
                    "DownloadTooLarge",
                    f"{uri} is {int(length)} bytes, over the limit of {max_bytes} "
                    "(spec.training.dataset.params.maxBytes)",
                )
            chunks: list[bytes] = []
            size = 0
            while chunk := response.read(_CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise TrainingError(
                        "DownloadTooLarge",
                        f"{uri} is over the limit of {max_bytes} bytes "
                        "(spec.training.dataset.params.maxBytes)",
                    )
                chunks.append(chunk)
    except urllib.error.HTTPError as error:
        raise TrainingError(
            "DownloadFailed", f"{uri} answered HTTP {error.code} {error.reason}"
        ) from None
    except urllib.error.URLError as error:
        raise TrainingError("UrlUnreachable", f"cannot reach {uri}: {error.reason}") from None
    except (TimeoutError, OSError, http.client.HTTPException) as error:
        raise TrainingError(
            "UrlUnreachable", f"cannot reach {uri}: {error or type(error).__name__}"
        ) from None
    log.info("downloaded %d bytes from %s", size, uri)
    return b"".join(chunks)


def read_object(uri: str, params: HttpParams, secret_name: str | None = None) -> bytes:
    """An object's bytes, refused before it is read when its size is over maxBytes (and cut off,
    should it grow while it is read, as soon as it passes the limit).

    With the dataset's own credentials in the environment (MODELOPS_DATASET_AWS_*, from the Secret
    `secret_name` that spec.training.dataset.secretName names), they alone read it; else the
    store's (AWS_*). A `secret_name` without them is StorageAccessDenied: the pod did not get the
    Secret the spec names, and the store's keys are not taken instead."""
    max_bytes = params.max_bytes
    try:
        where = storage.parse(uri)
    except ValueError as error:
        raise TrainingError("InvalidSpec", f"spec.training.dataset.uri {uri!r}: {error}") from None
    if not where.key:
        raise TrainingError("InvalidSpec", f"spec.training.dataset.uri {uri!r}: names no key")
    too_large = TrainingError(
        "DataTooLarge",
        f"{uri} is over the limit of {max_bytes} bytes (spec.training.dataset.params.maxBytes)",
    )
    own = storage.has_credentials(storage.DATASET_PREFIX)
    if secret_name and not own:
        raise TrainingError(
            "StorageAccessDenied",
            f"reading the dataset {uri}: spec.training.dataset.secretName names the Secret "
            f"{secret_name!r}, but none of its {storage.DATASET_PREFIX}AWS_* variables is set",
        )
    secret = "the Secret's"  # the store's
    if secret_name:
        secret = f"the dataset's Secret {secret_name!r} (spec.training.dataset.secretName):"
    elif own:
        secret = f"the dataset's credentials ({storage.DATASET_PREFIX}AWS_*):"
    try:
        fs = storage.filesystem(
            timeout=params.timeout_seconds, prefix=storage.DATASET_PREFIX if own else ""
        )
        size = fs.info(where.path).get("size")
        if isinstance(size, int) and size > max_bytes:
            raise too_large
        with fs.open(where.path, "rb", block_size=_CHUNK * 8) as handle:
            body = handle.read(max_bytes + 1)
    except TrainingError:
        raise
    except IsADirectoryError:
        raise TrainingError("DataNotFound", f"{uri} is a prefix, not an object") from None
    except Exception as error:
        storage.raise_for(
            error,
            uri,
            missing="DataNotFound",
            missing_message=f"the dataset object {uri} does not exist (no such bucket or key)",
            doing="reading the dataset",
            secret=secret,
        )
    if len(body) > max_bytes:
        raise too_large
    log.info("read %d bytes from %s", len(body), uri)
    return bytes(body)
