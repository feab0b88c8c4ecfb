"""End to end through `modelops train` (in-process): real scikit-learn training on builtin data and
on CSV files the tests write, real BentoML archives loaded back as serving loads them."""

from __future__ import annotations

import json
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from training_helpers import archives, iris_spec, load_archive, staged_models, write_csv

from modelops_training import train as training_run
from modelops_training.packaging import ArtifactStore, save_and_export
from modelops_training.spec import parse_spec

pytestmark = pytest.mark.unit

METADATA_KEYS = {
    "contract", "model", "version", "task", "target", "features", "classes", "reference",
    "prediction", "metrics", "gates", "approved", "rows", "dropped", "fingerprint", "estimator",
    "libraries", "specHash",
}  # fmt: skip


def test_iris_trains_and_archives(
    write_spec: Callable[..., Path], train: Callable[..., Any], artifacts: Path, tmp_path: Path
) -> None:
    run = train(write_spec(iris_spec()), model="iris", version="iris-v3")
    result = run.result
    assert run.code == 0, result
    assert (result["phase"], result["reason"]) == ("Succeeded", "Trained")
    assert result["tag"] == "iris:iris-v3"
    archive = artifacts / "iris" / "iris-v3.bentomodel"
    assert result["artifact"] == archive.as_uri()
    assert archives(artifacts) == [archive]  # no temporary left next to it
    assert result["task"] == "classification"
    assert result["metrics"]["accuracy"] >= 0.8
    assert result["gates"] == {
        "accuracy": {"min": 0.8, "value": result["metrics"]["accuracy"], "passed": True}
    }
    # iris has one duplicated row; everything else is kept
    assert result["rows"] == {"raw": 150, "clean": 149, "train": 119, "test": 30}
    assert result["dropped"]["duplicate"] == 1
    assert sum(result["support"].values()) == 30
    assert result["fingerprint"].startswith("sha256:") and len(result["fingerprint"]) == 71
    assert run.file_result == result
    assert "fitted sklearn.linear_model.LogisticRegression" in run.stderr
    assert "loaded 150 rows" in run.stderr

    _, meta, labels = load_archive(archive, tmp_path / "serving-home")
    assert set(meta) >= METADATA_KEYS
    assert meta["model"] == "iris" and meta["version"] == "iris-v3"
    assert [f["name"] for f in meta["features"]] == [
        "sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm",
    ]  # fmt: skip
    assert {f["type"] for f in meta["features"]} == {"numeric"}
    assert meta["classes"] == ["setosa", "versicolor", "virginica"]
    assert meta["approved"] is True and labels["modelops.dev/approved"] == "true"
    assert meta["specHash"] == result["specHash"]
    assert meta["estimator"]["class"] == "sklearn.linear_model.LogisticRegression"
    assert meta["estimator"]["params"]["max_iter"] == 500
    assert set(meta["libraries"]) == {"python", "scikit-learn", "bentoml", "numpy", "pandas"}
    assert sum(meta["prediction"]["categories"].values()) == pytest.approx(1.0)


