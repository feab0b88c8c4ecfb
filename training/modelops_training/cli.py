"""`modelops train`: the command a training Job runs.

    modelops train --spec FILE --model NAME --version NAME --artifacts URI [--result-file PATH]

Progress goes to stderr as log lines; the JSON result goes alone to stdout and, cut to 4 KiB, to the
result file (the container's termination message). Exit status 0 when a model was produced
(Succeeded or Rejected), 1 when the run failed. BentoML state lives in this process's own
BENTOML_HOME: the variable's value (a pod-local emptyDir in a cluster) or, when unset, a temporary
directory removed at exit.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from typing import Any, NoReturn

from modelops_api import contract

from .packaging import preload
from .result import Terminated, TrainingError, failed, fit_to_limit, to_json

DEFAULT_RESULT_FILE = "/dev/termination-log"
log = logging.getLogger("modelops.train")


class _ArgumentError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as a result, not as exit status 2."""

    def error(self, message: str) -> NoReturn:
        raise _ArgumentError(message)


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="modelops train",
        description="Train a model from a Model's spec.training and archive it with BentoML.",
    )
    p.add_argument("--spec", required=True, help="file holding spec.training (YAML or JSON)")
    p.add_argument("--model", required=True, help="the Model's name")
    p.add_argument("--version", required=True, help="this version's name (the ModelVersion)")
    p.add_argument("--artifacts", required=True, help="artifact store URI, e.g. file:///models")
    p.add_argument(
        "--result-file",
        default=DEFAULT_RESULT_FILE,
        help=f"where the result goes, cut to 4 KiB (default {DEFAULT_RESULT_FILE})",
    )
    return p


def main(argv: list[str]) -> int:
    _configure_logging()
    try:
        args = parser().parse_args(argv)
    except _ArgumentError as error:
        result = failed("InvalidArguments", f"modelops train: {error}", _guess_names(argv))
        print(to_json(result), flush=True)
        print(parser().format_usage(), file=sys.stderr, end="")
        _write_result_file(_result_file_from(argv), result)
        return 1

    home = os.environ.get("BENTOML_HOME")
    temporary_home = None
    if not home:
        temporary_home = home = tempfile.mkdtemp(prefix="modelops-train-bentoml-")
        os.environ["BENTOML_HOME"] = home
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    # BentoML stages a new model in a temporary directory. Unless TMPDIR says otherwise, keep it in
    # BENTOML_HOME, so a pod with a read-only root filesystem needs only that emptyDir writable.
    previous_tempdir = tempfile.tempdir
    if not os.environ.get("TMPDIR"):
        scratch = os.path.join(home, "tmp")
        os.makedirs(scratch, exist_ok=True)
        tempfile.tempdir = scratch
    try:
        result = _train(args, home)
    finally:
        tempfile.tempdir = previous_tempdir
        if temporary_home:
            shutil.rmtree(temporary_home, ignore_errors=True)
    print(to_json(result), flush=True)
    _write_result_file(args.result_file, result)
    return 1 if result["phase"] == contract.FAILED else 0


def _train(args: argparse.Namespace, home: str) -> dict[str, Any]:
    try:
        # SIGTERM is caught from here on, the seconds of importing scikit-learn and pandas
        # included: as a container's PID 1 the process would otherwise ignore it, train on, and
        # exit 0 from a pod that is being deleted.
        with _terminate_on_sigterm():
            from .train import Request, run

            # BentoML is needed once the model is fitted: its import overlaps the data work.
            preload()
            request = Request(
                spec_path=args.spec,
                model=args.model,
                version=args.version,
                artifacts=args.artifacts,
                bentoml_home=home,
            )
            try:
                _check_object_store(args.artifacts)
            except TrainingError as error:
                log.error("failed: %s: %s", error.reason, error.message)
                return failed(
                    error.reason, error.message, {"model": args.model, "version": args.version}
                )
            return run(request)
    except Terminated:
        log.error("stopped by SIGTERM; nothing was archived")
        return failed(
            "Terminated",
            "the run was stopped by SIGTERM before it finished; no model was archived",
            {"model": args.model, "version": args.version},
        )
    except Exception as error:  # a bug, not bad input: still a result, and no traceback
        # unless MODELOPS_DEBUG asks for one; no secret of the environment either way
        from .storage import redact

        log.error(
            "unexpected %s: %s",
            type(error).__name__,
            redact(str(error)),
            exc_info=bool(os.environ.get("MODELOPS_DEBUG")),
        )
        return failed(
            "InternalError",
            f"unexpected {type(error).__name__}: {redact(str(error))}",
            {"model": args.model, "version": args.version},
        )


def _check_object_store(artifacts: str) -> None:
    """An object store (s3://) is listed once before anything else, so that a missing bucket,
    refused credentials or an unreachable endpoint fail the run in a second, not after the fit.
    (A file:// store is checked by the run itself.)"""
    from . import storage

    if artifacts.partition(":")[0] not in storage.SCHEMES:
        return
    from .packaging import ArtifactStore

    ArtifactStore.parse(artifacts).check_reachable()


@contextlib.contextmanager
def _terminate_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into Terminated while the run goes, so temporary files and a half-saved model
    are removed and a result is still written (the pod's termination message)."""

    def handler(signum: int, frame: object) -> None:
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (an embedding program): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _write_result_file(path: str, result: dict[str, Any]) -> None:
    try:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(fit_to_limit(result))
    except OSError as error:
        log.warning(
            "cannot write the result file %s (%s); the result is on stdout only",
            path,
            error.strerror or error,
        )


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at the time of the record."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _configure_logging() -> None:
    logger = logging.getLogger("modelops")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(
            logging.Formatter("%(asctime)s modelops-train %(levelname)s %(message)s")
        )
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def _guess_names(argv: list[str]) -> dict[str, Any]:
    known: dict[str, Any] = {}
    for key in ("model", "version"):
        value = _option(argv, f"--{key}")
        if value is not None:
            known[key] = value
    return known


def _result_file_from(argv: list[str]) -> str:
    return _option(argv, "--result-file") or DEFAULT_RESULT_FILE


def _option(argv: list[str], name: str) -> str | None:
    for index, item in enumerate(argv):
        if item == name and index + 1 < len(argv):
            return argv[index + 1]
        if item.startswith(name + "="):
            return item.split("=", 1)[1]
    return None
