"""Every bad input ends `modelops train` with exit status 1, phase Failed and its own reason, a
clear message, the same result in the result file, and nothing left behind: no archive (not even a
temporary one) and no model in the store."""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import REDIRECT
from training_helpers import archives, iris_spec, staged_models

pytestmark = pytest.mark.unit


def csv_spec(path: Path, target: str = "label", **dataset: Any) -> dict[str, Any]:
    return iris_spec(dataset={"uri": path.as_uri(), "target": target, **dataset})


def expect_failure(run: Any, reason: str, *words: str) -> None:
    assert run.code == 1, run.result
    assert run.result["phase"] == "Failed"
    assert run.result["reason"] == reason, run.result
    for word in words:
        assert word in run.result["message"], run.result["message"]
    assert run.file_result == run.result
    assert "Traceback" not in run.stderr


@pytest.fixture
def no_leftovers(artifacts: Path, bentoml_home: Path) -> Callable[[], None]:
    def check() -> None:
        assert archives(artifacts) == []
        assert staged_models(bentoml_home) == []

    return check


GOOD_ROWS = "a,b,label\n" + "".join(f"{i},{i % 7},{'x' if i % 2 else 'y'}\n" for i in range(40))


@pytest.mark.parametrize(
    ("csv", "dataset", "reason", "words"),
    [
        ("a,b,c\n1,2,3\n4,5,6\n", {}, "MissingTarget", ["'label'", "'a'"]),
        ("a,b,label\n", {}, "EmptyData", ["no rows"]),
        ("", {}, "EmptyData", ["empty"]),
        ("a,b,label\n" + "1,2,x\n" * 30, {}, "AllDuplicates", ["30 rows"]),
        (GOOD_ROWS, {"features": ["a", "zzz"]}, "MissingFeature", ["'zzz'"]),
        (
            "a,b,label\n" + "".join(f"{i},,{i % 2}\n" for i in range(20)),
            {},
            "EmptyFeature",
            ["'b'"],
        ),
        ('a,b,label\n1,"2,x\n3,4,y\n', {}, "UnparseableData", ["not valid CSV"]),
        ("label\nx\ny\n", {}, "NoFeatures", ["besides the target"]),
        ("a,b,label\n1,2,x\n3,4,y\n5,6,x\n", {}, "TooFewRows", []),
        (
            "a,b,label\n" + "".join(f"{i},{i},only\n" for i in range(30)),
            {},
            "SingleClass",
            ["'only'"],
        ),
        (
            "a,b,label\n" + "".join(f"{i},{i},{'x' if i else 'y'}\n" for i in range(30)),
            {},
            "TooFewRows",
            ["class 'y' has 1 row"],
        ),
    ],
    ids=lambda v: v if isinstance(v, str) and v[:1].isupper() and "," not in v else None,
)
def test_bad_csv_data_fails_with_its_reason(
    tmp_path: Path,
    write_spec: Callable[..., Path],
    train: Callable[..., Any],
    no_leftovers: Callable[[], None],
    csv: str,
    dataset: dict[str, Any],
    reason: str,
    words: list[str],
) -> None:
    data = tmp_path / "data.csv"
    data.write_text(csv)
    run = train(write_spec(csv_spec(data, **dataset)))
    expect_failure(run, reason, *words)
    no_leftovers()


def test_a_file_that_is_not_csv_is_never_echoed_into_the_status(
    tmp_path: Path, write_spec: Callable[..., Path], train: Callable[..., Any]
) -> None:
    """A JSON export read as CSV: its first line becomes the 'column name', and a status message
    must not show data."""
    data = tmp_path / "data.csv"
    data.write_text('{"ssn": "078-05-1120", "label": 1}\n{"ssn": "219-09-9999", "label": 0}\n')
    run = train(write_spec(csv_spec(data)))
    expect_failure(run, "MissingTarget", "header row")
    assert "078-05-1120" not in json.dumps(run.result)
    data.write_text("5.1,3.5,x\n4.9,3.0,y\n")  # a CSV without its header row
    run = train(write_spec(csv_spec(data)))
    expect_failure(run, "MissingTarget", "header row")
    assert "5.1" not in run.result["message"]


