"""What `modelops train` imports before it needs it, and how it ends: BentoML, s3fs and botocore
are a training run's fixed cost only when the run uses them, so importing the runtime must not
bring them in (packaging imports BentoML in a background thread once the run has started; s3fs
only for an s3:// URI); neither do a YAML parser (the operator writes the spec as JSON) and
scikit-learn's feature selection (only a spec that selects features uses it). The program ends
once its result is written, without the interpreter's teardown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

DEFERRED = ("bentoml", "_bentoml_impl", "s3fs", "botocore", "aiobotocore", "yaml")

PROBE = f"""
import json, sys
import modelops_training.cli, modelops_training.train
print(json.dumps(sorted(
    m for m in sys.modules
    if m.split(".")[0] in {DEFERRED!r} or m.startswith("sklearn.feature_selection")
)))
"""


def test_importing_the_runtime_leaves_bentoml_and_s3fs_for_later() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=True
    )
    assert json.loads(done.stdout) == []


def test_preload_imports_what_packaging_needs() -> None:
    probe = (
        "import sys\n"
        "from modelops_training.packaging import preload\n"
        "preload().join()\n"
        "print('bentoml._internal.models.model' in sys.modules, 'joblib' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.split() == ["True", "True"]


def run_probe(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`code` in a fresh interpreter, with a BentoML home of its own under `tmp_path`."""
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "BENTOML_HOME": str(tmp_path / "home")},
    )  # fmt: skip


def test_the_program_ends_once_its_result_is_out(tmp_path: Path) -> None:
    """Run as the program (the console script calls main() without arguments), a training's
    result is complete on stdout and in its file, and no teardown work (an atexit hook) runs."""
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"dataset": {"uri": "synthetic:classification?rows=200"}}))
    probe = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('teardown ran', file=sys.stderr))\n"
        "from modelops_operator.entry import main\n"
        f"sys.argv = ['modelops', 'train', '--spec', {str(spec)!r}, '--model', 'm',\n"
        f"    '--version', 'v1', '--artifacts', {(tmp_path / 'models').as_uri()!r},\n"
        f"    '--result-file', {str(tmp_path / 'result')!r}]\n"
        "sys.exit(main())\n"
    )
    done = run_probe(probe, tmp_path)
    assert done.returncode == 1, done.stderr  # the spec names no estimator
    result = json.loads(done.stdout)
    assert result["phase"] == "Failed" and result["reason"] == "InvalidSpec"
    assert json.loads((tmp_path / "result").read_text()) == result
    assert "teardown ran" not in done.stderr


def test_a_run_that_selects_no_features_never_imports_feature_selection(tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(
        json.dumps(
            {
                "dataset": {"uri": "synthetic:classification?rows=200", "target": "target"},
                "estimator": {"class": "sklearn.linear_model.LogisticRegression"},
            }
        )
    )
    probe = (
        "import sys\n"
        "from modelops_training import cli\n"
        f"status = cli.main(['--spec', {str(spec)!r}, '--model', 'm', '--version', 'v1',\n"
        f"    '--artifacts', {(tmp_path / 'models').as_uri()!r},\n"
        f"    '--result-file', {str(tmp_path / 'result')!r}])\n"
        "print(status, 'sklearn.feature_selection' in sys.modules, file=sys.stderr)\n"
    )
    done = run_probe(probe, tmp_path)
    assert done.stderr.splitlines()[-1] == "0 False", done.stderr
