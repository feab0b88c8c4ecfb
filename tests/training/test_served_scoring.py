"""The serving runtime's scoring plan answers exactly as the Pipeline `modelops train` fitted.

Each case trains a model in-process, loads its archive as a serving pod would, and compares the
plan (modelops_serving.scoring) with the Pipeline itself on random rows shaped as validated
requests: missing values where the model takes them, categories the model never saw.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from training_helpers import iris_spec

from modelops_serving import artifact
from modelops_serving.schema import CATEGORICAL
from modelops_serving.scoring import Scorer, frame

pytestmark = pytest.mark.unit

CSV_HEADER = "age,income,city,plan,churned\n"
CITIES = ["paris", "lyon", "nice", "lille"]


def mixed_csv(path: Path, rows: int = 300, seed: int = 3) -> Path:
    """Numbers and categories, with gaps in both, and a target that depends on them."""
    rng = np.random.default_rng(seed)
    lines = [CSV_HEADER]
    for i in range(rows):
        age = "" if i % 17 == 0 else f"{rng.integers(18, 80)}"
        income = "" if i % 23 == 0 else f"{rng.normal(50, 15):.2f}"
        city = "" if i % 19 == 0 else CITIES[int(rng.integers(0, len(CITIES)))]
        plan = ["basic", "pro", "team"][i % 3]
        churned = "yes" if (city == "nice") ^ (i % 5 == 0) else "no"
        lines.append(f"{age},{income},{city},{plan},{churned}\n")
    path.write_text("".join(lines))
    return path


def random_columns(loaded: artifact.LoadedModel, rows: int, missing: bool) -> list[Any]:
    rng = np.random.default_rng(11)
    columns: list[Any] = []
    for f in loaded.schema.features:
        if f.kind == CATEGORICAL:
            pool = [*f.categories, "never-seen", "  paris "]
            values: list[Any] = [pool[int(i)] for i in rng.integers(0, len(pool), rows)]
            if missing:
                values[::4] = [None] * len(values[::4])
            columns.append(values)
        else:
            numbers = rng.normal(0, 50, rows)
            if missing:
                numbers[1::5] = np.nan
            columns.append(numbers)
    return columns


CASES: dict[str, dict[str, Any]] = {
    "numeric, standard scaling": {},
    "minmax scaling, k best": {
        "pipeline": {"scaling": "minmax", "selection": {"method": "kbest", "k": 2}},
    },
    "robust scaling, variance selection, a forest": {
        "pipeline": {"scaling": "robust", "selection": {"method": "variance", "threshold": 0.0}},
        "estimator": {
            "class": "sklearn.ensemble.RandomForestClassifier",
            "params": {"n_estimators": 10, "random_state": 0},
        },
    },
    "no scaling, no imputation": {
        "pipeline": {"scaling": "none", "cleaning": {"missing": "drop"}},
    },
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_plan_answers_as_the_pipeline_on_iris(
    case: str,
    train: Callable[..., Any],
    write_spec: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = iris_spec()
    for section, value in CASES[case].items():
        spec[section] = {**spec.get(section, {}), **value}
    version = "iris-" + "".join(c for c in case if c.isalnum())[:30]
    run = train(write_spec(spec), version=version)
    compare(run, version, tmp_path, monkeypatch, imputes="drop" not in str(spec))


def test_the_plan_answers_as_the_pipeline_with_categories_and_gaps(
    train: Callable[..., Any],
    write_spec: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = mixed_csv(tmp_path / "churn.csv")
    spec = iris_spec(dataset={"uri": data.as_uri(), "target": "churned"})
    spec["validation"]["gates"] = {}
    run = train(write_spec(spec), version="iris-churn")
    compare(run, "iris-churn", tmp_path, monkeypatch, imputes=True)


def test_a_pipeline_of_another_shape_is_scored_as_it_is() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from modelops_serving.schema import Feature, Schema

    schema = Schema((Feature("a", "numeric"), Feature("b", "numeric")))
    x = np.random.default_rng(0).normal(size=(50, 2))
    pipeline = Pipeline([("s", StandardScaler()), ("m", LogisticRegression())])
    pipeline.fit(frame(schema, [x[:, 0], x[:, 1]]), (x[:, 0] > 0).astype(int))
    scorer = Scorer(schema, pipeline, "classification")
    assert not scorer.fast
    predictions, probabilities = scorer.score([np.array([1.0]), np.array([0.0])])
    assert predictions.tolist() == [1] and probabilities is not None


def compare(
    run: Any, version: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, imputes: bool
) -> None:
    assert run.code == 0, run.result
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "serving-home"))
    loaded = artifact.load(run.result["artifact"], "iris", version, wait_seconds=0)
    scorer = Scorer(loaded.schema, loaded.pipeline, loaded.task)
    assert scorer.fast  # the shape modelops train fits is the shape the plan knows
    for missing in (False, True) if imputes else (False,):
        columns = random_columns(loaded, 200, missing)
        fast = scorer.score(columns)
        slow = scorer._score_pipeline(frame(loaded.schema, columns))
        assert np.array_equal(fast[0], slow[0])
        assert fast[1] is not None and slow[1] is not None
        assert np.allclose(fast[1], slow[1], rtol=1e-12, atol=1e-12)
        one_row = scorer.score([column[:1] for column in columns])
        assert one_row[0].tolist() == fast[0][:1].tolist()