def test_binary_garbage_is_unparseable(
    tmp_path: Path, write_spec: Callable[..., Path], train: Callable[..., Any]
) -> None:
    data = tmp_path / "data.csv"
    data.write_bytes(bytes(range(256)) * 8)
    expect_failure(train(write_spec(csv_spec(data))), "UnparseableData")


def test_a_file_over_the_size_limit_is_not_read(
    tmp_path: Path, write_spec: Callable[..., Path], train: Callable[..., Any]
) -> None:
    data = tmp_path / "data.csv"
    data.write_text(GOOD_ROWS + GOOD_ROWS.split("\n", 1)[1] * 10)  # 1,800 bytes
    run = train(write_spec(csv_spec(data, params={"maxBytes": 1000})))
    expect_failure(run, "DataTooLarge", "1000", "maxBytes")
    assert train(write_spec(csv_spec(data))).result["phase"] != "Failed"  # 256 MiB by default


def test_missing_file(
    tmp_path: Path, write_spec: Callable[..., Path], train: Callable[..., Any]
) -> None:
    run = train(write_spec(csv_spec(tmp_path / "nope.csv")))
    expect_failure(run, "DataNotFound", "nope.csv")


def test_parquet_is_read_and_a_broken_one_is_unparseable(
    tmp_path: Path, write_spec: Callable[..., Path], train: Callable[..., Any]
) -> None:
    """pyarrow is a dependency: a Parquet dataset trains, and a file that is not Parquet fails
    with the reason (the format is declared; its default is csv, whatever the file is called)."""
    good = tmp_path / "data.parquet"
    pd.read_csv(io.StringIO(GOOD_ROWS)).to_parquet(good)
    assert train(write_spec(csv_spec(good, format="parquet"))).result["phase"] != "Failed"
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1")
    expect_failure(train(write_spec(csv_spec(broken, format="parquet"))), "UnparseableData")


