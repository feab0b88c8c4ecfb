"""The files around the chart that no cluster runs here: CRD copies, Dockerfiles, the Argo CD check.

- The chart's CRDs are generated from crds/ (hack/sync-chart-crds.sh): byte-identical copies.
- The images cannot be built here: every path they copy must exist (and not be docker-ignored),
  and every command they or the operator's pods name must be one the image installs.
- The Argo CD health check runs in Lua 5.1 (Argo CD's gopher-lua is 5.1) through lupa.
- The chart's RBAC has a rule for every kind the operator's API layer calls.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelops_operator import training
from modelops_operator.runtime import kube
from modelops_operator.settings import Settings

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "modelops"
IMAGES = {name: REPO / "images" / f"{name}.Dockerfile" for name in ("operator", "runtime")}
HEALTH = REPO / "deploy" / "argocd" / "health-modelops-model.lua"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


# --- CRDs ------------------------------------------------------------------------------------


def test_chart_crds_are_byte_identical_copies_of_crds() -> None:
    source = {p.name: p.read_bytes() for p in (REPO / "crds").glob("*.yaml")}
    copies = {p.name: p.read_bytes() for p in (CHART / "crds").iterdir()}
    assert source, "crds/ is empty"
    assert copies.keys() == source.keys(), "run hack/sync-chart-crds.sh"
    for name, data in source.items():
        assert copies[name] == data, f"charts/modelops/crds/{name} differs: hack/sync-chart-crds.sh"


# --- Dockerfiles -----------------------------------------------------------------------------
# What the images contain and run is proven by running them on the sandbox's node
# (tests/sandbox/test_node.py, test_loop.py); here only the build policy a reader cannot run.


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_images_are_multi_stage_and_pin_their_base(image: str) -> None:
    instructions = _instructions(IMAGES[image])
    stages = [i for i, (word, _) in enumerate(instructions) if word == "FROM"]
    assert len(stages) >= 2
    args = dict(a.split("=", 1) for w, a in instructions if w == "ARG" and "=" in a)
    # Python as pyproject declares it (3.11), at an exact patch release on a named Debian.
    assert re.fullmatch(
        r"python:3\.11\.\d+-slim-(bookworm|trixie)(@sha256:[0-9a-f]{64})?", args["PYTHON_IMAGE"]
    )
    run_steps = " ".join(a for w, a in instructions[stages[-1] :] if w == "RUN")
    for tool in ("apt-get install", "gcc", "build-essential", "pip install"):
        assert tool not in run_steps, f"{image}: the run stage installs {tool}"


# --- the chart's defaults agree with the operator ---------------------------------------------


def _values() -> dict[str, Any]:
    return dict(yaml.safe_load((CHART / "values.yaml").read_text()))


def test_chart_defaults_match_the_operator_and_the_distribution() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    values, defaults = _values(), Settings()
    assert chart["appVersion"] == PYPROJECT["project"]["version"]
    runtime = values["runtime"]["image"]
    assert f"{runtime['repository']}:{runtime['tag'] or chart['appVersion']}" == (
        defaults.runtime_image
    )
    assert values["artifacts"]["claimName"] == defaults.artifacts_claim
    assert values["prometheus"]["url"] == defaults.prometheus_url
    assert values["operator"]["historyLimit"] == defaults.history_limit
    assert values["operator"]["resyncSeconds"] == defaults.resync_seconds
    assert values["operator"]["trainingDeadlineSeconds"] == defaults.training_deadline_seconds
    # The chart's pod is as restricted as the pods the operator creates.
    assert values["podSecurityContext"] == training.pod_security_context()
    assert values["securityContext"] == training.container_security_context()
    schema = yaml.safe_load((CHART / "values.schema.json").read_text())
    assert schema["properties"]["replicas"]["maximum"] == 1  # standalone: no peering
    assert set(values) <= set(schema["properties"])


def _define(name: str) -> list[dict[str, Any]]:
    text = (CHART / "templates" / "_helpers.tpl").read_text()
    body = text.split('{{- define "' + name + '" -}}', 1)[1].split("{{- end -}}", 1)[0]
    return list(yaml.safe_load(body))


def test_rbac_has_a_rule_for_every_kind_the_operator_calls() -> None:
    rules = _define("modelops.namespacedRules")
    granted = {(g, r): set(rule["verbs"]) for rule in rules
               for g in rule["apiGroups"] for r in rule["resources"]}
    for kind, (prefix, plural) in kube.PATHS.items():
        group = "" if prefix == "/api/v1" else prefix.split("/")[2]
        assert (group, plural) in granted, kind
    # Read-only where the operator only reads; never Secrets, never RBAC, never a wildcard.
    assert granted[("", "pods")] == {"list"}
    assert all("*" not in verbs for verbs in granted.values())
    assert not any(r in ("secrets", "roles", "rolebindings") for _, r in granted)
    discovery = _define("modelops.crdRules") + _define("modelops.namespaceRules")
    assert all(set(rule["verbs"]) <= {"list", "watch"} for rule in discovery)


# --- Argo CD health check ----------------------------------------------------------------------


def health(obj: dict[str, Any]) -> tuple[str, str]:
    from lupa import lua51  # a dev dependency: real Lua 5.1 in a wheel

    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    runtime.globals().obj = runtime.table_from(obj, recursive=True)
    result = runtime.execute(HEALTH.read_text())
    return str(result["status"]), str(result["message"])


def model(generation: int = 2, **status: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"metadata": {"name": "iris", "generation": generation}}
    if status:
        body["status"] = status
    return body


def cond(kind: str, status: str, reason: str, message: str = "") -> dict[str, str]:
    return {"type": kind, "status": status, "reason": reason, "message": message}


SERVING = [
    cond("Ready", "True", "Serving", "iris-v1 serves with 2/2 replicas ready"),
    cond("Trained", "True", "Succeeded", "iris-v1 passed its quality gates"),
    cond("Available", "True", "Serving", "iris-v1 serves with 2/2 replicas ready"),
    cond("Progressing", "False", "Idle", "nothing in progress"),
    cond("Degraded", "False", "AsExpected", "nothing is degraded"),
]


@pytest.mark.parametrize(
    ("obj", "expected", "says"),
    [
        (model(), "Progressing", "Waiting for the modelops operator"),
        (model(observedGeneration=1, phase="Serving", conditions=SERVING), "Progressing",
         "generation 2"),
        (model(observedGeneration=2, phase="Serving", conditions=SERVING), "Healthy",
         "Serving: iris-v1 serves with 2/2 replicas ready"),
        (
            model(observedGeneration=2, phase="Training", conditions=[
                cond("Ready", "False", "Training", "iris-v1 is training (initial)"),
                cond("Progressing", "True", "Training", "iris-v1 is training"),
                cond("Degraded", "False", "AsExpected", ""),
            ]),
            "Progressing",
            "Training: iris-v1 is training",
        ),
        (
            model(observedGeneration=2, phase="Degraded", conditions=[
                cond("Ready", "False", "QualityGateMissed", "still serving iris-v1"),
                cond("Progressing", "False", "Idle", ""),
                cond("Degraded", "True", "QualityGateMissed", "still serving iris-v1; iris-v2 …"),
            ]),
            "Degraded",
            "QualityGateMissed: still serving iris-v1",
        ),
        (
            model(observedGeneration=2, phase="Failed", conditions=[
                cond("Ready", "False", "TrainingFailed", "iris-v1 failed: MissingTarget"),
                cond("Progressing", "False", "Idle", ""),
                cond("Degraded", "False", "AsExpected", ""),
            ]),
            "Degraded",
            "TrainingFailed: iris-v1 failed",
        ),
        (
            model(observedGeneration=2, phase="Training", conditions=[
                cond("Ready", "False", "NoDeployableVersion", "spec.serving.version: no iris-v9"),
                cond("Progressing", "False", "Idle", ""),
                cond("Degraded", "False", "AsExpected", ""),
            ]),
            "Degraded",
            "NoDeployableVersion",
        ),
        (
            model(observedGeneration=2, phase="Deploying", conditions=[
                cond("Ready", "False", "DeploymentUnavailable", "iris-v1: 0/2 replicas ready"),
                cond("Progressing", "True", "RollingOut", "rolling out iris-v1"),
                cond("Degraded", "False", "AsExpected", ""),
            ]),
            "Progressing",
            "RollingOut: rolling out iris-v1",
        ),
        (model(observedGeneration=2), "Progressing", "Waiting for the Model to become Ready"),
    ],
)
def test_argocd_health_check(obj: dict[str, Any], expected: str, says: str) -> None:
    status, message = health(obj)
    assert status == expected
    assert says in message
