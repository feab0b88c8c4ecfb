"""The chart's monitoring objects, given to the sandbox's Prometheus as a Prometheus Operator would.

The sandbox's cluster has no Prometheus Operator (nor its monitoring.coreos.com CRDs), so the chart
is installed without its PodMonitor and PrometheusRule. Instead, `helm template` renders them with
the install's own values (plus `metrics.podMonitor.enabled` and `alerts.enabled`, the scrape
interval the sandbox's), and the sandbox's Prometheus gets what the Prometheus Operator would make
of them: the operator PodMonitor as a scrape job (`prometheus.pod_monitor_scrape_configs`, job
label `<namespace>/<release>-operator`, which the alerts select) and the PrometheusRule's groups as
a rule file; then it reloads its configuration.

    watch_operator(prometheus, sandbox.helm, release, namespace, chart, values)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from modelops_sandbox import tools
from modelops_sandbox.prometheus import (
    PrometheusServer,
    pod_monitor_scrape_configs,
    rule_file,
)

RULES_FILE = "modelops-alerts.yaml"


@dataclass(frozen=True)
class ChartMonitoring:
    """The rendered operator PodMonitor and PrometheusRule."""

    pod_monitor: Mapping[str, Any]
    prometheus_rule: Mapping[str, Any]


def monitoring_values(values: Mapping[str, str], scrape_interval: str) -> dict[str, str]:
    """The install's values with the operator's PodMonitor and the alerts turned on, scraped at
    `scrape_interval` (its timeout the same: Prometheus refuses a longer one)."""
    return {
        **values,
        "metrics.podMonitor.enabled": "true",
        "metrics.podMonitor.interval": scrape_interval,
        "metrics.podMonitor.scrapeTimeout": scrape_interval,
        "alerts.enabled": "true",
    }


def pick(documents: list[Any]) -> ChartMonitoring:
    """The operator's PodMonitor (`<release>-operator`; the serving pods' is `-serving`) and the
    PrometheusRule among the rendered documents; LookupError when there is not one of each."""
    monitors = [
        d
        for d in documents
        if d.get("kind") == "PodMonitor" and str(d["metadata"]["name"]).endswith("-operator")
    ]
    rules = [d for d in documents if d.get("kind") == "PrometheusRule"]
    if len(monitors) != 1 or len(rules) != 1:
        raise LookupError(
            f"the chart rendered {len(monitors)} operator PodMonitor(s) and "
            f"{len(rules)} PrometheusRule(s); expected one of each"
        )
    return ChartMonitoring(monitors[0], rules[0])


def render(
    helm: Callable[..., str],
    release: str,
    namespace: str,
    chart: Path,
    values: Mapping[str, str],
) -> ChartMonitoring:
    """`helm template` of the chart with `values` (already `monitoring_values`), for the sandbox's
    Kubernetes version (helm template assumes an old one, which the chart's kubeVersion refuses)."""
    sets = [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]
    kube_version = tools.versions()["KUBERNETES_VERSION"]
    out = helm(
        "template",
        release,
        str(chart),
        "--namespace",
        namespace,
        "--kube-version",
        kube_version,
        *sets,
    )
    return pick([d for d in yaml.safe_load_all(out) if d])


def watch_operator(
    prometheus: PrometheusServer,
    helm: Callable[..., str],
    release: str,
    namespace: str,
    chart: Path,
    values: Mapping[str, str],
) -> ChartMonitoring:
    """Renders the chart's monitoring objects for the installed release and has `prometheus`
    (started with `enable_lifecycle`) scrape the operator pods and evaluate the alerts."""
    rendered = render(
        helm, release, namespace, chart, monitoring_values(values, prometheus.scrape_interval)
    )
    rules = prometheus.directory / RULES_FILE
    rules.write_text(yaml.safe_dump(rule_file(rendered.prometheus_rule), sort_keys=False))
    kubeconfig = Path(prometheus.kubeconfig).resolve()
    jobs = pod_monitor_scrape_configs(rendered.pod_monitor, kubeconfig)
    names = {job["job_name"] for job in jobs}
    # A second install (an upgrade) replaces the jobs and the rule file, never adds them twice.
    prometheus.extra_scrape_configs = [
        *(c for c in prometheus.extra_scrape_configs if c.get("job_name") not in names),
        *jobs,
    ]
    prometheus.rule_files = [*(f for f in prometheus.rule_files if f != rules), rules]
    prometheus.write_config()
    prometheus.reload()
    return rendered
