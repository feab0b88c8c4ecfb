"""Operator settings: defaults, overridden by environment variables, overridden by the command line.

| setting | environment | default |
| --- | --- | --- |
| runtime image | MODELOPS_RUNTIME_IMAGE | modelops/runtime:0.1.0 |
| image pull policy | MODELOPS_IMAGE_PULL_POLICY | IfNotPresent |
| artifact store: file:///path or s3://bucket/prefix | MODELOPS_ARTIFACTS_URI | file:///models |
| artifact-store claim (file:// store) | MODELOPS_ARTIFACTS_CLAIM | modelops-artifacts |
| s3:// store's Secret (AWS_* keys), never read | MODELOPS_ARTIFACTS_SECRET | none |
| namespaces to watch | MODELOPS_NAMESPACES (comma-separated) | all |
| Prometheus URL | MODELOPS_PROMETHEUS_URL | http://prometheus-operated.monitoring.svc:9090 |
| resync interval, seconds | MODELOPS_RESYNC_SECONDS | 60 |
| versions kept per model | MODELOPS_HISTORY_LIMIT | 10 |
| training deadline, seconds | MODELOPS_TRAINING_DEADLINE_SECONDS | 3600 |
| size limit of each scratch volume of a pod | MODELOPS_SCRATCH_SIZE_LIMIT | 4Gi |
| training resources if a Model names none | MODELOPS_TRAINING_RESOURCES (JSON) | (chart: set) |
| serving resources if a Model names none | MODELOPS_SERVING_RESOURCES (JSON) | (chart: set) |
| NetworkPolicies for each Model's pods | MODELOPS_NETWORK_POLICIES (true/false) | true |
| serving credentials' key | MODELOPS_CREDENTIALS_KEY | made up per process (chart: a Secret) |
| leader election (replicas > 1) | MODELOPS_LEADER_ELECTION (true/false) | false (the chart: true) |
| its Lease's name | MODELOPS_LEADER_ELECTION_LEASE | modelops-operator |
| its Lease's namespace | MODELOPS_LEADER_ELECTION_NAMESPACE, else POD_NAMESPACE | (required) |
| this replica's name (the Lease's holder) | POD_NAME | the host name |
| lease duration, seconds (whole) | MODELOPS_LEADER_ELECTION_LEASE_SECONDS | 15 |
| renew deadline, seconds | MODELOPS_LEADER_ELECTION_RENEW_SECONDS | 10 |
| retry period, seconds | MODELOPS_LEADER_ELECTION_RETRY_SECONDS | 2 |
| port of the operator's metrics (0: none) | MODELOPS_METRICS_PORT, --metrics-port | 8081 |
| log format: text or json | MODELOPS_LOG_FORMAT, --log-format | text |

The three durations are client-go's defaults and obey its rules: the renew deadline is shorter than
the lease duration (a leader that cannot renew stops before anyone else may take over) and longer
than the retry period (runtime/leader.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import secrets
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter, ValidationError

from modelops_api.spec import Resources, quantity


@dataclass(frozen=True)
class Settings:
    runtime_image: str = "modelops/runtime:0.1.0"
    image_pull_policy: str = "IfNotPresent"
    artifacts_claim: str = "modelops-artifacts"
    # The store's root: file://<path> (the claim, mounted at that path) or s3://bucket[/prefix].
    artifacts_uri: str = "file:///models"
    artifacts_path: str = "/models"  # where a file:// store is mounted: the URI's path
    # An s3:// store's Secret, whose keys (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
    # AWS_ENDPOINT_URL, AWS_REGION) become the environment of training, serving and cleanup pods.
    artifacts_secret: str = ""
    namespaces: tuple[str, ...] = field(default_factory=tuple)  # empty: every namespace
    prometheus_url: str = "http://prometheus-operated.monitoring.svc:9090"
    resync_seconds: float = 60.0
    history_limit: int = 10
    training_deadline_seconds: int = 3600
    # Derives each Model's serving credentials (credentials.py); made up per process when unset.
    credentials_key: str = ""
    network_policies: bool = True
    scratch_size_limit: str = "4Gi"
    # A container's resources when its Model's spec names none (a Model's replace them whole).
    training_resources: dict[str, Any] = field(default_factory=dict)
    serving_resources: dict[str, Any] = field(default_factory=dict)
    leader_election: bool = False
    lease_name: str = "modelops-operator"
    lease_namespace: str = ""
    pod_name: str = ""  # empty: the host name
    lease_duration_seconds: int = 15
    renew_deadline_seconds: float = 10.0
    retry_period_seconds: float = 2.0
    metrics_port: int = 8081  # 0: no metrics server (runtime/metrics.py)
    log_format: str = "text"  # or "json": one object per line

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


def _quantity(env: Mapping[str, str], name: str, default: str) -> str:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        quantity(text)
    except ValueError as error:
        raise SettingsError(f"{name}: {error}") from None
    return text


def _resources(env: Mapping[str, str], name: str) -> dict[str, Any]:
    """A container's resources as JSON, checked as the CRD checks a Model's."""
    text = env.get(name, "").strip()
    if not text:
        return {}
    try:
        value = json.loads(text)
        checked: dict[str, Any] = TypeAdapter(Resources).validate_python(value)
    except ValueError as error:  # a JSONDecodeError or a ValidationError
        detail = (
            "; ".join(
                f"{'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}" for e in error.errors()
            )
            if isinstance(error, ValidationError)
            else str(error)
        )
        raise SettingsError(f"{name}: {detail}") from None
    return checked


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    text = env.get(name, "").strip().lower()
    if not text:
        return default
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, not {text!r}")


def check_leader_election(settings: Settings) -> Settings:
    """`settings`, when its leader election can work: a Lease namespace, and durations in
    client-go's order (retry period < renew deadline < lease duration)."""
    if not settings.leader_election:
        return settings
    if not settings.lease_namespace:
        raise SettingsError(
            "leader election needs the Lease's namespace: set MODELOPS_LEADER_ELECTION_NAMESPACE "
            "or POD_NAMESPACE"
        )
    if not settings.renew_deadline_seconds < settings.lease_duration_seconds:
        raise SettingsError(
            f"the renew deadline ({settings.renew_deadline_seconds:g}s) must be shorter than the "
            f"lease duration ({settings.lease_duration_seconds}s)"
        )
    if not settings.retry_period_seconds < settings.renew_deadline_seconds:
        raise SettingsError(
            f"the retry period ({settings.retry_period_seconds:g}s) must be shorter than the "
            f"renew deadline ({settings.renew_deadline_seconds:g}s)"
        )
    return settings


