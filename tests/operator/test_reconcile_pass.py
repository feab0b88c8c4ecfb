"""Whole reconcile passes against an in-memory API server (tests/fake_kube.py), as Flagger tests
its scheduler: each test feeds the world (a Model, a finished Job, a ready Deployment, an analysis)
and runs `reconcile()` pass by pass, then reads what the pass left: the API objects, the Model's
status, its Events and the requests made.

Only the operator's entry points are used (`Context`, `reconcile`, `Settings`, the analysis
loop's `Monitor` interface), so the tests hold through a refactor of what a pass is made of. The
controllers a node-less world lacks are played by FakeKube's helpers; the analysis loop by
`FakeMonitor`, whose results a test publishes; time moves by ageing the canary's timestamps in
the status, which is where the operator keeps them (so nothing sleeps). No network: a drift
check reads its reference from the version's status, which the tests fill.
"""

from __future__ import annotations

import base64
import calendar
import copy
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from fake_kube import FakeKube
from kubernetes.client.exceptions import ApiException

from modelops_api import contract
from modelops_operator import credentials
from modelops_operator.analysis.model import CheckResult, Outcome, Results, Watch
from modelops_operator.monitor import Monitor
from modelops_operator.reconcile import Context, Reported, reconcile
from modelops_operator.runtime.controller import seed
from modelops_operator.runtime.store import Store
from modelops_operator.settings import Settings

pytestmark = pytest.mark.unit

Body = dict[str, Any]
REPO = Path(__file__).resolve().parents[2]
NS, MODEL = "ml", "iris"
STABLE, CANARY = f"{MODEL}-stable", f"{MODEL}-canary"
REFERENCE = {"petal_length": {"edges": [0.0, 2.5, 5.0, 7.5], "proportions": [0.3, 0.4, 0.3]}}


def iris(**serving: Any) -> Body:
    """examples/iris.yaml in NS, with `serving` fields changed."""
    body: Body = yaml.safe_load((REPO / "examples" / "iris.yaml").read_text())
    body["metadata"]["namespace"] = NS
    body["spec"]["serving"].update(serving)
    return body


def with_estimators(body: Mapping[str, Any], n: int) -> Body:
    """`body` with a training spec change (a new version is due)."""
    changed = copy.deepcopy(dict(body))
    changed["spec"]["training"]["estimator"]["params"]["n_estimators"] = n
    return changed


def training_result(version: str, phase: str = contract.SUCCEEDED, **fields: Any) -> Body:
    """A result as `modelops train` writes it to its termination message."""
    result: Body = {
        "phase": phase,
        "reason": "Trained",
        "message": "trained",
        "model": MODEL,
        "version": version,
        "tag": f"{MODEL}:{version}",
        "artifact": f"file:///models/{MODEL}/{version}.bentomodel",
        "metrics": {"accuracy": 0.97, "f1_macro": 0.96},
    }
    result.update(fields)
    return result


def check(name: str, outcome: Outcome, value: float | None = None, reason: str = "") -> CheckResult:
    threshold = {"drift": "<= 0.2", "errorRate": "<= 0.05"}.get(name, "")
    return CheckResult(name, outcome, value, threshold, 100.0, reason or f"{name} {outcome}")


PASSING = [
    check("errorRate", Outcome.PASS, 0.0),
    check("latencyP95Seconds", Outcome.PASS, 0.1),
    check("accuracy", Outcome.PASS, 0.95),
]
FAILING = [
    check("errorRate", Outcome.FAIL, 0.3, "error rate 0.3 > 0.05"),
    check("latencyP95Seconds", Outcome.PASS, 0.1),
    check("accuracy", Outcome.PASS, 0.95),
]
UNREACHABLE = [
    replace(
        check(name, Outcome.INCONCLUSIVE, None, "Prometheus unavailable (unreachable): refused"),
        outage=True,
    )
    for name in ("errorRate", "latencyP95Seconds", "accuracy")
]
FEW_SAMPLES = [
    check(name, Outcome.INCONCLUSIVE, None, "3 samples in the last 60s < minSamples 20")
    for name in ("errorRate", "latencyP95Seconds", "accuracy")
]


class _NoPrometheus:
    def query(self, promql: str, at: float | None = None) -> Any:
        raise AssertionError("the tests publish results; nothing queries Prometheus")


class FakeMonitor(Monitor):
    """The analysis loop, never started: `watch` records (and registers, as the real one does);
    `results` answers what the test published last."""

    def __init__(self) -> None:
        super().__init__(_NoPrometheus(), lambda namespace, name: None)
        self.watched: list[tuple[tuple[str, str], Watch | None]] = []
        self.published: dict[tuple[str, str], Results] = {}
        self._last = 0.0

    def watch(self, key: tuple[str, str], watch: Watch | None) -> None:
        self.watched.append((key, watch))
        super().watch(key, watch)

    def results(self, key: tuple[str, str]) -> Results | None:
        return self.published.get(key)

    def publish(
        self,
        versions: Mapping[str, str],
        stable: Sequence[CheckResult] = (),
        canary: Sequence[CheckResult] = (),
    ) -> Results:
        """One analysis pass's results for the Model, newer than any before (`versions`: track ->
        version analysed)."""
        self._last = max(time.time(), self._last + 0.001)
        by_track = {"stable": list(stable), "canary": list(canary)}
        results = Results(self._last, {t: by_track[t] for t in versions}, dict(versions))
        self.published[(NS, MODEL)] = results
        return results

    def last_watch(self) -> Watch | None:
        return self.watched[-1][1] if self.watched else None


