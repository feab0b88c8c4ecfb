"""Events through the API server, posted in order by one background thread.

With `metrics` (runtime/metrics.py) each Event is counted as the pass hands it over (whether or not
the API server takes it): by type and reason, and a canary's promotion or rollback by its outcome.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes.client.exceptions import ApiException

from modelops_operator.objects import EventSink
from modelops_operator.runtime.kube import Kube, namespace_terminating
from modelops_operator.runtime.metrics import Metrics

log = logging.getLogger("modelops.events")


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def kube_event_sink(kube: Kube, metrics: Metrics | None = None) -> EventSink:
    """Events from any thread (Kopf's poster needs its context); a pass does not wait for them."""
    poster = ThreadPoolExecutor(max_workers=1, thread_name_prefix="modelops-events")

    def send(obj: Mapping[str, Any], event_type: str, reason: str, message: str, at: str) -> None:
        try:
            kube.post_event(obj, event_type, reason, message, at)
        except ApiException as error:  # an Event is worth less than the pass that made it
            if not namespace_terminating(error):
                log.warning(
                    "event %s on %s not posted: %s", reason, obj["metadata"]["name"], error.reason
                )

    def post(obj: Mapping[str, Any], event_type: str, reason: str, message: str) -> None:
        if metrics is not None:
            metrics.observe_event(obj, event_type, reason, message)
        poster.submit(send, obj, event_type, reason, message, now())

    return post
