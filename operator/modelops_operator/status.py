"""Pure computation of a Model's status: phase, conditions folded into Ready, versions, summary.

The conditions follow the Kubernetes API conventions (type, status, reason, message,
lastTransitionTime, observedGeneration) and `Ready` summarises the others with the reason and
message of the first one that is wrong, as Flux's controllers do, so that kstatus (Argo CD, Flux,
`kubectl wait --for=condition=Ready`) reads a Model without knowing it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelops_api import contract
from modelops_operator.versions import VersionInfo

Condition = dict[str, Any]


@dataclass(frozen=True)
class Observed:
    """What reconcile saw and decided, as the status needs it."""

    generation: int
    latest: VersionInfo | None  # newest version of the current training spec
    trained: VersionInfo | None  # newest approved version of the current training spec
    newest: VersionInfo | None  # newest version of any spec
    stable: VersionInfo | None  # the version serving as stable
    ready_replicas: int = 0
    desired_replicas: int = 0
    deployment_available: bool = False
    rolling_out: bool = False
    stalled: bool = False  # the stable Deployment's rollout passed its progressDeadlineSeconds
    pin_problem: str = ""
    canary: Mapping[str, Any] | None = None  # status.canary while one runs
    rolled_back: str = ""  # a canary rolled back in this pass: why
    drift: float | None = None  # the stable version's largest feature PSI, when measured
    drift_feature: str | None = None
    drift_limit: float | None = None
    live_accuracy: float | None = None  # from feedback, when measured on enough samples
    write_error: str = ""  # the API server refused a serving child in this pass: why
    spec_error: str = ""  # the spec breaks the API (only a CRD older than the operator lets it in)


def _describe(v: VersionInfo) -> str:
    shown = ", ".join(
        f"{k} {val:.3g}"
        for k, val in sorted(v.metrics.items())
        if isinstance(val, int | float) and k in ("accuracy", "f1_macro", "r2")
    )
    return f"{v.name} ({shown})" if shown else v.name


def _failure_reason(v: VersionInfo) -> str:
    if v.phase == contract.REJECTED:
        return contract.GATE_MISSED
    if v.phase == contract.ROLLED_BACK:
        return "RolledBack"
    return "TrainingFailed"


BAD_ENDINGS = (contract.FAILED, contract.REJECTED, contract.ROLLED_BACK)


def _trained(o: Observed) -> tuple[str, str, str]:
    latest = o.latest
    if latest is None:
        return "Unknown", "Pending", "no version has been trained for this spec yet"
    if latest.in_progress:
        if o.trained is not None:
            return (
                "True",
                "Succeeded",
                (
                    f"{_describe(o.trained)} passed its gates; {latest.name} is training "
                    f"({latest.reason})"
                ),
            )
        # "training" whether its Job has started or not: the ModelVersion's phase tells the two
        # apart, and the Model's status is not written again for the difference.
        return "False", "Training", f"{latest.name} is training ({latest.reason})"
    if latest.phase == contract.SUCCEEDED:
        return "True", "Succeeded", f"{_describe(latest)} passed its quality gates"
    detail = f"{latest.status_reason}: {latest.message}" if latest.message else latest.status_reason
    return "False", _failure_reason(latest), f"{latest.name} {latest.phase.lower()}: {detail}"


def _available(o: Observed) -> tuple[str, str, str]:
    if o.stable is None:
        why = o.pin_problem or "no version has passed training yet"
        return "False", "NoDeployableVersion", why
    replicas = f"{o.ready_replicas}/{o.desired_replicas} replicas ready"
    if not o.deployment_available:
        return "False", "DeploymentUnavailable", f"{o.stable.name}: {replicas}"
    return "True", "Serving", f"{o.stable.name} serves with {replicas}"


def _progressing(o: Observed) -> tuple[str, str, str]:
    if o.latest is not None and o.latest.in_progress:
        return "True", "Training", f"{o.latest.name} is training"
    if o.canary is not None:
        return (
            "True",
            "Canary",
            (
                f"canary {o.canary.get('version')} at {o.canary.get('weight')}% "
                f"(step {int(o.canary.get('step', 0)) + 1}): {o.canary.get('message', '')}"
            ),
        )
    if o.stable is not None and o.rolling_out:
        if o.stalled:  # as the Deployment says it
            return (
                "False",
                "ProgressDeadlineExceeded",
                f"rolling out {o.stable.name}: the Deployment made no progress within its deadline",
            )
        return "True", "RollingOut", f"rolling out {o.stable.name}"
    return "False", "Idle", "nothing in progress"


def _degraded(o: Observed) -> tuple[str, str, str]:
    if o.spec_error:
        return "True", "InvalidSpec", o.spec_error
    if o.write_error:
        return "True", "WriteFailed", o.write_error
    if o.stable is not None and o.pin_problem:
        return (
            "True",
            "PinnedVersionUnavailable",
            (f"spec.serving.version: {o.pin_problem}; still serving {o.stable.name}"),
        )
    latest = o.latest
    if o.stable is not None and latest is not None and latest.phase in BAD_ENDINGS:
        return (
            "True",
            _failure_reason(latest),
            (
                f"still serving {o.stable.name}; {latest.name} {latest.phase.lower()}: "
                f"{latest.message or latest.status_reason}"
            ),
        )
    return "False", "AsExpected", "nothing is degraded"


def _drifted(o: Observed) -> tuple[str, str, str]:
    if o.drift is None or o.drift_limit is None:
        return "Unknown", "NotMeasured", "no conclusive drift analysis of the stable version yet"
    where = f"{o.drift_feature}: PSI {o.drift:.3g}" if o.drift_feature else f"PSI {o.drift:.3g}"
    if o.drift > o.drift_limit:
        return "True", "DriftDetected", f"{where} > {o.drift_limit:g}"
    return "False", "WithinReference", f"{where} <= {o.drift_limit:g}"


def _ready(conditions: Mapping[str, tuple[str, str, str]]) -> tuple[str, str, str]:
    degraded = conditions[contract.DEGRADED]
    if degraded[0] == "True":
        return "False", degraded[1], degraded[2]
    for condition in (contract.TRAINED, contract.AVAILABLE):
        status, reason, message = conditions[condition]
        if status != "True":
            return "False" if status == "False" else "Unknown", reason, message
    return "True", "Serving", conditions[contract.AVAILABLE][2]


def _phase(o: Observed, conditions: Mapping[str, tuple[str, str, str]]) -> str:
    if o.spec_error:
        return contract.PHASE_DEGRADED if o.stable is not None else contract.PHASE_FAILED
    if o.stable is None:
        if o.latest is not None and o.latest.phase in BAD_ENDINGS:
            return contract.PHASE_FAILED
        return contract.PHASE_TRAINING
    if o.rolled_back:
        return contract.PHASE_ROLLING_BACK
    if o.canary is not None:
        return contract.PHASE_CANARY
    if conditions[contract.DEGRADED][0] == "True":
        return contract.PHASE_DEGRADED
    if not o.deployment_available:
        return contract.PHASE_DEPLOYING
    return contract.PHASE_SERVING


def merge_conditions(
    previous: Sequence[Mapping[str, Any]],
    computed: Mapping[str, tuple[str, str, str]],
    generation: int,
    now: str,
) -> list[Condition]:
    """Conditions in a fixed order; lastTransitionTime moves only when the status does."""
    before = {c.get("type"): c for c in previous}
    merged: list[Condition] = []
    for condition, (status, reason, message) in computed.items():
        old = before.get(condition) or {}
        since = old.get("lastTransitionTime") if old.get("status") == status else None
        merged.append(
            {
                "type": condition,
                "status": status,
                "reason": reason,
                "message": message,
                "lastTransitionTime": since or now,
                "observedGeneration": generation,
            }
        )
    return merged


def model_status(o: Observed, previous: Mapping[str, Any], now: str) -> dict[str, Any]:
    """The whole status the operator owns (fields kept by other parts are merged by the caller)."""
    computed = {
        contract.TRAINED: _trained(o),
        contract.AVAILABLE: _available(o),
        contract.PROGRESSING: _progressing(o),
        contract.DEGRADED: _degraded(o),
        contract.DRIFTED: _drifted(o),
    }
    computed = {contract.READY: _ready(computed), **computed}
    status: dict[str, Any] = {
        "observedGeneration": o.generation,
        "phase": _phase(o, computed),
        "conditions": merge_conditions(
            previous.get("conditions") or [], computed, o.generation, now
        ),
        "stableVersion": o.stable.name if o.stable else None,
        "latestVersion": o.newest.name if o.newest else None,
        "accuracy": o.live_accuracy
        if o.live_accuracy is not None
        else (o.stable.metrics.get("accuracy") if o.stable else None),
        "drift": round(o.drift, 6) if o.drift is not None else None,
    }
    return status


def failed_status(
    previous: Mapping[str, Any], reason: str, message: str, generation: int, now: str
) -> dict[str, Any]:
    """The status fields to write when a pass failed before it could observe the Model: Degraded
    and Ready say why; everything else stays as the last pass wrote it."""
    conditions = list(previous.get("conditions") or [])
    failed = merge_conditions(
        conditions,
        {contract.READY: ("False", reason, message), contract.DEGRADED: ("True", reason, message)},
        generation,
        now,
    )
    by_type = {c["type"]: c for c in failed}
    kept = [by_type.pop(c.get("type"), c) for c in conditions]
    return {"conditions": [*kept, *by_type.values()]}


# How long a first rollout's Deploying status may wait for its Serving one (seconds).
HOLD_DEPLOYING = 15.0

# The fields `model_status` computes; the others (canary, monitoring, the tokens of what was
# handled) are never held back.
COMPUTED = frozenset(
    {"observedGeneration", "phase", "conditions", "stableVersion", "latestVersion", "accuracy",
     "drift"}
)  # fmt: skip


def hold(before: Mapping[str, Any], after: Mapping[str, Any], waited: float | None) -> float:
    """How much longer the status `after` may wait before it is written over `before`, 0 to write
    it now; `waited` is how long ago the new stable version's training finished.

    The first rollout goes Training -> Deploying -> Serving, and the Deployment usually becomes
    available seconds after the training ends: the Deploying status (with the training's verdict)
    waits up to HOLD_DEPLOYING for it, so that one write says both and the Serving status does
    not supersede it at once. Only that transition waits, and only when it changes nothing but
    computed fields of the same generation; a Deployment that takes longer gets its Deploying
    status when the time is up."""
    if waited is None or before.get("phase") != contract.PHASE_TRAINING:
        return 0.0
    if after.get("phase") != contract.PHASE_DEPLOYING:
        return 0.0
    changed = {k for k, v in after.items() if before.get(k) != v}
    if not changed <= COMPUTED or before.get("observedGeneration") != after.get(
        "observedGeneration"
    ):
        return 0.0
    return max(0.0, HOLD_DEPLOYING - waited)


Event = tuple[str, str, str]  # (type, reason, message)


def transitions(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[Event]:
    """(type, reason, message) for each Event a status change deserves: the phase, the training
    verdict, and each condition that turned abnormal (Warnings). The other condition changes
    are in the phase Event already; at a thousand Models every Event is an API write. A new
    Model's first status, Training, is no Event: whoever made the Model knows, and the verdict's
    Event follows."""
    events: list[Event] = []
    first_training = not before.get("phase") and after.get("phase") == contract.PHASE_TRAINING
    if before.get("phase") != after.get("phase") and not first_training:
        events.append(
            (
                "Normal",
                f"Phase{after.get('phase')}",
                f"phase {before.get('phase') or 'none'} -> {after.get('phase')}",
            )
        )
    old = {c["type"]: c for c in before.get("conditions") or []}
    for c in after.get("conditions") or []:
        prior = old.get(c["type"])
        before_state = (prior or {}).get("status"), (prior or {}).get("reason")
        if c["type"] == contract.READY or before_state == (c["status"], c["reason"]):
            continue
        if c["type"] == contract.TRAINED and c["status"] == "True":
            event_type = "Normal"  # the gates' verdict, with the metrics
        elif _abnormal(c) and not _first_rollout(c, prior):
            event_type = "Warning"
        else:
            continue  # the phase Event says it (Ready folds the rest)
        events.append((event_type, c["reason"], f"{c['type']}={c['status']}: {c['message']}"))
    return events


def fold_phase(events: Sequence[Event]) -> list[Event]:
    """A pass's Events with its phase change riding on its first other Normal Event.

    "Succeeded: Trained=True: iris-v1 (accuracy 0.97) passed its quality gates; phase Training
    -> Serving" says in one Event what two said; the action's reason is the more telling one. A
    phase change with no other Normal Event in the pass stays an Event of its own; Warnings are
    never folded."""
    normal = [i for i, e in enumerate(events) if e[0] == "Normal"]
    phase = next((i for i in normal if events[i][1].startswith("Phase")), None)
    carrier = next((i for i in normal if i != phase), None)
    if phase is None or carrier is None:
        return list(events)
    folded = list(events)
    event_type, reason, message = folded[carrier]
    folded[carrier] = (event_type, reason, f"{message}; {events[phase][2]}")
    del folded[phase]
    return folded


def _first_rollout(c: Mapping[str, Any], prior: Mapping[str, Any] | None) -> bool:
    """Unavailable before the first replica is ready: a rollout under way, not a loss."""
    return c["type"] == contract.AVAILABLE and (prior is None or prior.get("status") != "True")


def _abnormal(c: Mapping[str, Any]) -> bool:
    if c["type"] == contract.DEGRADED:
        return bool(c["status"] == "True")
    if c["type"] == contract.DRIFTED:
        return bool(c["status"] == "True")
    return c["status"] == "False" and c["reason"] not in (
        "Training",
        "NoDeployableVersion",
        "Idle",
        "Pending",
        "WithinReference",
    )