def test_stored_model_predicts_exactly_as_the_in_memory_pipeline(
    tmp_path: Path, artifacts: Path, bentoml_home: Path
) -> None:
    data = write_csv(
        tmp_path / "loans.csv",
        "income,region,age,approved\n"
        + "".join(
            f"{1000 + 37 * i % 900},{['north', 'south', 'east'][i % 3]},{20 + i % 45},"
            f"{'yes' if (i * 7) % 10 > 3 else 'no'}\n"
            for i in range(200)
        ),
    )
    spec = parse_spec(
        iris_spec(
            dataset={"uri": data.as_uri(), "target": "approved"},
            estimator={"class": "sklearn.ensemble.RandomForestClassifier",
                       "params": {"n_estimators": 20}},
            validation={"testSize": 0.25, "randomState": 3},
        )
    )  # fmt: skip
    fitted = training_run.fit(spec)
    uri = save_and_export(
        fitted.pipeline,
        tag="loans:loans-v1",
        metadata=training_run.metadata(fitted, "loans", "loans-v1"),
        labels={},
        store=ArtifactStore.parse(artifacts.as_uri()),
        model="loans",
        version="loans-v1",
    )
    loaded, meta, _ = load_archive(Path(uri.removeprefix("file://")), tmp_path / "other-home")
    x = fitted.split.x_test
    assert list(loaded.predict(x)) == list(fitted.pipeline.predict(x))
    assert np.array_equal(loaded.predict_proba(x), fitted.pipeline.predict_proba(x))
    # As serving sends JSON: numbers may come as text, an unseen category is still scored.
    request = pd.DataFrame(
        {"income": ["1500", 1200.0], "region": ["south", "west"], "age": [33, "41"]}
    )
    expected = fitted.pipeline.predict(
        pd.DataFrame({"income": [1500.0, 1200.0], "region": ["south", "west"], "age": [33.0, 41]})
    )
    assert list(loaded.predict(request)) == list(expected)
    # the stored reference is the one computed from the training split (checked against the data
    # in test_reference_distribution_matches_the_training_data)
    assert meta["reference"] == training_run.metadata(fitted, "loans", "loans-v1")["reference"]
    assert set(meta["reference"]) == {"income", "region", "age"}
    region = next(f for f in meta["features"] if f["name"] == "region")
    assert region == {
        "name": "region",
        "type": "categorical",
        "categories": ["east", "north", "south"],
    }


def test_missed_gate_is_rejected_but_archived(
    write_spec: Callable[..., Path], train: Callable[..., Any], artifacts: Path, tmp_path: Path
) -> None:
    spec = iris_spec(
        dataset={"uri": "synthetic:classification?rows=300&features=6&informative=2&seed=4",
                 "target": "target"},
        estimator={"class": "sklearn.tree.DecisionTreeClassifier", "params": {"max_depth": 1}},
        validation={"gates": {"accuracy": 0.99, "f1_macro": 0.5}},
    )  # fmt: skip
    run = train(write_spec(spec), model="synth", version="synth-v1")
    result = run.result
    assert run.code == 0
    assert (result["phase"], result["reason"]) == ("Rejected", "QualityGateMissed")
    assert "accuracy" in result["message"] and "not deployable" in result["message"]
    assert result["gates"]["accuracy"]["passed"] is False
    assert result["gates"]["accuracy"]["value"] < 0.99
    assert result["gates"]["f1_macro"]["passed"] is True
    archive = artifacts / "synth" / "synth-v1.bentomodel"
    assert archive.is_file()
    _, meta, labels = load_archive(archive, tmp_path / "serving-home")
    assert meta["approved"] is False
    assert labels["modelops.dev/approved"] == "false"


@pytest.mark.parametrize(("rmse", "phase"), [(1.0, "Rejected"), (1000.0, "Succeeded")])
def test_error_gates_are_maxima(
    write_spec: Callable[..., Path], train: Callable[..., Any], rmse: float, phase: str
) -> None:
    spec = iris_spec(
        dataset={"uri": "builtin:diabetes", "target": "progression"},
        estimator={"class": "sklearn.linear_model.Ridge", "params": {"alpha": 0.5}},
        validation={"gates": {"rmse": rmse, "r2": 0.2}},
    )
    run = train(write_spec(spec), model="diabetes", version="diabetes-v1")
    result = run.result
    assert result["phase"] == phase, result
    assert result["task"] == "regression"
    assert set(result["metrics"]) == {"r2", "mae", "rmse"}
    assert result["gates"]["rmse"]["max"] == rmse
    assert result["gates"]["r2"] == {"min": 0.2, "value": result["metrics"]["r2"], "passed": True}
    assert 30 < result["metrics"]["rmse"] < 100