def from_environment(env: Mapping[str, str]) -> Settings:
    d = Settings()
    names = env.get("MODELOPS_NAMESPACES", "").split(",")
    lease_namespace = env.get("MODELOPS_LEADER_ELECTION_NAMESPACE", "").strip()
    artifacts_uri = _artifacts_uri(env.get("MODELOPS_ARTIFACTS_URI", "").strip() or d.artifacts_uri)
    return Settings(
        runtime_image=env.get("MODELOPS_RUNTIME_IMAGE", d.runtime_image),
        image_pull_policy=env.get("MODELOPS_IMAGE_PULL_POLICY", d.image_pull_policy),
        artifacts_claim=env.get("MODELOPS_ARTIFACTS_CLAIM", d.artifacts_claim),
        artifacts_uri=artifacts_uri,
        artifacts_path=_mount_path(artifacts_uri) or d.artifacts_path,
        artifacts_secret=env.get("MODELOPS_ARTIFACTS_SECRET", "").strip(),
        namespaces=tuple(n.strip() for n in names if n.strip()),
        prometheus_url=env.get("MODELOPS_PROMETHEUS_URL", d.prometheus_url),
        resync_seconds=_positive(env, "MODELOPS_RESYNC_SECONDS", d.resync_seconds, float),
        history_limit=int(_positive(env, "MODELOPS_HISTORY_LIMIT", d.history_limit, int)),
        training_deadline_seconds=int(
            _positive(env, "MODELOPS_TRAINING_DEADLINE_SECONDS", d.training_deadline_seconds, int)
        ),
        credentials_key=env.get("MODELOPS_CREDENTIALS_KEY", "").strip()
        or secrets.token_urlsafe(32),
        network_policies=_flag(env, "MODELOPS_NETWORK_POLICIES", d.network_policies),
        scratch_size_limit=_quantity(env, "MODELOPS_SCRATCH_SIZE_LIMIT", d.scratch_size_limit),
        training_resources=_resources(env, "MODELOPS_TRAINING_RESOURCES"),
        serving_resources=_resources(env, "MODELOPS_SERVING_RESOURCES"),
        leader_election=_flag(env, "MODELOPS_LEADER_ELECTION", d.leader_election),
        lease_name=env.get("MODELOPS_LEADER_ELECTION_LEASE", "").strip() or d.lease_name,
        lease_namespace=lease_namespace or env.get("POD_NAMESPACE", "").strip(),
        pod_name=env.get("POD_NAME", "").strip(),
        lease_duration_seconds=int(
            _positive(env, "MODELOPS_LEADER_ELECTION_LEASE_SECONDS", d.lease_duration_seconds, int)
        ),
        renew_deadline_seconds=_positive(
            env, "MODELOPS_LEADER_ELECTION_RENEW_SECONDS", d.renew_deadline_seconds, float
        ),
        retry_period_seconds=_positive(
            env, "MODELOPS_LEADER_ELECTION_RETRY_SECONDS", d.retry_period_seconds, float
        ),
        metrics_port=_port(env.get("MODELOPS_METRICS_PORT", ""), "MODELOPS_METRICS_PORT", d),
        log_format=_log_format(env.get("MODELOPS_LOG_FORMAT", ""), "MODELOPS_LOG_FORMAT", d),
    )


