"""`modelops train` as the training Job runs it: a real process, the console script, its own
BENTOML_HOME. Progress on stderr, the JSON result alone on stdout, nothing written under HOME."""

from __future__ import annotations

import json
import os
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
    assert (tmp_path / "pod-local-bentoml" / "models" / "iris").is_dir()


def test_console_script_fails_cleanly(tmp_path: Path) -> None:
    spec = iris_spec(estimator={"class": "subprocess.Popen"})
    done = run_process(tmp_path, spec, "iris-v2")
    assert done.returncode == 1
    result = json.loads(done.stdout)
    assert result["reason"] == "EstimatorNotAllowed"
    assert "Traceback" not in done.stderr + done.stdout
    assert not (tmp_path / "models" / "iris").exists()
