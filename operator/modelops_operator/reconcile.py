"""One reconcile of one Model: observe, plan with the pure functions, act, write status.

Every trigger (the Model itself, its versions, Jobs and serving children, an analysis pass, the
periodic resync) queues the Model, and the queue runs one reconcile per Model at a time, so the
order of events never matters: each pass reads what is (from the store the watches keep) and moves
it one step towards what the spec asks. A pass with nothing to do makes no request.
"""

from __future__ import annotations

import datetime
import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from fnmatch import fnmatch
from typing import Any

from kubernetes.client.exceptions import ApiException

from modelops_api import contract
from modelops_api.spec import ModelSpec, MonitoringSpec, SpecError, parse
from modelops_operator import children, retraining, rollout, training, versions
from modelops_operator.analysis.model import (
    DRIFT,
    CheckResult,
    Outcome,
    Target,
    TargetKey,
    summarise,
)
from modelops_operator.kube import Body, Kube, namespace_terminating
from modelops_operator.monitor import Monitor, Results, Watch
from modelops_operator.settings import Settings, is_pattern
from modelops_operator.status import Event, Observed, fold_phase, model_status, transitions
from modelops_operator.store import Store
from modelops_operator.workqueue import WorkQueue

log = logging.getLogger("modelops.reconcile")
EventSink = Callable[[Mapping[str, Any], str, str, str], None]
ModelKey = tuple[str, str]
# Models reconciled in parallel: a reconcile mostly waits for the API server.
WORKERS = 12
# What the operator watches (handlers.py) and so keeps in its store.
WATCHED = (
    "Model",
    "ModelVersion",
    "Job",
    "Deployment",
    "Service",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
)


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def kube_event_sink(kube: Kube) -> EventSink:
    """Events through the API server, from any thread (Kopf's own poster needs its context).

    Posted in the background, in order, by one thread: a reconcile does not wait for its Events."""
    poster = ThreadPoolExecutor(max_workers=1, thread_name_prefix="modelops-events")

    def send(obj: Mapping[str, Any], kind: str, reason: str, message: str, at: str) -> None:
        try:
            kube.post_event(obj, kind, reason, message, at)
        except ApiException as error:  # an Event is worth less than the reconcile that made it
            if not namespace_terminating(error):
                log.warning(
                    "event %s on %s not posted: %s", reason, obj["metadata"]["name"], error.reason
                )

    def post(obj: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
        poster.submit(send, obj, kind, reason, message, now())

    return post


@dataclass
class Context:
    """What every reconcile shares: the API, the settings, the Event sink, the store of what the
    watches saw, the queue of Models to reconcile, and the analysis loop."""

    kube: Kube
    settings: Settings
    event: EventSink
    monitor: Monitor | None = None
    store: Store = field(default_factory=Store)
    queue: WorkQueue = field(init=False)
    # When each Model's latest analysis was taken into account (its results are in memory too).
    analysed: dict[ModelKey, float] = field(default_factory=dict)
    # When reading each version's reference distributions last failed.
    reference_misses: dict[tuple[str, str], float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.kube.store = self.store
        self.queue = WorkQueue(
            lambda namespace, name: reconcile(self, namespace, name), workers=WORKERS
        )

    def seed(self) -> None:
        """Fills the store with one list per watched kind, before the watches start."""
        for kind in WATCHED:
            selector = {} if kind in ("Model", "ModelVersion") else contract.MANAGED
            for namespace in self.settings.namespaces or ("",):
                pattern = is_pattern(namespace)
                try:
                    items = self.kube.list(kind, "" if pattern else namespace, selector)
                except ApiException as error:  # the watch will be refused the same way
                    log.error("%s in %r not listed: %s", kind, namespace, error.body or error)
                    continue
                if pattern:
                    items = [i for i in items if fnmatch(i["metadata"]["namespace"], namespace)]
                self.store.seed(kind, items)
        log.info("store seeded with %d objects", len(self.store))

    def start_background(self) -> None:
        self.queue.start()
        if self.monitor is not None:
            self.monitor.start()
        thread = threading.Thread(target=self._resync_loop, name="modelops-resync", daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop_background(self) -> None:
        self._stop.set()
        if self.monitor is not None:
            self.monitor.stop()
        self.queue.stop()
        for thread in self._threads:
            thread.join(timeout=30)

    def _resync_loop(self) -> None:
        """The safety net: every Model is reconciled once per resync interval (from the store,
        so a Model with nothing to do costs no request)."""
        while not self._stop.wait(self.settings.resync_seconds):
            for namespace, name in self.store.names("Model"):
                self.queue.add(namespace, name)


def reconcile(ctx: Context, namespace: str, name: str) -> Body | None:
    """Reconciles the Model `namespace/name` as the store has it; its new status, or None when
    gone. The queue runs one reconcile per Model at a time."""
    model = ctx.store.get("Model", namespace, name)
    if model is None or model["metadata"].get("deletionTimestamp"):
        ctx.analysed.pop((namespace, name), None)
        if ctx.monitor is not None:
            ctx.monitor.watch((namespace, name), None)
        return None
    try:
        return _reconcile(ctx, model)
    except ApiException as error:
        if not namespace_terminating(error):
            raise
        # The namespace, and the Model with it, is being deleted: nothing to do, nothing to retry.
        log.info("%s/%s: its namespace is being deleted; nothing to reconcile", namespace, name)
        return None


def _reconcile(ctx: Context, model: Body) -> Body:
    """One pass; its Events are posted at its end (also when it fails), a phase change riding on
    the pass's first other Normal Event."""
    news: list[Event] = []
    try:
        return _pass(ctx, model, news)
    finally:
        for kind, reason, message in fold_phase(news):
            ctx.event(model, kind, reason, message)


def _pass(ctx: Context, model: Body, news: list[Event]) -> Body:
    meta = model["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    status: Mapping[str, Any] = model.get("status") or {}
    try:
        spec = parse(ModelSpec, model["spec"], "spec")
    except SpecError as error:
        return _invalid_spec(ctx, model, str(error), news)
    clock = time.time()
    training_hash = contract.training_hash(model["spec"]["training"])
    raw = {v["metadata"]["name"]: v for v in ctx.store.owned("ModelVersion", namespace, name)}
    infos = {n: versions.version_info(v) for n, v in raw.items()}
    results = ctx.monitor.results((namespace, name)) if ctx.monitor is not None else None

    monitoring = _monitoring(ctx, model, spec.monitoring, status, results, clock)
    trigger = monitoring.pop("trigger", None)
    analysed = monitoring.pop("analysed", None)
    scheduled_at, schedule_error = _schedule(spec.training.schedule, meta, status, clock)
    if trigger is None and scheduled_at is not None:
        trigger = contract.REASON_SCHEDULE
    plan = versions.plan_training(
        name,
        training_hash,
        list(infos.values()),
        (meta.get("annotations") or {}).get(contract.ANNOTATION_RETRAIN),
        status.get("retrainToken"),
        None if status.get("canary") else trigger,  # a canary finishes before the next retrain
    )
    for old in plan.supersede:
        ctx.kube.delete("Job", namespace, old)
        patch = {
            "phase": contract.SUPERSEDED,
            "reason": "Superseded",
            "message": "a newer training spec replaced this one",
            "finishedAt": now(),
        }
        ctx.kube.patch_status("ModelVersion", namespace, old, patch)
        infos[old] = replace(infos[old], phase=contract.SUPERSEDED)
        news.append(("Normal", "TrainingSuperseded", f"{old} cancelled: the spec changed"))
    if plan.create and plan.reason:
        body = training.build_model_version(model, plan.create, plan.reason, training_hash)
        created = ctx.kube.create(body) or ctx.kube.get("ModelVersion", namespace, plan.create)
        if created is not None:
            raw[plan.create] = created
            infos[plan.create] = versions.version_info(created)
            news.append(("Normal", "TrainingStarted", f"{plan.create} created ({plan.reason})"))
            if plan.reason in (contract.REASON_DRIFT, contract.REASON_ACCURACY):
                monitoring["lastRetrain"] = {
                    "reason": plan.reason,
                    "at": clock,
                    "version": plan.create,
                }
                monitoring["breaches"] = None  # null: a merge patch of {} would keep the counts

    for vname, info in list(infos.items()):
        if info.in_progress:
            infos[vname] = _sync_training(ctx, raw[vname], info)

    ordered = versions.sort_versions(infos.values())
    current = [
        v for v in ordered if v.spec_hash == training_hash and v.phase != contract.SUPERSEDED
    ]
    approved = [v for v in current if v.phase == contract.SUCCEEDED]
    pinned = spec.serving.pinned
    choice = versions.choose_stable(ordered, pinned, status.get("stableVersion"))
    candidate = versions.candidate(ordered, choice.version, pinned)

    failure: ApiException | None = None
    try:
        step = rollout.step(
            ctx.kube, ctx.settings, model, spec.serving, choice.version, candidate, results, clock
        )
    except ApiException as error:  # the status says so; the queue retries after this pass
        failure = error
        step = rollout.RolloutResult(stable=choice.version, canary=status.get("canary"))
    news.extend(step.events)
    if step.rolled_back and candidate is not None:
        infos[candidate.name] = replace(
            candidate,
            phase=contract.ROLLED_BACK,
            status_reason=step.rolled_back_reason,
            message=step.rolled_back,
        )
        current = [infos.get(v.name, v) for v in current]
    _watch(ctx, model, spec, raw, step)

    observed = Observed(
        generation=meta.get("generation", 0),
        latest=current[-1] if current else None,
        trained=approved[-1] if approved else None,
        newest=ordered[-1] if ordered else None,
        stable=step.stable,
        pin_problem=choice.problem,
        canary=step.canary,
        rolled_back=step.rolled_back,
        write_error=_api_error(failure) if failure is not None else "",
        **_monitoring_view(spec.monitoring, monitoring),
        **step.deployment,
    )
    keep = [
        step.stable.name if step.stable else None,
        str(step.canary["version"]) if step.canary else None,
    ]
    for doomed in versions.plan_history(ordered, ctx.settings.history_limit, keep):
        ctx.kube.delete("ModelVersion", namespace, doomed)

    new_status = model_status(observed, status, now())
    new_status["canary"] = step.canary
    new_status["monitoring"] = monitoring or None
    if plan.retrain_token is not None:
        new_status["retrainToken"] = plan.retrain_token
    if scheduled_at is not None and not status.get("canary"):
        new_status["lastScheduledAt"] = scheduled_at
    new_status["scheduleError"] = schedule_error
    if schedule_error and schedule_error != status.get("scheduleError"):
        news.append(("Warning", "InvalidSchedule", schedule_error))
    if step.command_handled is not None:
        new_status["canaryCommand"] = step.command_handled
    if _changed(status, new_status):
        ctx.kube.patch_status("Model", namespace, name, new_status)
        news.extend(transitions(status, new_status))
    if analysed is not None:
        ctx.analysed[(namespace, name)] = analysed
    if failure is not None:
        raise failure
    return new_status


def _api_error(error: ApiException) -> str:
    """What the API server said, in one line: its Status message when there is one."""
    try:
        message = json.loads(error.body or "{}").get("message")
    except ValueError:
        message = None
    return f"serving children not written: {error.status} {message or error.reason}"


def _changed(before: Mapping[str, Any], after: Mapping[str, Any]) -> bool:
    return any(before.get(k) != v for k, v in after.items())


def _invalid_spec(ctx: Context, model: Body, error: str, news: list[Event]) -> Body:
    """The status of a Model whose spec breaks the API: nothing is changed, the status says why.

    Only a CRD older than the operator lets such a spec in; what serves keeps serving."""
    meta, status = model["metadata"], model.get("status") or {}
    stable = ctx.store.get("ModelVersion", meta["namespace"], status.get("stableVersion") or "")
    observed = Observed(
        generation=meta.get("generation", 0),
        latest=None,
        trained=None,
        newest=None,
        stable=versions.version_info(stable) if stable is not None else None,
        spec_error=error,
    )
    new_status = model_status(observed, status, now())
    if _changed(status, new_status):
        ctx.kube.patch_status("Model", meta["namespace"], meta["name"], new_status)
        news.extend(transitions(status, new_status))
    return new_status


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


def _monitoring(
    ctx: Context,
    model: Body,
    spec: MonitoringSpec,
    status: Mapping[str, Any],
    results: Results | None,
    clock: float,
) -> dict[str, Any]:
    """The stable version's monitoring state, advanced by a new analysis if there is one; a
    `trigger` key names the check that calls for a retrain now, an `analysed` key the time of the
    analysis taken into account.

    The state changes only when the analysis says something new: an outcome, a reason, a breach
    count, or a value that moved by more than `SETTLED` of itself. An analysis that repeats the
    last one writes nothing (the live values are in Prometheus, docs/monitoring.md)."""
    state: dict[str, Any] = dict(status.get("monitoring") or {})
    if state.pop("lastAnalysisAt", None) is not None:  # older operators wrote it on every pass
        state["lastAnalysisAt"] = None  # (the merge patch removes it)
    meta = model["metadata"]
    stable = status.get("stableVersion")
    if results is None or not stable or results.versions.get(children.STABLE) != stable:
        return state
    if results.at <= ctx.analysed.get((meta["namespace"], meta["name"]), 0.0):
        return state
    checks: list[CheckResult] = results.by_track.get(children.STABLE, [])
    watched = list(spec.retrain_on)
    same_version = state.get("version") == stable
    state["analysed"] = results.at
    state["version"] = stable
    previous = {c.get("check"): c for c in state.get("checks") or []} if same_version else {}
    state["checks"] = [settled(previous.get(r.check), r.as_status()) for r in checks]
    state["summary"] = settled(
        state.get("summary") if same_version else None, summarise(checks).as_status()
    )
    state["breaches"] = retraining.count_breaches(state.get("breaches") or {}, checks, watched)
    last = (state.get("lastRetrain") or {}).get("at")
    trigger = retraining.retrain_reason(
        state["breaches"],
        spec.consecutive,
        float(last) if last is not None else None,
        spec.cooldown_seconds,
        clock,
    )
    if trigger is not None:
        state["trigger"] = trigger
    return state


SETTLED = 0.1


def settled(previous: Any, new: Any) -> Any:
    """`previous` when `new` says the same thing: equal but for numbers that moved by no more
    than SETTLED (10%) of their previous value; otherwise `new`."""
    return previous if _same(previous, new) else new


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return abs(b - a) <= SETTLED * abs(a)
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _monitoring_view(spec: MonitoringSpec, monitoring: Mapping[str, Any]) -> dict[str, Any]:
    """Drift and live accuracy of the stable version, as the status shows them."""
    view: dict[str, Any] = {}
    drift = spec.checks.drift
    for check in monitoring.get("checks") or []:
        conclusive = check.get("outcome") != str(Outcome.INCONCLUSIVE)
        if check.get("check") == DRIFT and conclusive and "value" in check and drift is not None:
            view["drift"] = float(check["value"])
            view["drift_limit"] = drift.psi.max
            view["drift_feature"] = ((monitoring.get("summary") or {}).get("drift") or {}).get(
                "feature"
            )
        if check.get("check") == "accuracy" and conclusive and "value" in check:
            view["live_accuracy"] = float(check["value"])
    return view


def _watch(
    ctx: Context, model: Body, spec: ModelSpec, raw: Mapping[str, Body], step: rollout.RolloutResult
) -> None:
    """Tells the analysis loop what this Model wants analysed now."""
    if ctx.monitor is None:
        return
    meta = model["metadata"]
    key = (meta["namespace"], meta["name"])
    checks = spec.monitoring.checks.wire()
    targets = []
    tracks = [
        (children.STABLE, step.stable.name if step.stable else None),
        (children.CANARY, step.canary["version"] if step.canary else None),
    ]
    for track, version in tracks:
        if version is None or (track == children.STABLE and not checks):
            continue
        # Drift judges the data, not a version: it triggers retraining of stable, and a canary
        # trained on the same data would fail it just the same.
        wanted = (
            checks if track == children.STABLE else {k: v for k, v in checks.items() if k != DRIFT}
        )
        reference = _reference(ctx, raw.get(version)) if DRIFT in wanted else None
        targets.append(Target(TargetKey(key[0], key[1], version, track), wanted, reference))
    interval = spec.monitoring.interval_seconds
    if step.canary is not None:
        interval = spec.serving.canary.interval_seconds
    ctx.monitor.watch(key, Watch(tuple(targets), interval))


def _reference(ctx: Context, version: Body | None) -> Mapping[str, Any] | None:
    """The version's reference distributions: from its status, else read once from one of its
    ready serving pods' /metadata (the operator reaches pods as Prometheus does), and kept in the
    version's status. When ready pods do not answer, the next try waits REFERENCE_RETRY."""
    if version is None:
        return None
    status = version.get("status") or {}
    if status.get("reference"):
        return dict(status["reference"])
    meta = version["metadata"]
    key = (meta["namespace"], meta["name"])
    missed = ctx.reference_misses.get(key)
    if missed is not None and time.monotonic() - missed < REFERENCE_RETRY:
        return None
    pods = ctx.kube.list(
        "Pod",
        meta["namespace"],
        {contract.LABEL_VERSION: meta["name"], contract.LABEL_COMPONENT: "serving"},
    )
    for pod in pods:
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in (pod.get("status") or {}).get("conditions") or []
        )
        if not ready:
            continue
        address = (pod.get("status") or {}).get("podIP")
        url = f"http://{address}:{contract.SERVING_PORT}/metadata"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                metadata = json.loads(response.read())
        except (OSError, ValueError) as error:
            log.info("reference of %s not read from %s: %s", meta["name"], url, error)
            ctx.reference_misses[key] = time.monotonic()
            continue
        reference = metadata.get("reference")
        if reference:
            ctx.kube.patch_status(
                "ModelVersion", meta["namespace"], meta["name"], {"reference": reference}
            )
            ctx.reference_misses.pop(key, None)
            return dict(reference)
        ctx.reference_misses[key] = time.monotonic()  # served, but without a reference
    return None


REFERENCE_RETRY = 30.0


def _sync_training(ctx: Context, version: Body, info: versions.VersionInfo) -> versions.VersionInfo:
    """Makes sure an in-progress version has its Job, and records how the Job is doing."""
    meta = version["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    job = ctx.store.get("Job", namespace, name)
    patch: Body
    if job is None:
        # No status write: a version without a phase is Pending, and the Job's start (or end)
        # writes the next one.
        ctx.kube.create(training.build_training_job(version, ctx.settings))
        return info
    if training.job_finished(job):
        pods = ctx.kube.list("Pod", namespace, {"batch.kubernetes.io/job-name": name})
        pods.sort(key=lambda p: p["metadata"].get("creationTimestamp") or "")
        patch = training.outcome(job, pods[-1] if pods else None)
        patch["finishedAt"] = now()
    elif training.job_started(job):
        patch = {
            "phase": contract.TRAINING,
            "job": name,
            "message": "training",
            "startedAt": (job.get("status") or {}).get("startTime") or now(),
        }
    else:
        return info
    current = version.get("status") or {}
    if any(current.get(k) != v for k, v in patch.items() if k not in ("finishedAt", "startedAt")):
        updated = ctx.kube.patch_status("ModelVersion", namespace, name, patch)
        return versions.version_info(updated or {**version, "status": {**current, **patch}})
    return info
