"""Who may give feedback, and which predictions are ours: the pod's credentials and signed ids.

The operator provisions one Secret per Model (docs/serving.md, "Credentials") and mounts it into
the serving pods as files in `MODELOPS_CREDENTIALS`:

- `token`: what callers of `POST /feedback` and of the full `GET /metadata` present as
  `Authorization: Bearer <token>`. Whoever RBAC lets read the Secret may send ground truth;
  nobody else can.
- `signing-key`: the key of the HMAC that signs each `/predict` answer's `request_id`. The id
  carries the version, the time, a random nonce (two answers alike are still two ids) and the
  predictions themselves, so that any replica of the version checks feedback against what the
  model really answered, with no memory shared between replicas, and nobody without the key can
  make one up. An id is good for `MODELOPS_FEEDBACK_WINDOW`
  seconds.

The files are read again when they change (the kubelet refreshes a mounted Secret in place), at
most once per `RECHECK_SECONDS`. Without `MODELOPS_CREDENTIALS` the runtime takes no feedback,
serves only the public part of `/metadata`, and its answers carry no `request_id`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelops_api import contract

TOKEN_FILE = contract.CREDENTIAL_TOKEN
KEY_FILE = contract.CREDENTIAL_KEY
RECHECK_SECONDS = 10.0
SIGNATURE_BYTES = 16
NONCE_BYTES = 8


class CredentialsError(Exception):
    """The credentials directory is missing a file or holds an empty one."""


@dataclass(frozen=True)
class Opened:
    """A prediction id whose signature checked out: who made it, when, and what it predicted."""

    version: str
    issued: float
    predictions: list[Any]
    signature: str  # unique per id: the key under which its rows are claimed


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Credentials:
    """The token and the signing key, from the files of one directory."""

    def __init__(self, directory: Path, clock: Any = time.time) -> None:
        self.directory = directory
        self._clock = clock
        self._lock = threading.Lock()
        self._checked = 0.0
        self._stamp: tuple[float, float] | None = None
        self._token = b""
        self._key = b""
        self._reload()

    def _reload(self) -> None:
        files = [self.directory / TOKEN_FILE, self.directory / KEY_FILE]
        try:
            stamp = (files[0].stat().st_mtime, files[1].stat().st_mtime)
            if stamp == self._stamp:
                return
            token, key = (f.read_bytes().strip() for f in files)
        except OSError as error:
            raise CredentialsError(f"cannot read the credentials: {error}") from None
        if not token or not key:
            raise CredentialsError(f"an empty {TOKEN_FILE} or {KEY_FILE} in {self.directory}")
        self._token, self._key, self._stamp = token, key, stamp

    def _fresh(self) -> None:
        now = self._clock()
        with self._lock:
            if now - self._checked < RECHECK_SECONDS:
                return
            self._checked = now
            with contextlib.suppress(CredentialsError):  # a Secret being rewritten: keep the last
                self._reload()

    def authorized(self, header: bytes | None) -> bool:
        """Whether an `Authorization` header carries the token (compared in constant time)."""
        self._fresh()
        scheme, _, presented = (header or b"").partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(presented.strip(), self._token)

    def _sign(self, payload: str) -> str:
        digest = hmac.new(self._key, payload.encode(), hashlib.sha256).digest()
        return _b64(digest[:SIGNATURE_BYTES])

    def issue(self, version: str, predictions: list[Any]) -> str:
        """The id of one `/predict` answer."""
        self._fresh()
        nonce = _b64(secrets.token_bytes(NONCE_BYTES))
        body = json.dumps(
            [version, int(self._clock()), nonce, predictions], separators=(",", ":")
        )
        payload = _b64(body.encode())
        return f"{payload}.{self._sign(payload)}"

    def open(self, request_id: str, window: float) -> Opened | str:
        """The id's content, or why it cannot be scored: `forged` (not ours: a bad signature or
        shape) or `expired` (older than `window` seconds)."""
        self._fresh()
        payload, _, signature = request_id.partition(".")
        if not hmac.compare_digest(signature.encode(), self._sign(payload).encode()):
            return "forged"
        try:
            version, issued, _nonce, predictions = json.loads(_unb64(payload))
        except (ValueError, TypeError, binascii.Error):
            return "forged"
        if not isinstance(version, str) or not isinstance(predictions, list):
            return "forged"
        if self._clock() - float(issued) > window:
            return "expired"
        return Opened(version, float(issued), predictions, signature)