def test_reference_distribution_matches_the_training_data(tmp_path: Path) -> None:
    data = pd.DataFrame(
        {
            "x": np.random.default_rng(1).normal(5, 2, 400).round(2),
            "flag": [1.0] * 400,  # constant
            "few": np.random.default_rng(2).integers(0, 3, 400).astype(float),
            "colour": np.random.default_rng(3).choice(
                ["red", "green", "blue"], 400, p=[0.5, 0.3, 0.2]
            ),
            "y": np.random.default_rng(4).choice(["a", "b"], 400),
        }
    )
    path = tmp_path / "ref.csv"
    data.to_csv(path, index=False)
    spec = parse_spec(
        iris_spec(
            dataset={"uri": path.as_uri(), "target": "y"},
            pipeline={"cleaning": {"dropDuplicates": False}},
        )
    )
    fitted = training_run.fit(spec)
    reference = training_run.metadata(fitted, "ref", "ref-v1")["reference"]
    train_rows = fitted.split.x_train
    assert len(train_rows) == 320
    for name in ("x", "flag", "few"):
        edges, shares = reference[name]["edges"], reference[name]["proportions"]
        assert all(isinstance(e, float) and np.isfinite(e) for e in edges)
        assert all(a < b for a, b in pairwise(edges)), edges
        assert len(shares) == len(edges) + 1
        values = train_rows[name].to_numpy()
        bounds = [-np.inf, *edges, np.inf]
        counted = [
            float(((values > low) & (values <= high)).mean()) for low, high in pairwise(bounds)
        ]
        assert shares == pytest.approx(counted), name
    assert 8 <= len(reference["x"]["edges"]) <= 9  # about ten quantile bins
    assert reference["flag"] == {"edges": [1.0], "proportions": [1.0, 0.0]}
    # deciles of {0, 1, 2} repeat: merged into one edge per value; nothing lies above the last
    assert reference["few"]["edges"] == [0.0, 1.0, 2.0]
    assert reference["few"]["proportions"][-1] == 0.0
    expected = train_rows["colour"].value_counts(normalize=True).to_dict()
    assert reference["colour"]["categories"] == pytest.approx(expected)
    assert reference["colour"]["other"] == 0.0


def test_dirty_csv_is_cleaned_and_counted(
    tmp_path: Path, write_spec: Callable[..., Path], train: Callable[..., Any]
) -> None:
    rows = ["size,colour,weight,label"]
    for i in range(60):
        rows.append(
            f"{i % 9},{['red', 'blue'][i % 2]},{10 + i % 13},{'big' if i % 9 > 4 else 'small'}"
        )
    rows += [
        rows[1], rows[2], rows[3],  # 3 duplicates
        "4,red,11,",  # no target
        ",blue,,small", ",blue,12,big",  # missing feature values (imputed)
        "abc,red,5,big",  # unparseable number
        '" 7 ",red,"8.5",big',  # numeric strings, coerced
        "inf,red,3,small",  # not finite: unparseable
    ]  # fmt: skip
    data = write_csv(tmp_path / "dirty.csv", "\n".join(rows) + "\n")
    spec = iris_spec(dataset={"uri": data.as_uri(), "target": "label"})
    run = train(write_spec(spec), model="dirty", version="dirty-v1")
    assert run.code == 0, run.result
    assert run.result["dropped"] == {
        "missing_target": 1, "unparseable": 2, "duplicate": 3, "missing_feature": 0,
    }  # fmt: skip
    assert run.result["rows"]["raw"] == 69
    assert run.result["rows"]["clean"] == 69 - 1 - 2 - 3  # the numeric-text row is kept
    assert "missing values left to impute" in run.stderr


def test_missing_drop_drops_incomplete_rows(
    tmp_path: Path, write_spec: Callable[..., Path], train: Callable[..., Any]
) -> None:
    lines = ["a,b,label"] + [f"{i},{i % 5},{i % 2}" for i in range(40)] + ["1000,,0", ",3,1"]
    data = write_csv(tmp_path / "holes.csv", "\n".join(lines) + "\n")
    spec = iris_spec(
        dataset={"uri": data.as_uri(), "target": "label"},
        pipeline={"cleaning": {"missing": "drop"}},
        validation={},
    )
    run = train(write_spec(spec), model="holes", version="holes-v1")
    assert run.code == 0, run.result
    assert run.result["dropped"]["missing_feature"] == 2
    assert run.result["rows"]["clean"] == 40


