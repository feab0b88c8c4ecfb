"""Test models that follow docs/runtime-contract.md, built without the training runtime.

Each builder fits a scikit-learn Pipeline over a DataFrame, stores it in a private model store with
the contract's metadata and exports a `.bentomodel` archive, as `modelops train` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler


@dataclass(frozen=True)
class BuiltModel:
    archive: Path
    model: str
    version: str
    pipeline: Any
    frame: pd.DataFrame
    metadata: dict[str, Any]


def reference_edges(values: np.ndarray, bins: int = 5) -> tuple[list[float], list[float]]:
    """Interior quantile edges (rounded, unique) and right-closed bin proportions."""
    qs = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1])
    edges = sorted({round(float(q), 3) for q in qs})
    index = np.searchsorted(edges, values, side="left")
    counts = np.bincount(index, minlength=len(edges) + 1)
    return edges, (counts / counts.sum()).tolist()


def _save(
    store_dir: Path,
    out_dir: Path,
    model: str,
    version: str,
    pipeline: Any,
    metadata: dict[str, Any],
) -> Path:
    import bentoml
    from bentoml._internal.models.model import ModelStore

    store = ModelStore(str(store_dir))
    with bentoml.models.create(f"{model}:{version}", metadata=metadata, _model_store=store) as m:
        joblib.dump(pipeline, Path(m.path) / "pipeline.pkl")
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{version}.bentomodel"
    bentoml.models.export_model(f"{model}:{version}", str(target), _model_store=store)
    return target


def iris_classifier(workdir: Path, version: str = "iris-v1", c: float = 1.0) -> BuiltModel:
    data = load_iris(as_frame=True)
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    frame = data.frame.iloc[:, :4].copy()
    frame.columns = names
    target = np.asarray(data.target_names)[data.target]
    pipeline = Pipeline(
        [("scale", StandardScaler()), ("clf", LogisticRegression(C=c, max_iter=500))]
    )
    pipeline.fit(frame, target)
    reference = {}
    for name in names:
        edges, props = reference_edges(frame[name].to_numpy())
        reference[name] = {"edges": edges, "proportions": props}
    classes = [str(c) for c in pipeline.classes_]
    metadata = {
        "contract": 1,
        "model": "iris",
        "version": version,
        "task": "classification",
        "target": "species",
        "features": [{"name": n, "type": "numeric"} for n in names],
        "classes": classes,
        "reference": reference,
        "prediction": {"proportions": {c: 1 / 3 for c in classes}},
        "metrics": {"accuracy": float(pipeline.score(frame, target))},
        "gates": {},
        "approved": True,
    }
    archive = _save(
        workdir / "store", workdir / "models" / "iris", "iris", version, pipeline, metadata
    )
    return BuiltModel(archive, "iris", version, pipeline, frame, metadata)


def mixed_regressor(workdir: Path, version: str = "price-v1") -> BuiltModel:
    """A regressor over one numeric and one categorical feature."""
    rng = np.random.default_rng(7)
    n = 300
    size = rng.uniform(20, 200, n).round(1)
    city = rng.choice(["berlin", "paris", "rome"], n)
    price = size * 3 + np.select([city == "berlin", city == "paris"], [50, 120], 10)
    frame = pd.DataFrame({"size": size, "city": city})
    pipeline = Pipeline(
        [
            (
                "prep",
                ColumnTransformer(
                    [
                        ("num", StandardScaler(), ["size"]),
                        ("cat", OneHotEncoder(handle_unknown="ignore"), ["city"]),
                    ]
                ),
            ),
            ("reg", LinearRegression()),
        ]
    )
    pipeline.fit(frame, price)
    edges, props = reference_edges(size)
    pred_edges, pred_props = reference_edges(pipeline.predict(frame))
    metadata = {
        "contract": 1,
        "model": "price",
        "version": version,
        "task": "regression",
        "target": "price",
        "features": [
            {"name": "size", "type": "numeric"},
            {"name": "city", "type": "categorical", "categories": ["berlin", "paris", "rome"]},
        ],
        "reference": {
            "size": {"edges": edges, "proportions": props},
            "city": {"categories": {"berlin": 1 / 3, "paris": 1 / 3, "rome": 1 / 3}, "other": 0.0},
        },
        "prediction": {"edges": pred_edges, "proportions": pred_props},
        "metrics": {"mae": 2.0},
        "gates": {},
        "approved": True,
    }
    archive = _save(
        workdir / "store", workdir / "models" / "price", "price", version, pipeline, metadata
    )
    return BuiltModel(archive, "price", version, pipeline, frame, metadata)
