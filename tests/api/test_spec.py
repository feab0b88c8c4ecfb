"""The typed API is the single source: the CRDs and docs are what it generates, and it rejects
every invalid manifest the API server rejects, naming the same field."""

from __future__ import annotations

import copy
import datetime
from pathlib import Path
from typing import Any

import pytest
from croniter import croniter
from manifests import CASES, EXAMPLE, mutate

from modelops_api import __main__ as generate
from modelops_api.spec import (
    BUILTIN_DATASETS,
    ModelSpec,
    SpecError,
    TrainingSpec,
    parse,
    seconds,
)
from modelops_training.sources import BUILTIN

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
# Rules about the Model's metadata, which the typed spec does not see.
METADATA_RULES = {"name-too-long", "name-not-a-service-name", "pin-names-another-model"}


def test_committed_crds_and_docs_are_what_the_spec_generates() -> None:
    stale = [
        str(path.relative_to(REPO))
        for path, text in generate.generated(REPO).items()
        if not path.exists() or path.read_text() != text
    ]
    assert not stale, f"run `make api`: {stale} differ from api/modelops_api/spec.py"


def test_the_example_parses_with_the_crd_defaults() -> None:
    spec = parse(ModelSpec, copy.deepcopy(EXAMPLE["spec"]), "spec")
    assert spec.serving.canary.steps == (10, 50)
    assert spec.serving.canary.interval_seconds == 60.0
    assert spec.monitoring.cooldown_seconds == 3600.0
    assert spec.training.pipeline.cleaning.missing == "impute-median"


@pytest.mark.parametrize(
    ("case", "changes", "expected"),
    [c for c in CASES if c[0] not in METADATA_RULES],
    ids=[c[0] for c in CASES if c[0] not in METADATA_RULES],
)
def test_the_spec_rejects_what_the_api_server_rejects(
    case: str, changes: dict[str, Any], expected: str
) -> None:
    body = mutate(EXAMPLE, changes)
    with pytest.raises(SpecError) as error:
        parse(ModelSpec, body["spec"], "spec")
    field = expected.split(":")[0].split("[")[0]
    assert field in str(error.value), str(error.value)


def test_rules_beyond_the_crd_hold_for_a_hand_written_training_spec() -> None:
    training = copy.deepcopy(EXAMPLE["spec"]["training"])
    for changes, field in [
        ({"selection": {"method": "none", "k": 3}}, "pipeline.selection.k"),
        ({"selection": {"method": "kbest", "k": 2, "threshold": 0.1}}, "selection.threshold"),
    ]:
        bad = {**training, "pipeline": {**training.get("pipeline", {}), **changes}}
        with pytest.raises(SpecError, match=field.replace(".", r"\.")):
            parse(TrainingSpec, bad, "spec.training")
    bad = {**training, "dataset": {**training["dataset"], "params": {"maxBytes": 10}}}
    with pytest.raises(SpecError, match=r"dataset\.params: applies to http"):
        parse(TrainingSpec, bad, "spec.training")
    with pytest.raises(SpecError, match=r"validation\.randomState"):
        parse(TrainingSpec, {**training, "validation": {"randomState": True}}, "spec.training")


def test_the_builtin_datasets_are_those_training_loads() -> None:
    """The API names the builtin datasets (the CRD refuses others); training loads them."""
    assert {name: task for name, (_, _, task) in BUILTIN.items()} == BUILTIN_DATASETS


SCHEDULES = [
    "@daily",
    "0 3 * * *",
    "*/15 9-17 * * 1-5",
    "1/5 * * * *",
    "0 0 1 Jan-Mar *",
    "0 0 * * MON,wed,7",
    "59 23 31 12 0",
    "0,30 0-23/2 */7 * sun-sat",
]


@pytest.mark.parametrize("expression", SCHEDULES)
def test_a_schedule_the_spec_takes_is_one_the_operator_reads(expression: str) -> None:
    training = {**EXAMPLE["spec"]["training"], "schedule": expression}
    assert parse(TrainingSpec, training, "spec.training").schedule == expression
    croniter(expression, datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)).get_prev(float)


@pytest.mark.parametrize(
    "expression",
    ["every day", "60 * * * *", "0 24 * * *", "0 0 0 * *", "0 0 * 13 *", "0 0 * * 8",
     "*/0 * * * *", "* * * * * *", "@reboot", " 0 0 * * *", "0 0 * * *\n", "0 0 * * mond"],
)  # fmt: skip
def test_a_schedule_the_operator_cannot_read_is_refused(expression: str) -> None:
    training = {**EXAMPLE["spec"]["training"], "schedule": expression}
    with pytest.raises(SpecError, match=r"spec\.training\.schedule: must be a cron expression"):
        parse(TrainingSpec, training, "spec.training")


@pytest.mark.parametrize(
    ("text", "value"), [("90s", 90.0), ("1m30s", 90.0), ("2h", 7200.0), ("250ms", 0.25)]
)
def test_durations(text: str, value: float) -> None:
    assert seconds(text) == value


@pytest.mark.parametrize("text", ["", "5", "1d", "m5", "1m 30s", "5 minutes"])
def test_not_durations(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        seconds(text)


# A canary's checks judged against stable: (case, vsStable of errorRate, the field named)
VS_STABLE_CASES = [
    ("confidence-above-0.9999", {"confidence": 1}, "vsStable.confidence"),
    ("confidence-below-0.5", {"confidence": 0.3}, "vsStable.confidence"),
    ("min-samples-below-20", {"minSamples": 5}, "vsStable.minSamples"),
    ("min-samples-not-an-int", {"minSamples": 200.5}, "vsStable.minSamples"),
    ("misspelt", {"confidense": 0.9}, "vsStable.confidense"),
]


def with_vs_stable(vs_stable: Any) -> dict[str, Any]:
    return mutate(EXAMPLE, {"spec.monitoring.checks.errorRate.vsStable": vs_stable})


@pytest.mark.parametrize(
    ("case", "vs_stable", "field"), VS_STABLE_CASES, ids=[c[0] for c in VS_STABLE_CASES]
)
def test_vs_stable_is_bounded(case: str, vs_stable: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError, match=rf"spec\.monitoring\.checks\.errorRate\.{field}"):
        parse(ModelSpec, with_vs_stable(vs_stable)["spec"], "spec")


def test_vs_stable_defaults_are_the_specs() -> None:
    spec = parse(ModelSpec, with_vs_stable({})["spec"], "spec")
    wire = spec.monitoring.checks.wire()
    assert wire["errorRate"]["vsStable"] == {"confidence": 0.95, "minSamples": 200}
    assert "vsStable" not in wire["accuracy"]  # only where asked for
