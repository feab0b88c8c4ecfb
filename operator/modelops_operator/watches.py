"""What a Model asks the analysis loop to analyse, and the reference distributions drift needs.

`watch` tells the loop (monitor.py) the Model's targets after each pass: the stable version with
every check, the canary (during a canary) with every check but drift, which judges the data rather
than a version. Drift compares live inputs with the version's reference distributions, which
training stored in the archive: `References` reads them once from a ready serving pod's
`/metadata` (the operator reaches pods as Prometheus does) and keeps them in the ModelVersion's
status; when no ready pod answers, the next try waits `REFERENCE_RETRY`.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from modelops_api import contract
from modelops_api.spec import ModelSpec
from modelops_operator import children, credentials
from modelops_operator.analysis.model import DRIFT, Target, TargetKey, Watch
from modelops_operator.monitor import Monitor
from modelops_operator.objects import Body, ModelKey
from modelops_operator.runtime.kube import Kube

log = logging.getLogger("modelops.watches")
REFERENCE_RETRY = 30.0


class References:
    """Reference distributions by version, read from serving pods when the status has none; the
    full `/metadata` asks for the Model's token, which the operator derives from its key."""

    def __init__(
        self, kube: Kube, credentials_key: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.kube, self.clock, self.credentials_key = kube, clock, credentials_key
        self._misses: dict[tuple[str, str], float] = {}  # version -> when reading it last failed

    def of(self, version: Body | None) -> Mapping[str, Any] | None:
        if version is None:
            return None
        status = version.get("status") or {}
        if status.get(contract.REFERENCE):
            return dict(status[contract.REFERENCE])
        meta = version["metadata"]
        key = (meta["namespace"], meta["name"])
        missed = self._misses.get(key)
        if missed is not None and self.clock() - missed < REFERENCE_RETRY:
            return None
        selector = {contract.LABEL_VERSION: meta["name"], contract.LABEL_COMPONENT: "serving"}
        model = (version.get("spec") or {}).get("model") or ""
        bearer = credentials.token(self.credentials_key, meta["namespace"], model)
        for pod in self.kube.list("Pod", meta["namespace"], selector):
            if not _ready(pod):
                continue
            url = f"http://{pod['status'].get('podIP')}:{contract.SERVING_PORT}/metadata"
            request = urllib.request.Request(url, headers={"Authorization": f"Bearer {bearer}"})
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    metadata = json.loads(response.read())
            except (OSError, ValueError) as error:
                log.info("reference of %s not read from %s: %s", meta["name"], url, error)
                self._misses[key] = self.clock()
                continue
            reference = metadata.get(contract.REFERENCE)
            if reference:
                self.kube.patch_status(
                    "ModelVersion", meta["namespace"], meta["name"], {contract.REFERENCE: reference}
                )
                self._misses.pop(key, None)
                return dict(reference)
            self._misses[key] = self.clock()  # served, but without a reference
        return None


def _ready(pod: Mapping[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def watch(
    monitor: Monitor,
    references: References,
    key: ModelKey,
    spec: ModelSpec,
    versions: Mapping[str, Body],
    stable: str | None,
    canary: str | None,
) -> None:
    """Tells the analysis loop what the Model `key` wants analysed now."""
    checks = spec.monitoring.checks.wire()
    targets = []
    for track, version in ((children.STABLE, stable), (children.CANARY, canary)):
        if version is None or (track == children.STABLE and not checks):
            continue
        wanted = (
            checks if track == children.STABLE else {k: v for k, v in checks.items() if k != DRIFT}
        )
        reference = references.of(versions.get(version)) if DRIFT in wanted else None
        baseline = None  # a canary's checks with vsStable are judged against stable too
        if track == children.CANARY and stable is not None:
            baseline = TargetKey(key[0], key[1], stable, children.STABLE)
        target = TargetKey(key[0], key[1], version, track)
        targets.append(Target(target, wanted, reference, baseline=baseline))
    interval = spec.monitoring.interval_seconds
    if canary is not None:
        interval = spec.serving.canary.interval_seconds
    monitor.watch(key, Watch(tuple(targets), interval))
