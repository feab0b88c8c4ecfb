"""`modelops operator`: builds the operator from its parts and runs it under Kopf.

Settings come from the environment and the command line; every part (the store, the API client,
the queue, the analysis loop, the pass's context, the leader elector, the controller, the metrics
and their server) is built here, once, and handed to what uses it. The log is text, or with
`--log-format json` one JSON object per line (`JsonFormatter`).
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import sys
from collections.abc import Mapping
from functools import partial
from typing import Any

import kopf
from kubernetes import client, config

from modelops_operator import handlers  # noqa: F401  (registers the Kopf handlers)
from modelops_operator.analysis.client import PrometheusClient
from modelops_operator.monitor import Monitor
from modelops_operator.reconcile import Context, reconcile
from modelops_operator.runtime.controller import Controller
from modelops_operator.runtime.events import kube_event_sink
from modelops_operator.runtime.kube import Kube
from modelops_operator.runtime.leader import ApiLeases, LeaderElector, Timing, identity
from modelops_operator.runtime.metrics import Metrics, serve
from modelops_operator.runtime.store import Store
from modelops_operator.runtime.workqueue import CURRENT, WorkQueue
from modelops_operator.settings import Settings, SettingsError, resolve


def _load_client() -> client.ApiClient:
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    return client.ApiClient()


# Models reconciled in parallel: a pass mostly waits for the API server.
WORKERS = 12


def _elector(settings: Settings) -> LeaderElector | None:
    """The Lease's candidate, on a client of its own: reconcile traffic never delays a renewal."""
    if not settings.leader_election:
        return None
    leases = ApiLeases(_load_client(), settings.lease_namespace, settings.lease_name)
    where = f"lease {settings.lease_namespace}/{settings.lease_name}"
    return LeaderElector(leases, identity(settings.pod_name), Timing.of(settings), lease=where)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: `time` (UTC, RFC 3339, milliseconds), `level`, `logger`,
    `message`; on every line of a Model's pass its `namespace` and `model` (the queue's worker
    names it, runtime/workqueue.py); on Kopf's lines about an object its `kind`, `namespace` and
    `name`; `exception` with the traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        entry: dict[str, Any] = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        current = CURRENT.get()
        reference = getattr(record, "k8s_ref", None)
        if current is not None:
            entry["namespace"], entry["model"] = current
        elif isinstance(reference, Mapping):
            for field in ("kind", "namespace", "name"):
                if reference.get(field):
                    entry[field] = reference[field]
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(log_format: str, verbose: bool) -> None:
    """The root logger's one handler, on stderr, in `log_format` (text or json)."""
    handler = logging.StreamHandler()
    formatter = JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(formatter)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])


def main(argv: list[str]) -> int:
    try:
        settings, args = resolve(argv)
    except SettingsError as error:
        print(f"modelops operator: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, args.verbose)
    if not args.verbose:  # one line per watch event is noise at a thousand Models
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    if not os.environ.get("MODELOPS_CREDENTIALS_KEY"):
        logging.getLogger("modelops").warning(
            "MODELOPS_CREDENTIALS_KEY is not set: this process made up a key, so every Model's "
            "feedback token changes when it restarts (the chart keeps one in a Secret)"
        )
    metrics = Metrics()
    if settings.metrics_port:
        serve(metrics, settings.metrics_port)
    store = Store()
    kube = Kube(_load_client(), store)
    queue = WorkQueue(workers=WORKERS, metrics=metrics)
    monitor = Monitor(PrometheusClient(settings.prometheus_url), queue.add_background)
    sink = kube_event_sink(kube, metrics)
    context = Context(kube, store, settings, sink, monitor, later=queue.add_later)
    controller = Controller(
        kube,
        store,
        queue,
        settings,
        partial(reconcile, context),
        monitor,
        _elector(settings),
        metrics,
    )
    scope: dict[str, Any] = (
        {"namespaces": list(settings.namespaces)} if settings.namespaces else {"clusterwide": True}
    )
    kopf.run(
        standalone=True,
        liveness_endpoint=args.liveness or None,
        memo=kopf.Memo(controller=controller, seen={}),
        **scope,
    )
    return 0
