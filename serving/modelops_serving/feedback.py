"""Ground truth for earlier predictions: the prediction memory and the scoring of feedback.

`/predict` remembers what it answered under the request id it returned, in a small SQLite table in
the pod-local `BENTOML_HOME` shared by the runtime's worker processes (feedback may reach another
worker than the prediction did). The table keeps the newest `MODELOPS_FEEDBACK_MEMORY` requests;
older ids become unknown, and feedback on them is counted as such, not failed. Each row of a
request is scored at most once; a repeat is counted as a duplicate.

Feedback can also carry the prediction itself (`{"prediction": ..., "truth": ...}`), which needs no
memory and works across replicas. An item may name the `version` that made the prediction; an item
for another version is counted as `other_version` and not scored, so a canary's accuracy is never
computed from the stable version's predictions.
"""

from __future__ import annotations

import fcntl
import json
import math
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .schema import Problem, Rejected

PRUNE_EVERY = 512


class Memory:
    """Predictions by request id, bounded to the newest `capacity` requests."""

    def __init__(self, path: Path, capacity: int) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._since_prune = 0
        self._db = sqlite3.connect(
            str(path), timeout=10.0, isolation_level=None, check_same_thread=False
        )
        # Switching to WAL takes an exclusive lock without waiting on SQLite's busy timeout, so
        # workers that start together would fail with "database is locked": they take turns.
        with open(f"{path}.setup", "a") as guard:
            fcntl.flock(guard, fcntl.LOCK_EX)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS predictions ("
                "seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, "
                "preds TEXT NOT NULL, claimed TEXT NOT NULL DEFAULT '')"
            )
        self._db.execute("PRAGMA synchronous=OFF")

    def remember(self, request_id: str, predictions: list[Any]) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO predictions (id, preds) VALUES (?, ?)",
                (request_id, json.dumps(predictions)),
            )
            self._since_prune += 1
            if self._since_prune >= PRUNE_EVERY:
                self._since_prune = 0
                self._db.execute(
                    "DELETE FROM predictions WHERE seq <= (SELECT MAX(seq) FROM predictions) - ?",
                    (self.capacity,),
                )

    def claim(self, request_id: str, row: int) -> tuple[str, Any]:
        """('ok', prediction), or (reason, None): unknown_request, unknown_row or duplicate."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                found = self._db.execute(
                    "SELECT seq, preds, claimed FROM predictions WHERE id = ?", (request_id,)
                ).fetchone()
                if found is None:
                    return "unknown_request", None
                seq, preds_text, claimed_text = found
                if self.capacity and seq <= self._newest() - self.capacity:
                    return "unknown_request", None
                preds = json.loads(preds_text)
                if not 0 <= row < len(preds):
                    return "unknown_row", None
                claimed = set(claimed_text.split(",")) if claimed_text else set()
                if str(row) in claimed:
                    return "duplicate", None
                claimed.add(str(row))
                self._db.execute(
                    "UPDATE predictions SET claimed = ? WHERE seq = ?",
                    (",".join(sorted(claimed)), seq),
                )
                return "ok", preds[row]
            finally:
                self._db.execute("COMMIT")

    def _newest(self) -> int:
        row = self._db.execute("SELECT MAX(seq) FROM predictions").fetchone()
        return int(row[0] or 0)

    def close(self) -> None:
        with self._lock:
            self._db.close()


@dataclass
class Item:
    truth: Any
    request_id: str | None = None
    row: int = 0
    prediction: Any = None
    version: str | None = None


@dataclass
class Outcome:
    correct: int = 0
    incorrect: int = 0
    errors: list[float] = field(default_factory=list)
    unmatched: dict[str, int] = field(default_factory=dict)

    def as_dict(self, task: str) -> dict[str, Any]:
        out: dict[str, Any] = {"unmatched": self.unmatched}
        if task == "classification":
            out.update(accepted=self.correct + self.incorrect, correct=self.correct)
            out["incorrect"] = self.incorrect
        else:
            out["accepted"] = len(self.errors)
            if self.errors:
                out["mean_absolute_error"] = sum(abs(e) for e in self.errors) / len(self.errors)
        return out


def _is_number(value: Any) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # JSON integers have no size limit
        return False


def parse_items(body_items: Any, *, task: str, max_items: int) -> list[Item]:
    """Validated feedback items; Rejected naming the item index and field otherwise."""
    if not isinstance(body_items, list):
        raise Rejected(
            [
                Problem(
                    "invalid_body", "the body must be an object with an 'items' list", None, "items"
                )
            ]
        )
    if not body_items:
        raise Rejected([Problem("empty_batch", "'items' is empty", None, "items")])
    if len(body_items) > max_items:
        raise Rejected(
            [
                Problem(
                    "batch_too_large",
                    f"{len(body_items)} items exceed the limit of {max_items} per request",
                    None,
                    "items",
                )
            ]
        )
    items: list[Item] = []
    problems: list[Problem] = []

    def bad(reason: str, i: int, name: str, message: str) -> None:
        problems.append(Problem(reason, f"item {i}: {message}", i, name))

    for i, raw in enumerate(body_items):
        if not isinstance(raw, dict):
            bad(
                "invalid_row",
                i,
                "items",
                "must be an object with 'truth' and a 'request_id' or a 'prediction'",
            )
            continue
        extra = set(raw) - {"truth", "request_id", "row", "prediction", "version"}
        for key in sorted(extra):
            bad("extra_feature", i, key, f"{key!r} is not a feedback field")
        has_id, has_pred = "request_id" in raw, "prediction" in raw
        if "truth" not in raw:
            bad("missing_feature", i, "truth", "'truth' is missing")
        elif raw["truth"] is None:
            bad("missing_value", i, "truth", "'truth' is null")
        elif task != "classification" and not _is_number(raw["truth"]):
            bad("wrong_type", i, "truth", "'truth' must be a finite number for a regressor")
        elif task == "classification" and not isinstance(raw["truth"], (str, int)):
            bad("wrong_type", i, "truth", "'truth' must be a class label (string or integer)")
        if has_id == has_pred:
            bad(
                "missing_feature" if not has_id else "extra_feature",
                i,
                "request_id" if not has_id else "prediction",
                "give either 'request_id' (and 'row') or 'prediction', not both"
                if has_id
                else "give either 'request_id' (and 'row') or 'prediction'",
            )
        elif has_id:
            if not isinstance(raw["request_id"], str) or not raw["request_id"]:
                bad("wrong_type", i, "request_id", "'request_id' must be a non-empty string")
            row = raw.get("row", 0)
            if not isinstance(row, int) or isinstance(row, bool) or row < 0:
                bad("wrong_type", i, "row", "'row' must be a non-negative integer")
        else:
            pred = raw["prediction"]
            if task != "classification" and not _is_number(pred):
                bad("wrong_type", i, "prediction", "'prediction' must be a finite number")
            elif task == "classification" and not isinstance(pred, (str, int)):
                bad("wrong_type", i, "prediction", "'prediction' must be a class label")
        if "version" in raw and not isinstance(raw["version"], str):
            bad("wrong_type", i, "version", "'version' must be a string")
        if "row" in raw and not has_id:
            bad("extra_feature", i, "row", "'row' only goes with 'request_id'")
        if not problems or problems[-1].row != i:
            items.append(
                Item(
                    truth=raw["truth"],
                    request_id=raw.get("request_id"),
                    row=int(raw.get("row", 0)),
                    prediction=raw.get("prediction"),
                    version=raw.get("version"),
                )
            )
    if problems:
        raise Rejected(problems[:20])
    return items


def score(items: list[Item], *, task: str, memory: Memory | None, version: str = "") -> Outcome:
    """Match each item with its prediction and compare with the truth."""
    outcome = Outcome()
    for item in items:
        if item.version is not None and version and item.version != version:
            outcome.unmatched["other_version"] = outcome.unmatched.get("other_version", 0) + 1
            continue
        prediction = item.prediction
        if item.request_id is not None:
            status, prediction = (
                memory.claim(item.request_id, item.row) if memory else ("unknown_request", None)
            )
            if status != "ok":
                outcome.unmatched[status] = outcome.unmatched.get(status, 0) + 1
                continue
        if task == "classification":
            if str(prediction) == str(item.truth):
                outcome.correct += 1
            else:
                outcome.incorrect += 1
        else:
            outcome.errors.append(float(prediction) - float(item.truth))
    return outcome