@pytest.mark.parametrize(
    ("estimator", "reason", "words"),
    [
        # not a scikit-learn class path: the API (modelops_api.spec) rejects it as the API
        # server would; a scikit-learn path off the allow-list is the runtime's to refuse
        (
            {"class": "os.system"},
            "InvalidSpec",
            ["spec.training.estimator.class: String should match pattern", "sklearn"],
        ),
        (
            {"class": "sklearn.pipeline.Pipeline"},
            "EstimatorNotAllowed",
            ["'sklearn.pipeline.Pipeline'", "allow-list"],
        ),
        (
            {"class": "sklearn.ensemble.RandomForestClassifier", "params": {"n_trees": 5}},
            "InvalidParams",
            ["'n_trees'"],
        ),
        (
            {"class": "sklearn.ensemble.RandomForestClassifier", "params": {"n_estimators": -3}},
            "InvalidParams",
            ["n_estimators"],
        ),
        (
            {"class": "sklearn.linear_model.LogisticRegression", "params": {"C": "lots"}},
            "InvalidParams",
            ["'C'"],
        ),
    ],
)
def test_estimator_problems(
    write_spec: Callable[..., Path],
    train: Callable[..., Any],
    no_leftovers: Callable[[], None],
    estimator: dict[str, Any],
    reason: str,
    words: list[str],
) -> None:
    run = train(write_spec(iris_spec(estimator=estimator)))
    expect_failure(run, reason, *words)
    no_leftovers()


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        (
            iris_spec(pipeline={"scalling": "standard"}),
            ["spec.training.pipeline.scalling: Extra inputs are not permitted"],
        ),
        (iris_spec(extra=1), ["spec.training.extra: Extra inputs are not permitted"]),
        (
            iris_spec(validation={"gates": {"accuracy": 0.9, "r2": 0.5}}),
            ["gates.r2", "classification"],
        ),
        (
            iris_spec(validation={"testSize": 1.5}),
            ["spec.training.validation.testSize: Input should be less than or equal to 0.5"],
        ),
        (
            iris_spec(validation={"testSize": "0.3"}),
            ["spec.training.validation.testSize: Input should be a valid number"],
        ),
        (iris_spec(validation={"gates": {"accuracy": 90}}), ["gates.accuracy", "[0, 1]"]),
        (
            iris_spec(validation={"gates": {"accuracy": True}}),
            ["spec.training.validation.gates.accuracy: Input should be a valid number"],
        ),
        (
            iris_spec(validation={"gates": {"mae": float("inf")}}),  # `.inf` in the YAML file
            ["spec.training.validation.gates.mae: Input should be a finite number"],
        ),
        (
            iris_spec(validation={"gates": {"speed": 3}}),
            ["spec.training.validation.gates.speed: gates may name accuracy"],
        ),
        (
            iris_spec(pipeline={"scaling": "zscore"}),
            ["spec.training.pipeline.scaling: Input should be 'standard'"],
        ),
        (
            iris_spec(pipeline={"selection": {"method": "kbest"}}),
            ["spec.training.pipeline.selection.k: is required when method is kbest"],
        ),
        (
            iris_spec(pipeline={"selection": {"method": "kbest", "k": 2, "threshold": 0.1}}),
            ["spec.training.pipeline.selection.threshold: applies to method variance only"],
        ),
        (
            iris_spec(pipeline={"selection": {"method": "variance", "threshold": -1}}),
            ["spec.training.pipeline.selection.threshold: Input should be greater than or equal"],
        ),
        (
            iris_spec(pipeline={"cleaning": {"dropDuplicates": "yes"}}),
            ["spec.training.pipeline.cleaning.dropDuplicates: Input should be a valid boolean"],
        ),
        (
            iris_spec(
                dataset={
                    "uri": "builtin:iris",
                    "target": "species",
                    "features": ["species", "petal_length_cm"],
                }
            ),
            ["spec.training.dataset.features: lists the target 'species'"],
        ),
        (
            iris_spec(
                dataset={
                    "uri": "builtin:iris",
                    "target": "species",
                    "features": ["petal_length_cm", "petal_width_cm"],
                    "categorical": ["petal_width_cm", "petal_width_cm"],
                }
            ),
            ["spec.training.dataset.categorical: lists the column 'petal_width_cm' twice"],
        ),
        (
            iris_spec(
                dataset={"uri": "builtin:iris", "target": "species", "params": {"maxBytes": 5}}
            ),
            ["spec.training.dataset.params: applies to http(s), file and s3 sources only"],
        ),
        (
            iris_spec(
                dataset={"uri": "http://127.0.0.1:9/x.csv", "target": "y", "params": {"retries": 3}}
            ),
            ["spec.training.dataset.params.retries: Extra inputs are not permitted"],
        ),
        (
            iris_spec(
                dataset={
                    "uri": "http://127.0.0.1:9/x.csv",
                    "target": "y",
                    "params": {"maxBytes": 0, "timeoutSeconds": True},
                }
            ),
            [
                "spec.training.dataset.params.timeoutSeconds: Input should be a valid number",
                "spec.training.dataset.params.maxBytes: Input should be greater than or equal to 1",
            ],
        ),
        (
            iris_spec(dataset={"uri": "builtin:iris", "target": "species", "format": "xlsx"}),
            ["spec.training.dataset.format: Input should be 'csv' or 'parquet'"],
        ),
        (iris_spec(dataset={"uri": "builtin:mnist", "target": "y"}), ["builtin:mnist"]),
        (
            iris_spec(dataset={"uri": "ftp://x/y.csv", "target": "y"}),
            ["spec.training.dataset.uri: String should match pattern"],
        ),
        (
            {"dataset": {"uri": "builtin:iris", "target": "species"}},
            ["spec.training.estimator: Field required"],
        ),
        (
            iris_spec(
                dataset={"uri": "synthetic:classification?rows=10&colour=red", "target": "t"}
            ),
            ["'colour'"],
        ),
        (
            iris_spec(dataset={"uri": "synthetic:classification?rows=-5", "target": "t"}),
            ["rows=-5"],
        ),
        (
            iris_spec(
                pipeline={"augmentation": {"oversampleMinority": True}},
                estimator={"class": "sklearn.linear_model.Ridge"},
                validation={},
            ),
            ["classification only"],
        ),
    ],
)
def test_invalid_spec_names_the_field(
    write_spec: Callable[..., Path],
    train: Callable[..., Any],
    no_leftovers: Callable[[], None],
    spec: dict[str, Any],
    words: list[str],
) -> None:
    expect_failure(train(write_spec(spec)), "InvalidSpec", *words)
    no_leftovers()


