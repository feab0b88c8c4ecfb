"""One reconcile of one Model: monitor → train → serve → watch → write status.

Every trigger (the Model itself, its versions, Jobs and serving children, an analysis pass, the
periodic resync) queues the Model, and the queue runs one pass per Model at a time, so the order of
events never matters: each pass reads what is (from the store the watches keep) and moves it one
step towards what the spec asks. A pass with nothing to do makes no request. Each step is a
function of its own module returning a typed result: `monitoring_state.advance` (the latest
analysis, and whether it calls for a retrain: so it comes first), `trainings.train`,
`rollout.step` and `watches.watch` (what the analysis loop looks at next); this module runs them
in order and writes the status (`status.model_status`) and the pass's Events.
"""

from __future__ import annotations

import datetime
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from kubernetes.client.exceptions import ApiException

from modelops_api import contract
from modelops_api.spec import ModelSpec, SpecError, parse
from modelops_operator import (
    archives,
    monitoring_state,
    retraining,
    rollout,
    trainings,
    versions,
    watches,
)
from modelops_operator.analysis.model import Results
from modelops_operator.monitor import Monitor
from modelops_operator.objects import Body, EventSink, ModelKey
from modelops_operator.runtime.events import now
from modelops_operator.runtime.kube import Kube, namespace_terminating
from modelops_operator.runtime.store import Store
from modelops_operator.settings import Settings
from modelops_operator.status import (
    Event,
    Observed,
    failed_status,
    fold_phase,
    hold,
    model_status,
    transitions,
)
from modelops_operator.versions import VersionInfo

log = logging.getLogger("modelops.reconcile")


