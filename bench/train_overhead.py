"""Benchmark: the wall time of `modelops train` against a plain scikit-learn fit of the same
estimator on the same data (synthetic classification, 10,000, 100,000 and 1,000,000 rows x 20
features), measured in one run.

Three timings per estimator, each the median of `--repeat` runs:
- plain fit: `estimator.fit(X_train, y_train)` in this process (data already in memory);
- plain script: a fresh Python process that imports scikit-learn, makes the data, splits it and
  fits — what a hand-written training script costs end to end;
- modelops train: the console script as a training Job runs it (load, clean, fingerprint, fit the
  Pipeline, evaluate, save with BentoML, export the archive).

    .venv/bin/python bench/train_overhead.py [--rows 10000,100000,1000000] [--features 20]
        [--repeat 3] [--estimators LogisticRegression,...] [--write-docs docs/benchmarks.md]

The fixed cost is what `modelops train` adds to the plain script whatever the data: its time at
the smallest size minus the script's (importing the spec classes, cleaning, evaluating and
packaging; BentoML is imported in a background thread while the data is loaded and fitted).

With --write-docs the "## Training overhead" section of that file is replaced (the rest is kept).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchdocs import write_section

ESTIMATORS = {
    "sklearn.linear_model.LogisticRegression": {"max_iter": 200},
    "sklearn.ensemble.HistGradientBoostingClassifier": {"max_iter": 100},
}
SECTION = "## Training overhead"

PLAIN_SCRIPT = """
import importlib, sys, json
from sklearn.datasets import make_classification
from sklearn.model_selection import train_test_split
rows, features, seed = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
path, params = sys.argv[4], json.loads(sys.argv[5])
x, y = make_classification(n_samples=rows, n_features=features, n_informative=features // 2,
                           n_redundant=0, random_state=seed)
