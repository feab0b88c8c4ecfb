"""`modelops operator`: runs the Kopf operator with settings from environment and command line."""

from __future__ import annotations

import logging
import sys
from typing import Any

import kopf
from kubernetes import client, config

from modelops_operator import handlers  # noqa: F401  (registers the Kopf handlers)
from modelops_operator.analysis.client import PrometheusClient
from modelops_operator.kube import Kube
from modelops_operator.monitor import Monitor
from modelops_operator.reconcile import Context, kube_event_sink
from modelops_operator.settings import SettingsError, resolve


def _load_client() -> client.ApiClient:
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    return client.ApiClient()


def main(argv: list[str]) -> int:
    try:
        settings, args = resolve(argv)
    except SettingsError as error:
        print(f"modelops operator: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:  # one line per watch event is noise at a thousand Models
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    kube = Kube(_load_client())
    context = Context(kube=kube, settings=settings, event=kube_event_sink(kube))
    context.monitor = Monitor(PrometheusClient(settings.prometheus_url), context.queue.add)
    scope: dict[str, Any] = (
        {"namespaces": list(settings.namespaces)} if settings.namespaces else {"clusterwide": True}
    )
    kopf.run(
        standalone=True,
        liveness_endpoint=args.liveness or None,
        memo=kopf.Memo(context=context, seen={}),
        **scope,
    )
    return 0
