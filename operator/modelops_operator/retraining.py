"""Pure decisions of when to retrain by itself: drift or accuracy breaches, and the schedule.

A check that fails on the stable version adds one to its breach count; one that passes resets it;
an inconclusive one leaves it as it is (no data is evidence of nothing). When a check named in
`retrainOn` has failed for `consecutive` analyses in a row and the last retrain is older than the
cooldown, the operator retrains with that check as the reason.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence

from croniter import croniter

from modelops_operator.analysis.model import CheckResult, Outcome


def count_breaches(
    previous: Mapping[str, int], results: Sequence[CheckResult], watched: Sequence[str]
) -> dict[str, int]:
    counts = {name: int(previous.get(name, 0)) for name in watched}
    for result in results:
        if result.check not in counts:
            continue
        if result.outcome == Outcome.FAIL:
            counts[result.check] += 1
        elif result.outcome == Outcome.PASS:
            counts[result.check] = 0
    return counts


def retrain_reason(
    breaches: Mapping[str, int],
    consecutive: int,
    last_retrain_at: float | None,
    cooldown: float,
    now: float,
) -> str | None:
    """The check that calls for a retrain now, or None (not enough breaches, or cooling down)."""
    if last_retrain_at is not None and now - last_retrain_at < cooldown:
        return None
    for name in ("drift", "accuracy"):
        if breaches.get(name, 0) >= consecutive:
            return name
    return None


class ScheduleError(ValueError):
    """`spec.training.schedule` is not a cron expression."""


def schedule_due(expression: str, since: float, now: float) -> float | None:
    """The latest time the schedule fired after `since` and not after `now` (Unix seconds), or
    None. Fires missed while the operator was away collapse into one."""
    start = datetime.datetime.fromtimestamp(now, datetime.UTC)
    try:
        fired = float(croniter(expression, start).get_prev(float))
    except (ValueError, KeyError) as error:
        raise ScheduleError(f"spec.training.schedule {expression!r}: {error}") from None
    return fired if since < fired <= now else None
