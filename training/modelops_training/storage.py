"""Object storage for the training runtime: the one place that builds an fsspec filesystem for an
`s3://` URI, and turns its errors into TrainingErrors.

The filesystem is s3fs (fsspec's S3 implementation, on botocore). Its credentials, endpoint and
region come from the environment the pod gets, nowhere else, and botocore reads them itself:
`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`), `AWS_ENDPOINT_URL_S3` or
`AWS_ENDPOINT_URL` (botocore >= 1.31 honours both; checked against the real server in
tests/training/test_training_s3.py), `AWS_REGION`. Nothing here ever puts a credential in a message:
the errors botocore raises do not carry the secret, and `redact` removes it from any text anyway.

A dataset may come with credentials of its own (`spec.training.dataset.secretName`): the training
pod then gets that Secret's keys prefixed MODELOPS_DATASET_ (`MODELOPS_DATASET_AWS_ACCESS_KEY_ID`,
...) beside the store's AWS_*, and `filesystem(prefix=DATASET_PREFIX)` builds the dataset's
filesystem from them alone; the archive and the production data keep the unprefixed ones.

Other object stores (gs://, az://) are one fsspec package away (gcsfs, adlfs); only s3:// is
wired and tested.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any, NoReturn

from modelops_api.contract import ENV_DATASET_PREFIX

from .result import TrainingError

SCHEMES = ("s3",)
# A bounded connect, so an endpoint that drops packets fails in tens of seconds, not minutes
# (botocore's default is 60 s per attempt, with retries).
CONNECT_TIMEOUT = 10
# S3's bucket names: 3-63 lowercase letters, digits, '-' and '.'.
BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_SECRETS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
# The environment of spec.training.dataset.secretName's keys (Kubernetes' envFrom prefix).
DATASET_PREFIX = ENV_DATASET_PREFIX
# The keys a credentials Secret may hold: all that `filesystem(prefix=...)` reads.
KEYS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
)


@dataclass(frozen=True)
class ObjectURI:
    """An `s3://bucket/key` URI, split; `key` has no leading or trailing slash."""

    scheme: str
    bucket: str
    key: str

    @property
    def path(self) -> str:
        """The path s3fs takes: `bucket/key`."""
        return f"{self.bucket}/{self.key}" if self.key else self.bucket

    @property
    def uri(self) -> str:
        return f"{self.scheme}://{self.path}"

    def child(self, *parts: str) -> ObjectURI:
        key = "/".join(p for p in (self.key, *parts) if p)
        return ObjectURI(self.scheme, self.bucket, key)


def parse(uri: str) -> ObjectURI:
    """Splits an object URI; ValueError (with a short reason) when it is not a plain one."""
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme not in SCHEMES:
        raise ValueError(f"not one of {', '.join(s + '://' for s in SCHEMES)}")
    if parts.query or parts.fragment:
        raise ValueError("a query or fragment")
    if not BUCKET.match(parts.netloc):
        raise ValueError(f"{parts.netloc!r} is not a bucket name")
    key = parts.path.removeprefix("/").removesuffix("/")
    segments = key.split("/") if key else []
    if any(s in ("", ".", "..") for s in segments):
        raise ValueError("an empty, '.' or '..' path segment")
    return ObjectURI(parts.scheme, parts.netloc, key)


def prefixed(prefix: str) -> dict[str, str]:
    """The credential variables (KEYS) set with `prefix`, by their unprefixed names."""
    return {key: os.environ[prefix + key] for key in KEYS if os.environ.get(prefix + key)}


def has_credentials(prefix: str) -> bool:
    """Whether the environment holds any credential variable with `prefix`."""
    return bool(prefixed(prefix))


def filesystem(timeout: float | None = None, prefix: str = "") -> Any:
    """A fresh s3fs filesystem configured by the environment only; `timeout`, when given, bounds
    each connect (at most CONNECT_TIMEOUT) and each read.

    Without `prefix`, botocore looks the credentials, endpoint and region up itself (AWS_*). With
    one (DATASET_PREFIX), the credentials are the prefixed variables' and no others: an access key
    without its secret (or the reverse) is StorageAccessDenied naming the missing variable, not
    the store's keys taken instead. The prefixed endpoint and region, when set, override the
    unprefixed ones; when not, botocore's lookup gives them (the store's endpoint and region)."""
    import s3fs

    config: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT}
    if timeout is not None:
        config = {"connect_timeout": min(CONNECT_TIMEOUT, timeout), "read_timeout": timeout}
    if not prefix:
        return s3fs.S3FileSystem(skip_instance_cache=True, config_kwargs=config)
    found = prefixed(prefix)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        if key not in found:
            raise PermissionError(
                f"{prefix}{key} is not set: the credentials Secret has no {key} key"
            )
    client: dict[str, Any] = {}
    endpoint = found.get("AWS_ENDPOINT_URL_S3") or found.get("AWS_ENDPOINT_URL")
    if endpoint:
        client["endpoint_url"] = endpoint
    if "AWS_REGION" in found:
        client["region_name"] = found["AWS_REGION"]
    return s3fs.S3FileSystem(
        skip_instance_cache=True,
        key=found["AWS_ACCESS_KEY_ID"],
        secret=found["AWS_SECRET_ACCESS_KEY"],
        token=found.get("AWS_SESSION_TOKEN"),
        client_kwargs=client,
        config_kwargs=config,
    )


def redact(text: str) -> str:
    """`text` without the secret values of the environment, the store's and the dataset's
    (defence in depth)."""
    for name in (*_SECRETS, *(DATASET_PREFIX + secret for secret in _SECRETS)):
        value = os.environ.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text


def describe(error: BaseException) -> str:
    """An error's type and first line, redacted."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return redact(f"{type(error).__name__}: {text}" if text else type(error).__name__)


def raise_for(
    error: BaseException,
    uri: str,
    *,
    missing: str,
    missing_message: str,
    doing: str,
    secret: str = "the Secret's",
) -> NoReturn:
    """Raise the TrainingError for an s3fs/botocore error met while `doing` something with `uri`.

    FileNotFoundError is `missing` (the caller's reason: a bucket or a key); PermissionError and
    botocore's credential errors are StorageAccessDenied; connection errors and timeouts are
    StorageUnreachable; anything else is `SaveFailed`-like and left to the caller (re-raised).
    `secret` names the Secret whose keys to check (default: the store's, "the Secret's").
    """
    from botocore import exceptions as boto

    if isinstance(error, FileNotFoundError):
        raise TrainingError(missing, missing_message) from None
    if isinstance(error, PermissionError | boto.NoCredentialsError | boto.PartialCredentialsError):
        raise TrainingError(
            "StorageAccessDenied",
            f"{doing} {uri}: the object store refused the credentials or the request "
            f"({describe(error)}); check {secret} AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        ) from None
    if isinstance(
        error,
        boto.EndpointConnectionError
        | boto.ConnectTimeoutError
        | boto.ReadTimeoutError
        | TimeoutError
        | ConnectionError,
    ):
        raise TrainingError(
            "StorageUnreachable",
            f"{doing} {uri}: cannot reach the object store ({describe(error)}); check "
            "AWS_ENDPOINT_URL and the network",
        ) from None
    raise error
