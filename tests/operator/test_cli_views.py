"""The `modelops` command's pure parts, from example status bodies as the operator writes them:
the typed views, the tree, the tables, the verdicts and their exit statuses, the poll's timeout,
`-o json|yaml`; and what needs no cluster: usage errors, a missing or invalid kubeconfig, an API
server that does not answer, and `train`/`operator` handed on unchanged without the Kubernetes
client imported."""

from __future__ import annotations

import copy
import datetime
import json
import socket
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from modelops_operator import cli, cli_verdicts, cli_views, entry
from modelops_operator.cli_model import parse_model, timestamp
from modelops_operator.cli_verdicts import (
    EXIT_DEGRADED,
    EXIT_ERROR,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_PENDING,
    EXIT_USAGE,
    Verdict,
)

pytestmark = pytest.mark.unit

NOW = datetime.datetime(2025, 5, 1, 12, 0, 0, tzinfo=datetime.UTC)
T = NOW.timestamp()


def condition(type_: str, status: str, reason: str, message: str = "") -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2025-05-01T11:00:00Z",
        "observedGeneration": 2,
    }


def model_body() -> dict[str, Any]:
    """iris mid-canary: iris-v2 (a drift retrain) at step 1 of 2 with one failed analysis."""
    return {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": "Model",
        "metadata": {
            "name": "iris",
            "namespace": "ml",
            "generation": 2,
            "creationTimestamp": "2025-04-28T12:00:00Z",
        },
        "spec": {
            "serving": {"canary": {"steps": [10, 50], "threshold": 2}},
            "monitoring": {"checks": {"drift": {"psi": {"max": 0.2}}}},
        },
        "status": {
            "observedGeneration": 2,
            "phase": "Canary",
            "conditions": [
                condition("Ready", "True", "Serving", "iris-v1 serves with 2/2 replicas ready"),
                condition("Trained", "True", "Succeeded", "iris-v2 passed its quality gates"),
                condition("Available", "True", "Serving", "iris-v1 serves"),
                condition("Progressing", "True", "Canary", "canary iris-v2 at 33% (step 1)"),
                condition("Degraded", "False", "AsExpected", "nothing is degraded"),
                condition("Drifted", "True", "DriftDetected", "petal_length: PSI 0.31 > 0.2"),
            ],
            "stableVersion": "iris-v1",
            "latestVersion": "iris-v2",
            "accuracy": 0.953,
            "drift": 0.31,
            "canary": {
                "version": "iris-v2",
                "step": 0,
                "weight": 33,
                "replicas": 1,
                "failedChecks": 1,
                "startedAt": T - 300,
                "stepStartedAt": T - 300,
                "lastAnalysisAt": T - 60,
                "paused": False,
                "lastAnalysis": {
                    "verdict": "fail",
                    "at": T - 60,
                    "checks": {"errorRate": "pass", "latencyP95Seconds": "fail"},
                    "reasons": {"latencyP95Seconds": "p95 0.81s > 0.5s"},
                    "values": {"errorRate": 0.004, "latencyP95Seconds": 0.81},
                    "samples": {"errorRate": 75.0, "latencyP95Seconds": 75.0},
                },
                "reason": "CheckFailed",
                "message": "latencyP95Seconds failed (1/2)",
            },
            "monitoring": {
                "version": "iris-v1",
                "checks": [
                    {
                        "check": "errorRate",
                        "outcome": "pass",
                        "threshold": 0.05,
                        "reason": "",
                        "value": 0.01,
                        "samples": 240,
                    },
                    {
                        "check": "drift",
                        "outcome": "fail",
                        "threshold": 0.2,
                        "reason": "petal_length PSI 0.31 > 0.2",
                        "value": 0.31,
                        "samples": 500,
                    },
                    {
                        "check": "accuracy",
                        "outcome": "inconclusive",
                        "threshold": 0.85,
                        "reason": "12 feedback items < 50",
                        "samples": 12,
                    },
                ],
                "summary": {"drift": {"feature": "petal_length", "psi": 0.31}},
                "lastRetrain": {"reason": "drift", "at": T - 900, "version": "iris-v2"},
            },
        },
    }


def version_body(
    name: str, trigger: str, phase: str | None, created: str, **status: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {"name": name, "namespace": "ml", "creationTimestamp": created},
        "spec": {"model": name.rsplit("-v", 1)[0], "reason": trigger},
        "status": dict(status),
    }
    if phase:
        body["status"]["phase"] = phase
    return body


