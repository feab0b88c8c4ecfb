"""The serving runtime's settings, read once from its environment.

Every knob the operator sets on the Deployment is here, with its default; docs/serving.md lists
them. Parsing is strict: a malformed value is a configuration error named after its variable,
never a silent default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from modelops_api import contract

NAN_POLICIES = ("reject", "allow")
MAX_BODY_BYTES = 16 * 1024 * 1024


class ConfigError(ValueError):
    """A variable of the environment has a value the runtime cannot use."""


@dataclass(frozen=True)
class RuntimeConfig:
    """What the environment asks of this runtime."""

    artifact: str
    model: str
    version: str
    track: str
    host: str
    workers: int
    monitoring: bool
    max_batch: int
    max_body_bytes: int
    nan_policy: str
    feedback_memory: int
    feedback_window: float
    credentials: str
    artifact_wait_seconds: float
    request_timeout: int
    # Seconds production data is kept (spec.serving.recording); 0: nothing is recorded.
    recording_retention: float = 0.0
    recording_flush_seconds: float = 10.0
    # How long a worker may keep metric increments before writing them; 0: at once (metrics.py).
    metrics_flush_seconds: float = 1.0


def _int(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} must be at least {minimum}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if not value >= 0:
        raise ConfigError(f"{name}={raw!r} must be zero or more")
    return value


def _switch(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("on", "true", "1", "yes"):
        return True
    if raw in ("off", "false", "0", "no"):
        return False
    raise ConfigError(f"{name}={raw!r} must be on or off")


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = env.get(name, "").strip().lower() or default
    if raw not in choices:
        raise ConfigError(f"{name}={raw!r} must be one of {', '.join(choices)}")
    return raw


def load_settings(env: Mapping[str, str] | None = None) -> RuntimeConfig:
    """Read the settings; raise ConfigError naming the first bad variable."""
    env = os.environ if env is None else env
    return RuntimeConfig(
        artifact=env.get(contract.ENV_ARTIFACT, "").strip(),
        model=env.get(contract.ENV_MODEL, "").strip(),
        version=env.get(contract.ENV_VERSION, "").strip(),
        track=_choice(env, contract.ENV_TRACK, contract.STABLE, contract.TRACKS),
        host=env.get(contract.ENV_HOST, "").strip() or "0.0.0.0",
        workers=_int(env, "MODELOPS_WORKERS", 1, 1),
        monitoring=_switch(env, "MODELOPS_MONITORING", True),
        max_batch=_int(env, "MODELOPS_MAX_BATCH", 1000, 1),
        max_body_bytes=_int(env, "MODELOPS_MAX_BODY_BYTES", MAX_BODY_BYTES, 1024),
        nan_policy=_choice(env, "MODELOPS_NAN_POLICY", "reject", NAN_POLICIES),
        feedback_memory=_int(env, "MODELOPS_FEEDBACK_MEMORY", 50_000, 1),
        feedback_window=_float(env, "MODELOPS_FEEDBACK_WINDOW", 7 * 86400.0),
        credentials=env.get(contract.ENV_CREDENTIALS, "").strip(),
        artifact_wait_seconds=_float(env, "MODELOPS_ARTIFACT_WAIT_SECONDS", 600.0),
        request_timeout=_int(env, "MODELOPS_REQUEST_TIMEOUT", 10, 1),
        recording_retention=_float(env, contract.ENV_RECORDING_RETENTION, 0.0),
        recording_flush_seconds=_float(env, "MODELOPS_RECORDING_FLUSH_SECONDS", 10.0),
        metrics_flush_seconds=_float(env, "MODELOPS_METRICS_FLUSH_SECONDS", 1.0),
    )