@dataclass
class EventLog:
    """The Event sink: (object name, type, reason, message) of each Event, in order."""

    posted: list[tuple[str, str, str, str]] = field(default_factory=list)

    def __call__(self, obj: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
        self.posted.append((obj["metadata"]["name"], kind, reason, message))

    def reasons(self) -> list[str]:
        return [reason for _, _, reason, _ in self.posted]

    def of(self, reason: str) -> tuple[str, str]:
        """(type, message) of the one Event with `reason`."""
        found = [(k, m) for _, k, r, m in self.posted if r == reason]
        assert len(found) == 1, (reason, self.posted)
        return found[0]


@dataclass
class World:
    kube: FakeKube
    monitor: FakeMonitor
    events: EventLog
    ctx: Context

    def run(self) -> Body | None:
        """One reconcile pass of the Model; `kube.requests` and `events` hold this pass's."""
        self.kube.requests.clear()
        self.events.posted.clear()
        return reconcile(self.ctx, NS, MODEL)

    def quiet(self) -> None:
        """Asserts that a pass now has nothing to do: no request, no Event."""
        self.run()
        assert self.kube.calls() == [], self.kube.calls()
        assert self.events.posted == []

    def model(self) -> Body:
        found = self.kube.object("Model", MODEL)
        assert found is not None
        return found

    def status(self) -> Body:
        return dict(self.model().get("status") or {})

    def condition(self, kind: str) -> Body:
        return next(c for c in self.status().get("conditions") or [] if c["type"] == kind)

    def version(self, name: str) -> Body:
        found = self.kube.object("ModelVersion", name)
        assert found is not None, f"no ModelVersion {name}"
        return found

    def version_status(self, name: str) -> Body:
        return dict(self.version(name).get("status") or {})

    def deployment(self, name: str) -> Body | None:
        return self.kube.object("Deployment", name)

    def env(self, deployment: str) -> dict[str, str]:
        found = self.deployment(deployment)
        assert found is not None
        container = found["spec"]["template"]["spec"]["containers"][0]
        return {e["name"]: e["value"] for e in container["env"]}

    def train(self, version: str, **result: Any) -> None:
        """The version's Job runs and reports `result` (an approved training by default), and
        its reference distributions are in its status (what the operator reads from a serving
        pod once, over HTTP, which unit tests do not do)."""
        self.kube.start_job(version)
        self.kube.finish_job(
            version, training_result(version, **{**self.archive(version), **result})
        )
        self.kube.set_status("ModelVersion", version, {"reference": REFERENCE})

    def archive(self, version: str) -> dict[str, str]:
        """Where the version's training writes its archive: its Model's store directory."""
        uid = self.model()["metadata"]["uid"]
        return {"artifact": f"file:///models/{NS}/{uid}/{MODEL}/{version}.bentomodel"}

    def serve_v1(self, body: Body | None = None) -> None:
        """A Model whose first version trained and serves, ready, with nothing left to do."""
        self.kube.put(body or iris())
        self.run()
        self.train(f"{MODEL}-v1")
        self.run()
        self.kube.make_ready(STABLE)
        self.run()
        assert self.status()["phase"] == contract.PHASE_SERVING

    def canary_v2(self) -> None:
        """v1 serving, then a spec change whose v2 trains: the canary of v2 starts."""
        self.serve_v1()
        self.kube.put(with_estimators(iris(), 5))
        self.run()
        self.train(f"{MODEL}-v2")
        self.run()
        assert self.status()["canary"]["version"] == f"{MODEL}-v2"

    def age_canary(self, seconds: float = 61.0) -> None:
        """As if `seconds` passed since the canary's last step and analysis: the canary keeps its
        clock in the Model's status, so moving those times back moves it forward."""
        canary = self.status()["canary"]
        older = {k: float(canary[k]) - seconds for k in ("startedAt", "stepStartedAt")}
        older["lastAnalysisAt"] = float(canary["lastAnalysisAt"]) - seconds
        self.kube.set_status("Model", MODEL, {"canary": older})

    def analyse_canary(self, canary: Sequence[CheckResult]) -> Body | None:
        """An interval later, an analysis of both tracks with `canary`'s results, and a pass."""
        self.age_canary()
        self.monitor.publish(
            {"stable": f"{MODEL}-v1", "canary": f"{MODEL}-v2"}, stable=PASSING, canary=canary
        )
        return self.run()


def make_world(settings: Settings | None = None, kube: FakeKube | None = None) -> World:
    kube = kube or FakeKube(Store(), namespace=NS)
    assert kube.store is not None
    monitor, events = FakeMonitor(), EventLog()
    ctx = Context(kube, kube.store, settings or Settings(), events, monitor)
    return World(kube, monitor, events, ctx)


@pytest.fixture
def world() -> World:
    return make_world()


# --- training --------------------------------------------------------------------------------


def test_a_new_model_creates_its_first_version_and_its_job(world: World) -> None:
    world.kube.put(iris())
    world.run()

    assert world.kube.names("ModelVersion") == ["iris-v1"]
    version = world.version("iris-v1")
    assert version["spec"]["reason"] == contract.REASON_INITIAL
    assert version["spec"]["specHash"].startswith("sha256:")
    assert version["spec"]["training"] == iris()["spec"]["training"]
    owner = version["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"]) == ("Model", world.model()["metadata"]["uid"])
    # The Job comes in the same pass: the version is in progress and has none.
    job = world.kube.object("Job", "iris-v1")
    assert job is not None
    assert job["metadata"]["ownerReferences"][0]["uid"] == version["metadata"]["uid"]
    train = job["spec"]["template"]["spec"]["containers"][0]
    assert train["args"][:6] == [
        "--spec",
        "/etc/modelops/training.json",
        "--model",
        "iris",
        "--version",
        "iris-v1",
    ]
    assert "phase" not in version.get("status", {})  # Pending until the Job starts

    status = world.status()
    assert status["phase"] == contract.PHASE_TRAINING
    assert (status["latestVersion"], status["observedGeneration"]) == ("iris-v1", 1)
    assert "stableVersion" not in status
    trained = world.condition(contract.TRAINED)
    assert (trained["status"], trained["reason"]) == ("False", "Training")
    assert world.condition(contract.READY)["status"] == "False"
    # No Event: a new Model's first training is no news to whoever made it (a retrain's is).
    assert world.events.posted == []
    # the version, the namespace's NetworkPolicy, the Job, the Model's status
    assert [m for m, _ in world.kube.writes()] == ["POST", "PATCH", "POST", "PATCH"]
    policy = world.kube.object("NetworkPolicy", "modelops-models")
    assert policy is not None
    assert "ownerReferences" not in policy["metadata"]  # it outlives any one Model
    selector = policy["spec"]["podSelector"]
    assert selector["matchLabels"] == contract.MANAGED
    assert selector["matchExpressions"] == [
        {"key": contract.LABEL_MODEL, "operator": "Exists"},
        {"key": contract.LABEL_COMPONENT, "operator": "In", "values": ["serving", "training"]},
    ]
    # Nothing to analyse yet: no stable version, no canary.
    last = world.monitor.last_watch()
    assert last is not None and last.targets == ()


def test_a_started_job_marks_its_version_training_without_rewriting_the_model(
    world: World,
) -> None:
    world.kube.put(iris())
    world.run()
    world.kube.start_job("iris-v1")
    world.run()

    assert world.version_status("iris-v1")["phase"] == contract.TRAINING
    assert world.version_status("iris-v1")["job"] == "iris-v1"
    assert world.kube.writes() == [
        ("PATCH", f"/apis/modelops.dev/v1alpha1/namespaces/{NS}/modelversions/iris-v1/status")
    ]
    assert world.status()["phase"] == contract.PHASE_TRAINING


def test_a_finished_training_is_read_from_its_watched_pod_without_listing_pods(
    world: World,
) -> None:
    world.kube.put(iris())
    world.run()
    world.train("iris-v1")
    world.run()
    assert world.version_status("iris-v1")["phase"] == contract.SUCCEEDED
    assert not [c for c in world.kube.calls() if c[1].endswith("/pods")], world.kube.calls()


def test_a_finished_job_whose_pod_the_watch_has_not_delivered_lists_it(world: World) -> None:
    world.kube.put(iris())
    world.run()
    world.train("iris-v1")
    for namespace, name in world.ctx.store.names("Pod"):
        world.ctx.store.forget("Pod", namespace, name)  # the pod's last event still on its way
    world.run()
    assert world.version_status("iris-v1")["phase"] == contract.SUCCEEDED
    assert ("GET", f"/api/v1/namespaces/{NS}/pods") in world.kube.calls()