def versions() -> list[dict[str, Any]]:
    return [
        version_body(
            "iris-v2",
            "drift",
            "Succeeded",
            "2025-05-01T11:45:00Z",
            reason="Trained",
            metrics={"accuracy": 0.967, "f1_macro": 0.966},
            rows={"clean": 147},
        ),
        version_body(
            "iris-v1",
            "initial",
            "Succeeded",
            "2025-04-28T12:00:10Z",
            reason="Trained",
            metrics={"accuracy": 0.953, "f1_macro": 0.951},
            rows={"clean": 147},
        ),
        version_body("other-v1", "initial", "Succeeded", "2025-04-28T12:00:10Z"),  # not iris's
    ]


def view(body: dict[str, Any] | None = None, vs: list[dict[str, Any]] | None = None) -> Any:
    return parse_model(model_body() if body is None else body, versions() if vs is None else vs)


# --- the typed view ---------------------------------------------------------------------------


def test_the_view_reads_stable_canary_checks_drift_accuracy_and_versions() -> None:
    m = view()
    assert (m.namespace, m.name, m.phase, m.stable, m.latest) == (
        "ml",
        "iris",
        "Canary",
        "iris-v1",
        "iris-v2",
    )
    assert m.canary is not None
    assert (m.canary.version, m.canary.step, m.canary.steps, m.canary.weight) == (
        "iris-v2",
        0,
        2,
        33,
    )
    assert (m.canary.failed_checks, m.canary.threshold, m.canary.verdict) == (1, 2, "fail")
    assert [(c.name, c.outcome, c.reason) for c in m.canary.checks] == [
        ("errorRate", "pass", ""),
        ("latencyP95Seconds", "fail", "p95 0.81s > 0.5s"),
    ]
    assert [c.name for c in m.checks] == ["errorRate", "drift", "accuracy"]
    assert (m.drift, m.drift_limit, m.drift_feature) == (0.31, 0.2, "petal_length")
    assert m.accuracy == 0.953 and not m.accuracy_live  # accuracy inconclusive: holdout
    assert [v.name for v in m.versions] == ["iris-v1", "iris-v2"]  # oldest first, iris's only
    assert m.last_retrain is not None
    assert (m.last_retrain.reason, m.last_retrain.version) == ("drift", "iris-v2")
    assert m.last_retrain.at == NOW - datetime.timedelta(seconds=900)


def test_a_model_without_status_or_spec_parses_to_empty_fields() -> None:
    m = parse_model({"metadata": {"name": "new", "namespace": "ml", "generation": 1}})
    assert (m.phase, m.stable, m.canary, m.conditions, m.versions) == (None, None, None, (), ())
    assert m.observed_generation is None and m.last_retrain is None


def test_a_canary_takes_the_spec_defaults_for_steps_and_threshold() -> None:
    body = model_body()
    del body["spec"]["serving"]
    canary = view(body).canary
    assert canary is not None and (canary.steps, canary.threshold) == (2, 2)


def test_the_last_retrain_is_the_newer_of_the_record_and_a_manual_version() -> None:
    vs = [
        *versions(),
        version_body("iris-v3", "manual", "Training", "2025-05-01T11:59:00Z"),
    ]
    m = view(vs=vs)
    assert m.last_retrain is not None
    assert (m.last_retrain.reason, m.last_retrain.version) == ("manual", "iris-v3")


def test_versions_sort_by_number_not_by_name() -> None:
    vs = [
        version_body(f"iris-v{n}", "manual", "Succeeded", "2025-05-01T10:00:00Z") for n in (10, 9)
    ]
    assert [v.name for v in view(vs=vs).versions] == ["iris-v9", "iris-v10"]


def test_timestamps_read_rfc3339_and_epoch_seconds() -> None:
    assert timestamp("2025-05-01T12:00:00Z") == NOW
    assert timestamp(T) == NOW
    assert timestamp("yesterday") is None and timestamp(None) is None and timestamp(True) is None


# --- rendering --------------------------------------------------------------------------------


