"""What the `modelops` command concludes from a Model, and the exit status it says it with.

`status` judges a Model as kstatus does (Ready with its observedGeneration caught up); `--wait`
polls a judgement until it is final or the time is up; `retrain --wait` and the canary verbs'
`--wait` judge the outcome of their own request. Pure, with the clock and the sleep injected.

Exit statuses (docs/cli.md):

    0  done: the Model is Ready, the request was carried out
    1  error: no or invalid kubeconfig, API server unreachable, forbidden, unknown Model
    2  usage: a bad option or argument
    3  Degraded: the Model serves an older version (the newest failed, was rolled back, or a pin
       cannot be honoured); or the version a retrain asked for did not pass, or a canary command
       did not have its effect
    4  Failed: the Model has nothing to serve
    5  not yet: the Model is not Ready (without --wait), or the timeout passed (--wait)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from modelops_api import contract

if TYPE_CHECKING:  # (the types only: `modelops train` imports this module, not pydantic)
    from modelops_operator.cli_model import ModelView, Version

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_DEGRADED = 3
EXIT_FAILED = 4
EXIT_PENDING = 5

READY, DEGRADED, FAILED, PENDING = "Ready", "Degraded", "Failed", "Pending"
CODES = {READY: EXIT_OK, DEGRADED: EXIT_DEGRADED, FAILED: EXIT_FAILED, PENDING: EXIT_PENDING}


@dataclass(frozen=True)
class Verdict:
    state: str  # Ready (or Done), Degraded, Failed, Pending
    reason: str
    message: str
    code: int

    @property
    def final(self) -> bool:
        return self.code != EXIT_PENDING


def _verdict(state: str, reason: str, message: str) -> Verdict:
    return Verdict(state, reason, message, CODES[state])


def model_verdict(model: ModelView) -> Verdict:
    """Ready (0), Degraded (3), Failed (4) or not yet (5), with the reason and message of the
    condition that says so. A status older than the spec is not judged: it says nothing about
    the spec being asked for."""
    if model.observed_generation is None or model.observed_generation < model.generation:
        seen = (
            "no generation"
            if model.observed_generation is None
            else (f"generation {model.observed_generation}")
        )
        return _verdict(
            PENDING,
            "NotObserved",
            f"the operator has not observed generation {model.generation} yet (status of {seen})",
        )
    ready = model.condition(contract.READY)
    if ready is not None and ready.status == "True":
        return _verdict(READY, ready.reason, ready.message)
    degraded = model.condition(contract.DEGRADED)
    why = ready or degraded
    reason, message = (why.reason, why.message) if why else ("NoStatus", "no conditions yet")
    if model.phase == contract.PHASE_FAILED:
        return _verdict(FAILED, reason, message)
    if degraded is not None and degraded.status == "True":
        return _verdict(DEGRADED, degraded.reason, degraded.message)
    if model.phase in (contract.PHASE_DEGRADED, contract.PHASE_ROLLING_BACK):
        return _verdict(DEGRADED, reason, message)
    return _verdict(PENDING, reason, message)


def retrain_verdict(model: ModelView, token: str, finished_before: frozenset[str]) -> Verdict:
    """The outcome of the retrain request `token`, given the versions that had finished training
    before it was made: not yet until the operator handled it and the version it started (or
    folded it into, a training already running) finished training; then 0 if that version
    passed its gates."""
    if model.retrain_token != token:
        return _verdict(PENDING, "NotHandled", "the operator has not handled the request yet")
    started = [v for v in model.versions if v.name not in finished_before]
    if not started:
        return _verdict(PENDING, "NoVersion", "no version of the request is readable yet")
    return version_verdict(started[-1])


def version_verdict(version: Version) -> Verdict:
    if not version.finished_training:
        return _verdict(PENDING, version.phase, f"{version.name} is {version.phase.lower()}")
    detail = f"{version.reason}: {version.message}" if version.message else version.reason
    text = f"{version.name} {version.phase.lower()}" + (f" ({detail})" if detail else "")
    if version.phase == contract.SUCCEEDED:
        return _verdict(READY, version.phase, text)
    return _verdict(DEGRADED, version.phase, text)


def canary_verdict(model: ModelView, verb: str, value: str, version: str) -> Verdict:
    """The outcome of the canary command `value` (`<verb>/<token>`) given to the canary of
    `version`: not yet until the operator handled it; then whether it had its effect."""
    if model.canary_command != value:
        return _verdict(PENDING, "NotHandled", "the operator has not handled the command yet")
    canary = model.canary if model.canary and model.canary.version == version else None
    if verb == "promote":
        done = canary is None and model.stable == version
        effect = f"{version} is stable" if done else f"{version} was not promoted"
    elif verb == "abort":
        done = canary is None and model.stable != version
        effect = f"{version} was rolled back" if done else f"{version} is still running"
    elif verb == "pause":
        done = canary is not None and canary.paused
        effect = f"canary {version} is paused" if done else f"canary {version} is not paused"
    else:
        done = canary is not None and not canary.paused
        effect = f"canary {version} runs" if done else f"canary {version} is not running"
    if done:
        return _verdict(READY, "Done", effect)
    stable = f"; stable is {model.stable}" if model.stable else ""
    return _verdict(DEGRADED, "NoEffect", f"{effect}{stable}")


def poll(
    judge: Callable[[], Verdict],
    timeout: float,
    interval: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Verdict:
    """Judges until the verdict is final or `timeout` seconds have passed; the last verdict, with
    the timeout said in its message when it is still not final."""
    deadline = clock() + timeout
    while True:
        verdict = judge()
        if verdict.final:
            return verdict
        left = deadline - clock()
        if left <= 0:
            return Verdict(
                PENDING,
                verdict.reason,
                f"timed out after {timeout:g}s: {verdict.message}",
                EXIT_PENDING,
            )
        sleep(min(interval, left))
