"""The `modelops` command: one entry point that hands each verb to the part it belongs to.

Each verb imports its part lazily, so `modelops train` in a training Job never imports the
operator's dependencies and the operator never imports scikit-learn.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence

# verb -> (module, function, one-line help). Each function takes the remaining argv and returns an
# exit status.
VERBS: dict[str, tuple[str, str, str]] = {
    "train": ("modelops_training.cli", "main", "train a model from a Model's spec.training"),
    "retrain": ("modelops_operator.commands", "retrain", "train a new version of a Model now"),
    "promote": ("modelops_operator.commands", "promote", "promote a Model's canary now"),
    "abort": ("modelops_operator.commands", "abort", "roll a Model's canary back now"),
    "pause": ("modelops_operator.commands", "pause", "pause a Model's canary"),
    "resume": ("modelops_operator.commands", "resume", "resume a Model's paused canary"),
    "operator": ("modelops_operator.run", "main", "run the operator (Kopf) against a cluster"),
}


def usage() -> str:
    lines = ["usage: modelops VERB [ARGS ...]", "", "verbs:"]
    lines += [f"  {verb:<10} {text}" for verb, (_, _, text) in sorted(VERBS.items())]
    lines += ["", "Run 'modelops VERB --help' for a verb's options."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    verb, rest = args[0], args[1:]
    if verb not in VERBS:
        print(f"modelops: unknown verb {verb!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module_name, function_name, _ = VERBS[verb]
    function: Callable[[list[str]], int] = getattr(
        importlib.import_module(module_name), function_name
    )
    return function(rest)


if __name__ == "__main__":
    sys.exit(main())