def test_the_tree_shows_what_a_person_asks_about_a_model() -> None:
    text = cli_views.plain(cli_views.model_tree(view(), NOW), width=160)
    lines = text.splitlines()
    assert lines[0].split() == ["iris", "ml", "Canary"]
    assert "✔ Ready" in text and "✖ Drifted (DriftDetected)" in text
    assert "Serving: iris-v1 serves with 2/2 replicas ready" in text
    stable = next(line for line in lines if "stable iris-v1" in line)
    assert "accuracy 0.953 (holdout)" in stable and "drift PSI 0.31 > 0.2 (petal_length)" in stable
    assert "✔ errorRate pass  0.01 (threshold 0.05)  240 samples" in text
    assert "? accuracy inconclusive" in text and "12 feedback items < 50" in text
    canary = next(line for line in lines if "canary iris-v2" in line)
    assert "step 1/2  weight 33%  1 replica  failed analyses 1/2" in canary
    assert "CheckFailed: latencyP95Seconds failed (1/2)" in canary
    assert "✖ last analysis fail 60s ago" in text
    assert "✔ errorRate pass  0.004  75 samples" in text  # the canary's, as the stable's
    assert "✖ latencyP95Seconds fail  0.81  75 samples: p95 0.81s > 0.5s" in text
    assert "last retrain drift  15m ago  -> iris-v2" in text
    v2 = next(line for line in lines if "iris-v2" in line and "Succeeded" in line)
    assert v2.split()[:5] == ["iris-v2", "Succeeded", "drift", "0.967", "0.966"]
    assert "canary" in v2
    assert "stable" in next(line for line in lines if "iris-v1" in line and "initial" in line)


def test_the_tree_of_a_model_the_operator_has_not_seen() -> None:
    body = {"metadata": {"name": "new", "namespace": "ml", "generation": 1}}
    text = cli_views.plain(cli_views.model_tree(parse_model(body), NOW))
    assert "no status yet" in text and "stable none" in text and "last retrain never" in text
    assert "canary" not in text


def test_a_paused_canary_and_a_live_accuracy_say_so() -> None:
    body = model_body()
    body["status"]["canary"]["paused"] = True
    body["status"]["monitoring"]["checks"][2].update(outcome="pass", value=0.91)
    text = cli_views.plain(cli_views.model_tree(view(body), NOW), width=160)
    assert "PAUSED" in text and "accuracy 0.953 (live)" in text


def test_the_table_of_models_has_one_row_each_and_namespaces_with_all() -> None:
    other = model_body()
    other["metadata"].update(name="wine", namespace="prod")
    other["status"].update(phase="Serving", canary=None, stableVersion="wine-v4")
    other["status"]["conditions"][0] = condition("Ready", "False", "Training", "wine-v5 trains")
    table = cli_views.models_table([view(), view(other, [])], NOW, namespaces=True)
    lines = cli_views.plain(table, width=160).splitlines()
    assert lines[0].split() == [
        "NAMESPACE",
        "NAME",
        "PHASE",
        "READY",
        "STABLE",
        "CANARY",
        "ACCURACY",
        "DRIFT",
        "LAST",
        "RETRAIN",
        "AGE",
    ]
    rows = [line.split() for line in lines[2:]]
    assert rows[0][:8] == ["ml", "iris", "Canary", "True", "iris-v1", "iris-v2", "33%", "0.953"]
    assert rows[0][-3:] == ["drift", "15m", "3d"]
    assert rows[1][:6] == ["prod", "wine", "Serving", "False", "(Training)", "wine-v4"]
    without = cli_views.plain(cli_views.models_table([view()], NOW)).splitlines()
    assert without[0].split()[0] == "NAME"