def test_oversampling_balances_the_training_split_only(
    tmp_path: Path, write_spec: Callable[..., Path], train: Callable[..., Any]
) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200)})
    frame["label"] = np.where(np.arange(200) < 180, "common", "rare")
    data = tmp_path / "imbalanced.csv"
    frame.to_csv(data, index=False)
    spec = iris_spec(
        dataset={"uri": data.as_uri(), "target": "label"},
        pipeline={"augmentation": {"oversampleMinority": True}},
        validation={"testSize": 0.25, "randomState": 1},
    )
    run = train(write_spec(spec), model="imb", version="imb-v1")
    assert run.code == 0, run.result
    rows = run.result["rows"]
    # training split: 135 common, 15 rare -> 120 extra rare rows; the holdout keeps its 50 rows
    assert rows == {"raw": 200, "clean": 200, "train": 150, "test": 50, "oversampled": 120}
    assert run.result["support"] == {"common": 45, "rare": 5}


def test_kbest_selection_and_synthetic_shift(tmp_path: Path) -> None:
    plain_raw = iris_spec(
        dataset={"uri": "synthetic:regression?rows=500&features=8&seed=7", "target": "target"},
        pipeline={"selection": {"method": "kbest", "k": 3}, "scaling": "robust"},
        estimator={"class": "sklearn.linear_model.Ridge"},
        validation={},
    )
    plain = parse_spec(plain_raw)
    fitted = training_run.fit(plain)
    assert fitted.pipeline.named_steps["select"].get_support().sum() == 3
    shifted_raw = dict(plain_raw)
    shifted_raw["dataset"] = {
        "uri": "synthetic:regression?rows=500&features=8&seed=7&shift=3",
        "target": "target",
    }
    shifted = training_run.fit(parse_spec(shifted_raw))
    assert fitted.spec_hash == plain.hash != shifted.spec_hash
    before = training_run.metadata(fitted, "s", "s-v1")["reference"]["f0"]["edges"]
    after = training_run.metadata(shifted, "s", "s-v2")["reference"]["f0"]["edges"]
    assert np.allclose(np.array(after) - np.array(before), 3.0)


def test_csv_over_http(
    write_spec: Callable[..., Path], train: Callable[..., Any], http_server: Any
) -> None:
    base, routes = http_server
    frame = pd.DataFrame({"a": range(60), "b": [i % 4 for i in range(60)]})
    frame["label"] = ["x" if i % 3 else "y" for i in range(60)]
    routes["/data.csv"] = frame.to_csv(index=False).encode()
    spec = iris_spec(dataset={"uri": f"{base}/data.csv", "target": "label"}, validation={})
    run = train(write_spec(spec), model="web", version="web-v1")
    assert run.code == 0, run.result
    assert run.result["rows"]["raw"] == 60
    assert "downloaded" in run.stderr


def test_json_spec_and_yaml_spec_hash_alike(
    write_spec: Callable[..., Path], train: Callable[..., Any]
) -> None:
    spec = iris_spec()
    from_yaml = train(write_spec(spec, "spec.yaml"), version="iris-v1").result
    from_json = train(write_spec(spec, "spec.json"), version="iris-v2").result
    assert from_yaml["specHash"] == from_json["specHash"]
    assert from_yaml["fingerprint"] == from_json["fingerprint"]
    assert from_yaml["metrics"] == from_json["metrics"]


def test_rerun_of_a_version_replaces_it(
    write_spec: Callable[..., Path],
    train: Callable[..., Any],
    artifacts: Path,
    bentoml_home: Path,
) -> None:
    path = write_spec(iris_spec())
    assert train(path).code == 0
    again = train(path)
    assert again.code == 0
    assert "replacing the existing archive" in again.stderr
    assert staged_models(bentoml_home) == []
    assert archives(artifacts) == [artifacts / "iris" / "iris-v1.bentomodel"]


def test_unwritable_result_file_only_warns(
    write_spec: Callable[..., Path],
    train: Callable[..., Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from modelops_training.cli import main

    code = main([
        "--spec", str(write_spec(iris_spec())), "--model", "iris", "--version", "iris-v1",
        "--artifacts", (tmp_path / "models").as_uri(),
        "--result-file", str(tmp_path / "no" / "such" / "dir" / "termination-log"),
    ])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0
    assert json.loads(out)["phase"] == "Succeeded"
    assert "cannot write the result file" in err
