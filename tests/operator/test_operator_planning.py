"""The operator's pure decisions: what to train, to serve, to keep, and what status to show."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from modelops_api import contract
from modelops_api.contract import spec_hash, training_hash
from modelops_api.spec import ServingSpec
from modelops_operator import children, status, training, versions
from modelops_operator.settings import Settings, SettingsError, from_environment, resolve
from modelops_operator.versions import VersionInfo

pytestmark = pytest.mark.unit

H1, H2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64


def v(n: int, phase: str, spec_hash: str = H1, **kw: Any) -> VersionInfo:
    artifact = f"file:///models/iris/iris-v{n}.bentomodel" if phase == contract.SUCCEEDED else ""
    return VersionInfo(
        name=f"iris-v{n}",
        index=n,
        spec_hash=spec_hash,
        reason="initial",
        phase=phase,
        artifact=kw.pop("artifact", artifact),
        **kw,
    )


# --- training plans ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("existing", "request_", "handled", "expected"),
    [
        ([], None, None, ("iris-v1", "initial", ())),
        ([v(1, contract.SUCCEEDED)], None, None, (None, None, ())),
        ([v(1, contract.SUCCEEDED)], "now", None, ("iris-v2", "manual", ())),
        ([v(1, contract.SUCCEEDED)], "now", "now", (None, None, ())),  # handled already
        ([v(1, contract.SUCCEEDED, H2)], None, None, ("iris-v2", "spec-change", ())),
        ([v(1, contract.TRAINING, H2)], None, None, ("iris-v2", "spec-change", ("iris-v1",))),
        ([v(1, contract.TRAINING)], "again", None, (None, None, ())),  # folded into the running one
        (
            [v(1, contract.FAILED)],
            None,
            None,
            (None, None, ()),
        ),  # a failure is not retried by itself
        (
            [v(1, contract.SUPERSEDED), v(2, contract.SUCCEEDED, H2)],
            None,
            None,
            ("iris-v3", "spec-change", ()),
        ),  # back to a spec whose only version was superseded
        (
            [v(3, contract.SUCCEEDED, H2), v(7, contract.REJECTED, H2)],
            None,
            None,
            ("iris-v8", "spec-change", ()),
        ),  # names continue after the highest index
    ],
)
def test_plan_training(
    existing: list[VersionInfo],
    request_: str | None,
    handled: str | None,
    expected: tuple[str | None, str | None, tuple[str, ...]],
) -> None:
    plan = versions.plan_training("iris", H1, existing, request_, handled)
    assert (plan.create, plan.reason, plan.supersede) == expected


def test_a_retrain_request_is_consumed_even_when_folded() -> None:
    plan = versions.plan_training("iris", H1, [v(1, contract.TRAINING)], "again", None)
    assert plan.create is None and plan.retrain_token == "again"


# --- stable choice and history ----------------------------------------------------------------


def test_stable_is_the_newest_deployable_version() -> None:
    found = [
        v(1, contract.SUCCEEDED),
        v(2, contract.REJECTED),
        v(3, contract.SUCCEEDED),
        v(4, contract.FAILED),
        v(5, contract.TRAINING),
    ]
    assert versions.choose_stable(found, "", None).version == found[2]
    assert versions.choose_stable([v(1, contract.FAILED)], "", None).version is None


def test_pin_selects_an_older_version_and_a_bad_pin_keeps_the_current() -> None:
    found = [v(1, contract.SUCCEEDED), v(2, contract.SUCCEEDED), v(3, contract.REJECTED)]
    assert versions.choose_stable(found, "iris-v1", "iris-v2").version == found[0]
    bad = versions.choose_stable(found, "iris-v3", "iris-v2")
    assert bad.version == found[1] and bad.problem == "iris-v3 is Rejected, not deployable"
    missing = versions.choose_stable(found, "iris-v9", None)
    assert missing.version is None and "does not exist" in missing.problem


def test_a_succeeded_version_without_an_archive_cannot_serve() -> None:
    assert versions.choose_stable([v(1, contract.SUCCEEDED, artifact="")], "", None).version is None


def test_history_deletes_the_oldest_finished_but_never_stable_or_running() -> None:
    found = [
        v(1, contract.SUCCEEDED),
        v(2, contract.FAILED),
        v(3, contract.SUCCEEDED),
        v(4, contract.REJECTED),
        v(5, contract.TRAINING),
    ]
    assert versions.plan_history(found, 3, ["iris-v1"]) == ["iris-v2", "iris-v3"]
    assert versions.plan_history(found, 10, []) == []
    assert versions.plan_history(found, 0, ["iris-v3"]) == ["iris-v1", "iris-v2", "iris-v4"]


# --- training results ---------------------------------------------------------------------------


def job(condition: str | None = None, **status: Any) -> dict[str, Any]:
    conditions = (
        [
            {
                "type": condition,
                "status": "True",
                "reason": "DeadlineExceeded",
                "message": "Job was active longer than specified deadline",
            }
        ]
        if condition
        else []
    )
    return {"status": {"conditions": conditions, **status}}


def pod(message: str | None) -> dict[str, Any]:
    state = {"terminated": {"exitCode": 0, "message": message}} if message is not None else {}
    return {"status": {"containerStatuses": [{"name": "train", "state": state}]}}


def test_outcome_reads_the_termination_message() -> None:
    result = {
        "phase": "Succeeded",
        "reason": "Trained",
        "artifact": "file:///m/a.bentomodel",
        "metrics": {"accuracy": 0.9},
        "tag": "iris:iris-v1",
        "junk": "ignored",
    }
    got = training.outcome(job("Complete"), pod(json.dumps(result)), "/m")
    assert got["phase"] == "Succeeded" and got["approved"] is True
    assert got["metrics"] == {"accuracy": 0.9} and "junk" not in got


def test_rejected_is_kept_but_not_approved() -> None:
    got = training.outcome(
        job("Complete"),
        pod(
            json.dumps(
                {
                    "phase": "Rejected",
                    "reason": "QualityGateMissed",
                    "message": "accuracy 0.4 < 0.9",
                    "artifact": "file:///m/a.bentomodel",
                }
            )
        ),
        "/m",
    )
    assert (got["phase"], got["approved"], got["reason"]) == (
        "Rejected",
        False,
        "QualityGateMissed",
    )


@pytest.mark.parametrize(
    ("the_job", "the_pod", "reason"),
    [
        (job("Failed"), None, "DeadlineExceeded"),
        (job("Failed"), pod("Traceback (most recent call last): boom"), "DeadlineExceeded"),
        (job("Complete"), pod("not json"), "NoResult"),
        (job("Complete"), pod(json.dumps({"phase": "Succeeded"})), "NoArtifact"),
        (job("Complete"), pod(json.dumps(["a list"])), "NoResult"),
        *(
            (job("Complete"), pod(json.dumps({"phase": "Succeeded", "artifact": a})), reason)
            for a, reason in [
                ("file:///etc/passwd", "ArtifactOutsideStore"),
                ("file:///m/../etc/a.bentomodel", "ArtifactOutsideStore"),
                ("file:///m", "ArtifactOutsideStore"),
                ("http://elsewhere/m/a.bentomodel", "ArtifactOutsideStore"),
                ("m/a.bentomodel", "ArtifactOutsideStore"),
                ("file:///m2/a.bentomodel", "ArtifactOutsideStore"),  # a sibling Model
            ]
        ),
    ],
)
def test_outcome_without_a_usable_result_is_a_failure(
    the_job: dict[str, Any], the_pod: dict[str, Any] | None, reason: str
) -> None:
    got = training.outcome(the_job, the_pod, "/m")
    assert (got["phase"], got["approved"], got["reason"]) == ("Failed", False, reason)


def test_a_training_killed_at_its_memory_limit_says_so() -> None:
    the_pod = {
        "spec": {"containers": [{"name": "train", "resources": {"limits": {"memory": "64Mi"}}}]},
        "status": {
            "containerStatuses": [
                {"name": "train", "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}
            ]
        },
    }
    got = training.outcome(job("Failed"), the_pod, "/m")
    assert (got["phase"], got["reason"]) == ("Failed", "OOMKilled")
    assert "64Mi" in got["message"] and "limits.memory" in got["message"]


# --- builders -------------------------------------------------------------------------------------


def test_a_training_job_runs_for_its_specs_deadline_else_the_operators() -> None:
    assert training.deadline_seconds({"deadline": "20m"}, Settings()) == 1200
    assert training.deadline_seconds({}, Settings(training_deadline_seconds=99)) == 99
    assert contract.training_hash({"x": 1, "deadline": "5m"}) == contract.training_hash({"x": 1})


MODEL: dict[str, Any] = {
    "apiVersion": "modelops.dev/v1alpha1",
    "kind": "Model",
    "metadata": {"name": "iris", "namespace": "ml", "uid": "u-1", "generation": 1},
    "spec": {
        "training": {
            "dataset": {"uri": "builtin:iris", "target": "species"},
            "estimator": {"class": "sklearn.svm.SVC"},
        },
        "serving": {"replicas": 3},
    },
}


def test_training_job_is_restricted_and_owned_by_its_version() -> None:
    version = training.build_model_version(MODEL, "iris-v1", "initial", H1)
    version["metadata"]["uid"] = "u-2"
    body = training.build_training_job(version, Settings(runtime_image="img:1"))
    assert body["metadata"]["ownerReferences"][0] == {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": "ModelVersion",
        "name": "iris-v1",
        "uid": "u-2",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    pod_spec = body["spec"]["template"]["spec"]
    container = pod_spec["containers"][0]
    assert container["image"] == "img:1"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod_spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert {m["mountPath"] for m in container["volumeMounts"]} == {
        "/etc/modelops",
        "/models",
        "/home/bentoml",
        "/tmp",
    }
    # Archives go to the Model's own directory: by namespace, then the Model's UID.
    args = container["args"]
    assert args[args.index("--artifacts") + 1] == "file:///models/ml/u-1"


def test_deployment_serves_the_version_on_its_track() -> None:
    stable = v(2, contract.SUCCEEDED)
    serving = ServingSpec.model_validate(MODEL["spec"]["serving"])
    body = children.build_deployment(MODEL, serving, stable, "canary", 1, Settings())
    assert body["metadata"]["name"] == "iris-canary"
    selector = body["spec"]["selector"]["matchLabels"]
    assert selector[contract.LABEL_TRACK] == "canary"
    # The Service selects the pods of both tracks.
    assert children.build_service(MODEL)["spec"]["selector"].items() <= selector.items()
    env = {e["name"]: e["value"] for e in body["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MODELOPS_ARTIFACT"] == stable.artifact and env["MODELOPS_TRACK"] == "canary"
    assert body["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scrape"] == "true"


@pytest.mark.parametrize("recording", [None, {"retention": "2h"}])
def test_a_recording_model_writes_to_the_store_and_is_told_the_retention(
    recording: dict[str, str] | None,
) -> None:
    serving = ServingSpec.model_validate({**MODEL["spec"]["serving"], "recording": recording})
    stable = v(2, contract.SUCCEEDED)
    body = children.build_deployment(MODEL, serving, stable, "stable", 1, Settings())
    pod = body["spec"]["template"]["spec"]
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "artifacts")
    claim = next(v for v in pod["volumes"] if v["name"] == "artifacts")["persistentVolumeClaim"]
    if recording is None:  # the claim read-only, nothing recorded
        assert contract.ENV_RECORDING_RETENTION not in env
        assert mount["readOnly"] is True and claim["readOnly"] is True
    else:
        assert env[contract.ENV_RECORDING_RETENTION] == "7200"
        assert "readOnly" not in mount and "readOnly" not in claim


@pytest.mark.parametrize(
    ("serving", "replicas", "hpa", "pdb"),
    [
        ({"replicas": 1}, 1, False, False),
        ({"replicas": 3}, 3, False, True),
        ({"replicas": 3, "autoscaling": {"minReplicas": 1, "maxReplicas": 4}}, None, True, False),
        ({"autoscaling": {"minReplicas": 2, "maxReplicas": 4}}, None, True, True),
    ],
)
def test_autoscaling_and_disruption_budget(
    serving: dict[str, Any], replicas: int | None, hpa: bool, pdb: bool
) -> None:
    spec = ServingSpec.model_validate(serving)
    assert children.stable_replicas(spec) == replicas
    assert (children.build_autoscaler(MODEL, spec) is not None) == hpa
    assert (children.build_disruption_budget(MODEL, spec) is not None) == pdb


# --- status ---------------------------------------------------------------------------------------


def conditions(s: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in s["conditions"]}


def test_serving_and_trained_is_ready() -> None:
    v1 = v(1, contract.SUCCEEDED, metrics={"accuracy": 0.97})
    o = status.Observed(
        generation=4,
        latest=v1,
        trained=v1,
        newest=v1,
        stable=v1,
        ready_replicas=2,
        desired_replicas=2,
        deployment_available=True,
    )
    s = status.model_status(o, {}, "T0")
    assert s["phase"] == "Serving" and s["observedGeneration"] == 4
    assert conditions(s)["Ready"] == ("True", "Serving")
    assert s["accuracy"] == 0.97 and s["stableVersion"] == "iris-v1"
    assert all(c["observedGeneration"] == 4 for c in s["conditions"])


@pytest.mark.parametrize(
    ("stalled", "progressing"),
    [(False, ("True", "RollingOut")), (True, ("False", "ProgressDeadlineExceeded"))],
)
def test_a_stable_rollout_past_its_deadline_stops_progressing(
    stalled: bool, progressing: tuple[str, str]
) -> None:
    v2 = v(2, contract.SUCCEEDED)
    o = status.Observed(
        generation=3,
        latest=v2,
        trained=v2,
        newest=v2,
        stable=v2,
        ready_replicas=2,
        desired_replicas=2,
        deployment_available=True,
        rolling_out=True,
        stalled=stalled,
    )
    assert conditions(status.model_status(o, {}, "T0"))["Progressing"] == progressing


def test_failed_retraining_degrades_but_keeps_serving() -> None:
    v1, v2 = (
        v(1, contract.SUCCEEDED),
        v(2, contract.FAILED, H1, message="no rows", status_reason="EmptyData"),
    )
    o = status.Observed(
        generation=2,
        latest=v2,
        trained=v1,
        newest=v2,
        stable=v1,
        ready_replicas=1,
        desired_replicas=1,
        deployment_available=True,
    )
    s = status.model_status(o, {}, "T0")
    assert s["phase"] == "Degraded"
    assert conditions(s)["Ready"] == ("False", "TrainingFailed")
    assert conditions(s)["Available"] == ("True", "Serving")
    assert "no rows" in next(c for c in s["conditions"] if c["type"] == "Ready")["message"]


def test_nothing_deployable_yet_is_training_or_failed() -> None:
    running = v(1, contract.TRAINING)
    o = status.Observed(generation=1, latest=running, trained=None, newest=running, stable=None)
    assert status.model_status(o, {}, "T0")["phase"] == "Training"
    rejected = v(1, contract.REJECTED)
    o = status.Observed(generation=1, latest=rejected, trained=None, newest=rejected, stable=None)
    s = status.model_status(o, {}, "T0")
    assert s["phase"] == "Failed" and conditions(s)["Ready"] == ("False", "QualityGateMissed")


def test_transition_time_moves_only_with_the_status() -> None:
    v1 = v(1, contract.SUCCEEDED)
    o = status.Observed(
        generation=1,
        latest=v1,
        trained=v1,
        newest=v1,
        stable=v1,
        ready_replicas=1,
        desired_replicas=1,
        deployment_available=True,
    )
    first = status.model_status(o, {}, "T0")
    again = status.model_status(o, first, "T1")
    assert {c["lastTransitionTime"] for c in again["conditions"]} == {"T0"}
    down = status.model_status(
        status.Observed(**{**o.__dict__, "deployment_available": False}), again, "T2"
    )
    times = {c["type"]: c["lastTransitionTime"] for c in down["conditions"]}
    assert times["Available"] == "T2" and times["Ready"] == "T2" and times["Trained"] == "T0"
    kinds = [(e[0], e[1]) for e in status.transitions(again, down)]
    assert ("Normal", "PhaseDeploying") in kinds
    assert ("Warning", "DeploymentUnavailable") in kinds


# --- specs and settings -----------------------------------------------------------------------


def test_spec_hash_ignores_key_order() -> None:
    assert spec_hash({"a": 1, "b": {"c": 2}}) == spec_hash({"b": {"c": 2}, "a": 1})
    assert spec_hash({"a": 1}) != spec_hash({"a": 2})


def test_schedule_and_resources_do_not_make_a_new_version() -> None:
    base = {"dataset": {"uri": "builtin:iris"}, "estimator": {"class": "sklearn.svm.SVC"}}
    timed = {**base, "schedule": "@daily", "resources": {"limits": {"cpu": "1"}}}
    assert training_hash(base) == training_hash(timed)
    assert training_hash(base) != training_hash({**base, "dataset": {"uri": "builtin:wine"}})


def test_settings_from_environment_and_command_line() -> None:
    env = {
        "MODELOPS_NAMESPACES": "ml, team-a",
        "MODELOPS_RUNTIME_IMAGE": "img:2",
        "MODELOPS_HISTORY_LIMIT": "4",
    }
    assert from_environment(env).namespaces == ("ml", "team-a")
    settings, _ = resolve(["--runtime-image", "img:3", "--namespace", "x"], env)
    assert (settings.runtime_image, settings.namespaces, settings.history_limit) == (
        "img:3",
        ("x",),
        4,
    )
    with pytest.raises(SettingsError, match="MODELOPS_HISTORY_LIMIT"):
        from_environment({"MODELOPS_HISTORY_LIMIT": "zero"})
    with pytest.raises(SettingsError, match="MODELOPS_SCRATCH_SIZE_LIMIT"):
        from_environment({"MODELOPS_SCRATCH_SIZE_LIMIT": "four gigs"})


def test_pods_get_the_operators_resources_unless_their_model_names_some() -> None:
    training_default = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "4Gi"}}
    serving_default = {"requests": {"memory": "256Mi"}, "limits": {"memory": "2Gi"}}
    settings = from_environment(
        {
            "MODELOPS_TRAINING_RESOURCES": json.dumps(training_default),
            "MODELOPS_SERVING_RESOURCES": json.dumps(serving_default),
        }
    )
    version = training.build_model_version(MODEL, "iris-v1", "initial", "sha256:x")
    version["metadata"]["uid"] = "u"

    def resources(serving: dict[str, Any], trained: dict[str, Any]) -> tuple[Any, Any]:
        spec = ServingSpec.model_validate({**MODEL["spec"]["serving"], **serving})
        deployment = children.build_deployment(
            MODEL, spec, v(2, contract.SUCCEEDED), "stable", 1, settings
        )
        version["spec"]["training"] = {**MODEL["spec"]["training"], **trained}
        job = training.build_training_job(version, settings)
        return tuple(  # type: ignore[return-value]
            body["spec"]["template"]["spec"]["containers"][0].get("resources")
            for body in (deployment, job)
        )

    assert resources({}, {}) == (serving_default, training_default)
    own = {"limits": {"memory": "64Mi"}}  # a Model's own replace the default whole
    assert resources({"resources": own}, {"resources": own}) == (own, own)
    assert resources({}, {}) != resources({}, {"resources": own})
    bare = from_environment({})
    assert (bare.training_resources, bare.serving_resources) == ({}, {})
    for bad, field in (
        ('{"requests": {"memory": "5Gi"}, "limits": {"memory": "4Gi"}}', "exceeds its limit 4Gi"),
        ('{"requests": {"cpu": "two"}}', "requests.cpu"),
        ("{requests", "MODELOPS_SERVING_RESOURCES: Expecting"),
        ('{"limit": {}}', "limit: Extra inputs"),
    ):
        with pytest.raises(SettingsError, match=field):
            from_environment({"MODELOPS_SERVING_RESOURCES": bad})


def test_every_scratch_volume_is_bounded() -> None:
    settings = from_environment({"MODELOPS_SCRATCH_SIZE_LIMIT": "512Mi"})
    serving = ServingSpec.model_validate(MODEL["spec"]["serving"])
    deployment = children.build_deployment(
        MODEL, serving, v(2, contract.SUCCEEDED), "stable", 1, settings
    )
    version = training.build_model_version(MODEL, "iris-v1", "initial", "sha256:x")
    version["metadata"]["uid"] = "u"
    job = training.build_training_job(version, settings)
    for pod in (deployment["spec"]["template"]["spec"], job["spec"]["template"]["spec"]):
        scratch = [v for v in pod["volumes"] if "emptyDir" in v]
        assert scratch and all(v["emptyDir"] == {"sizeLimit": "512Mi"} for v in scratch)


def test_a_new_models_first_status_posts_nothing() -> None:
    t = v(1, contract.TRAINING)
    o = status.Observed(generation=1, latest=t, trained=None, newest=t, stable=None)
    first = status.model_status(o, {}, "T0")
    assert status.transitions({}, first) == []
    failed = status.model_status(replace(o, spec_error="spec.training: bad"), {}, "T0")
    assert [e[1] for e in status.transitions({}, failed)] == ["PhaseFailed", "InvalidSpec"]


def test_a_first_rollout_posts_phases_and_the_verdict_only() -> None:
    v1 = v(1, contract.SUCCEEDED)
    o = status.Observed(generation=1, latest=v1, trained=v1, newest=v1, stable=v1)
    deploying = status.model_status(o, {}, "T0")
    serving = status.model_status(
        status.Observed(
            **{
                **o.__dict__,
                "ready_replicas": 1,
                "desired_replicas": 1,
                "deployment_available": True,
            }
        ),
        deploying,
        "T1",
    )
    first = [(e[0], e[1]) for e in status.transitions({}, deploying)]
    assert first == [("Normal", "PhaseDeploying"), ("Normal", "Succeeded")]
    assert [(e[0], e[1]) for e in status.transitions(deploying, serving)] == [
        ("Normal", "PhaseServing")
    ]


def test_a_phase_change_rides_on_the_passes_first_normal_event() -> None:
    started = ("Normal", "TrainingStarted", "iris-v1 created (initial)")
    phase = ("Normal", "PhaseTraining", "phase none -> Training")
    warning = ("Warning", "InvalidSchedule", "bad cron")
    assert status.fold_phase([phase, warning, started]) == [
        warning,
        ("Normal", "TrainingStarted", "iris-v1 created (initial); phase none -> Training"),
    ]
    assert status.fold_phase([phase, warning]) == [phase, warning]  # a Warning carries nothing
    assert status.fold_phase([started]) == [started]


def test_a_refused_write_degrades_the_model() -> None:
    v1 = v(1, contract.SUCCEEDED)
    o = status.Observed(
        generation=1, latest=v1, trained=v1, newest=v1, stable=v1, write_error="403 quota"
    )
    out = status.model_status(o, {}, "T0")
    degraded = {c["type"]: c for c in out["conditions"]}["Degraded"]
    assert (degraded["status"], degraded["reason"], degraded["message"]) == (
        "True",
        "WriteFailed",
        "403 quota",
    )
    assert out["phase"] == "Degraded"


def test_the_result_is_read_from_the_pod_that_succeeded() -> None:
    """An evicted first pod and its replacement, created in the same second: the replacement's
    message is the result, whichever the API server lists first."""
    evicted = {"metadata": {"name": "a-2", "creationTimestamp": "2026-01-01T00:00:05Z"},
               "status": {"phase": "Failed", "reason": "Evicted"}}  # fmt: skip
    replaced = {"metadata": {"name": "a-1", "creationTimestamp": "2026-01-01T00:00:05Z"},
                "status": {"phase": "Succeeded"}}  # fmt: skip
    assert training.result_pod([evicted, replaced]) is replaced
    assert training.result_pod([replaced, evicted]) is replaced
    older = {"metadata": {"creationTimestamp": "2026-01-01T00:00:01Z"}, "status": {}}
    assert training.result_pod([evicted, older]) is evicted  # no success: the newest
    assert training.result_pod([]) is None


# --- an s3:// artifact store ----------------------------------------------------------------------

S3 = {
    "MODELOPS_ARTIFACTS_URI": "s3://ml-artifacts/models/",
    "MODELOPS_ARTIFACTS_SECRET": "s3-creds",
}


def test_the_store_root_is_a_file_or_s3_uri_and_a_bad_one_is_refused() -> None:
    from modelops_operator import archives

    default = from_environment({})
    assert (default.artifacts_uri, default.artifacts_path) == ("file:///models", "/models")
    assert training.model_store(default, "ml", "u-1") == "file:///models/ml/u-1"
    moved = from_environment({"MODELOPS_ARTIFACTS_URI": "file:///data/store/"})
    assert moved.artifacts_path == "/data/store"
    assert training.model_store(moved, "ml", "u-1") == "file:///data/store/ml/u-1"
    s3 = from_environment(S3)
    assert (s3.artifacts_uri, s3.artifacts_secret) == ("s3://ml-artifacts/models", "s3-creds")
    assert training.model_store(s3, "ml", "u-1") == "s3://ml-artifacts/models/ml/u-1"
    assert archives.of_deleted_model(s3, "ml", "u-1") == ["s3://ml-artifacts/models/ml/u-1"]
    bucket_only = from_environment({"MODELOPS_ARTIFACTS_URI": "s3://ml-artifacts"})
    assert training.model_store(bucket_only, "ml", "u") == "s3://ml-artifacts/ml/u"
    for bad in (
        "gs://bucket/x",
        "s3://Bad_Bucket/x",
        "s3://b/x",
        "s3://bucket/a//b",
        "s3://bucket/a/../b",
        "s3://bucket/x?region=eu",
        "file://host/models",
        "file:///",
        "models",
    ):
        with pytest.raises(SettingsError, match="MODELOPS_ARTIFACTS_URI"):
            from_environment({"MODELOPS_ARTIFACTS_URI": bad})


@pytest.mark.parametrize(
    ("artifact", "inside"),
    [
        ("s3://ml-artifacts/models/ml/u-1/iris/iris-v1.bentomodel", True),
        ("s3://ml-artifacts/models/ml/u-1", False),  # the Model's directory itself
        ("s3://ml-artifacts/models/ml/u-10/iris/iris-v1.bentomodel", False),
        ("s3://other-bucket/models/ml/u-1/iris/iris-v1.bentomodel", False),
        ("s3://ml-artifacts/models/ml/u-1/../u-2/x.bentomodel", False),
        ("s3://ml-artifacts/models/ml/u-1//x.bentomodel", False),
        ("s3://ml-artifacts/models/ml/u-1/x.bentomodel?versionId=2", False),
        ("file:///models/ml/u-1/iris/iris-v1.bentomodel", False),
        ("", False),
        (None, False),
    ],
)
def test_an_archive_is_in_an_s3_store_only_under_its_models_prefix(
    artifact: Any, inside: bool
) -> None:
    store = training.model_store(from_environment(S3), "ml", "u-1")
    assert training.in_store(artifact, store) is inside
    # a file:// store keeps its rules, given as a URI or, as before, as a path
    assert training.in_store("file:///m/a.bentomodel", "file:///m")
    assert training.in_store("file:///m/a.bentomodel", "/m")
    assert not training.in_store("s3://m/a.bentomodel", "/m")


def test_an_s3_store_mounts_no_volume_and_gives_the_secret_to_training_serving_and_cleanup() -> (
    None
):
    from modelops_operator import archives

    settings = from_environment(S3)
    version = training.build_model_version(MODEL, "iris-v1", "initial", H1)
    version["metadata"]["uid"] = "u-2"
    job = training.build_training_job(version, settings)
    artifact = "s3://ml-artifacts/models/ml/u-1/iris/iris-v2.bentomodel"
    serving = ServingSpec.model_validate(MODEL["spec"]["serving"])
    deployment = children.build_deployment(
        MODEL, serving, v(2, contract.SUCCEEDED, artifact=artifact), "stable", 1, settings
    )
    cleanup = archives.cleanup_job(settings, "ml", "iris", [artifact])
    for body in (job, deployment, cleanup):
        pod = body["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert container["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]
        assert "artifacts" not in {v["name"] for v in pod["volumes"]}
        assert "artifacts" not in {m["name"] for m in container.get("volumeMounts", [])}
        assert not any("persistentVolumeClaim" in v for v in pod["volumes"])
        # the operator names the Secret; its values never appear in what it builds
        assert "AWS_SECRET_ACCESS_KEY" not in json.dumps(body)
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--artifacts") + 1] == "s3://ml-artifacts/models/ml/u-1"
    env = {
        e["name"]: e.get("value")
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["MODELOPS_ARTIFACT"] == artifact
    assert cleanup["spec"]["template"]["spec"]["containers"][0]["args"] == [
        "--store",
        "s3://ml-artifacts/models",
        artifact,
    ]
    pruned = [v(1, contract.SUCCEEDED, artifact=artifact), v(3, contract.SUCCEEDED)]
    assert archives.pruned(pruned, settings) == [artifact]


def test_a_file_store_keeps_its_claim_and_gets_no_secret() -> None:
    from modelops_operator import archives

    settings = from_environment({"MODELOPS_ARTIFACTS_SECRET": "unused-for-a-file-store"})
    version = training.build_model_version(MODEL, "iris-v1", "initial", H1)
    version["metadata"]["uid"] = "u-2"
    serving = ServingSpec.model_validate(MODEL["spec"]["serving"])
    bodies = (
        training.build_training_job(version, settings),
        children.build_deployment(MODEL, serving, v(2, contract.SUCCEEDED), "stable", 1, settings),
        archives.cleanup_job(settings, "ml", "iris", ["file:///models/ml/u-1"]),
    )
    for body in bodies:
        pod = body["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert "envFrom" not in container
        claims = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
        assert [c["persistentVolumeClaim"]["claimName"] for c in claims] == ["modelops-artifacts"]
        assert {"name": "artifacts", "mountPath": "/models"}.items() <= next(
            m for m in container["volumeMounts"] if m["name"] == "artifacts"
        ).items()
    assert bodies[2]["spec"]["template"]["spec"]["containers"][0]["args"][:2] == [
        "--store",
        "file:///models",
    ]


# --- which status waits for the next one -----------------------------------------------------


def _phase(phase: str, **fields: Any) -> dict[str, Any]:
    return {"phase": phase, "stableVersion": None, "observedGeneration": 1, **fields}


def test_a_first_rollouts_deploying_status_waits_for_the_rest_of_the_hold() -> None:
    before = _phase(contract.PHASE_TRAINING)
    after = _phase(contract.PHASE_DEPLOYING, stableVersion="iris-v1")
    assert status.hold(before, after, 0.0) == status.HOLD_DEPLOYING
    assert status.hold(before, after, 10.0) == status.HOLD_DEPLOYING - 10.0
    assert status.hold(before, after, status.HOLD_DEPLOYING + 1) == 0.0
    assert status.hold(before, after, None) == 0.0  # no finished training to count from


@pytest.mark.parametrize(
    ("before", "after"),
    [
        # Serving is what the hold waits for; a lost replica's Deploying is news at once
        (_phase(contract.PHASE_TRAINING), _phase(contract.PHASE_SERVING)),
        (_phase(contract.PHASE_SERVING), _phase(contract.PHASE_DEPLOYING)),
        (_phase(contract.PHASE_TRAINING), _phase(contract.PHASE_FAILED)),
        # a handled retrain request, the monitoring state, a new generation: written at once
        (_phase(contract.PHASE_TRAINING), _phase(contract.PHASE_DEPLOYING, retrainToken="1")),
        (_phase(contract.PHASE_TRAINING), _phase(contract.PHASE_DEPLOYING, monitoring={"a": 1})),
        (_phase(contract.PHASE_TRAINING), _phase(contract.PHASE_DEPLOYING, observedGeneration=2)),
    ],
)
def test_no_other_status_waits(before: dict[str, Any], after: dict[str, Any]) -> None:
    assert status.hold(before, after, 1.0) == 0.0
