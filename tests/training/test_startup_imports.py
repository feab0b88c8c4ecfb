"""What `modelops train` imports before it needs it: BentoML, s3fs and botocore are a training
run's fixed cost only when the run uses them, so importing the runtime must not bring them in
(packaging imports BentoML in a background thread once the run has started; s3fs only for an
s3:// URI)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

DEFERRED = ("bentoml", "_bentoml_impl", "s3fs", "botocore", "aiobotocore")

PROBE = f"""
import json, sys
import modelops_training.cli, modelops_training.train
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {DEFERRED!r})))
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