def test_the_history_is_an_experiment_table_newest_first() -> None:
    vs = [
        *versions(),
        version_body(
            "iris-v3",
            "manual",
            "Rejected",
            "2025-05-01T11:58:00Z",
            reason="QualityGateMissed",
            message="accuracy 0.81 < 0.9",
            metrics={"accuracy": 0.81, "f1_macro": 0.8},
        ),
        version_body("iris-v4", "schedule", None, "2025-05-01T11:59:30Z"),
    ]
    lines = cli_views.plain(cli_views.versions_table(view(vs=vs), NOW), width=160).splitlines()
    header = lines[0].split()
    assert header == [
        "VERSION",
        "PHASE",
        "TRIGGER",
        "ACCURACY",
        "F1_MACRO",
        "ROWS",
        "CREATED",
        "ROLE",
        "RESULT",
    ]
    rows = [line.split() for line in lines[2:]]
    assert [r[0] for r in rows] == ["iris-v4", "iris-v3", "iris-v2", "iris-v1"]
    assert rows[0][:4] == ["iris-v4", "Pending", "schedule", "-"]
    assert rows[1][:5] == ["iris-v3", "Rejected", "manual", "0.81", "0.8"]
    assert " ".join(rows[1][7:]) == "QualityGateMissed: accuracy 0.81 < 0.9"
    assert rows[2][-1] == "canary" and rows[3][-1] == "stable"
    assert rows[3][5:7] == ["147", "2d"]  # 2 days 23:59:50


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(5, "5s"), (119, "119s"), (600, "10m"), (3600 + 720, "1h12m"), (7200, "2h"), (86400, "24h")],
)
def test_ages_read_as_kubectl_shows_them(seconds: int, shown: str) -> None:
    assert cli_views.age(NOW - datetime.timedelta(seconds=seconds), NOW) == shown
    assert cli_views.age(NOW - datetime.timedelta(days=3), NOW) == "3d"
    assert cli_views.age(None, NOW) == "-"


def test_json_and_yaml_carry_the_same_view_with_camel_case_keys_and_rfc3339_times() -> None:
    data = cli_views.data(view())
    as_json = json.loads(cli_views.dump(data, "json"))
    assert as_json == yaml.safe_load(cli_views.dump(data, "yaml"))
    assert as_json["stable"] == "iris-v1" and as_json["observedGeneration"] == 2
    assert as_json["canary"]["failedChecks"] == 1
    assert as_json["lastRetrain"] == {
        "reason": "drift",
        "at": "2025-05-01T11:45:00Z",
        "version": "iris-v2",
    }
    assert [v["name"] for v in as_json["versions"]] == ["iris-v1", "iris-v2"]


# --- verdicts and exit statuses ---------------------------------------------------------------


def with_status(**changes: Any) -> Any:
    body = model_body()
    conditions = changes.pop("conditions", None)
    body["status"].update(changes)
    if conditions:
        by_type = {c["type"]: c for c in conditions}
        body["status"]["conditions"] = [
            by_type.get(c["type"], c) for c in body["status"]["conditions"]
        ]
    return view(body)


def test_a_ready_model_is_0() -> None:
    verdict = cli_verdicts.model_verdict(view())
    assert (verdict.state, verdict.code, verdict.reason) == ("Ready", EXIT_OK, "Serving")


def test_a_degraded_model_is_3_with_the_degraded_reason() -> None:
    why = "still serving iris-v1; iris-v2 rejected: accuracy 0.8 < 0.9"
    m = with_status(
        phase="Degraded",
        canary=None,
        conditions=[
            condition("Ready", "False", "QualityGateMissed", why),
            condition("Degraded", "True", "QualityGateMissed", why),
        ],
    )
    verdict = cli_verdicts.model_verdict(m)
    assert (verdict.state, verdict.code, verdict.reason) == (
        "Degraded",
        EXIT_DEGRADED,
        "QualityGateMissed",
    )
    assert verdict.message == why


def test_a_failed_model_is_4() -> None:
    m = with_status(
        phase="Failed",
        stableVersion=None,
        canary=None,
        conditions=[condition("Ready", "False", "TrainingFailed", "iris-v1 failed: MissingTarget")],
    )
    verdict = cli_verdicts.model_verdict(m)
    assert (verdict.state, verdict.code) == ("Failed", EXIT_FAILED)
    assert verdict.message == "iris-v1 failed: MissingTarget"


def test_a_training_model_is_not_yet_5() -> None:
    m = with_status(
        phase="Serving",
        conditions=[condition("Ready", "False", "Training", "iris-v3 is training (spec-change)")],
    )
    verdict = cli_verdicts.model_verdict(m)
    assert (verdict.state, verdict.code, verdict.reason) == ("Pending", EXIT_PENDING, "Training")
    assert not verdict.final


def test_a_status_older_than_the_spec_is_not_judged_even_when_it_says_ready() -> None:
    body = model_body()
    body["metadata"]["generation"] = 3
    verdict = cli_verdicts.model_verdict(view(body))
    assert (verdict.code, verdict.reason) == (EXIT_PENDING, "NotObserved")
    assert "generation 3" in verdict.message
    fresh = parse_model({"metadata": {"name": "x", "generation": 1}})
    assert cli_verdicts.model_verdict(fresh).code == EXIT_PENDING