def test_roc_auc_gate_needs_a_binary_target(
    write_spec: Callable[..., Path], train: Callable[..., Any]
) -> None:
    spec = iris_spec(validation={"gates": {"roc_auc": 0.9}})
    expect_failure(train(write_spec(spec)), "InvalidSpec", "gates.roc_auc", "3 classes")


def test_spec_that_is_not_yaml(tmp_path: Path, train: Callable[..., Any]) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text("dataset: [unclosed\n")
    expect_failure(train(path), "InvalidSpec", "not YAML")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("- dataset\n- estimator\n", ["spec.training: Input should be a valid dictionary"]),
        ("", ["spec.training: Input should be a valid dictionary"]),
        ("dataset:\nestimator:\n", ["spec.training.dataset: Field required", "estimator"]),
    ],
    ids=["a-list", "empty", "empty-sections"],
)
def test_spec_that_is_not_a_mapping(
    tmp_path: Path, train: Callable[..., Any], text: str, words: list[str]
) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    expect_failure(train(path), "InvalidSpec", *words)


def test_spec_file_that_cannot_be_read(tmp_path: Path, train: Callable[..., Any]) -> None:
    expect_failure(train(tmp_path / "absent.yaml"), "InvalidSpec", "cannot read the spec file")


def test_declared_task_must_match_estimator(
    write_spec: Callable[..., Path], train: Callable[..., Any]
) -> None:
    # diabetes is regression data, as declared; the estimator is a classifier
    dataset = {"uri": "builtin:diabetes", "target": "progression", "task": "regression"}
    spec = iris_spec(dataset=dataset, validation={})
    expect_failure(train(write_spec(spec)), "TaskMismatch", "classifier")


def test_unsupported_artifact_store(
    write_spec: Callable[..., Path], train: Callable[..., Any], no_leftovers: Callable[[], None]
) -> None:
    run = train(write_spec(iris_spec()), artifacts_uri="gs://bucket/models")
    expect_failure(run, "UnsupportedArtifactStore", "gs://bucket/models")
    no_leftovers()


def test_bad_names(write_spec: Callable[..., Path], train: Callable[..., Any]) -> None:
    expect_failure(
        train(write_spec(iris_spec()), model="Iris_Model"), "InvalidArguments", "--model"
    )


def test_bentoml_home_on_the_artifact_store_is_refused(
    write_spec: Callable[..., Path], train: Callable[..., Any], bentoml_home: Path
) -> None:
    run = train(write_spec(iris_spec()), artifacts_uri=bentoml_home.parent.as_uri())
    expect_failure(run, "InvalidArguments", "BENTOML_HOME", "pod-local")
    assert not (bentoml_home.parent / "iris").exists()


def test_missing_arguments_are_a_result_not_a_usage_exit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from modelops_training.cli import main

    result_file = tmp_path / "result"
    code = main(["--model", "iris", "--result-file", str(result_file)])
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert code == 1
    assert result["reason"] == "InvalidArguments"
    assert "--spec" in result["message"]
    assert result["model"] == "iris"
    assert json.loads(result_file.read_text()) == result
    assert "usage: modelops train" in err


def test_save_failure_leaves_no_model_in_the_store(
    tmp_path: Path,
    write_spec: Callable[..., Path],
    train: Callable[..., Any],
    bentoml_home: Path,
) -> None:
    # The artifact directory cannot be created (a file is in the way): the model was already in the
    # local store by then and must be removed again.
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    run = train(write_spec(iris_spec()), artifacts_uri=(blocker / "models").as_uri())
    expect_failure(run, "SaveFailed", "iris:iris-v1")
    assert staged_models(bentoml_home) == []
    assert run.result["metrics"]["accuracy"] > 0.8  # what was known is kept


def test_unreachable_url(write_spec: Callable[..., Path], train: Callable[..., Any]) -> None:
    with socket.socket() as probe:  # a port on 127.0.0.1 that nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    spec = iris_spec(dataset={"uri": f"http://127.0.0.1:{port}/x.csv", "target": "label"})
    expect_failure(train(write_spec(spec)), "UrlUnreachable", f"127.0.0.1:{port}")


