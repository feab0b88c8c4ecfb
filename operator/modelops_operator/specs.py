"""Small pure helpers over spec values: the training-spec hash and Go-style durations."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

_DURATION = re.compile(r"(\d+)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def spec_hash(training: Mapping[str, Any]) -> str:
    """`sha256:` of the canonical JSON of a training spec: equal specs hash equal in any order."""
    canonical = json.dumps(training, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


# Fields of spec.training that say when or with what resources to train, not what: changing them
# trains no new version.
NOT_IN_HASH = ("schedule", "resources")


def training_hash(training: Mapping[str, Any]) -> str:
    """The identity of a training spec: its hash without the fields that do not change the model."""
    return spec_hash({k: v for k, v in training.items() if k not in NOT_IN_HASH})


def parse_duration(text: str) -> float:
    """Seconds in a duration such as `90s`, `1m30s` or `2h` (the CRD's pattern)."""
    text = text.strip()
    parts = _DURATION.findall(text)
    if not text or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30s, 1m, 1h30m)")
    return sum(int(n) * _UNIT_SECONDS[u] for n, u in parts)