def test_the_retrain_verdict_follows_the_version_the_request_started() -> None:
    before = frozenset({"iris-v1", "iris-v2"})
    body = model_body()
    body["status"]["retrainToken"] = "t1"
    training = [*versions(), version_body("iris-v3", "manual", "Training", "2025-05-01T11:59:00Z")]
    assert cli_verdicts.retrain_verdict(view(body, training), "t2", before).reason == "NotHandled"
    assert cli_verdicts.retrain_verdict(view(body, versions()), "t1", before).reason == "NoVersion"
    pending = cli_verdicts.retrain_verdict(view(body, training), "t1", before)
    assert (pending.code, pending.message) == (EXIT_PENDING, "iris-v3 is training")
    passed = copy.deepcopy(training)
    passed[-1]["status"].update(phase="Succeeded", reason="Trained")
    assert cli_verdicts.retrain_verdict(view(body, passed), "t1", before).code == EXIT_OK
    rejected = copy.deepcopy(training)
    rejected[-1]["status"].update(phase="Rejected", reason="QualityGateMissed", message="0.8<0.9")
    verdict = cli_verdicts.retrain_verdict(view(body, rejected), "t1", before)
    assert verdict.code == EXIT_DEGRADED
    assert verdict.message == "iris-v3 rejected (QualityGateMissed: 0.8<0.9)"


def test_a_retrain_folded_into_a_running_training_waits_for_that_one() -> None:
    running = [
        *versions()[1:],
        version_body("iris-v2", "spec-change", "Training", "2025-05-01T11:00:00Z"),
    ]
    body = model_body()
    body["status"]["retrainToken"] = "t1"
    verdict = cli_verdicts.retrain_verdict(view(body, running), "t1", frozenset({"iris-v1"}))
    assert verdict.message == "iris-v2 is training"


@pytest.mark.parametrize(
    ("verb", "after", "code"),
    [
        ("promote", {"canary": None, "stableVersion": "iris-v2"}, EXIT_OK),
        ("promote", {"canary": None}, EXIT_DEGRADED),  # rolled back meanwhile
        ("abort", {"canary": None}, EXIT_OK),
        ("abort", {}, EXIT_DEGRADED),
        ("pause", {"paused": True}, EXIT_OK),
        ("pause", {}, EXIT_DEGRADED),
        ("resume", {}, EXIT_OK),
        ("resume", {"canary": None}, EXIT_DEGRADED),
    ],
)
def test_the_canary_verdict_says_whether_the_command_had_its_effect(
    verb: str, after: dict[str, Any], code: int
) -> None:
    body = model_body()
    value = f"{verb}/tok"
    assert cli_verdicts.canary_verdict(view(body), verb, value, "iris-v2").reason == "NotHandled"
    body["status"]["canaryCommand"] = value
    if after.pop("paused", False):
        body["status"]["canary"]["paused"] = True
    body["status"].update(after)
    assert cli_verdicts.canary_verdict(view(body), verb, value, "iris-v2").code == code


def test_poll_returns_the_first_final_verdict() -> None:
    answers = iter([Verdict("Pending", "Training", "…", EXIT_PENDING), Verdict("Ready", "", "", 0)])
    slept: list[float] = []
    verdict = cli_verdicts.poll(lambda: next(answers), 60, 2, lambda: 0.0, slept.append)
    assert verdict.code == EXIT_OK and slept == [2]


def test_poll_times_out_with_the_last_reason_and_exit_5() -> None:
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    pending = Verdict("Pending", "Training", "iris-v3 is training", EXIT_PENDING)
    verdict = cli_verdicts.poll(lambda: pending, 5, 2, lambda: clock[0], sleep)
    assert (verdict.code, verdict.reason) == (EXIT_PENDING, "Training")
    assert verdict.message == "timed out after 5s: iris-v3 is training"
    assert clock[0] == 5  # slept 2, 2, then the 1 left


def test_exit_statuses_are_distinct() -> None:
    codes = [EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_DEGRADED, EXIT_FAILED, EXIT_PENDING]
    assert len(set(codes)) == len(codes)


# --- the command without a cluster ------------------------------------------------------------

runner = CliRunner()


