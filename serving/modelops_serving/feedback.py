"""Ground truth for earlier predictions: which rows were scored, and the scoring of feedback.

Feedback refers to a prediction by the `request_id` that `/predict` returned: a signed id that
carries the version and the predictions (credentials.py), so the truth is always compared with
what the model really answered, on any replica. Each row of an id is scored at most once per pod:
a small SQLite table in the pod-local `BENTOML_HOME`, shared by the runtime's worker processes
(feedback may reach another worker than the prediction did), keeps the rows claimed for the newest
`MODELOPS_FEEDBACK_MEMORY` ids. A repeat is counted as a duplicate; an id that is not ours
(`forged`), too old (`expired`) or of another version (`other_version`), and a row beyond the
prediction (`unknown_row`) are counted, not scored and not failed.
"""

from __future__ import annotations

import fcntl
import math
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .credentials import Credentials, Opened
from .schema import Problem, Rejected

PRUNE_EVERY = 512


class Claims:
    """The rows scored so far, by id, bounded to the newest `capacity` ids."""

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
                "CREATE TABLE IF NOT EXISTS claims ("
                "seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, "
                "rows TEXT NOT NULL)"
            )
        self._db.execute("PRAGMA synchronous=OFF")

    def claim(self, request_id: str, row: int) -> bool:
        """True the first time `row` of `request_id` is claimed, False for a repeat."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                found = self._db.execute(
                    "SELECT seq, rows FROM claims WHERE id = ?", (request_id,)
                ).fetchone()
                if found is None:
                    self._db.execute(
                        "INSERT INTO claims (id, rows) VALUES (?, ?)", (request_id, str(row))
                    )
                    self._prune()
                    return True
                seq, rows_text = found
                rows = set(rows_text.split(","))
                if str(row) in rows:
                    return False
                rows.add(str(row))
                self._db.execute(
                    "UPDATE claims SET rows = ? WHERE seq = ?", (",".join(sorted(rows)), seq)
                )
                return True
            finally:
                self._db.execute("COMMIT")

    def _prune(self) -> None:
        self._since_prune += 1
        if self._since_prune >= PRUNE_EVERY:
            self._since_prune = 0
            self._db.execute(
                "DELETE FROM claims WHERE seq <= (SELECT MAX(seq) FROM claims) - ?",
                (self.capacity,),
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()


@dataclass
class Item:
    truth: Any
    request_id: str
    row: int = 0


@dataclass
class Outcome:
    correct: int = 0
    incorrect: int = 0
    errors: list[float] = field(default_factory=list)
    unmatched: dict[str, int] = field(default_factory=dict)
    # Items whose id this Model signed, for a row it answered (any version, repeats too).
    signed: list[Item] = field(default_factory=list)

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
            bad("invalid_row", i, "items", "must be an object with 'request_id' and 'truth'")
            continue
        before = len(problems)
        for key in sorted(set(raw) - {"truth", "request_id", "row"}):
            why = (
                "feedback names a prediction by the 'request_id' that /predict returned"
                if key in ("prediction", "version")
                else f"{key!r} is not a feedback field"
            )
            bad("extra_feature", i, key, why)
        if "truth" not in raw:
            bad("missing_feature", i, "truth", "'truth' is missing")
        elif raw["truth"] is None:
            bad("missing_value", i, "truth", "'truth' is null")
        elif task != "classification" and not _is_number(raw["truth"]):
            bad("wrong_type", i, "truth", "'truth' must be a finite number for a regressor")
        elif task == "classification" and not isinstance(raw["truth"], (str, int)):
            bad("wrong_type", i, "truth", "'truth' must be a class label (string or integer)")
        if "request_id" not in raw:
            bad("missing_feature", i, "request_id", "'request_id' (from /predict) is missing")
        elif not isinstance(raw["request_id"], str) or not raw["request_id"]:
            bad("wrong_type", i, "request_id", "'request_id' must be a non-empty string")
        row = raw.get("row", 0)
        if not isinstance(row, int) or isinstance(row, bool) or row < 0:
            bad("wrong_type", i, "row", "'row' must be a non-negative integer")
        if len(problems) == before:
            items.append(Item(truth=raw["truth"], request_id=raw["request_id"], row=row))
    if problems:
        raise Rejected(problems[:20])
    return items


def score(
    items: list[Item],
    *,
    task: str,
    credentials: Credentials,
    claims: Claims,
    version: str,
    window: float,
) -> Outcome:
    """Match each item with the prediction its id carries and compare it with the truth."""
    outcome = Outcome()
    for item in items:
        opened = credentials.open(item.request_id, window)
        if isinstance(opened, Opened) and item.row < len(opened.predictions):
            outcome.signed.append(item)
        reason = _unmatched(opened, item, version, claims)
        if reason is not None:
            outcome.unmatched[reason] = outcome.unmatched.get(reason, 0) + 1
            continue
        assert isinstance(opened, Opened)
        prediction = opened.predictions[item.row]
        if task == "classification":
            if str(prediction) == str(item.truth):
                outcome.correct += 1
            else:
                outcome.incorrect += 1
        else:
            outcome.errors.append(float(prediction) - float(item.truth))
    return outcome


def _unmatched(opened: Opened | str, item: Item, version: str, claims: Claims) -> str | None:
    """Why the item cannot be scored, or None (and its row is claimed)."""
    if isinstance(opened, str):
        return opened
    if opened.version != version:
        return "other_version"
    if item.row >= len(opened.predictions):
        return "unknown_row"
    if not claims.claim(opened.signature, item.row):
        return "duplicate"
    return None
