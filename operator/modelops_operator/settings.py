"""Operator settings: defaults, overridden by environment variables, overridden by the command line.

| setting | environment | default |
| --- | --- | --- |
| runtime image | MODELOPS_RUNTIME_IMAGE | modelops/runtime:0.1.0 |
| image pull policy | MODELOPS_IMAGE_PULL_POLICY | IfNotPresent |
| artifact-store claim | MODELOPS_ARTIFACTS_CLAIM | modelops-artifacts |
| namespaces to watch | MODELOPS_NAMESPACES (comma-separated) | all |
| Prometheus URL | MODELOPS_PROMETHEUS_URL | http://prometheus-operated.monitoring.svc:9090 |
| resync interval, seconds | MODELOPS_RESYNC_SECONDS | 60 |
| versions kept per model | MODELOPS_HISTORY_LIMIT | 10 |
| training deadline, seconds | MODELOPS_TRAINING_DEADLINE_SECONDS | 3600 |
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Settings:
    runtime_image: str = "modelops/runtime:0.1.0"
    image_pull_policy: str = "IfNotPresent"
    artifacts_claim: str = "modelops-artifacts"
    artifacts_path: str = "/models"
    namespaces: tuple[str, ...] = field(default_factory=tuple)  # empty: every namespace
    prometheus_url: str = "http://prometheus-operated.monitoring.svc:9090"
    resync_seconds: float = 60.0
    history_limit: int = 10
    training_deadline_seconds: int = 3600

    @property
    def cluster_wide(self) -> bool:
        return not self.namespaces

    @property
    def exact_namespaces(self) -> bool:
        """Namespaces named exactly (no glob): no discovery needed, namespaced Roles suffice."""
        return bool(self.namespaces) and not any(map(is_pattern, self.namespaces))


def is_pattern(namespace: str) -> bool:
    """Whether `namespace` is a glob (as Kopf matches namespaces), not a name."""
    return bool(set("*?[!") & set(namespace))


class SettingsError(ValueError):
    """A setting has a value the operator cannot use."""


def _positive(env: Mapping[str, str], name: str, default: float, kind: type[float]) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = kind(text)
    except ValueError:
        raise SettingsError(f"{name} must be a number, not {text!r}") from None
    if value <= 0:
        raise SettingsError(f"{name} must be positive, not {text!r}")
    return value


def from_environment(env: Mapping[str, str]) -> Settings:
    d = Settings()
    names = env.get("MODELOPS_NAMESPACES", "").split(",")
    return Settings(
        runtime_image=env.get("MODELOPS_RUNTIME_IMAGE", d.runtime_image),
        image_pull_policy=env.get("MODELOPS_IMAGE_PULL_POLICY", d.image_pull_policy),
        artifacts_claim=env.get("MODELOPS_ARTIFACTS_CLAIM", d.artifacts_claim),
        namespaces=tuple(n.strip() for n in names if n.strip()),
        prometheus_url=env.get("MODELOPS_PROMETHEUS_URL", d.prometheus_url),
        resync_seconds=_positive(env, "MODELOPS_RESYNC_SECONDS", d.resync_seconds, float),
        history_limit=int(_positive(env, "MODELOPS_HISTORY_LIMIT", d.history_limit, int)),
        training_deadline_seconds=int(
            _positive(env, "MODELOPS_TRAINING_DEADLINE_SECONDS", d.training_deadline_seconds, int)
        ),
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="modelops operator",
        description="Run the modelops operator. Options override MODELOPS_* environment variables.",
    )
    p.add_argument("--runtime-image", help="image of training Jobs and serving Deployments")
    p.add_argument("--artifacts-claim", help="PersistentVolumeClaim holding model archives")
    p.add_argument(
        "--namespace",
        action="append",
        dest="namespaces",
        help="watch only this namespace (repeatable); default: every namespace",
    )
    p.add_argument("--prometheus-url", help="Prometheus base URL")
    p.add_argument("--resync-seconds", type=float, help="periodic reconcile of every Model")
    p.add_argument("--history-limit", type=int, help="ModelVersions kept per Model")
    p.add_argument(
        "--liveness",
        default="http://0.0.0.0:8080/healthz",
        help="Kopf's liveness endpoint (default %(default)s); an empty value turns it off",
    )
    p.add_argument("--verbose", action="store_true", help="debug logging")
    return p


def resolve(
    argv: Sequence[str], env: Mapping[str, str] | None = None
) -> tuple[Settings, argparse.Namespace]:
    """Settings from the environment, then the command line; also returns the parsed options."""
    args = parser().parse_args(list(argv))
    base = from_environment(os.environ if env is None else env)
    overrides = {
        "runtime_image": args.runtime_image,
        "artifacts_claim": args.artifacts_claim,
        "namespaces": tuple(args.namespaces) if args.namespaces else None,
        "prometheus_url": args.prometheus_url,
        "resync_seconds": args.resync_seconds,
        "history_limit": args.history_limit,
    }
    values = {k: v for k, v in overrides.items() if v is not None}
    for name in ("resync_seconds", "history_limit"):
        if name in values and values[name] <= 0:
            raise SettingsError(f"--{name.replace('_', '-')} must be positive")
    return dataclasses.replace(base, **values), args
