"""The runtime's parts on their own: the result that must fit the termination message, the sources'
parameters, the spec as the runtime reads it, the cleaning's type coercion, duplicates and
fingerprint, the estimator allow-list."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from modelops_api.contract import spec_hash
from modelops_api.spec import TASK_METRICS, CleaningSpec, DatasetSpec
from modelops_training import sources
from modelops_training.cleaning import _duplicated, clean, fingerprint, to_numbers
from modelops_training.columns import CATEGORICAL, NUMERIC, Feature, Schema
from modelops_training.estimators import build
from modelops_training.evaluation import evaluate
from modelops_training.features import MedianImputer, oversample_minority
from modelops_training.reference import numeric_reference
from modelops_training.result import RESULT_FILE_LIMIT, TrainingError, fit_to_limit
from modelops_training.spec import parse_spec

pytestmark = pytest.mark.unit


def test_result_is_cut_to_the_termination_message_limit() -> None:
    result = {
        "phase": "Succeeded", "reason": "Trained", "message": "ok", "model": "m", "version": "m-v1",
        "tag": "m:m-v1", "artifact": "file:///models/m/m-v1.bentomodel",
        "metrics": {"accuracy": 0.9},
        "support": {f"class-{i}": i for i in range(1000)},
    }  # fmt: skip
    text = fit_to_limit(result)
    assert len(text.encode()) <= RESULT_FILE_LIMIT
    short = json.loads(text)
    assert short["truncated"] is True
    assert "support" not in short
    assert short["metrics"] == {"accuracy": 0.9}
    assert short["artifact"] == result["artifact"]
    huge = {"phase": "Failed", "reason": "InvalidSpec", "message": "é" * 10_000}
    assert len(fit_to_limit(huge).encode()) <= RESULT_FILE_LIMIT
    small = {"phase": "Failed", "reason": "EmptyData", "message": "no rows"}
    assert json.loads(fit_to_limit(small)) == small


def test_builtin_datasets_have_named_targets() -> None:
    iris = sources.load(DatasetSpec(uri="builtin:iris", target="species"))
    assert iris.shape == (150, 5)
    assert sorted(iris["species"].unique()) == ["setosa", "versicolor", "virginica"]
    cancer = sources.load(DatasetSpec(uri="builtin:breast_cancer", target="diagnosis"))
    assert set(cancer["diagnosis"]) == {"malignant", "benign"}
    diabetes = sources.load(DatasetSpec(uri="builtin:diabetes", target="progression"))
    assert diabetes["progression"].dtype == float
    wine = sources.load(DatasetSpec(uri="builtin:wine", target="cultivar"))
    assert wine.shape[0] == 178


def test_synthetic_parameters_come_from_the_uri() -> None:
    frame = sources.load(
        DatasetSpec(uri="synthetic:classification?rows=321&features=5&classes=3&seed=2", target="t")
    )
    assert frame.shape == (321, 6)
    assert sorted(frame["target"].unique()) == [0, 1, 2]
    again = sources.load(
        DatasetSpec(uri="synthetic:classification?seed=2&classes=3&features=5&rows=321", target="t")
    )
    pd.testing.assert_frame_equal(frame, again)
    with pytest.raises(TrainingError, match="noise") as error:
        sources.load(DatasetSpec(uri="synthetic:classification?noise=2", target="t"))
    assert error.value.reason == "InvalidSpec"
    # dataset.params is for http(s) and file sources only: said before any source is asked
    with pytest.raises(TrainingError, match=r"spec\.training\.dataset\.params: applies to http"):
        parse_spec(
            {
                "dataset": {
                    "uri": "synthetic:regression",
                    "target": "t",
                    "params": {"maxBytes": 5},
                },
                "estimator": {"class": "sklearn.linear_model.Ridge"},
            }
        )


def test_numeric_text_is_coerced_and_garbage_is_not() -> None:
    column = pd.Series(["1", " 2.5 ", "-3e2", "abc", None, "inf", "NaN"], dtype=object)
    numbers = to_numbers(column)
    assert numbers.iloc[:3].tolist() == [1.0, 2.5, -300.0]
    assert numbers.iloc[3:].isna().all()


def test_estimator_gets_the_run_seed_unless_given() -> None:
    estimator, task = build("sklearn.ensemble.RandomForestClassifier", {}, 7)
    assert (task, estimator.random_state) == ("classification", 7)
    estimator, task = build("sklearn.ensemble.RandomForestRegressor", {"random_state": 1}, 7)
    assert (task, estimator.random_state) == ("regression", 1)
    with pytest.raises(TrainingError) as error:
        build("sklearn.linear_model.LogisticRegression", {"C": {"a": object()}}, 0)
    assert error.value.reason == "InvalidParams"


def test_oversampling_equalises_classes() -> None:
    x = pd.DataFrame({"a": range(13)})
    y = pd.Series(["a"] * 10 + ["b"] * 2 + ["c"])
    x2, y2 = oversample_minority(x, y, 0)
    assert y2.value_counts().to_dict() == {"a": 10, "b": 10, "c": 10}
    assert (x2["a"][y2 == "c"] == 12).all()  # copies of real rows only
    assert x2.iloc[:13].equals(x)


def test_reference_bins_are_right_closed() -> None:
    ref = numeric_reference(np.array([1.0, 2.0, 3.0, 4.0]), bins=2)
    assert ref == {"edges": [2.5], "proportions": [0.5, 0.5]}
    ref = numeric_reference(np.array([1.0, 2.0, 2.0, 3.0]), bins=2)
    assert ref == {"edges": [2.0], "proportions": [0.75, 0.25]}  # 2.0 lies in (-inf, 2.0]


def test_spec_defaults_and_operator_keys() -> None:
    raw = {
        "dataset": {"uri": "builtin:iris", "target": "species"},
        "estimator": {"class": "sklearn.svm.SVC"},
        "schedule": "0 3 * * 0",
        "resources": {"limits": {"cpu": "1"}},
    }
    spec = parse_spec(raw).training
    assert spec.dataset.format == "csv"
    assert spec.dataset.params is None
    assert spec.pipeline.scaling == "standard"
    assert spec.pipeline.cleaning.missing == "impute-median"
    assert spec.pipeline.cleaning.drop_duplicates is True
    assert (spec.pipeline.selection.method, spec.pipeline.selection.threshold) == ("none", None)
    assert spec.pipeline.augmentation.oversample_minority is False
    assert spec.estimator.class_path == "sklearn.svm.SVC"
    assert spec.estimator.params == {}
    assert spec.validation.test_size == 0.2
    assert spec.validation.random_state == 42
    assert spec.validation.gates == {}
    assert spec.schedule == "0 3 * * 0"


def test_null_sections_read_as_absent() -> None:
    # `pipeline:` with every line under it commented out: the API server prunes such a null before
    # defaulting, and the runtime reads it alike.
    raw = {
        "dataset": {"uri": "builtin:iris", "target": "species", "features": None},
        "pipeline": None,
        "estimator": {"class": "sklearn.svm.SVC", "params": None},
        "validation": {"gates": None},
    }
    loaded = parse_spec(raw)
    assert loaded.training == parse_spec(
        {"dataset": {"uri": "builtin:iris", "target": "species"},
         "estimator": {"class": "sklearn.svm.SVC"}}
    ).training  # fmt: skip
    assert loaded.hash == spec_hash(raw)  # the spec as written, nulls and all


def test_http_params_are_typed_with_their_defaults() -> None:
    dataset = parse_spec(
        {
            "dataset": {"uri": "https://x/y.csv", "target": "y", "params": {"maxBytes": 1000}},
            "estimator": {"class": "sklearn.svm.SVC"},
        }
    ).training.dataset
    assert dataset.params is not None
    assert (dataset.params.timeout_seconds, dataset.params.max_bytes) == (30.0, 1000)


def test_evaluation_measures_every_gate_metric_of_its_task() -> None:
    from sklearn.linear_model import LinearRegression, LogisticRegression

    rng = np.random.default_rng(0)
    x = pd.DataFrame({"a": rng.normal(size=60), "b": rng.normal(size=60)})
    labels = pd.Series(np.where(x["a"] > 0, "yes", "no"))
    values = pd.Series(2 * x["a"] + rng.normal(size=60) / 10)
    for task, estimator, y in (
        ("classification", LogisticRegression(), labels),
        ("regression", LinearRegression(), values),
    ):
        measured, _, _ = evaluate(estimator.fit(x, y), x, y, task)
        assert set(measured) == set(TASK_METRICS[task]), task


def test_spec_hash_is_canonical_json() -> None:
    # The operator hashes spec.training the same way for its ModelVersion: sorted keys, compact
    # separators, non-ASCII escaped. Key order in the file does not matter.
    import hashlib

    raw = {
        "estimator": {"params": {"C": 0.5}, "class": "sklearn.svm.SVC"},
        "dataset": {"uri": "builtin:iris", "target": "species", "features": ["größe"]},
    }
    canonical = (
        '{"dataset":{"features":["gr\\u00f6\\u00dfe"],"target":"species","uri":"builtin:iris"},'
        '"estimator":{"class":"sklearn.svm.SVC","params":{"C":0.5}}}'
    )
    assert parse_spec(raw).hash == "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
    # As written, not as parsed: defaults filled in and numbers made floats do not change it, and
    # the operator's own keys are part of it.
    written = {**raw, "validation": {"gates": {"accuracy": 1}}, "schedule": "@daily"}
    loaded = parse_spec(written)
    assert loaded.training.validation.gates == {"accuracy": 1.0}
    assert loaded.hash == spec_hash(written)
    assert loaded.hash != spec_hash(loaded.training.model_dump(mode="json", by_alias=True))


@pytest.mark.parametrize("keep_empty", [False, True])
def test_median_imputer_imputes_as_scikit_learn_does(keep_empty: bool) -> None:
    from sklearn.impute import SimpleImputer

    rng = np.random.default_rng(3)
    x = rng.normal(size=(1001, 4))
    x[rng.random(x.shape) < 0.2] = np.nan
    x[:, 2] = np.nan  # an all-missing column
    x[:6, 3] = [1.0, 2.0, 3.0, 4.0, np.nan, np.nan]  # an even count around the middle
    ours = MedianImputer(strategy="median", keep_empty_features=keep_empty).fit(x)
    theirs = SimpleImputer(strategy="median", keep_empty_features=keep_empty).fit(x)
    np.testing.assert_array_equal(ours.statistics_, theirs.statistics_)
    np.testing.assert_array_equal(ours.transform(x), theirs.transform(x))
    frame = pd.DataFrame({"a": [1.0, None, 3.0], "b": ["x", "y", None]})
    with pytest.raises(ValueError):  # not numbers: scikit-learn's own checks, unchanged
        MedianImputer(strategy="median").fit(frame)


def _cleaning_case() -> tuple[pd.DataFrame, Schema]:
    frame = pd.DataFrame(
        {
            "a": [1.0, 1.0, 0.0, np.inf, 2.0, 1.0, np.nan, 3.0],
            "b": ["x", "x", "y", "y", None, "x", "z", "z"],
            "y": [1, 1, 0, 1, 0, 1, 0, 1],
        }
    )
    return frame, Schema("y", (Feature("a", NUMERIC), Feature("b", CATEGORICAL)), "classification")


def test_cleaning_drops_later_copies_and_fingerprints_what_it_keeps() -> None:
    frame, schema = _cleaning_case()
    cleaned = clean(frame, schema, CleaningSpec())
    assert cleaned.dropped == {
        "missing_target": 0, "unparseable": 1, "duplicate": 2, "missing_feature": 0
    }  # fmt: skip
    assert cleaned.frame["a"].tolist()[:3] == [1.0, 0.0, 2.0]
    assert cleaned.frame.index.equals(pd.RangeIndex(len(cleaned.frame)))
    assert cleaned.missing_values == {"a": 1, "b": 1}
    assert cleaned.fingerprint == fingerprint(cleaned.frame)
    assert cleaned.fingerprint != fingerprint(cleaned.frame.iloc[::-1])


def test_duplicates_are_found_with_negative_zero_and_hash_collisions() -> None:
    frame, schema = _cleaning_case()
    frame.loc[3] = [-0.0, "y", 0]  # equal to row 2, (0.0, "y", 0), though hashed apart
    expected = frame.assign(a=frame["a"].where(np.isfinite(frame["a"]))).duplicated()
    cleaned = clean(frame, schema, CleaningSpec(missing="drop"))
    assert cleaned.dropped["duplicate"] == int(expected.sum()) == 3
    # Equal hashes alone never drop a row: a collision is compared by value.
    kept = pd.DataFrame({"a": [1.0, 2.0, 1.0], "b": ["x", "x", "x"], "y": [0, 1, 0]})
    assert _duplicated(kept, np.zeros(3, dtype=np.uint64)).tolist() == [False, False, True]
