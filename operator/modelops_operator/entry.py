"""The `modelops` command's entry point: `modelops train` and `modelops operator` go to their
runtime at once, without importing the user CLI (typer, rich; cli.py), so a training Job's fixed
cost is its own runtime's imports; every other verb goes to the typer app.

A training Job never imports the operator's dependencies nor the Kubernetes client, the operator
never imports scikit-learn. Run as the `modelops` program, `modelops train` ends the process as
soon as its result is written, without the interpreter's teardown (see `exit_at_once`).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from modelops_operator.cli_verdicts import EXIT_USAGE

# verb -> (module, function): each function takes the rest of argv and returns an exit status.
PASS_THROUGH: dict[str, tuple[str, str]] = {
    "train": ("modelops_training.cli", "main"),
    "operator": ("modelops_operator.run", "main"),
}


# verb -> (the extra that installs what it runs, the modules it cannot run without): the base
# distribution is this command alone (pyproject.toml).
EXTRAS: dict[str, tuple[str, tuple[str, ...]]] = {
    "train": ("training", ("sklearn", "bentoml", "pandas", "pyarrow", "s3fs")),
    "operator": ("operator", ("kopf", "prometheus_api_client", "prometheus_client", "croniter")),
}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_extra(verb: str) -> str | None:
    """What to tell a person whose installation lacks the verb's extra; None when it is there."""
    extra, modules = EXTRAS[verb]
    missing = [m for m in modules if not _installed(m)]
    if not missing:
        return None
    return (
        f"{verb} needs the {extra!r} extra ({', '.join(missing)} not installed): "
        f"pip install 'modelops[{extra}]'"
    )


def hand_on(verb: str, argv: list[str]) -> int:
    """Imports the verb's module now and hands it argv as given; without the verb's extra
    installed, says which one to install (exit 2)."""
    told = missing_extra(verb) if verb in EXTRAS else None
    if told is not None:
        print(f"modelops: {told}", file=sys.stderr)
        return EXIT_USAGE
    module_name, function_name = PASS_THROUGH[verb]
    function: Callable[[list[str]], int] = getattr(
        importlib.import_module(module_name), function_name
    )
    return function(argv)


def exit_at_once(status: int) -> NoReturn:
    """Flush what the process wrote and end it without tearing the interpreter down.

    A training is a one-shot process whose outputs are all written and closed by the time it
    returns (the JSON result on stdout, the result file, the archive); what is left is freeing
    scikit-learn's, SciPy's and pandas' modules one object at a time, 0.3 s of every training here
    (docs/benchmarks.md, "Training overhead"), which nobody waits for.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def main(argv: Sequence[str] | None = None) -> int:
    """The `modelops` program (argv None: the process's own arguments) or one command line."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in PASS_THROUGH:
        status = hand_on(args[0], args[1:])
        if argv is None and args[0] == "train":
            exit_at_once(status)
        return status
    from modelops_operator import cli

    return cli.main(args)
