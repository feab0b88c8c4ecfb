"""The result of a training run: the reasons it can end with, the error that carries a failure, and
the JSON object printed on stdout and written (cut to 4 KiB) to the termination-message file."""

from __future__ import annotations

import json
from typing import Any

from modelops_api import contract

# Every reason a run can end with. The first two end a run that produced a model; every other one is
# a failure (phase Failed, exit status 1).
REASONS: dict[str, str] = {
    contract.TRAINED_REASON: "the model passed every quality gate and was archived",
    contract.GATE_MISSED: "it missed a quality gate; archived for inspection, not deployable",
    "InvalidArguments": "the command line is incomplete or wrong (names, artifact URI)",
    "UnsupportedArtifactStore": "the --artifacts URI names a scheme that is not implemented",
    "BucketNotFound": "the bucket of the s3:// artifact store does not exist",
    "StorageAccessDenied": "the object store refused the credentials (or the request)",
    "StorageUnreachable": "the object store's endpoint cannot be reached",
    "InvalidSpec": "the training spec cannot be read, has an unknown key or a wrong value",
    "DataNotFound": "the dataset file does not exist or cannot be read",
    "UnsupportedFormat": "the data format is not supported by this runtime",
    "UnparseableData": "the data file cannot be parsed in its format",
    "UrlUnreachable": "the dataset URL cannot be reached (connection error or timeout)",
    "DownloadFailed": "the dataset server answered with an HTTP error",
    "DownloadTooLarge": "the download is larger than dataset.params.maxBytes",
    "DataTooLarge": "the dataset file is larger than dataset.params.maxBytes",
    "EmptyData": "there are no rows (before or after cleaning)",
    "NotEnoughProductionData": "fewer labelled production rows in the window than minRows",
    "ProductionSchemaMismatch": "production rows lack a feature, or labels do not fit the target",
    "MissingTarget": "the target column is not in the data",
    "MissingFeature": "a declared feature column is not in the data",
    "EmptyFeature": "a feature column has no value at all",
    "NoFeatures": "there is no feature column besides the target",
    "AllDuplicates": "every row is a duplicate of one row",
    "SingleClass": "the classification target has a single class",
    "TooFewRows": "too few rows (or rows of a class) for the holdout split",
    "EstimatorNotAllowed": "the estimator class is not on the allow-list",
    "InvalidParams": "the estimator rejects its params",
    "TaskMismatch": "the declared task does not match the estimator",
    "FitFailed": "scikit-learn failed to fit the pipeline",
    "SaveFailed": "the model could not be saved or archived",
    "Terminated": "the run was stopped by SIGTERM (the Job was deleted or timed out)",
    "InternalError": "an unexpected error; the message names it",
}

# The termination-message file holds at most this many bytes (Kubernetes' limit per container).
RESULT_FILE_LIMIT = 4096

# Keys dropped, in this order, when the result does not fit the termination message. The first
# keys in KEEP are never dropped.
_DROP_ORDER = (
    "seconds",
    "support",
    "sources",
    "dropped",
    "gates",
    "metrics",
    "rows",
    "fingerprint",
    "specHash",
)
_KEEP = ("phase", "reason", "message", "model", "version", "tag", "artifact", "task", "approved")


class TrainingError(Exception):
    """A run that cannot go on: ends with phase Failed, this reason and message."""

    def __init__(self, reason: str, message: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown reason {reason!r}")
        super().__init__(message)
        self.reason = reason
        self.message = message


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM, so cleanup runs on the way out. A BaseException, so
    no handler meant for errors swallows it."""


def failed(reason: str, message: str, known: dict[str, Any]) -> dict[str, Any]:
    """A Failed result: phase, reason, message, then whatever was known when the run failed."""
    result: dict[str, Any] = {"phase": contract.FAILED, "reason": reason, "message": message}
    for key, value in known.items():
        result.setdefault(key, value)
    return result


def to_json(result: dict[str, Any]) -> str:
    """The result as one line of JSON."""
    return json.dumps(result, separators=(",", ":"), sort_keys=False, allow_nan=False)


def fit_to_limit(result: dict[str, Any], limit: int = RESULT_FILE_LIMIT) -> str:
    """The result as JSON of at most `limit` bytes: bulky keys go first, then the message is cut.

    When anything is dropped, `"truncated": true` says so; the full details stay in the model's
    metadata and on stdout.
    """
    text = to_json(result)
    if len(text.encode()) <= limit:
        return text
    short = dict(result)
    short["truncated"] = True
    for key in _DROP_ORDER:
        short.pop(key, None)
        text = to_json(short)
        if len(text.encode()) <= limit:
            return text
    short = {key: short[key] for key in _KEEP if key in short}
    short["truncated"] = True
    while len(to_json(short).encode()) > limit and short.get("message"):
        message = str(short["message"])
        short["message"] = message[: max(0, len(message) // 2)] + "…"
        if len(message) < 4:
            short["message"] = ""
    return to_json(short)
