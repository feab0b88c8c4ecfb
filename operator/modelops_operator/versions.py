"""Pure decisions over a Model's ModelVersions: when to train, what to supersede, what to keep.

A ModelVersion is named `<model>-v<N>` with N one more than the highest so far. The name is
deterministic, so two reconciles that race (or an operator restarted after creating a version but
before recording it) try to create the same name and the API server keeps one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelops_api import contract

_INDEX = re.compile(r"-v(\d+)$")


@dataclass(frozen=True)
class VersionInfo:
    """What the planning functions need to know of one ModelVersion."""

    name: str
    index: int
    spec_hash: str
    reason: str
    phase: str
    approved: bool = False
    metrics: Mapping[str, float] = field(default_factory=dict)
    message: str = ""
    status_reason: str = ""
    artifact: str = ""

    @property
    def in_progress(self) -> bool:
        return self.phase in contract.IN_PROGRESS

    @property
    def deployable(self) -> bool:
        return self.phase == contract.SUCCEEDED and bool(self.artifact)


def index_of(name: str) -> int:
    match = _INDEX.search(name)
    return int(match.group(1)) if match else 0


def version_info(obj: Mapping[str, Any]) -> VersionInfo:
    """What the planners read of a ModelVersion. The status schema keeps its fields open, so a
    field of the wrong type (written by someone else) reads as absent instead of breaking the
    pass: metrics keep only their numbers, text fields only text."""
    spec = _mapping(obj.get("spec"))
    status = _mapping(obj.get("status"))
    name = obj["metadata"]["name"]
    phase = _text(status.get("phase")) or contract.PENDING
    approved = status.get("approved", phase == contract.SUCCEEDED)
    return VersionInfo(
        name=name,
        index=index_of(name),
        spec_hash=_text(spec.get("specHash")),
        reason=_text(spec.get("reason")),
        phase=phase,
        approved=approved is True,
        metrics={
            k: float(v)
            for k, v in _mapping(status.get("metrics")).items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        },
        message=_text(status.get("message")),
        status_reason=_text(status.get("reason")),
        artifact=_text(status.get("artifact")),
    )


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def sort_versions(versions: Iterable[VersionInfo]) -> list[VersionInfo]:
    return sorted(versions, key=lambda v: v.index)


@dataclass(frozen=True)
class TrainingPlan:
    """What to do about training: create a version (and why), cancel outdated ones."""

    create: str | None = None  # the new version's name
    reason: str | None = None  # its reason (initial, spec-change, manual)
    supersede: tuple[str, ...] = ()  # in-progress versions of an older spec
    retrain_token: str | None = None  # the retrain annotation value this plan consumes


def plan_training(
    model: str,
    training_hash: str,
    versions: Sequence[VersionInfo],
    retrain_request: str | None = None,
    retrain_handled: str | None = None,
    trigger: str | None = None,
) -> TrainingPlan:
    """At most one training per model; a newer spec supersedes a running one; triggers collapse.

    - a version in progress for an older spec is superseded;
    - a retrain request (an annotation value not yet handled) starts a `manual` version, and a
      `trigger` (drift, accuracy, schedule) one with that reason, unless a version for the current
      spec is already in progress (then the request is folded into it);
    - otherwise a spec with no version yet starts one: `initial` for the first, else `spec-change`.
    A version that failed for the current spec is not retried by itself: a spec change, a retrain
    request or a trigger starts the next one.
    """
    supersede = tuple(v.name for v in versions if v.in_progress and v.spec_hash != training_hash)
    current = [
        v for v in versions if v.spec_hash == training_hash and v.phase != contract.SUPERSEDED
    ]
    running = any(v.in_progress for v in current)
    next_name = f"{model}-v{max((v.index for v in versions), default=0) + 1}"
    token = retrain_request if retrain_request and retrain_request != retrain_handled else None

    if not current:
        reason = contract.REASON_SPEC_CHANGE if versions else contract.REASON_INITIAL
        return TrainingPlan(next_name, reason, supersede, token)
    if token is not None or trigger is not None:
        if running:
            return TrainingPlan(supersede=supersede, retrain_token=token)
        return TrainingPlan(
            next_name, trigger if token is None else contract.REASON_MANUAL, supersede, token
        )
    return TrainingPlan(supersede=supersede)


@dataclass(frozen=True)
class StableChoice:
    """Which version should serve as stable, and why not the one asked for, if so."""

    version: VersionInfo | None
    problem: str = ""  # why a pinned version cannot serve (empty when nothing is wrong)


def choose_stable(
    versions: Sequence[VersionInfo], pinned: str, current: str | None
) -> StableChoice:
    """A pinned version if it can serve; else the current stable one while it can serve; else the
    newest approved version (the first approved version becomes stable directly).

    A pin that names a missing or undeployable version never takes serving down: the current
    stable version stays, and the problem is reported. Newer approved versions reach stable only
    through a canary (`candidate`).
    """
    by_name = {v.name: v for v in versions}
    keep = by_name.get(current or "")
    if pinned:
        chosen = by_name.get(pinned)
        if chosen is not None and chosen.deployable:
            return StableChoice(chosen)
        what = "does not exist" if chosen is None else f"is {chosen.phase}, not deployable"
        return StableChoice(keep if keep and keep.deployable else None, f"{pinned} {what}")
    if keep is not None and keep.deployable:
        return StableChoice(keep)
    approved = [v for v in sort_versions(versions) if v.deployable]
    return StableChoice(approved[-1] if approved else None)


def candidate(
    versions: Sequence[VersionInfo], stable: VersionInfo | None, pinned: str
) -> VersionInfo | None:
    """The version a canary should try: the newest approved one newer than stable (none while a
    pin holds stable in place)."""
    if pinned or stable is None:
        return None
    newer = [v for v in sort_versions(versions) if v.deployable and v.index > stable.index]
    return newer[-1] if newer else None


def plan_history(
    versions: Sequence[VersionInfo], limit: int, keep: Iterable[str | None]
) -> list[str]:
    """Finished versions to delete, oldest first, so at most `limit` remain.

    Never the ones in `keep` (stable, canary) nor one in progress.
    """
    protected = {k for k in keep if k}
    excess = len(versions) - limit
    doomed: list[str] = []
    for v in sort_versions(versions):
        if excess <= len(doomed):
            break
        if v.name not in protected and not v.in_progress:
            doomed.append(v.name)
    return doomed