def test_an_approved_training_is_served_as_stable_and_then_serves(world: World) -> None:
    world.kube.put(iris())
    world.run()
    world.train("iris-v1")
    world.run()

    version = world.version_status("iris-v1")
    assert version["phase"] == contract.SUCCEEDED and version["approved"] is True
    assert version["artifact"] == world.archive("iris-v1")["artifact"]
    assert version["metrics"] == {"accuracy": 0.97, "f1_macro": 0.96}
    assert "finishedAt" in version

    deployment = world.deployment(STABLE)
    assert deployment is not None and deployment["spec"]["replicas"] == 2
    assert deployment["metadata"]["labels"][contract.LABEL_TRACK] == "stable"
    env = world.env(STABLE)
    assert (env["MODELOPS_VERSION"], env["MODELOPS_TRACK"]) == ("iris-v1", "stable")
    assert env["MODELOPS_ARTIFACT"] == world.archive("iris-v1")["artifact"]
    service = world.kube.object("Service", "iris")
    assert service is not None
    assert service["spec"]["selector"] == {
        contract.LABEL_MODEL: "iris",
        contract.LABEL_COMPONENT: "serving",
    }
    assert world.kube.object("PodDisruptionBudget", "iris") is not None  # two replicas
    assert world.kube.object("HorizontalPodAutoscaler", "iris") is None

    status = world.status()
    assert (status["phase"], status["stableVersion"]) == (contract.PHASE_DEPLOYING, "iris-v1")
    assert status["accuracy"] == 0.97
    available = world.condition(contract.AVAILABLE)
    assert (available["status"], available["reason"]) == ("False", "DeploymentUnavailable")
    kind, message = world.events.of("Succeeded")
    assert kind == "Normal"
    assert message == (
        "Trained=True: iris-v1 (accuracy 0.97, f1_macro 0.96) passed its quality gates; "
        "phase Training -> Deploying"
    )
    # A rollout under way is no Warning.
    assert all(kind == "Normal" for _, kind, _, _ in world.events.posted)

    world.kube.make_ready(STABLE)
    world.run()
    status = world.status()
    assert (status["phase"], status["stableVersion"]) == (contract.PHASE_SERVING, "iris-v1")
    ready = world.condition(contract.READY)
    assert (ready["status"], ready["message"]) == ("True", "iris-v1 serves with 2/2 replicas ready")
    assert world.events.posted == [("iris", "Normal", "PhaseServing", "phase Deploying -> Serving")]
    # Only the status was written: the children were applied already and have not changed.
    assert world.kube.writes() == [
        ("PATCH", f"/apis/modelops.dev/v1alpha1/namespaces/{NS}/models/iris/status")
    ]

    # The stable version is watched with every check, drift with the version's reference.
    last = world.monitor.last_watch()
    assert last is not None and last.interval == 60.0
    (target,) = last.targets
    assert (target.key.version, target.key.track) == ("iris-v1", "stable")
    assert set(target.checks) == {"errorRate", "latencyP95Seconds", "drift", "accuracy"}
    assert target.reference == REFERENCE


def test_a_pass_with_nothing_to_do_makes_no_request(world: World) -> None:
    world.kube.put(iris())
    world.run()
    world.quiet()  # waiting for the Job to start
    world.kube.start_job("iris-v1")
    world.run()
    world.quiet()  # training
    world.train("iris-v1")
    world.run()
    world.kube.make_ready(STABLE)
    world.run()
    world.quiet()  # serving
    world.quiet()


def test_a_job_whose_pod_does_not_run_yet_leaves_its_version_pending(world: World) -> None:
    world.kube.put(iris())
    world.run()
    world.kube.start_job("iris-v1", running=False)  # scheduling, or pulling its image
    world.quiet()
    assert "phase" not in world.version_status("iris-v1")
    world.kube.start_job("iris-v1")
    world.run()
    assert world.version_status("iris-v1")["phase"] == contract.TRAINING