def test_train_and_operator_are_handed_their_arguments_unchanged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[list[str]] = []
    fake = types.ModuleType("fake_runtime")
    fake.main = lambda argv: seen.append(argv) or 7  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_runtime", fake)
    monkeypatch.setitem(entry.PASS_THROUGH, "train", ("fake_runtime", "main"))
    monkeypatch.setitem(entry.PASS_THROUGH, "operator", ("fake_runtime", "main"))
    argv = ["--spec", "/s.json", "--model", "iris", "-n", "x", "--help"]
    assert entry.main(["train", *argv]) == 7
    assert entry.main(["operator", "--namespace", "ml", "-h"]) == 7
    # The typer commands (shown in --help) hand on alike.
    assert runner.invoke(cli.app, ["train", *argv]).exit_code == 7
    assert seen == [argv, ["--namespace", "ml", "-h"], argv]


def test_the_command_imports_no_kubernetes_client_until_a_verb_needs_it() -> None:
    code = (
        "import sys; from modelops_operator import cli; "
        "print(sorted(m for m in ('kubernetes', 'kopf', 'sklearn', 'rich', 'pydantic') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_train_imports_neither_the_user_cli_nor_the_kubernetes_client() -> None:
    """A training Job's `modelops train` goes to the training runtime without typer and rich."""
    code = (
        "import sys\nfrom modelops_operator import entry\n"
        "try:\n    entry.main(['train', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('typer', 'rich', 'kubernetes', 'kopf', 'modelops_operator.cli') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr


def test_help_lists_every_verb_and_version_prints_it() -> None:
    result = runner.invoke(cli.app, ["--help"])
    assert result.exit_code == 0
    for verb in ("get", "status", "history", "retrain", "promote", "abort", "pause", "resume"):
        assert verb in result.output
    assert "train" in result.output and "operator" in result.output
    version = runner.invoke(cli.app, ["--version"])
    assert version.exit_code == 0 and version.output.startswith("modelops ")


@pytest.mark.parametrize(
    "args",
    [
        ["get", "iris", "-A"],
        ["-A", "get", "iris"],
        ["get", "-w", "-o", "json"],
        ["status", "iris", "--timeout", "soon"],
        ["get", "-o", "xml"],
        ["status"],
    ],
)
def test_usage_errors_exit_2_before_any_call(args: list[str], tmp_path: Path) -> None:
    result = runner.invoke(cli.app, [*args, "--kubeconfig", str(tmp_path / "none")])
    assert result.exit_code == EXIT_USAGE, result.output


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelops_operator.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_missing_kubeconfig_is_one_clean_line(tmp_path: Path) -> None:
    result = run_cli("get", "--kubeconfig", str(tmp_path / "nope"))
    assert result.returncode == EXIT_ERROR
    assert (
        result.stderr.strip() == f"modelops: kubeconfig {tmp_path / 'nope'} does not exist: "
        "give one with --kubeconfig or $KUBECONFIG"
    )
    assert "Traceback" not in result.stderr and result.stdout == ""


@pytest.mark.parametrize(
    ("content", "said"),
    [
        ("a: [b", "invalid kubeconfig"),
        ("just a string", "invalid kubeconfig"),
        ("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n", "invalid"),
    ],
)
def test_an_invalid_kubeconfig_is_one_clean_line(tmp_path: Path, content: str, said: str) -> None:
    path = tmp_path / "config"
    path.write_text(content)
    result = runner.invoke(cli.app, ["status", "iris", "--kubeconfig", str(path)])
    assert result.exit_code == EXIT_ERROR, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert said in result.stderr and str(path) in result.stderr


def kubeconfig(path: Path, server: str, context: str = "here", namespace: str = "ml") -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [
                    {
                        "name": context,
                        "context": {"cluster": "c", "user": "u", "namespace": namespace},
                    }
                ],
                "current-context": context,
            }
        )
    )
    return path


def test_an_unknown_context_names_the_ones_there_are(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "config", "https://127.0.0.1:1")
    result = runner.invoke(cli.app, ["get", "--kubeconfig", str(path), "--context", "prod"])
    assert result.exit_code == EXIT_ERROR
    assert "has no context 'prod' (it has here)" in result.stderr


def test_an_unreachable_api_server_is_one_clean_line(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = kubeconfig(tmp_path / "config", f"http://127.0.0.1:{port}")
    result = run_cli("status", "iris", "--kubeconfig", str(path))
    assert result.returncode == EXIT_ERROR
    assert result.stderr.startswith(
        f"modelops: cannot reach the API server at http://127.0.0.1:{port}"
    )
    assert "Traceback" not in result.stderr
