"""The requests a person makes of a Model: retrain it, and promote, abort, pause or resume its
canary.

Each request writes an annotation the operator acts on (docs/api.md#annotations); the operator,
not the command, does the work, so the same request works from kubectl, a GitOps commit or
`modelops`. `wait` then polls the Model until the operator has handled the request and says
whether it had its effect (cli_verdicts names the exit statuses).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass

from modelops_api import contract
from modelops_operator import cli_verdicts
from modelops_operator.cli_kube import CliError, Kube
from modelops_operator.cli_verdicts import Verdict


@dataclass(frozen=True)
class Request:
    """A request written: its annotation, and how to judge its outcome from the Model."""

    verb: str
    namespace: str
    name: str
    key: str
    value: str
    judge: Callable[[Kube], Verdict]

    @property
    def said(self) -> str:
        return (
            f"model {self.namespace}/{self.name}: {self.verb} requested ({self.key}={self.value})"
        )


def token() -> str:
    """A fresh annotation value: a new value is a new request."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S.%fZ")


def retrain(kube: Kube, name: str) -> Request:
    """Asks for a new version now (reason `manual`); the outcome is that version's training."""
    before = kube.view(name)
    finished = frozenset(v.name for v in before.versions if v.finished_training)
    value = token()
    kube.annotate(name, {contract.ANNOTATION_RETRAIN: value})
    return Request(
        "retrain",
        kube.namespace,
        name,
        contract.ANNOTATION_RETRAIN,
        value,
        lambda k: cli_verdicts.retrain_verdict(k.view(name), value, finished),
    )


def canary(kube: Kube, verb: str, name: str) -> Request:
    """Gives the running canary a command. With no canary running the operator would drop the
    command, so it is refused here instead."""
    model = kube.view(name)
    if model.canary is None:
        serving = f"; {model.stable} serves as stable" if model.stable else ""
        raise CliError(f"Model {kube.namespace}/{name} runs no canary to {verb}{serving}")
    version = model.canary.version
    value = f"{verb}/{token()}"
    kube.annotate(name, {contract.ANNOTATION_CANARY: value})
    return Request(
        verb,
        kube.namespace,
        name,
        contract.ANNOTATION_CANARY,
        value,
        lambda k: cli_verdicts.canary_verdict(k.view(name), verb, value, version),
    )


def wait(kube: Kube, request: Request, timeout: float, interval: float = 2.0) -> Verdict:
    return cli_verdicts.poll(lambda: request.judge(kube), timeout, interval)
