"""`modelops train` with `dataset.production`: the Model's labelled production rows (as serving's
recorder writes them) are added to the dataset's, the result counts the rows of each source with
their fingerprints, and a window without enough labelled rows, rows recorded for other inputs or
labels that do not fit the target fail the run with a reason naming the folder.

The batches are written by the serving runtime's own recorder, on a local store (the s3:// round
trip, from a real `bentoml serve` to a real S3 server, is in tests/serving/test_serving_s3.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from training_helpers import iris_spec

from modelops_api.spec import DatasetSpec
from modelops_serving.recording import ProductionLog
from modelops_training import production
from modelops_training.result import TrainingError
from modelops_training.sources import load_builtin
from modelops_training.train import with_production

pytestmark = pytest.mark.integration

FEATURES = ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]


def record(
    folder: str,
    labelled: int,
    unlabelled: int = 0,
    at: float | None = None,
    features: list[str] = FEATURES,
    truth: Any = "virginica",
) -> None:
    """Answered requests of one shifted row each, the first `labelled` of them with feedback."""
    log = ProductionLog(
        folder, features, "iris-v1", "classification", 86_400.0, clock=lambda: at or time.time()
    )
    for i in range(labelled + unlabelled):
        log.inputs(f"id-{i}", [[6.0 + i % 7 / 10] for _ in features])
    log.labels((f"id-{i}", 0, truth) for i in range(labelled))
    log.flush()
    assert log.dropped == 0


def production_spec(**production: Any) -> dict[str, Any]:
    dataset = {"uri": "builtin:iris", "target": "species", "production": production}
    return iris_spec(dataset=dataset)


def test_labelled_production_rows_join_the_dataset(
    artifacts: Path, write_spec: Callable[..., Path], train: Callable[..., Any]
) -> None:
    folder = production.folder(artifacts.as_uri(), "iris")
    assert folder == f"{artifacts.as_uri()}/iris/production"
    record(folder, labelled=60, unlabelled=25)

    run = train(write_spec(production_spec(window="1h", minRows=50)))

    assert run.code == 0, run.result
    sources = run.result["sources"]
    assert sources["dataset"]["rows"] == 150
    assert sources["production"]["rows"] == 60
    assert sources["production"]["unlabelled"] == 25
    assert sources["production"]["window"] == "1h"
    for source in sources.values():
        assert source["fingerprint"].startswith("sha256:")
    assert run.result["rows"]["raw"] == 210
    assert "added 60 labelled production rows" in run.stderr


def test_rows_outside_the_window_do_not_count(artifacts: Path) -> None:
    folder = production.folder(artifacts.as_uri(), "iris")
    record(folder, labelled=40, at=time.time() - 7200)  # two hours ago
    record(folder, labelled=10)
    dataset = DatasetSpec.model_validate(production_spec(window="1h", minRows=5)["dataset"])
    frame, sources = with_production(load_builtin("iris"), dataset, folder)
    assert sources["production"]["rows"] == 10 and len(frame) == 160


def test_too_few_labelled_rows_fail_naming_the_folder(
    artifacts: Path, write_spec: Callable[..., Path], train: Callable[..., Any]
) -> None:
    folder = production.folder(artifacts.as_uri(), "iris")
    record(folder, labelled=3, unlabelled=100)
    run = train(write_spec(production_spec(minRows=50)))
    assert run.code == 1 and run.result["reason"] == "NotEnoughProductionData", run.result
    message = run.result["message"]
    assert folder in message and "3 labelled" in message and "103 recorded" in message
    assert "artifact" not in run.result


def test_an_empty_folder_is_not_enough_data(
    artifacts: Path, write_spec: Callable[..., Path], train: Callable[..., Any]
) -> None:
    run = train(write_spec(production_spec(minRows=1)))
    assert run.result["reason"] == "NotEnoughProductionData", run.result
    assert "0 labelled" in run.result["message"]


def test_rows_recorded_for_other_inputs_are_a_schema_mismatch(
    artifacts: Path, write_spec: Callable[..., Path], train: Callable[..., Any]
) -> None:
    record(production.folder(artifacts.as_uri(), "iris"), labelled=60, features=["a", "b"])
    run = train(write_spec(production_spec(minRows=1)))
    assert run.result["reason"] == "ProductionSchemaMismatch", run.result
    assert "sepal_length_cm" in run.result["message"]


def test_labels_that_are_not_numbers_for_a_numeric_target_are_refused(artifacts: Path) -> None:
    folder = production.folder(artifacts.as_uri(), "iris")
    record(folder, labelled=5, truth="tall")
    raw = load_builtin("iris").assign(species=lambda f: f["species"].astype("category").cat.codes)
    dataset = DatasetSpec.model_validate(production_spec(minRows=1)["dataset"])
    with pytest.raises(TrainingError) as refused:
        with_production(raw, dataset, folder)
    assert refused.value.reason == "ProductionSchemaMismatch"
    assert "'tall'" in refused.value.message and folder in refused.value.message