def rollout_writes(
    world: World, deployed: float
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """A new Model's first rollout, pass by pass, as the control plane plays it: its Job's pod
    runs and finishes, and its stable Deployment is ready `deployed` seconds after the training
    finished (the held statuses' passes run when the queue would run them). Every write (method,
    resource) and Event (reason, message) of the whole rollout, in order."""
    writes: list[tuple[str, str]] = []
    events: list[tuple[str, str]] = []
    later: list[tuple[tuple[str, str], float]] = []
    world.ctx.later = lambda key, delay: later.append((key, delay))

    def run() -> None:
        world.run()
        for method, path in world.kube.writes():
            resource = path.split(f"/namespaces/{NS}/")[-1].split("/")[0]
            writes.append((method, resource + ("/status" if path.endswith("/status") else "")))
        events.extend((r, m) for _, _, r, m in world.events.posted)

    world.kube.put(iris())
    run()
    world.kube.start_job("iris-v1", running=False)
    run()
    world.kube.start_job("iris-v1")
    run()
    world.kube.finish_job("iris-v1", training_result("iris-v1", **world.archive("iris-v1")))
    world.kube.set_status("ModelVersion", "iris-v1", {"reference": REFERENCE})  # as in train()
    run()
    if later:  # the Deploying status waits; the queue runs the Model again when it is due
        ((key, delay),) = later
        assert key == (NS, MODEL) and 14 < delay <= 15
        if deployed > delay:
            age_training(world, "iris-v1", delay)
            run()
    world.kube.make_ready(STABLE)
    run()
    assert world.status()["phase"] == contract.PHASE_SERVING
    world.quiet()
    return writes, events


def age_training(world: World, version: str, seconds: float) -> None:
    """As if `seconds` passed since the version's training finished."""
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    finished = calendar.timegm(time.strptime(world.version_status(version)["finishedAt"], stamp))
    earlier = time.strftime(stamp, time.gmtime(finished - seconds))
    world.kube.set_status("ModelVersion", version, {"finishedAt": earlier})


ROLLOUT_WRITES = [
    ("POST", "modelversions"),
    ("PATCH", "networkpolicies"),  # the Model's pods', serving ones too
    ("POST", "jobs"),
    ("PATCH", "models/status"),  # Training
    ("PATCH", "modelversions/status"),  # Training, once its pod runs
    ("PATCH", "modelversions/status"),  # Succeeded
    ("PATCH", "secrets"),
    ("PATCH", "deployments"),
    ("PATCH", "services"),
    ("PATCH", "poddisruptionbudgets"),
]


def test_a_first_rollout_writes_each_status_once_when_it_deploys_within_the_hold(
    world: World,
) -> None:
    writes, events = rollout_writes(world, deployed=3)
    # Training, then Serving: the Deploying status a ready Deployment superseded is not written.
    assert writes == [*ROLLOUT_WRITES, ("PATCH", "models/status")]
    assert events == [
        (
            "Succeeded",
            "Trained=True: iris-v1 (accuracy 0.97, f1_macro 0.96) passed its quality gates; "
            "phase Training -> Serving",
        ),
    ]
    status = world.status()
    assert status["stableVersion"] == "iris-v1" and status["accuracy"] == 0.97
    assert world.condition(contract.TRAINED)["status"] == "True"


def test_a_slow_first_deployment_shows_deploying_when_the_hold_is_over(world: World) -> None:
    writes, events = rollout_writes(world, deployed=60)
    assert writes == [*ROLLOUT_WRITES, ("PATCH", "models/status"), ("PATCH", "models/status")]
    assert [r for r, _ in events] == ["Succeeded", "PhaseServing"]
    assert events[0][1].endswith("phase Training -> Deploying")


def test_without_a_queue_to_come_back_no_status_waits(world: World) -> None:
    world.ctx.later = None
    world.kube.put(iris())
    world.run()
    world.train("iris-v1")
    world.run()
    assert world.status()["phase"] == contract.PHASE_DEPLOYING


@pytest.mark.parametrize(
    ("result", "succeeded", "options", "reason", "message"),
    [
        (
            training_result(
                "iris-v1", contract.FAILED, reason="MissingTarget", message="no column 'species'"
            ),
            False,
            {},
            "MissingTarget",
            "no column 'species'",
        ),
        (None, False, {}, "BackoffLimitExceeded", "Job has reached the specified backoff limit"),
        (None, False, {"terminated_reason": "OOMKilled"}, "OOMKilled", "ran out of memory"),
        ("Traceback: boom", True, {}, "NoResult", "without a readable result: 'Traceback: boom'"),
        (training_result("iris-v1", artifact=""), True, {}, "NoArtifact", "no archive"),
    ],
    ids=["failed", "job-failed", "oom-killed", "no-result", "no-artifact"],
)
def test_a_first_training_that_fails_fails_the_model(
    world: World,
    result: Body | str | None,
    succeeded: bool,
    options: dict[str, str],
    reason: str,
    message: str,
) -> None:
    world.kube.put(iris())
    world.run()
    world.kube.finish_job("iris-v1", result, succeeded, **options)
    world.run()

    version = world.version_status("iris-v1")
    assert (version["phase"], version["reason"], version["approved"]) == (
        contract.FAILED,
        reason,
        False,
    )
    assert message in version["message"]
    status = world.status()
    assert status["phase"] == contract.PHASE_FAILED
    assert "stableVersion" not in status
    trained = world.condition(contract.TRAINED)
    assert (trained["status"], trained["reason"]) == ("False", "TrainingFailed")
    assert message in trained["message"]
    kind, text = world.events.of("TrainingFailed")
    assert kind == "Warning" and message in text
    assert world.kube.names("Deployment") == []
    # A failure is not retried by itself.
    world.quiet()
    assert world.kube.names("ModelVersion") == ["iris-v1"]


@pytest.mark.parametrize(
    ("phase", "fields", "reason"),
    [
        (
            contract.REJECTED,
            {"reason": "QualityGateMissed", "message": "accuracy 0.41 < 0.9"},
            "QualityGateMissed",
        ),
        (
            contract.FAILED,
            {"reason": "MissingTarget", "message": "no column 'x'"},
            "TrainingFailed",
        ),
    ],
)
def test_a_rejected_or_failed_new_version_leaves_stable_serving(
    world: World, phase: str, fields: dict[str, str], reason: str
) -> None:
    world.serve_v1()
    before = world.deployment(STABLE)
    assert before is not None
    world.kube.put(with_estimators(iris(), 5))
    world.run()
    assert world.version("iris-v2")["spec"]["reason"] == contract.REASON_SPEC_CHANGE
    result = training_result("iris-v2", phase, **{**world.archive("iris-v2"), **fields})
    world.kube.finish_job("iris-v2", result, phase != "Failed")
    world.run()

    assert world.version_status("iris-v2")["phase"] == phase
    status = world.status()
    assert (status["phase"], status["stableVersion"]) == (contract.PHASE_DEGRADED, "iris-v1")
    assert "canary" not in status
    degraded = world.condition(contract.DEGRADED)
    assert (degraded["status"], degraded["reason"]) == ("True", reason)
    assert fields["message"] in degraded["message"]
    assert "still serving iris-v1" in degraded["message"]
    ready = world.condition(contract.READY)
    assert (ready["status"], ready["reason"]) == ("False", reason)
    # Warnings for both conditions that turned: Trained (the verdict) and Degraded.
    assert [(k, r) for _, k, r, _ in world.events.posted] == [
        ("Normal", "PhaseDegraded"),
        ("Warning", reason),
        ("Warning", reason),
    ]
    after = world.deployment(STABLE)
    assert after is not None
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert world.env(STABLE)["MODELOPS_VERSION"] == "iris-v1"
    assert world.deployment(CANARY) is None


def test_a_newer_spec_supersedes_a_running_training(world: World) -> None:
    world.kube.put(iris())
    world.run()
    world.kube.start_job("iris-v1")
    world.run()
    world.kube.put(with_estimators(iris(), 5))
    world.run()

    old = world.version_status("iris-v1")
    assert (old["phase"], old["reason"]) == (contract.SUPERSEDED, "Superseded")
    assert world.kube.object("Job", "iris-v1") is None
    assert world.kube.names("Pod") == []  # the garbage collector took the Job's pod
    assert world.version("iris-v2")["spec"]["reason"] == contract.REASON_SPEC_CHANGE
    assert world.kube.object("Job", "iris-v2") is not None
    assert world.events.reasons() == ["TrainingSuperseded", "TrainingStarted"]
    assert world.status()["latestVersion"] == "iris-v2"
    assert world.status()["observedGeneration"] == 2


def test_a_retrain_request_trains_one_manual_version(world: World) -> None:
    world.serve_v1()
    body = iris()
    body["metadata"]["annotations"] = {contract.ANNOTATION_RETRAIN: "2024-05-01T10:00:00Z"}
    world.kube.put(body)
    world.run()

    assert world.version("iris-v2")["spec"]["reason"] == contract.REASON_MANUAL
    assert world.status()["retrainToken"] == "2024-05-01T10:00:00Z"
    world.quiet()  # the request is handled: no second version
    assert world.kube.names("ModelVersion") == ["iris-v1", "iris-v2"]


def test_history_beyond_the_limit_is_deleted_but_never_stable() -> None:
    world = make_world(Settings(history_limit=2))
    world.serve_v1()
    for n, version in ((5, "iris-v2"), (6, "iris-v3")):
        world.kube.put(with_estimators(iris(), n))
        world.run()
        result = training_result(version, contract.REJECTED, **world.archive(version))
        world.kube.finish_job(version, result, True)
        world.run()

    assert world.kube.names("ModelVersion") == ["iris-v1", "iris-v3"]
    assert world.kube.object("Job", "iris-v2") is None  # collected with its version
    assert world.status()["stableVersion"] == "iris-v1"
    # A rejected version was archived too: a Job removes the archive from the store.
    (cleanup,) = [j for j in world.kube.names("Job") if "-cleanup-" in j]
    assert cleanup_targets(world, cleanup) == [world.archive("iris-v2")["artifact"]]


def cleanup_targets(world: World, job: str) -> list[str]:
    """What the archive-removing Job `job` removes, checked to be the store's command."""
    body = world.kube.object("Job", job)
    assert body is not None and "ownerReferences" not in body["metadata"]
    container = body["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "modelops_training.cleanup"]
    assert container["args"][:2] == ["--store", "file:///models"]
    return list(container["args"][2:])


def test_versions_wait_for_the_job_that_removes_their_archives() -> None:
    world = make_world(Settings(history_limit=1))
    world.serve_v1()
    world.kube.put(with_estimators(iris(), 5))
    world.run()
    world.kube.fail("POST", "Job", status=403, reason="Forbidden", times=None)
    result = training_result("iris-v2", contract.REJECTED, **world.archive("iris-v2"))
    world.kube.finish_job("iris-v2", result, True)
    world.run()
    assert world.kube.names("ModelVersion") == ["iris-v1", "iris-v2"]  # kept, not forgotten
    kind, message = world.events.of("ArchiveCleanupFailed")
    assert kind == "Warning" and message.startswith("iris-v2 kept beyond the history limit")

    world.kube.clear_failures()
    world.run()
    assert world.kube.names("ModelVersion") == ["iris-v1"]
    assert [j for j in world.kube.names("Job") if "-cleanup-" in j]


def test_a_deleted_model_is_forgotten(world: World) -> None:
    world.serve_v1()
    uid = world.model()["metadata"]["uid"]
    world.kube.remove("Model", MODEL)
    assert world.run() is None
    # One request: the Job that removes the Model's directory from the store.
    assert world.kube.calls() == [("POST", "/apis/batch/v1/namespaces/ml/jobs")]
    (cleanup,) = world.kube.names("Job")
    assert cleanup_targets(world, cleanup) == [f"file:///models/{NS}/{uid}"]
    world.quiet()
    assert world.monitor.watched[-1] == ((NS, MODEL), None)
    # The garbage collector removed what the Model owned.
    assert world.kube.names("ModelVersion") == world.kube.names("Deployment") == []


def test_nothing_of_a_deleted_models_children_is_kept(world: World) -> None:
    """A thousand Models come and go: what the operator remembers of their children (also of
    those it does not watch, like their Secrets) goes with them."""
    world.serve_v1()
    store = world.ctx.store
    assert store.get("Secret", NS, "iris-serving-credentials") is not None
    world.kube.remove("Model", MODEL)
    world.run()
    # Only the Job removing its archives, which goes from the store when it is collected, and
    # the namespace's NetworkPolicy, which outlives its Models.
    assert sorted(key[0] for key in store._objects) == ["Job", "NetworkPolicy"]


# --- canary ---------------------------------------------------------------------------------


def test_an_approved_new_version_starts_a_canary(world: World) -> None:
    world.canary_v2()

    canary = world.deployment(CANARY)
    assert canary is not None and canary["spec"]["replicas"] == 1
    assert canary["metadata"]["labels"][contract.LABEL_TRACK] == "canary"
    assert world.env(CANARY)["MODELOPS_VERSION"] == "iris-v2"
    assert world.env(STABLE)["MODELOPS_VERSION"] == "iris-v1"
    status = world.status()
    assert (status["phase"], status["stableVersion"]) == (contract.PHASE_CANARY, "iris-v1")
    assert {k: status["canary"][k] for k in ("version", "step", "weight", "failedChecks")} == {
        "version": "iris-v2",
        "step": 0,
        "weight": 33,  # one canary pod beside two stable ones
        "failedChecks": 0,
    }
    kind, message = world.events.of("CanaryStarted")
    assert (kind, message) == (
        "Normal",
        "canary iris-v2 at 33% of traffic; phase Serving -> Canary",
    )
    # Both tracks are watched at the canary's interval; drift judges data, not the canary.
    last = world.monitor.last_watch()
    assert last is not None and last.interval == 60.0
    tracks = {t.key.track: t for t in last.targets}
    assert (tracks["stable"].key.version, tracks["canary"].key.version) == ("iris-v1", "iris-v2")
    assert "drift" not in tracks["canary"].checks and "drift" in tracks["stable"].checks
    world.quiet()


def test_passing_analyses_advance_then_promote_the_canary(world: World) -> None:
    world.canary_v2()
    world.quiet()  # no analysis yet: the canary waits

    world.analyse_canary(PASSING)
    canary = world.status()["canary"]
    assert (canary["step"], canary["weight"], canary["replicas"]) == (1, 50, 2)
    assert canary["lastAnalysis"]["verdict"] == "pass"
    deployment = world.deployment(CANARY)
    assert deployment is not None and deployment["spec"]["replicas"] == 2
    assert world.events.of("CanaryAdvanced")[1] == "iris-v2 advanced to step 2/2 (50% of traffic)"

    world.analyse_canary(PASSING)
    status = world.status()
    assert (status["stableVersion"], status["latestVersion"]) == ("iris-v2", "iris-v2")
    assert "canary" not in status
    assert world.env(STABLE)["MODELOPS_VERSION"] == "iris-v2"
    assert world.env(STABLE)["MODELOPS_ARTIFACT"] == world.archive("iris-v2")["artifact"]
    assert world.events.of("Promoted")[1].startswith("iris-v2 passed all 2 steps")
    assert world.version_status("iris-v2")["phase"] == contract.SUCCEEDED
    assert world.version_status("iris-v1")["phase"] == contract.SUCCEEDED  # kept, not retired

    # The promoted version rolls out on the stable Deployment; the canary's pods serve it on
    # meanwhile, and go once the stable Deployment serves it with every replica.
    progressing = world.condition(contract.PROGRESSING)
    assert (progressing["status"], progressing["reason"]) == ("True", "RollingOut")
    world.run()
    assert world.deployment(CANARY) is not None
    world.kube.make_ready(STABLE)
    world.run()
    assert world.deployment(CANARY) is None
    assert world.status()["phase"] == contract.PHASE_SERVING
    world.quiet()


def test_failing_analyses_roll_the_canary_back(world: World) -> None:
    world.canary_v2()

    world.analyse_canary(FAILING)
    canary = world.status()["canary"]
    assert (canary["failedChecks"], canary["reason"]) == (1, "CheckFailed")
    assert canary["lastAnalysis"]["reasons"] == {"errorRate": "error rate 0.3 > 0.05"}
    assert world.deployment(CANARY) is not None

    world.analyse_canary(FAILING)
    version = world.version_status("iris-v2")
    assert (version["phase"], version["reason"]) == (contract.ROLLED_BACK, "CanaryFailed")
    assert version["message"] == "iris-v2 failed 2 analyses (threshold 2): errorRate"
    assert world.deployment(CANARY) is None
    status = world.status()
    assert (status["phase"], status["stableVersion"]) == (contract.PHASE_ROLLING_BACK, "iris-v1")
    assert "canary" not in status
    # The rollback itself first; then the phase, and each condition that turned (both blame
    # the rollback).
    assert world.events.posted[0] == (
        "iris",
        "Warning",
        "RolledBack",
        "iris-v2 failed 2 analyses (threshold 2): errorRate",
    )
    assert [(k, r) for _, k, r, _ in world.events.posted[1:]] == [
        ("Normal", "PhaseRollingBack"),
        ("Warning", "RolledBack"),  # Trained=False
        ("Warning", "RolledBack"),  # Degraded=True
    ]
    assert world.env(STABLE)["MODELOPS_VERSION"] == "iris-v1"

    # Afterwards: stable serves, degraded by the rolled-back version, which never comes back.
    world.run()
    status = world.status()
    assert status["phase"] == contract.PHASE_DEGRADED
    assert world.condition(contract.DEGRADED)["reason"] == "RolledBack"
    assert world.deployment(CANARY) is None
    world.quiet()


def test_the_rollback_pass_names_the_rollback_reason_in_the_status(world: World) -> None:
    world.canary_v2()
    world.analyse_canary(FAILING)
    world.analyse_canary(FAILING)
    assert world.version_status("iris-v2")["reason"] == "CanaryFailed"
    trained = world.condition(contract.TRAINED)
    assert "CanaryFailed" in trained["message"], trained["message"]


def test_an_unreachable_prometheus_neither_promotes_nor_rolls_back(world: World) -> None:
    world.canary_v2()
    for _ in range(3):
        world.analyse_canary(UNREACHABLE)
        canary = world.status()["canary"]
        assert (canary["version"], canary["step"], canary["failedChecks"]) == ("iris-v2", 0, 0)
        assert canary["reason"] == "AnalysisInconclusive"
        assert canary["lastAnalysis"]["verdict"] == "inconclusive"
        assert world.deployment(CANARY) is not None
        assert world.status()["stableVersion"] == "iris-v1"
        assert world.version_status("iris-v2")["phase"] == contract.SUCCEEDED
        assert not {"Promoted", "RolledBack", "CanaryAdvanced"} & set(world.events.reasons())
    assert "Prometheus unavailable" in world.status()["canary"]["message"]


def test_a_canarys_last_analysis_keeps_nothing_of_the_one_before(world: World) -> None:
    """Each analysis replaces the last one's reasons and values (a merge patch merges maps: the
    ones gone are written as null), and the status then holds still."""
    world.canary_v2()
    world.analyse_canary(FAILING)
    assert world.status()["canary"]["lastAnalysis"]["values"]["errorRate"] == 0.3
    too_few = "12 /predict requests in the last 60s < minSamples 20"
    world.analyse_canary(
        [
            check("errorRate", Outcome.PASS, 0.01),
            check("latencyP95Seconds", Outcome.INCONCLUSIVE, None, too_few),
            check("accuracy", Outcome.PASS, 0.95),
        ]
    )
    last = world.status()["canary"]["lastAnalysis"]
    assert last["reasons"] == {"latencyP95Seconds": too_few}
    assert last["values"] == {"errorRate": 0.01, "accuracy": 0.95}
    world.quiet()  # until the next analysis, the inconclusive one still says why
    canary = world.status()["canary"]
    assert (canary["reason"], canary["message"]) == (
        "AnalysisInconclusive",
        f"latencyP95Seconds: {too_few}",
    )


def test_a_prometheus_outage_past_the_deadline_rolls_nothing_back(world: World) -> None:
    world.canary_v2()
    world.age_canary(16 * 60.0)  # Prometheus was down for longer than the 15m deadline
    world.monitor.publish(
        {"stable": "iris-v1", "canary": "iris-v2"}, stable=UNREACHABLE, canary=UNREACHABLE
    )
    world.run()
    canary = world.status()["canary"]
    assert (canary["version"], canary["reason"]) == ("iris-v2", "AnalysisInconclusive")
    assert world.deployment(CANARY) is not None


@pytest.mark.parametrize(
    ("on_deadline", "phase", "canary_left"),
    [("rollback", contract.ROLLED_BACK, False), ("hold", contract.SUCCEEDED, True)],
)
def test_a_canary_without_conclusion_does_what_on_deadline_says(
    world: World, on_deadline: str, phase: str, canary_left: bool
) -> None:
    body = iris()
    body["spec"]["serving"]["canary"]["onDeadline"] = on_deadline
    world.serve_v1(body)
    world.kube.put(with_estimators(body, 5))
    world.run()
    world.train("iris-v2")
    world.run()

    world.age_canary(16 * 60.0)  # past the 15m progress deadline with nothing conclusive
    world.monitor.publish(
        {"stable": "iris-v1", "canary": "iris-v2"}, stable=PASSING, canary=FEW_SAMPLES
    )
    world.run()

    assert world.version_status("iris-v2")["phase"] == phase
    assert (world.deployment(CANARY) is not None) is canary_left
    assert world.status()["stableVersion"] == "iris-v1"
    if canary_left:
        canary = world.status()["canary"]
        assert canary["reason"] == "ProgressDeadlineExceeded"
        assert canary["message"].startswith("holding: no progress for")
    else:
        assert world.version_status("iris-v2")["reason"] == "ProgressDeadlineExceeded"


def test_a_promote_command_promotes_the_canary_by_hand(world: World) -> None:
    world.canary_v2()
    body = with_estimators(iris(), 5)
    body["metadata"]["annotations"] = {contract.ANNOTATION_CANARY: "promote/1"}
    world.kube.put(body)
    world.run()

    assert world.status()["stableVersion"] == "iris-v2"
    assert world.status()["canaryCommand"] == "promote/1"
    assert world.events.of("Promoted")[1].startswith("iris-v2 promoted")
    assert world.deployment(CANARY) is not None  # until the stable Deployment serves iris-v2
    world.kube.make_ready(STABLE)
    world.run()
    assert world.deployment(CANARY) is None


def test_an_operator_restart_resumes_the_canary_from_the_status(world: World) -> None:
    world.canary_v2()
    before = world.status()["canary"]

    restarted = make_world(kube=world.kube.reconnect())
    seed(restarted.kube, restarted.ctx.store, ())  # one list per watched kind fills the new store
    restarted.run()
    # The same canary, not a new one; the children are applied again (unchanged) once.
    assert restarted.status()["canary"]["startedAt"] == before["startedAt"]
    assert {m for m, _ in restarted.kube.writes()} == {"PATCH"}
    assert not any(p.endswith("/status") for _, p in restarted.kube.writes())
    assert restarted.kube.names("ModelVersion") == ["iris-v1", "iris-v2"]
    restarted.quiet()


# --- monitoring and retraining -----------------------------------------------------------------


def drift(outcome: Outcome, psi: float) -> list[CheckResult]:
    return [check("drift", outcome, psi, f"PSI {psi}"), *PASSING]


@pytest.mark.parametrize("consecutive", [None, 3], ids=["default-2", "3"])
def test_drift_for_consecutive_analyses_retrains_with_reason_drift(
    world: World, consecutive: int | None
) -> None:
    body = iris()
    if consecutive is not None:
        body["spec"]["monitoring"]["consecutive"] = consecutive
    world.serve_v1(body)

    world.monitor.publish({"stable": "iris-v1"}, stable=drift(Outcome.FAIL, 0.5))
    world.run()
    monitoring = world.status()["monitoring"]
    assert monitoring["breaches"] == {"drift": 1, "accuracy": 0}
    assert monitoring["version"] == "iris-v1"
    assert monitoring["summary"]["failed"] == ["drift"]
    assert world.status()["drift"] == 0.5
    drifted = world.condition(contract.DRIFTED)
    assert (drifted["status"], drifted["reason"]) == ("True", "DriftDetected")
    assert world.events.of("DriftDetected")[0] == "Warning"
    world.quiet()  # the same analysis again is not a second breach
    assert world.status()["monitoring"]["breaches"]["drift"] == 1

    for breaches in range(2, consecutive or 2):
        world.monitor.publish({"stable": "iris-v1"}, stable=drift(Outcome.FAIL, 0.5))
        world.run()
        assert world.status()["monitoring"]["breaches"]["drift"] == breaches
    assert world.kube.names("ModelVersion") == ["iris-v1"]

    world.monitor.publish({"stable": "iris-v1"}, stable=drift(Outcome.FAIL, 0.5))
    world.run()
    assert world.version("iris-v2")["spec"]["reason"] == contract.REASON_DRIFT
    assert world.kube.object("Job", "iris-v2") is not None
    monitoring = world.status()["monitoring"]
    assert monitoring["lastRetrain"]["reason"] == contract.REASON_DRIFT
    assert monitoring["lastRetrain"]["version"] == "iris-v2"
    assert world.events.of("TrainingStarted")[1].startswith("iris-v2 created (drift)")
    # Cooling down: more drift on the stable version trains nothing more.
    world.kube.finish_job("iris-v2", training_result("iris-v2", contract.REJECTED), True)
    world.run()
    for _ in range(3):
        world.monitor.publish({"stable": "iris-v1"}, stable=drift(Outcome.FAIL, 0.5))
        world.run()
    assert world.kube.names("ModelVersion") == ["iris-v1", "iris-v2"]


def test_a_drift_retrain_resets_the_breach_counts(world: World) -> None:
    world.serve_v1()
    for _ in range(2):
        world.monitor.publish({"stable": "iris-v1"}, stable=drift(Outcome.FAIL, 0.5))
        world.run()
    assert world.version("iris-v2")["spec"]["reason"] == contract.REASON_DRIFT
    breaches = world.status()["monitoring"].get("breaches") or {}
    assert breaches.get("drift", 0) == 0, breaches


def test_an_inconclusive_drift_analysis_counts_no_breach(world: World) -> None:
    world.serve_v1()
    unreachable = [check("drift", Outcome.INCONCLUSIVE, None, "Prometheus unavailable")]
    for _ in range(3):
        world.monitor.publish({"stable": "iris-v1"}, stable=unreachable)
        world.run()
    assert world.status()["monitoring"]["breaches"] == {"drift": 0, "accuracy": 0}
    assert world.kube.names("ModelVersion") == ["iris-v1"]
    assert world.condition(contract.DRIFTED)["status"] == "Unknown"


def test_drift_retrains_nothing_when_retrain_on_does_not_name_it(world: World) -> None:
    body = iris()
    body["spec"]["monitoring"]["retrainOn"] = ["accuracy"]
    world.serve_v1(body)
    for _ in range(3):
        world.monitor.publish({"stable": "iris-v1"}, stable=drift(Outcome.FAIL, 0.5))
        world.run()
    assert world.kube.names("ModelVersion") == ["iris-v1"]
    assert world.condition(contract.DRIFTED)["status"] == "True"


# --- API errors --------------------------------------------------------------------------------


def test_a_refused_serving_write_is_in_the_status_and_the_pass_raises(world: World) -> None:
    world.kube.put(iris(replicas=1))
    world.run()
    world.train("iris-v1")
    refusal = 'Deployment.apps "iris-stable" is invalid: spec.template: Invalid value'
    world.kube.fail("PATCH", "Deployment", status=422, message=refusal)

    with pytest.raises(Reported) as raised:
        world.run()
    cause = raised.value.__cause__
    assert isinstance(cause, ApiException) and cause.status == 422  # retried later

    assert world.version_status("iris-v1")["phase"] == contract.SUCCEEDED  # written before
    status = world.status()
    assert status["phase"] == contract.PHASE_DEGRADED
    degraded = world.condition(contract.DEGRADED)
    assert (degraded["status"], degraded["reason"]) == ("True", "WriteFailed")
    assert degraded["message"] == f"serving children not written: 422 {refusal}"
    assert world.events.of("WriteFailed")[0] == "Warning"
    assert world.deployment(STABLE) is None

    world.run()  # the retry: the refusal has gone
    assert world.deployment(STABLE) is not None
    assert world.condition(contract.DEGRADED)["status"] == "False"
    assert world.status()["phase"] == contract.PHASE_DEPLOYING
    world.kube.make_ready(STABLE)
    world.run()
    assert world.status()["phase"] == contract.PHASE_SERVING


def test_a_refused_training_job_is_in_the_status_and_serving_goes_on(world: World) -> None:
    """The API server refuses the Job (an invalid quantity, a quota, RBAC): the Model says so in a
    condition and an Event, instead of a log line and a retry nobody sees."""
    world.serve_v1()
    refusal = 'Job.batch "iris-v2" is invalid: spec.template.spec.containers[0].resources'
    world.kube.fail("POST", "Job", status=422, message=refusal, times=None)
    world.kube.put(with_estimators(iris(), 5))

    with pytest.raises(Reported):
        world.run()
    assert world.kube.names("ModelVersion") == ["iris-v1", "iris-v2"]
    degraded = world.condition(contract.DEGRADED)
    assert (degraded["status"], degraded["reason"]) == ("True", "WriteFailed")
    assert degraded["message"] == f"training write refused: 422 {refusal}"
    assert world.events.of("WriteFailed")[0] == "Warning"
    assert world.status()["stableVersion"] == "iris-v1"
    assert world.deployment(STABLE) is not None  # serving is not the training's hostage

    with pytest.raises(Reported):
        world.run()  # the retry fails the same way: nothing new to say
    assert world.events.posted == []

    world.kube.clear_failures()
    world.run()
    assert world.kube.object("Job", "iris-v2") is not None
    assert world.condition(contract.DEGRADED)["status"] == "False"


def test_a_pass_that_breaks_says_so_on_the_model(world: World) -> None:
    """Any error in a pass (here a canary status that someone else wrote as a string) ends in
    Ready=False, Degraded=True and a Warning Event naming it; the queue retries."""
    world.serve_v1()
    world.kube.set_status("Model", MODEL, {"canary": "x"})

    with pytest.raises(ValueError):
        world.run()
    degraded, ready = world.condition(contract.DEGRADED), world.condition(contract.READY)
    assert (degraded["status"], degraded["reason"]) == ("True", "ReconcileFailed")
    assert (ready["status"], ready["reason"]) == ("False", "ReconcileFailed")
    assert degraded["message"].startswith("ValueError: ")
    kind, message = world.events.of("ReconcileFailed")
    assert kind == "Warning" and "ValueError" in message
    with pytest.raises(ValueError):
        world.run()
    assert world.kube.writes() == [] and world.events.posted == []  # said once, not per retry


def test_a_malformed_version_status_breaks_no_pass(world: World) -> None:
    world.serve_v1()
    world.kube.set_status(
        "ModelVersion", "iris-v1", {"metrics": "x", "approved": "yes", "message": 3}
    )
    world.run()
    assert world.status()["stableVersion"] == "iris-v1"
    assert world.condition(contract.DEGRADED)["status"] == "False"


def test_status_is_written_under_the_operators_field_manager(world: World) -> None:
    world.kube.put(iris())
    world.run()
    patches = [r for r in world.kube.requests if r.path.endswith("/status")]
    assert patches and all(("fieldManager", "modelops") in r.query for r in patches)


def test_serving_pods_get_the_models_credentials_and_nothing_else(world: World) -> None:
    """One Secret per Model (the feedback token and the id signing key), owned by the Model,
    derived from the operator's key."""
    world.ctx.settings = replace(world.ctx.settings, credentials_key="operator-key")
    world.serve_v1()
    secret = world.kube.object("Secret", "iris-serving-credentials")
    assert secret is not None
    assert secret["metadata"]["ownerReferences"][0]["uid"] == world.model()["metadata"]["uid"]
    token = base64.b64decode(secret["data"]["token"]).decode()
    assert token == credentials.token("operator-key", NS, MODEL)
    assert token != credentials.token("operator-key", "other", MODEL)
    assert token != credentials.token("another-key", NS, MODEL)
    assert token != base64.b64decode(secret["data"]["signing-key"]).decode()
    pod = world.deployment(STABLE)["spec"]["template"]["spec"]  # type: ignore[index]
    assert {"name": "credentials", "secret": {"secretName": "iris-serving-credentials"}} in pod[
        "volumes"
    ]
    assert world.env(STABLE)["MODELOPS_CREDENTIALS"] == "/etc/modelops/credentials"


def test_serving_pods_take_traffic_on_their_port_only(world: World) -> None:
    world.serve_v1()
    assert world.kube.names("NetworkPolicy") == ["modelops-models"]  # the training wrote it
    policy = world.kube.object("NetworkPolicy", "modelops-models")
    assert policy is not None
    assert policy["spec"]["ingress"] == [{"ports": [{"protocol": "TCP", "port": 3000}]}]


def test_the_models_of_a_namespace_share_one_network_policy(world: World) -> None:
    world.serve_v1()
    other = iris()
    other["metadata"]["name"] = "wine"
    world.kube.put(other)
    world.kube.requests.clear()
    reconcile(world.ctx, NS, "wine")
    assert world.kube.object("Job", "wine-v1") is not None
    # the version, the Job, the Model's status: the policy is written already
    assert [m for m, _ in world.kube.writes()] == ["POST", "POST", "PATCH"]
    assert world.kube.names("NetworkPolicy") == ["modelops-models"]


def test_network_policies_can_be_left_to_the_platform() -> None:
    world = make_world(Settings(network_policies=False))
    world.serve_v1()
    assert world.kube.names("NetworkPolicy") == []


# --- trust: only what the operator made counts -------------------------------------------------


def forged_version(name: str, **spec: Any) -> Body:
    """A ModelVersion someone made by hand: the Model's labels and spec.model, but no owner."""
    return {
        "apiVersion": contract.API_VERSION,
        "kind": "ModelVersion",
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": {contract.LABEL_MODEL: MODEL, contract.LABEL_MANAGED_BY: contract.MANAGED_BY},
        },
        "spec": {"model": MODEL, "reason": "manual", "specHash": "sha256:x", **spec},
    }


def test_a_hand_made_version_is_neither_counted_nor_served(world: World) -> None:
    world.serve_v1()
    world.kube.put(forged_version("iris-v7"))
    world.kube.set_status(
        "ModelVersion",
        "iris-v7",
        {
            "phase": contract.SUCCEEDED,
            "approved": True,
            "artifact": "file:///models/iris/iris-v7.bentomodel",
            "metrics": {"accuracy": 0.99},
        },
    )
    world.kube.put(with_estimators(iris(), 5))
    world.run()

    assert "canary" not in world.status() or world.status()["canary"] is None
    assert world.status()["latestVersion"] == "iris-v2"  # v7 did not count: the next is v2
    assert world.env(STABLE)["MODELOPS_VERSION"] == "iris-v1"


def test_a_version_name_taken_by_someone_else_is_reported(world: World) -> None:
    world.kube.put(forged_version("iris-v1"))
    world.kube.put(iris())

    with pytest.raises(Reported):
        world.run()
    degraded = world.condition(contract.DEGRADED)
    assert degraded["status"] == "True"
    assert "ModelVersion iris-v1 exists and is not owned by Model iris" in degraded["message"]
    assert world.kube.object("Job", "iris-v1") is None


def test_a_result_is_read_only_from_the_jobs_own_pod(world: World) -> None:
    world.kube.put(iris())
    world.run()
    world.kube.finish_job("iris-v1", training_result("iris-v1", phase=contract.REJECTED))
    job = world.kube.object("Job", "iris-v1")
    assert job is not None
    forged = training_result("iris-v1", artifact="file:///models/iris/iris-v1.bentomodel")
    world.kube.put(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "iris-v1-forged",
                "namespace": NS,
                "labels": {"batch.kubernetes.io/job-name": "iris-v1"},
            },
            "spec": {"containers": [{"name": contract.TRAINING_CONTAINER}]},
        }
    )
    terminated = {"exitCode": 0, "message": json.dumps(forged)}
    world.kube.set_status(
        "Pod",
        "iris-v1-forged",
        {
            "containerStatuses": [
                {"name": contract.TRAINING_CONTAINER, "state": {"terminated": terminated}}
            ]
        },
    )
    world.run()
    assert world.version_status("iris-v1")["phase"] == contract.REJECTED
    assert world.kube.names("Deployment") == []


