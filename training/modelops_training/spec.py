"""The training spec (a Model's `spec.training`): read the file (YAML or JSON), parse it with the
shared API classes (`modelops_api.spec.TrainingSpec`: the defaults and rules the CRD is generated
from) and hash it as written.

The runtime does not trust that the API server checked the spec: a file written by hand gets the
same checks, and every problem, named by its field's path, is a TrainingError with reason
InvalidSpec. What only the runtime can check (the estimator allow-list, gates against the
estimator's task, anything about the data) is checked where it is used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelops_api.contract import spec_hash
from modelops_api.spec import SpecError, TrainingSpec, parse

from .result import TrainingError


@dataclass(frozen=True)
class LoadedSpec:
    """The parsed spec and the hash of the spec as written: the bytes the operator hashes too, so
    defaults filled in here never change it."""

    training: TrainingSpec
    hash: str


def load_spec(path: str) -> LoadedSpec:
    """Read and check the spec file; every problem is a TrainingError with reason InvalidSpec."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise TrainingError("InvalidSpec", f"cannot read the spec file {path}: {error}") from None
    try:  # JSON, as the operator writes it, without importing a YAML parser (JSON is YAML)
        raw = json.loads(text)
    except ValueError:
        raw = _load_yaml(text, path)
    return parse_spec(raw)


def _load_yaml(text: str, path: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise TrainingError(
            "InvalidSpec", f"the spec file {path} is not YAML/JSON: {first}"
        ) from None


def parse_spec(raw: Any) -> LoadedSpec:
    """Check a parsed spec (a Model's spec.training) and turn it into the typed spec."""
    try:
        training = parse(TrainingSpec, raw, "spec.training")
    except SpecError as error:
        raise TrainingError("InvalidSpec", str(error)) from None
    return LoadedSpec(training=training, hash=spec_hash(raw))
