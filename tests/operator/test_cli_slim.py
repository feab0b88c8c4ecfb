"""The `modelops` command as `pip install modelops` installs it: without scikit-learn, BentoML,
Kopf, pandas, s3fs or pyarrow (their extras say so), and `get -w`'s refresh schedule."""

from __future__ import annotations

import queue
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from modelops_operator import cli, entry
from modelops_operator.cli_kube import Change, refreshes
from modelops_operator.cli_verdicts import EXIT_ERROR, EXIT_OK, EXIT_USAGE

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("sklearn", "bentoml", "kopf", "pandas", "s3fs", "pyarrow")
# The distributions that install them, as pyproject.toml names them.
HEAVY_DISTRIBUTIONS = ("scikit-learn", "bentoml", "kopf", "pandas", "s3fs", "pyarrow")

# Runs the command in a Python that refuses to import the heavy packages, as if not installed.
WITHOUT_HEAVY = f"""
import sys

REFUSED = {HEAVY!r}


class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in REFUSED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None


sys.meta_path.insert(0, Refuse())
if sys.argv[1:2] == ["--try-import"]:
    import importlib
    importlib.import_module(sys.argv[2])
from modelops_operator.entry import main

sys.exit(main(sys.argv[1:]))
"""


def slim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_HEAVY, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "120", "HOME": "/nonexistent"},
    )


def requirement_name(requirement: str) -> str:
    found = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert found is not None, requirement
    return re.sub(r"[-_.]+", "-", found.group(0)).lower()


def project() -> dict[str, Any]:
    with (REPO / "pyproject.toml").open("rb") as handle:
        table: dict[str, Any] = tomllib.load(handle)["project"]
    return table


@pytest.mark.parametrize("module", HEAVY)
def test_the_refusing_python_cannot_import_the_heavy_packages(module: str) -> None:
    result = slim("--try-import", module)
    assert result.returncode != 0 and f"No module named '{module}'" in result.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--help"], "Usage: modelops"),
        (["get", "--help"], "Usage: modelops get"),
        (["status", "--help"], "Usage: modelops status"),
        (["history", "--help"], "Usage: modelops history"),
        (["retrain", "--help"], "Usage: modelops retrain"),
        (["--version"], "modelops "),
    ],
)
def test_the_command_runs_without_the_heavy_packages(args: list[str], says: str) -> None:
    result = slim(*args)
    assert result.returncode == EXIT_OK, result.stderr
    assert says in result.stdout and "Traceback" not in result.stderr


def test_get_without_the_heavy_packages_fails_cleanly_on_a_missing_kubeconfig(
    tmp_path: Path,
) -> None:
    result = slim("get", "--kubeconfig", str(tmp_path / "absent"))
    assert result.returncode == EXIT_ERROR
    assert result.stderr.strip() == (
        f"modelops: kubeconfig {tmp_path / 'absent'} does not exist: "
        "give one with --kubeconfig or $KUBECONFIG"
    )


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (["train", "--spec", "s.yaml", "--model", "iris"], "training"),
        (["train", "--help"], "training"),
        (["operator"], "operator"),
    ],
)
def test_train_and_operator_without_their_extra_say_which_to_install(
    args: list[str], extra: str
) -> None:
    result = slim(*args)
    assert result.returncode == EXIT_USAGE, result.stderr
    line = result.stderr.strip()
    assert line.startswith(f"modelops: {args[0]} needs the '{extra}' extra (")
    assert line.endswith(f"pip install 'modelops[{extra}]'")
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_the_base_distribution_names_none_of_the_heavy_packages() -> None:
    base = {requirement_name(r) for r in project()["dependencies"]}
    assert base, "no base dependencies read"
    assert base.isdisjoint(HEAVY_DISTRIBUTIONS), base & set(HEAVY_DISTRIBUTIONS)
    assert {"kubernetes", "typer", "rich"} <= base


def test_the_extras_hold_the_heavy_packages_and_dev_pulls_every_extra() -> None:
    extras = {
        k: {requirement_name(r) for r in v} for k, v in project()["optional-dependencies"].items()
    }
    assert {"kopf", "croniter"} <= extras["operator"]
    for runtime in ("training", "serving"):
        assert {"scikit-learn", "bentoml", "pandas", "s3fs", "pyarrow"} <= extras[runtime]
    assert "modelops[operator,training,serving,report]" in project()["optional-dependencies"]["dev"]


@pytest.mark.parametrize("verb", sorted(entry.EXTRAS))
def test_each_verb_probes_every_package_its_extra_installs(verb: str) -> None:
    """The modules `modelops train|operator` checks for are those of its extra (in this venv,
    where every extra is installed)."""
    extra, modules = entry.EXTRAS[verb]
    by_module = metadata.packages_distributions()
    probed = {requirement_name(d) for m in modules for d in by_module.get(m, [])}
    wanted = {requirement_name(r) for r in project()["optional-dependencies"][extra]}
    assert probed == wanted
    assert entry.missing_extra(verb) is None


# --- get -w: a read after each burst of watch events, polling once the watch failed ----------


def test_a_burst_of_changes_is_one_refresh_and_a_failed_watch_turns_to_polling() -> None:
    changes: queue.Queue[Change] = queue.Queue()
    slept: list[float] = []
    schedule = refreshes(changes, 7.0, slept.append)
    for kind in ("Model", "ModelVersion", "ModelVersion"):
        changes.put(Change(kind, "MODIFIED"))
    assert next(schedule) is None
    assert changes.empty() and slept == []
    changes.put(Change("Model", "ERROR", failure="forbidden"))
    changes.put(Change("Model", "MODIFIED"))
    assert next(schedule) == "forbidden"
    assert next(schedule) == "forbidden" and next(schedule) == "forbidden"
    assert slept == [7.0, 7.0]


def test_get_watch_reads_again_on_each_change_and_polls_once_the_watch_failed() -> None:
    reads: list[int] = []
    stopped: list[bool] = []

    def follow(changes: queue.Queue[Change]) -> Any:
        changes.put(Change("Model", "ADDED"))
        changes.put(Change("ModelVersion", "ADDED"))
        changes.put(Change("ModelVersion", "ERROR", failure="the watch broke"))
        return lambda: stopped.append(True)

    def render() -> Any:
        reads.append(len(reads))
        if len(reads) == 4:  # the second read since the watch failed
            raise KeyboardInterrupt
        return f"view {len(reads)}"

    console = Console(width=120, record=True, force_terminal=False)
    assert cli._watch(render, "modelops get", 0.05, console, follow) == EXIT_OK
    assert len(reads) == 4 and stopped == [True]
    # first read; one for the burst (the failure included) with its note; then the poll
    text = console.export_text()
    assert "view 3" in text and "not watching (the watch broke): reading every 0.05s" in text