def test_an_archive_outside_the_store_is_never_served(world: World) -> None:
    world.kube.put(iris())
    world.run()
    world.train("iris-v1", artifact="file:///etc/passwd")
    world.run()
    version = world.version_status("iris-v1")
    assert (version["phase"], version["reason"]) == (contract.FAILED, "ArtifactOutsideStore")
    assert world.kube.names("Deployment") == []


def test_a_namespace_being_deleted_ends_the_pass_quietly(world: World) -> None:
    world.kube.put(iris())
    terminating = [{"reason": "NamespaceTerminating", "message": "namespace ml is terminating"}]
    world.kube.fail(
        "POST", "ModelVersion", status=403, reason="Forbidden", causes=terminating, times=None
    )
    assert world.run() is None  # nothing raised: nothing to retry

    world.kube.clear_failures()
    world.kube.fail("POST", "ModelVersion", status=403, reason="Forbidden")  # RBAC: a real error
    with pytest.raises(Reported):
        world.run()


def test_the_requests_of_a_pass_are_the_operators_own(world: World) -> None:
    """The fake's bookkeeping: helpers (other clients) make no request; the operator's do."""
    world.kube.put(iris())
    world.kube.requests.clear()
    world.run()
    world.kube.start_job("iris-v1")
    world.kube.finish_job("iris-v1", training_result("iris-v1", **world.archive("iris-v1")))
    assert len(world.kube.requests) == 4
    body = world.kube.requests[0].body
    assert json.loads(json.dumps(body))["kind"] == "ModelVersion"


def test_a_result_lost_with_its_pod_trains_again_once(world: World) -> None:
    """A pod evicted as it finished succeeds and is then deleted, with the termination message
    that was the result: the Job says Complete and no pod is left. The version trains again, as
    a new Job, once; a second loss is NoResult."""
    world.kube.put(iris())
    world.run()

    def lose_the_result() -> None:
        world.kube.finish_job("iris-v1", training_result("iris-v1", **world.archive("iris-v1")))
        for pod in world.kube.names("Pod"):
            world.kube.remove("Pod", pod)

    lose_the_result()
    world.run()
    status = world.version_status("iris-v1")
    assert (status["phase"], status["rerun"]) == (contract.TRAINING, True)
    assert "deleted after it finished" in status["message"]
    assert world.kube.object("Job", "iris-v1") is None  # deleted, to be made again
    world.run()
    assert world.kube.object("Job", "iris-v1") is not None  # the second run

    lose_the_result()
    world.run()
    status = world.version_status("iris-v1")
    assert (status["phase"], status["reason"]) == (contract.FAILED, "NoResult")
