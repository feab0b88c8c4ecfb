"""Helpers shared by the training runtime's tests: a small valid spec, CSV writing, and looks into
the model store and the artifact store."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def iris_spec(**overrides: Any) -> dict[str, Any]:
    """A small, fast, valid spec; `overrides` replace top-level sections."""
    spec: dict[str, Any] = {
        "dataset": {"uri": "builtin:iris", "target": "species"},
        "pipeline": {
            "cleaning": {"dropDuplicates": True, "missing": "impute-median"},
            "scaling": "standard",
            "selection": {"method": "none"},
            "augmentation": {"oversampleMinority": False},
        },
        "estimator": {
            "class": "sklearn.linear_model.LogisticRegression",
            "params": {"max_iter": 500},
        },
        "validation": {"testSize": 0.2, "randomState": 42, "gates": {"accuracy": 0.8}},
    }
    spec.update(overrides)
    return spec


def staged_models(home: Path) -> list[Path]:
    """BentoML models written under a training's BENTOML_HOME (each has a model.yaml): the run
    stages its model there only until the archive is exported."""
    return list(home.rglob("model.yaml"))


def archives(root: Path) -> list[Path]:
    """Every file under the artifact store, hidden temporaries included."""
    return [p for p in root.rglob("*") if p.is_file()]


def load_archive(archive: Path, home: Path) -> tuple[Any, dict[str, Any], dict[str, str]]:
    """Import an archive into a fresh store under `home` as serving would; return the pipeline,
    the metadata and the labels."""
    import bentoml
    import joblib
    from bentoml._internal.models.model import ModelStore

    from modelops_training.packaging import PIPELINE_FILE

    (home / "models").mkdir(parents=True, exist_ok=True)
    store = ModelStore(str(home / "models"))
    model = bentoml.models.import_model(str(archive), _model_store=store)
    stored = store.get(model.tag)
    pipeline = joblib.load(stored.path_of(PIPELINE_FILE))
    return pipeline, dict(stored.info.metadata), dict(stored.info.labels)


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