x_train, x_test, y_train, y_test = train_test_split(
    x, y, test_size=0.2, random_state=42, stratify=y
)
module, _, name = path.rpartition(".")
estimator = getattr(importlib.import_module(module), name)(**params, random_state=42)
estimator.fit(x_train, y_train)
print(estimator.score(x_test, y_test))
"""


def modelops_binary() -> str:
    return str(Path(sys.executable).parent / "modelops")


def uri(rows: int, features: int, seed: int) -> str:
    return f"synthetic:classification?rows={rows}&features={features}&seed={seed}"


def plain_fit(
    class_path: str, params: dict[str, Any], rows: int, features: int, seed: int
) -> float:
    import importlib

    from sklearn.datasets import make_classification
    from sklearn.model_selection import train_test_split

    x, y = make_classification(
        n_samples=rows, n_features=features, n_informative=features // 2, n_redundant=0,
        random_state=seed,
    )  # fmt: skip
    x_train, _, y_train, _ = train_test_split(x, y, test_size=0.2, random_state=42, stratify=y)
    module, _, name = class_path.rpartition(".")
    estimator = getattr(importlib.import_module(module), name)(**params, random_state=42)
    started = time.perf_counter()
    estimator.fit(x_train, y_train)
    return time.perf_counter() - started


def plain_script(
    class_path: str, params: dict[str, Any], rows: int, features: int, seed: int
) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", PLAIN_SCRIPT, str(rows), str(features), str(seed), class_path,
         json.dumps(params)],
        check=True, capture_output=True,
    )  # fmt: skip
    return time.perf_counter() - started


def modelops_train(
    class_path: str,
    params: dict[str, Any],
    rows: int,
    features: int,
    seed: int,
    workdir: Path,
    run: int,
) -> tuple[float, dict[str, Any]]:
    spec = {
        "dataset": {"uri": uri(rows, features, seed), "target": "target"},
        "pipeline": {"scaling": "none", "cleaning": {"dropDuplicates": True}},
        "estimator": {"class": class_path, "params": params},
        "validation": {"testSize": 0.2, "randomState": 42},
    }
    spec_path = workdir / "spec.json"
    spec_path.write_text(json.dumps(spec))
    env = {**os.environ, "BENTOML_HOME": str(workdir / f"home-{run}")}
    started = time.perf_counter()
    done = subprocess.run(
        [modelops_binary(), "train", "--spec", str(spec_path), "--model", "bench",
         "--version", f"bench-{run}", "--artifacts", (workdir / "models").as_uri(),
         "--result-file", str(workdir / "result.json")],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"modelops train failed:\n{done.stdout}\n{done.stderr}")
    return elapsed, json.loads(done.stdout)


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="modelops-bench-") as tmp:
        workdir = Path(tmp)
        run = 0
        for size in args.rows:
            for class_path, params in ESTIMATORS.items():
                if class_path.rsplit(".", 1)[1] not in args.estimators:
                    continue
                fits, scripts, trains, stages = [], [], [], []
                for _ in range(args.repeat):
                    fits.append(plain_fit(class_path, params, size, args.features, args.seed))
                    scripts.append(plain_script(class_path, params, size, args.features, args.seed))
                    run += 1
                    elapsed, result = modelops_train(
                        class_path, params, size, args.features, args.seed, workdir, run
                    )
                    trains.append(elapsed)
                    stages.append(result["seconds"])
                    print(
                        f"{size} rows, {class_path}: fit {fits[-1]:.2f}s, script "
                        f"{scripts[-1]:.2f}s, modelops train {elapsed:.2f}s {result['seconds']}",
                        file=sys.stderr,
                    )
                median_stages = {k: statistics.median(s[k] for s in stages) for k in stages[0]}
                rows.append(
                    {
                        "rows": size,
                        "estimator": class_path.rsplit(".", 1)[1],
                        "fit": statistics.median(fits),
                        "script": statistics.median(scripts),
                        "train": statistics.median(trains),
                        "stages": median_stages,
                    }
                )
    return rows


def render(args: argparse.Namespace, rows: list[dict[str, Any]], load: str, load_after: str) -> str:
    command = (
        f".venv/bin/python bench/train_overhead.py --rows {','.join(map(str, args.rows))} "
        f"--features {args.features} "
        f"--repeat {args.repeat} "
        + (
            f"--estimators {','.join(args.estimators)} "
            if len(args.estimators) < len(ESTIMATORS)
            else ""
        )
        + "--write-docs docs/benchmarks.md"
    )
    lines = [
        SECTION,
        "",
        "`modelops train` against a plain scikit-learn fit of the same estimator on the same data: "
        f"synthetic classification, {args.features} features, 80/20 holdout; "
        f"median of {args.repeat} runs each, all measured in one run of:",
        "",
        "```",
        command,
        "```",
        "",
        "| rows | estimator | plain fit (s) | plain script (s) | modelops train (s) | "
        "train / fit | train / script | train - script (s) |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        lines.append(
            f"| {row['rows']:,} | {row['estimator']} | {row['fit']:.2f} | {row['script']:.2f} "
            f"| {row['train']:.2f} | {row['train'] / row['fit']:.1f}x "
            f"| {row['train'] / row['script']:.2f}x | {row['train'] - row['script']:.2f} |"
        )
    smallest = [row for row in rows if row["rows"] == min(args.rows)]
    fixed = statistics.median(row["train"] - row["script"] for row in smallest)
    lines += [
        "",
        f"The fixed cost, `modelops train` minus the plain script at {min(args.rows):,} rows "
        f"(median over the estimators): **{fixed:.2f} s**.",
    ]
    lines += [
        "",
        "Where `modelops train`'s time goes (median seconds, from its result's `seconds`; the rest "
        "of the wall time is starting Python and importing scikit-learn, pandas and the spec "
        "classes; BentoML is imported in a background thread during the run):",
        "",
        "| rows | estimator | load | clean | fit | evaluate | package | total in process |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        s = row["stages"]
        lines.append(
            f"| {row['rows']:,} | {row['estimator']} | {s['load']:.2f} | {s['clean']:.2f} "
            f"| {s['fit']:.2f} | {s['evaluate']:.2f} | {s['package']:.2f} | {s['total']:.2f} |"
        )
    lines += [
        "",
        "- *plain fit*: `estimator.fit` alone, data already in memory; *plain script*: a fresh "
        "Python process that imports scikit-learn, makes the data, splits and fits.",
        "- `modelops train` also generates and cleans the data (duplicates, coercion, "
        "fingerprint), fits the whole Pipeline, evaluates on the holdout, computes reference "
        "distributions, saves with BentoML and exports the archive.",
        f"- Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; load average before the run: {load}, after it: "
        f"{load_after} (the machine is shared: the ratios compare runs made side by side).",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--rows",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[10_000, 100_000, 1_000_000],
        help="comma-separated data sizes (default 10000,100000,1000000)",
    )
    p.add_argument("--features", type=int, default=20)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument(
        "--estimators",
        type=lambda text: text.split(","),
        default=[path.rsplit(".", 1)[1] for path in ESTIMATORS],
        help="comma-separated class names (default: all; HistGradientBoosting's OpenMP threads "
        "time badly on a machine other processes load)",
    )
    p.add_argument("--write-docs", type=Path)
    args = p.parse_args()
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    rows = measure(args)
    section = render(args, rows, load, ", ".join(f"{v:.2f}" for v in os.getloadavg()))
    print(section)
    if args.write_docs:
        write_section(args.write_docs, SECTION, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