def test_http_error_status(
    write_spec: Callable[..., Path], train: Callable[..., Any], http_server: Any
) -> None:
    base, _ = http_server
    spec = iris_spec(dataset={"uri": f"{base}/missing.csv", "target": "label"})
    expect_failure(train(write_spec(spec)), "DownloadFailed", "404")


def test_redirects_are_followed_within_the_origin_only(
    write_spec: Callable[..., Path], train: Callable[..., Any], http_server: Any
) -> None:
    base, routes = http_server
    routes["/data.csv"] = GOOD_ROWS.encode()
    routes["/moved.csv"] = REDIRECT + b"/data.csv"
    elsewhere = base.replace("127.0.0.1", "localhost")  # the same server, another origin
    routes["/away.csv"] = REDIRECT + f"{elsewhere}/data.csv".encode()
    within = iris_spec(dataset={"uri": f"{base}/moved.csv", "target": "label"})
    assert train(write_spec(within)).result["phase"] != "Failed"  # downloaded and trained
    away = iris_spec(dataset={"uri": f"{base}/away.csv", "target": "label"})
    expect_failure(train(write_spec(away)), "DownloadFailed", "another origin")


@pytest.mark.parametrize("path", ["/big.csv", "/chunked.csv"])
def test_download_over_the_size_limit(
    write_spec: Callable[..., Path], train: Callable[..., Any], http_server: Any, path: str
) -> None:
    base, routes = http_server
    routes[path] = GOOD_ROWS.encode() * 10
    spec = iris_spec(
        dataset={"uri": f"{base}{path}", "target": "label", "params": {"maxBytes": 1000}}
    )
    expect_failure(train(write_spec(spec)), "DownloadTooLarge", "1000")


def test_download_timeout(
    write_spec: Callable[..., Path], train: Callable[..., Any], http_server: Any
) -> None:
    base, routes = http_server
    routes["/slow.csv"] = GOOD_ROWS.encode()
    spec = iris_spec(
        dataset={"uri": f"{base}/slow.csv", "target": "label", "params": {"timeoutSeconds": 0.3}}
    )
    expect_failure(train(write_spec(spec)), "UrlUnreachable")


def test_fit_failure_is_reported(
    write_spec: Callable[..., Path], train: Callable[..., Any]
) -> None:
    spec = iris_spec(pipeline={"selection": {"method": "variance", "threshold": 1000.0}})
    expect_failure(train(write_spec(spec)), "FitFailed", "variance threshold")


def test_every_reason_is_documented() -> None:
    from modelops_training.result import REASONS

    docs = (Path(__file__).parents[2] / "docs" / "training.md").read_text()
    missing = [reason for reason in REASONS if f"| `{reason}` |" not in docs]
    assert missing == []


@pytest.mark.parametrize("interruption", ["error", "sigterm"])
def test_interrupted_export_leaves_no_archive_and_no_model(
    monkeypatch: pytest.MonkeyPatch,
    write_spec: Callable[..., Path],
    train: Callable[..., Any],
    no_leftovers: Callable[[], None],
    interruption: str,
) -> None:
    from bentoml._internal.models.model import Model

    from modelops_training.result import Terminated

    real_export = Model.export

    def export_then_break(self: Model, path: str, *args: Any, **kwargs: Any) -> str:
        written = real_export(self, path, *args, **kwargs)  # the whole temporary archive exists
        assert Path(written).is_file()
        if interruption == "sigterm":
            raise Terminated()
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Model, "export", export_then_break)
    run = train(write_spec(iris_spec()))
    if interruption == "sigterm":
        expect_failure(run, "Terminated", "SIGTERM")
    else:
        expect_failure(run, "SaveFailed", "No space left on device")
    no_leftovers()


def test_a_bug_is_an_internal_error_without_traceback(
    monkeypatch: pytest.MonkeyPatch,
    write_spec: Callable[..., Path],
    train: Callable[..., Any],
    no_leftovers: Callable[[], None],
) -> None:
    from modelops_training import train as training_run

    def broken(*args: Any, **kwargs: Any) -> None:
        raise KeyError("column that should be there")

    monkeypatch.delenv("MODELOPS_DEBUG", raising=False)
    monkeypatch.setattr(training_run, "fit", broken)
    run = train(write_spec(iris_spec()))
    expect_failure(run, "InternalError", "KeyError", "column that should be there")
    no_leftovers()
