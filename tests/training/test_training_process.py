"""`modelops train` as the training Job runs it: a real process, the console script, its own
BENTOML_HOME. Progress on stderr, the JSON result alone on stdout, nothing written under HOME."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from training_helpers import iris_spec

pytestmark = pytest.mark.unit

MODELOPS = Path(sys.executable).parent / "modelops"


def run_process(
    tmp_path: Path, spec: dict[str, object], version: str
) -> subprocess.CompletedProcess[str]:
    spec_path = tmp_path / f"{version}.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "HOME": str(home),  # anything BentoML wrote to ~/bentoml would land here
        "BENTOML_HOME": str(tmp_path / "pod-local-bentoml"),
    }
    return subprocess.run(
        [
            str(MODELOPS), "train", "--spec", str(spec_path), "--model", "iris",
            "--version", version, "--artifacts", (tmp_path / "models").as_uri(),
            "--result-file", str(tmp_path / f"{version}.result"),
        ],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_console_script_trains(tmp_path: Path) -> None:
    done = run_process(tmp_path, iris_spec(), "iris-v1")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert result["phase"] == "Succeeded"
    assert json.loads((tmp_path / "iris-v1.result").read_text()) == result
    assert (tmp_path / "models" / "iris" / "iris-v1.bentomodel").is_file()
    for step in ("loaded 150 rows", "cleaned:", "fitted", "holdout metrics", "saved iris:iris-v1"):
        assert step in done.stderr
    assert not (tmp_path / "home" / "bentoml").exists()
    assert not list((tmp_path / "pod-local-bentoml").rglob("model.yaml"))  # nothing staged is left


def test_console_script_fails_cleanly(tmp_path: Path) -> None:
    spec = iris_spec(estimator={"class": "subprocess.Popen"})
    done = run_process(tmp_path, spec, "iris-v2")
    assert done.returncode == 1
    result = json.loads(done.stdout)
    # not a scikit-learn class path: the API's pattern rejects it before the allow-list is asked
    assert result["reason"] == "InvalidSpec"
    assert "spec.training.estimator.class" in result["message"]
    assert "Traceback" not in done.stderr + done.stdout
    assert not (tmp_path / "models" / "iris").exists()


def test_sigterm_during_the_fit_leaves_nothing_and_says_so(tmp_path: Path) -> None:
    spec = iris_spec(
        dataset={"uri": "synthetic:classification?rows=50000&features=20&seed=3",
                 "target": "target"},
        estimator={"class": "sklearn.ensemble.RandomForestClassifier",
                   "params": {"n_estimators": 500}},
        validation={},
    )  # fmt: skip
    spec_path = tmp_path / "slow.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "pod-local-bentoml")}
    process = subprocess.Popen(
        [
            str(MODELOPS), "train", "--spec", str(spec_path), "--model", "slow",
            "--version", "slow-v1", "--artifacts", (tmp_path / "models").as_uri(),
            "--result-file", str(tmp_path / "result"),
        ],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stderr is not None
    seen = []
    for line in process.stderr:  # wait until the fit has started
        seen.append(line)
        if "cleaned:" in line:
            break
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 1, "".join(seen) + err
    result = json.loads(out)
    assert result["reason"] == "Terminated"
    assert json.loads((tmp_path / "result").read_text()) == result
    assert "Traceback" not in err
    leftovers = [p for p in (tmp_path / "models").rglob("*") if p.is_file()]
    assert leftovers == []