LOG_FORMATS = ("text", "json")


def _port(text: str | None, name: str, d: Settings) -> int:
    text = (text or "").strip()
    if not text:
        return d.metrics_port
    if not text.isdigit() or int(text) > 65535:
        raise SettingsError(f"{name} must be a port number (0: none), not {text!r}")
    return int(text)


def _log_format(text: str | None, name: str, d: Settings) -> str:
    text = (text or "").strip().lower()
    if not text:
        return d.log_format
    if text not in LOG_FORMATS:
        raise SettingsError(f"{name} must be text or json, not {text!r}")
    return text


_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def _artifacts_uri(uri: str) -> str:
    """The store's root URI, checked, without a trailing slash: file:///path or
    s3://bucket[/prefix]."""
    parts = urllib.parse.urlsplit(uri)
    where = f"MODELOPS_ARTIFACTS_URI {uri!r}"
    if parts.query or parts.fragment:
        raise SettingsError(f"{where}: no query or fragment")
    if any(p in ("", ".", "..") for p in parts.path.rstrip("/").split("/")[1:]):
        raise SettingsError(f"{where}: an empty, '.' or '..' path segment")
    if parts.scheme == "file":
        if parts.netloc or not parts.path.startswith("/") or parts.path.rstrip("/") == "":
            raise SettingsError(f"{where}: use file:///path, a directory other than /")
        return f"file://{parts.path.rstrip('/')}"
    if parts.scheme == "s3":
        if not _BUCKET.match(parts.netloc):
            raise SettingsError(f"{where}: {parts.netloc!r} is not a bucket name")
        return f"s3://{parts.netloc}{parts.path.rstrip('/')}"
    raise SettingsError(f"{where}: use file:///path or s3://bucket/prefix")


def _mount_path(uri: str) -> str:
    """Where a file:// store is mounted (its path); empty for an object store."""
    return uri.removeprefix("file://") if uri.startswith("file://") else ""


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
        "--leader-election",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="act only while holding the Lease, so that replicas take turns "
        "(default: MODELOPS_LEADER_ELECTION)",
    )
    p.add_argument(
        "--liveness",
        default="http://0.0.0.0:8080/healthz",
        help="Kopf's liveness endpoint (default %(default)s); an empty value turns it off",
    )
    p.add_argument(
        "--metrics-port",
        help="port of the operator's Prometheus metrics (/metrics); 0 turns them off "
        "(default: MODELOPS_METRICS_PORT, else 8081)",
    )
    p.add_argument(
        "--log-format",
        help="text, or json: one object per line (default: MODELOPS_LOG_FORMAT, else text)",
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
        "leader_election": args.leader_election,
        "metrics_port": None
        if args.metrics_port is None
        else _port(args.metrics_port, "--metrics-port", base),
        "log_format": None
        if args.log_format is None
        else _log_format(args.log_format, "--log-format", base),
    }
    values = {k: v for k, v in overrides.items() if v is not None}
    for name in ("resync_seconds", "history_limit"):
        if name in values and values[name] <= 0:
            raise SettingsError(f"--{name.replace('_', '-')} must be positive")
    return check_leader_election(dataclasses.replace(base, **values)), args