@dataclass
class Context:
    """What every pass shares: the API, the store of what the watches saw, the settings, the Event
    sink, the analysis loop, how to ask for a Model's pass later (the queue's `add_later`;
    without it no status waits), and what passes remember between them."""

    kube: Kube
    store: Store
    settings: Settings
    event: EventSink
    monitor: Monitor | None = None
    later: Callable[[ModelKey, float], None] | None = None
    references: watches.References = field(init=False)
    # When each Model's latest analysis was taken into account (its results are in memory too).
    analysed: dict[ModelKey, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.references = watches.References(self.kube, self.settings.credentials_key)


def reconcile(ctx: Context, namespace: str, name: str) -> Body | None:
    """Reconciles the Model `namespace/name` as the store has it; its new status, or None when
    gone. Its Events are posted at the end of the pass (also when it fails), a phase change riding
    on the pass's first other Normal Event."""
    model = ctx.store.get("Model", namespace, name)
    _remove_departed(ctx, namespace, name, model)
    if model is None or model["metadata"].get("deletionTimestamp"):
        ctx.analysed.pop((namespace, name), None)
        ctx.kube.forget_model(namespace, name)
        if ctx.monitor is not None:
            ctx.monitor.watch((namespace, name), None)
        return None
    news: list[Event] = []
    try:
        return _pass(ctx, model, news)
    except Exception as error:
        cause = error.__cause__ if isinstance(error, Reported) else error
        if isinstance(cause, ApiException) and namespace_terminating(cause):
            # The namespace, and the Model with it, is being deleted: nothing to do or retry.
            log.info("%s/%s: its namespace is being deleted; nothing to reconcile", namespace, name)
            return None
        if not isinstance(error, Reported):
            _report(ctx, model, error, news)
        raise  # the queue retries the Model, later each time
    finally:
        for event_type, reason, message in fold_phase(news):
            ctx.event(model, event_type, reason, message)


def _pass(ctx: Context, model: Body, news: list[Event]) -> Body:
    meta = model["metadata"]
    key: ModelKey = (meta["namespace"], meta["name"])
    try:
        spec = parse(ModelSpec, model["spec"], "spec")
    except SpecError as error:
        return _write_status(ctx, model, _invalid(ctx, model, str(error)), {}, news)
    clock = time.time()
    results = ctx.monitor.results(key) if ctx.monitor is not None else None
    monitored = _monitor(ctx, key, model, spec, results, clock)
    trained = _train(ctx, model, monitored, clock)
    news.extend(trained.events)
    served = _serve(ctx, model, spec, trained, results, clock)
    news.extend(served.step.events)
    if ctx.monitor is not None:
        watches.watch(
            ctx.monitor, ctx.references, key, spec, trained.bodies, served.stable, served.canary
        )
    keep = [served.stable, served.canary]
    doomed = versions.plan_history(served.ordered, ctx.settings.history_limit, keep)
    _prune(ctx, model, trained, doomed, news)
    if monitored.schedule_error and monitored.schedule_error != _status(model).get("scheduleError"):
        news.append(("Warning", "InvalidSchedule", monitored.schedule_error))
    observed = _observed(model, spec, trained, served, monitored.state)
    new_status = _write_status(ctx, model, observed, _kept(model, monitored, trained, served), news)
    if monitored.analysed is not None:
        ctx.analysed[key] = monitored.analysed
    failure = trained.failure or served.failure
    if failure is not None:
        raise Reported(f"{key[0]}/{key[1]}: {_api_error(failure)}") from failure
    return new_status


def _prune(
    ctx: Context, model: Body, trained: trainings.Trained, doomed: list[str], news: list[Event]
) -> None:
    """Deletes the versions beyond the history limit, once a Job is there to remove their
    archives; when the Job cannot be made, the versions stay (a Warning says why) for a later
    pass, so no archive is left behind unnamed."""
    if not doomed:
        return
    namespace, name = model["metadata"]["namespace"], model["metadata"]["name"]
    targets = archives.pruned(
        [trained.infos[d] for d in doomed if d in trained.infos], ctx.settings
    )
    if targets:
        try:
            ctx.kube.create(archives.cleanup_job(ctx.settings, namespace, name, targets))
        except ApiException as error:
            news.append(
                (
                    "Warning",
                    "ArchiveCleanupFailed",
                    f"{', '.join(doomed)} kept beyond the history limit: the Job that removes "
                    f"their archives was refused: {_api_error(error)}",
                )
            )
            return
    for version in doomed:
        ctx.kube.delete("ModelVersion", namespace, version)


def _remove_departed(ctx: Context, namespace: str, name: str, model: Body | None) -> None:
    """Starts the removal of the store directories of the Models `namespace/name` that were
    deleted (a Model made again under the same name has another UID, so another directory)."""
    current = (model or {}).get("metadata", {}).get("uid")
    for uid in ctx.store.departed(namespace, name):
        if uid == current:
            continue
        targets = archives.of_deleted_model(ctx.settings, namespace, uid)
        try:
            ctx.kube.create(archives.cleanup_job(ctx.settings, namespace, name, targets))
        except ApiException as error:
            if namespace_terminating(error):
                continue  # the namespace, and a PersistentVolumeClaim store with it, goes
            log.warning("%s/%s: the archives of Model UID %s stay in the store: %s",
                        namespace, name, uid, _api_error(error))  # fmt: skip


class Reported(Exception):
    """A pass that ended in an error its status already shows: retried, not reported again."""


def _report(ctx: Context, model: Body, error: Exception, news: list[Event]) -> None:
    """Says on the Model that its pass failed and why (Degraded, Ready and a Warning Event), so
    that no failure leaves its status silently stale while the queue retries."""
    meta, status = model["metadata"], _status(model)
    if isinstance(error, ApiException):
        message = f"the API server refused a write: {_api_error(error)}"
    else:
        message = f"{type(error).__name__}: {error}"
    patch = failed_status(status, "ReconcileFailed", message, meta.get("generation", 0), now())
    try:
        if any(status.get(k) != v for k, v in patch.items()):
            ctx.kube.patch_status("Model", meta["namespace"], meta["name"], patch)
            news.extend(transitions(status, {**status, **patch}))
    except Exception:
        log.exception("%s/%s: the failure could not be written", meta["namespace"], meta["name"])


def _status(model: Body) -> Mapping[str, Any]:
    return model.get("status") or {}


@dataclass
class Monitored:
    """The monitor step: the stable version's monitoring state, advanced by a new analysis, and
    why to retrain now (a breach that lasted, or the schedule)."""

    state: dict[str, Any]
    trigger: str | None
    analysed: float | None
    scheduled_at: float | None
    schedule_error: str | None


def _monitor(
    ctx: Context,
    key: ModelKey,
    model: Body,
    spec: ModelSpec,
    results: Results | None,
    clock: float,
) -> Monitored:
    status = _status(model)
    advanced = monitoring_state.advance(
        spec.monitoring,
        status.get("monitoring"),
        status.get("stableVersion"),
        results,
        ctx.analysed.get(key, 0.0),
        clock,
    )
    scheduled_at, error = _schedule(spec.training.schedule, model["metadata"], status, clock)
    trigger = advanced.trigger or (contract.REASON_SCHEDULE if scheduled_at else None)
    return Monitored(advanced.state, trigger, advanced.analysed, scheduled_at, error)


def _train(ctx: Context, model: Body, monitored: Monitored, clock: float) -> trainings.Trained:
    """The training step; a retrain it starts for drift or accuracy clears the breach counts. A
    canary finishes before the next retrain."""
    trigger = None if _status(model).get("canary") else monitored.trigger
    training_hash = contract.training_hash(model["spec"]["training"])
    trained = trainings.train(ctx.kube, ctx.store, ctx.settings, model, training_hash, trigger)
    plan = trained.plan
    if plan.create in trained.bodies and plan.create and plan.reason in RETRAIN_REASONS:
        monitored.state = monitoring_state.retrained(
            monitored.state, plan.reason, clock, plan.create
        )
    return trained


RETRAIN_REASONS = (contract.REASON_DRIFT, contract.REASON_ACCURACY)


@dataclass
class Served:
    """The serve step: what the rollout did, the version choice it followed, the versions in
    order, those of the current spec, and the API error that cut it short (if one did)."""

    step: rollout.RolloutResult
    choice: versions.StableChoice
    ordered: list[VersionInfo]
    current: list[VersionInfo]
    failure: ApiException | None = None

    @property
    def stable(self) -> str | None:
        return self.step.stable.name if self.step.stable else None

    @property
    def canary(self) -> str | None:
        return str(self.step.canary["version"]) if self.step.canary else None


def _serve(
    ctx: Context,
    model: Body,
    spec: ModelSpec,
    trained: trainings.Trained,
    results: Results | None,
    clock: float,
) -> Served:
    training_hash = contract.training_hash(model["spec"]["training"])
    ordered = versions.sort_versions(trained.infos.values())
    current = [
        v for v in ordered if v.spec_hash == training_hash and v.phase != contract.SUPERSEDED
    ]
    pinned = spec.serving.pinned
    choice = versions.choose_stable(ordered, pinned, _status(model).get("stableVersion"))
    candidate = versions.candidate(ordered, choice.version, pinned)
    try:
        step = rollout.step(
            ctx.kube, ctx.settings, model, spec.serving, choice.version, candidate, results, clock
        )
    except ApiException as error:  # the status says so; the queue retries after this pass
        step = rollout.RolloutResult(
            stable=choice.version,
            canary=_status(model).get("canary"),
            url=_status(model).get("url"),
        )
        return Served(step, choice, ordered, current, error)
    if step.rolled_back and candidate is not None:
        rolled_back = replace(
            candidate,
            phase=contract.ROLLED_BACK,
            status_reason=step.rolled_back_reason,
            message=step.rolled_back,
        )
        current = [rolled_back if v.name == candidate.name else v for v in current]
    return Served(step, choice, ordered, current)


def _observed(
    model: Body,
    spec: ModelSpec,
    trained: trainings.Trained,
    served: Served,
    monitoring: Mapping[str, Any],
) -> Observed:
    """What the status is computed from (status.model_status)."""
    step, current = served.step, served.current
    approved = [v for v in current if v.phase == contract.SUCCEEDED]
    return Observed(
        generation=model["metadata"].get("generation", 0),
        latest=current[-1] if current else None,
        trained=approved[-1] if approved else None,
        newest=served.ordered[-1] if served.ordered else None,
        stable=step.stable,
        pin_problem=served.choice.problem,
        canary=step.canary,
        rolled_back=step.rolled_back,
        write_error=_write_error(trained.failure, served.failure),
        **monitoring_state.view(spec.monitoring, monitoring),
        **step.deployment,
    )


def _kept(
    model: Body, monitored: Monitored, trained: trainings.Trained, served: Served
) -> dict[str, Any]:
    """The status fields the pass keeps besides the computed ones: the canary, the monitoring
    state, the Gateway API route's URL, and what was handled (retrain request, schedule fire,
    canary command)."""
    canary_running = bool(_status(model).get("canary"))
    kept: dict[str, Any] = {
        "canary": served.step.canary,
        "url": served.step.url,
        "monitoring": monitored.state or None,
        "scheduleError": monitored.schedule_error,
    }
    if trained.plan.retrain_token is not None:
        kept["retrainToken"] = trained.plan.retrain_token
    if monitored.scheduled_at is not None and not canary_running:
        kept["lastScheduledAt"] = monitored.scheduled_at
    if served.step.command_handled is not None:
        kept["canaryCommand"] = served.step.command_handled
    return kept


def _write_status(
    ctx: Context, model: Body, observed: Observed, extra: Mapping[str, Any], news: list[Event]
) -> Body:
    """Writes the status the pass observed, if it differs; its transitions become Events. A
    first rollout's Deploying status waits a few seconds for its Serving one (`status.hold`):
    the pass asks to run again when the wait is over, and writes nothing now."""
    meta, status = model["metadata"], model.get("status") or {}
    new_status = {**model_status(observed, status, now()), **extra}
    if not any(status.get(k) != v for k, v in new_status.items()):
        return new_status
    key: ModelKey = (meta["namespace"], meta["name"])
    wait = hold(status, new_status, _since_trained(ctx, key, observed)) if ctx.later else 0.0
    if wait > 0 and ctx.later is not None:
        ctx.later(key, wait)
        return dict(status)
    ctx.kube.patch_status("Model", key[0], key[1], new_status)
    news.extend(transitions(status, new_status))
    return new_status


def _since_trained(ctx: Context, key: ModelKey, observed: Observed) -> float | None:
    """Seconds since the stable version's training finished (its `finishedAt`), if it did."""
    if observed.stable is None:
        return None
    version = ctx.store.get("ModelVersion", key[0], observed.stable.name) or {}
    finished = (version.get("status") or {}).get("finishedAt")
    try:
        at = datetime.datetime.fromisoformat(str(finished).replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0.0, time.time() - at.timestamp())


def _invalid(ctx: Context, model: Body, error: str) -> Observed:
    """What a pass observes of a Model whose spec breaks the API: nothing is changed, the status
    says why. Only a CRD older than the operator lets such a spec in; what serves keeps serving."""
    meta, status = model["metadata"], model.get("status") or {}
    stable = ctx.store.get("ModelVersion", meta["namespace"], status.get("stableVersion") or "")
    return Observed(
        generation=meta.get("generation", 0),
        latest=None,
        trained=None,
        newest=None,
        stable=versions.version_info(stable) if stable is not None else None,
        spec_error=error,
    )


def _write_error(training: ApiException | None, serving: ApiException | None) -> str:
    """Which write the API server refused in this pass, and what it said."""
    if training is not None:
        return f"training write refused: {_api_error(training)}"
    if serving is not None:
        return f"serving children not written: {_api_error(serving)}"
    return ""


def _api_error(error: ApiException) -> str:
    """What the API server said, in one line: its Status message when there is one."""
    try:
        message = json.loads(error.body or "{}").get("message")
    except (ValueError, AttributeError):
        message = None
    return f"{error.status} {message or error.reason}"


def _schedule(
    expression: str | None,
    meta: Mapping[str, Any],
    status: Mapping[str, Any],
    clock: float,
) -> tuple[float | None, str | None]:
    """When `spec.training.schedule` fired since it was last handled (or since the Model was
    created), and the schedule's error, if it is not a cron expression."""
    if not expression:
        return None, None
    created = datetime.datetime.fromisoformat(
        str(meta.get("creationTimestamp", now())).replace("Z", "+00:00")
    ).timestamp()
    since = float(status.get("lastScheduledAt") or created)
    try:
        return retraining.schedule_due(expression, since, clock), None
    except retraining.ScheduleError as error:
        return None, str(error)
