"""How the `modelops` command shows Models: a tree per Model (`get NAME`), a table of Models
(`get`), the versions as an experiment table (`history`), a verdict's line (`status`), and the
same data as JSON or YAML (`-o json|yaml`).

Pure: each function takes typed views (cli_model) and the time to count ages from, and returns a
rich renderable or plain data; nothing here reads the cluster or prints.
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

import yaml
from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from modelops_api import contract
from modelops_operator.cli_model import METRICS, Canary, Check, Condition, ModelView, Version
from modelops_operator.cli_verdicts import Verdict

# Conditions whose good state is False.
_GOOD_WHEN_FALSE = (contract.DEGRADED, contract.DRIFTED)
_OUTCOME_STYLE = {"pass": ("✔", "green"), "fail": ("✖", "red"), "inconclusive": ("?", "yellow")}
_PHASE_STYLE = {
    contract.PHASE_SERVING: "green",
    contract.PHASE_CANARY: "cyan",
    contract.PHASE_TRAINING: "blue",
    contract.PHASE_DEPLOYING: "blue",
    contract.PHASE_ROLLING_BACK: "yellow",
    contract.PHASE_DEGRADED: "yellow",
    contract.PHASE_FAILED: "red",
    contract.SUCCEEDED: "green",
    contract.REJECTED: "yellow",
    contract.FAILED: "red",
    contract.ROLLED_BACK: "yellow",
    contract.SUPERSEDED: "dim",
    contract.RETIRED: "dim",
}


def age(then: datetime.datetime | None, now: datetime.datetime) -> str:
    """kubectl's way: 42s, 7m, 3h, 5d (two units under a day: 3h12m)."""
    if then is None:
        return "-"
    total = max(0, int((now - then).total_seconds()))
    if total < 120:
        return f"{total}s"
    minutes, hours, days = total // 60, total // 3600, total // 86400
    if hours < 3:
        rest = minutes % 60
        return f"{hours}h{rest}m" if hours and rest else (f"{hours}h" if hours else f"{minutes}m")
    if days < 2:
        return f"{hours}h"
    return f"{days}d"


def number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _phase(phase: str | None) -> Text:
    return Text(phase or "-", style=_PHASE_STYLE.get(phase or "", ""))


def _good(c: Condition) -> bool | None:
    if c.status == "Unknown" or c.type == contract.PROGRESSING:
        return None
    return (c.status == "False") if c.type in _GOOD_WHEN_FALSE else (c.status == "True")


def _condition(c: Condition) -> Text:
    good = _good(c)
    icon, style = {True: ("✔", "green"), False: ("✖", "red"), None: ("•", "")}[good]
    text = Text(f"{icon} {c.type}", style=style)
    if c.status != "True" or c.type == contract.PROGRESSING:
        text.append(f"={c.status}", style=style)
    if c.reason and (good is False or c.type == contract.PROGRESSING):
        text.append(f" ({c.reason})", style="dim")
    return text


def _check(check: Check) -> Text:
    icon, style = _OUTCOME_STYLE.get(check.outcome, ("•", ""))
    text = Text(f"{icon} {check.name} ", style=style)
    text.append(check.outcome, style=style)
    if check.value is not None:
        text.append(f"  {number(check.value)}")
        if check.threshold is not None:
            text.append(f" (threshold {number(check.threshold)})", style="dim")
    if check.samples is not None:
        text.append(f"  {number(check.samples)} samples", style="dim")
    if check.reason and check.outcome != "pass":
        text.append(f": {check.reason}")
    return text


def _stable(model: ModelView) -> Text:
    text = Text("stable ", style="bold")
    text.append(model.stable or "none", style="green" if model.stable else "red")
    if model.accuracy is not None:
        source = "live" if model.accuracy_live else "holdout"
        text.append(f"  accuracy {number(model.accuracy)} ({source})")
    if model.drift is not None:
        over = model.drift_limit is not None and model.drift > model.drift_limit
        text.append("  drift PSI ")
        text.append(number(model.drift), style="red" if over else "green")
        if model.drift_limit is not None:
            text.append(f" {'>' if over else '≤'} {number(model.drift_limit)}", style="dim")
        if model.drift_feature:
            text.append(f" ({model.drift_feature})", style="dim")
    return text


def _canary(canary: Canary) -> Text:
    text = Text("canary ", style="bold")
    text.append(canary.version, style="cyan")
    steps = f"/{canary.steps}" if canary.steps else ""
    text.append(f"  step {canary.step + 1}{steps}  weight {canary.weight}%")
    text.append(f"  {canary.replicas} replica{'s' if canary.replicas != 1 else ''}")
    threshold = f"/{canary.threshold}" if canary.threshold else ""
    failed = f"  failed analyses {canary.failed_checks}{threshold}"
    text.append(failed, style="red" if canary.failed_checks else "")
    if canary.paused:
        text.append("  PAUSED", style="bold yellow")
    if canary.reason:
        text.append(f"  {canary.reason}", style="dim")
        if canary.message:
            text.append(f": {canary.message}", style="dim")
    return text


def _retrain(model: ModelView, now: datetime.datetime) -> Text:
    last = model.last_retrain
    text = Text("last retrain ", style="bold")
    if last is None:
        return text.append("never", style="dim")
    text.append(last.reason or "?", style="magenta")
    text.append(f"  {age(last.at, now)} ago" if last.at else "")
    if last.version:
        text.append(f"  -> {last.version}")
    return text


def _role(model: ModelView, v: Version) -> str:
    if v.name == model.stable:
        return "stable"
    if model.canary is not None and v.name == model.canary.version:
        return "canary"
    return ""


def metric_names(versions: Sequence[Version]) -> list[str]:
    """The metrics of METRICS any version has, in that order."""
    return [m for m in METRICS if any(m in v.metrics for v in versions)]


def _result(v: Version) -> str:
    if v.reason and v.message and v.reason != contract.TRAINED_REASON:
        return f"{v.reason}: {v.message}"
    return v.reason if v.reason and v.reason != contract.TRAINED_REASON else ""


def versions_table(
    model: ModelView, now: datetime.datetime, box_style: box.Box | None = box.SIMPLE_HEAD
) -> Table:
    """The versions, newest first: the experiment table."""
    metrics = metric_names(model.versions)
    table = Table(box=box_style, pad_edge=False, show_edge=False)
    table.add_column("VERSION", no_wrap=True)
    table.add_column("PHASE", no_wrap=True)
    table.add_column("TRIGGER", no_wrap=True)
    for m in metrics:
        table.add_column(m.upper(), justify="right", no_wrap=True)
    table.add_column("ROWS", justify="right", no_wrap=True)
    table.add_column("CREATED", justify="right", no_wrap=True)
    table.add_column("ROLE", no_wrap=True)
    table.add_column("RESULT", overflow="fold", ratio=1)
    for v in reversed(model.versions):
        role = _role(model, v)
        table.add_row(
            Text(v.name, style="bold" if role else ""),
            _phase(v.phase),
            v.trigger or "-",
            *(number(v.metrics.get(m)) for m in metrics),
            "-" if v.rows is None else str(v.rows),
            age(v.created, now),
            Text(role, style="green" if role == "stable" else "cyan"),
            _result(v),
        )
    return table


def model_tree(model: ModelView, now: datetime.datetime) -> Tree:
    """One Model as `kubectl argo rollouts get rollout` shows a Rollout."""
    title = Text(model.name, style="bold")
    title.append(f"  {model.namespace}  ", style="dim")
    title.append_text(_phase(model.phase))
    if model.observed_generation is not None and model.observed_generation < model.generation:
        title.append(
            f"  (status of generation {model.observed_generation}, spec at {model.generation})",
            style="yellow",
        )
    tree = Tree(title)
    if model.conditions:
        conditions = Text("conditions  ", style="bold")
        conditions.append_text(Text("  ").join(_condition(c) for c in model.conditions))
        tree.add(conditions)
        ready = model.condition(contract.READY)
        if ready is not None and ready.message:
            tree.add(Text(f"{ready.reason}: {ready.message}", style="dim"))
    else:
        tree.add(Text("no status yet: the operator has not reconciled this Model", style="yellow"))
    stable = tree.add(_stable(model))
    for check in model.checks:
        stable.add(_check(check))
    if model.canary is not None:
        canary = tree.add(_canary(model.canary))
        if model.canary.verdict:
            icon, style = _OUTCOME_STYLE.get(model.canary.verdict, ("•", ""))
            when = f" {age(model.canary.analysed_at, now)} ago" if model.canary.analysed_at else ""
            analysis = canary.add(Text(f"{icon} last analysis {model.canary.verdict}{when}", style))
            for check in model.canary.checks:
                analysis.add(_check(check))
        else:
            canary.add(Text("no analysis yet", style="dim"))
    tree.add(_retrain(model, now))
    if model.versions:
        tree.add(Text("versions", style="bold")).add(versions_table(model, now, box_style=None))
    return tree


def models_table(
    models: Sequence[ModelView], now: datetime.datetime, namespaces: bool = False
) -> Table:
    """Every Model in one table (`get` without a name)."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    if namespaces:
        table.add_column("NAMESPACE", no_wrap=True)
    for column in ("NAME", "PHASE", "READY", "STABLE", "CANARY", "ACCURACY", "DRIFT"):
        table.add_column(
            column, no_wrap=True, justify="right" if column in ("ACCURACY", "DRIFT") else "left"
        )
    table.add_column("LAST RETRAIN", no_wrap=True)
    table.add_column("AGE", justify="right", no_wrap=True)
    for m in models:
        ready = m.condition(contract.READY)
        ready_text = (
            Text("-")
            if ready is None
            else Text("True", style="green")
            if ready.status == "True"
            else Text(f"{ready.status} ({ready.reason})", style="red")
        )
        canary = (
            f"{m.canary.version} {m.canary.weight}%{' paused' if m.canary.paused else ''}"
            if m.canary
            else "-"
        )
        retrain = (
            f"{m.last_retrain.reason} {age(m.last_retrain.at, now)}" if m.last_retrain else "-"
        )
        table.add_row(
            *([m.namespace] if namespaces else []),
            m.name,
            _phase(m.phase),
            ready_text,
            m.stable or "-",
            canary,
            number(m.accuracy),
            number(m.drift),
            retrain,
            age(m.created, now),
        )
    return table


def verdict_line(model: ModelView, verdict: Verdict) -> Text:
    style = {0: "green", 5: "yellow"}.get(verdict.code, "red")
    text = Text(f"model {model.namespace}/{model.name}: ")
    text.append(verdict.state, style=f"bold {style}")
    if verdict.reason:
        text.append(f" ({verdict.reason})")
    if verdict.message:
        text.append(f": {verdict.message}")
    return text


def watching(what: str, now: datetime.datetime, body: RenderableType) -> Group:
    """A refreshed view with its header, as `get -w` shows it."""
    header = Text(f"{what}    {now.strftime('%H:%M:%S')}  (Ctrl-C to stop)", style="dim")
    return Group(header, body)


# --- -o json|yaml -------------------------------------------------------------------------------


def data(value: Any) -> Any:
    """Views as plain JSON-ready data: dataclasses as objects with camelCase keys, times in
    RFC 3339."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {_camel(f.name): data(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime.datetime):
        return value.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, Mapping):
        return {str(k): data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [data(v) for v in value]
    return value


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.title() for word in rest)


def verdict_data(model: ModelView, verdict: Verdict) -> dict[str, Any]:
    return {
        "namespace": model.namespace,
        "name": model.name,
        "phase": model.phase,
        "state": verdict.state,
        "reason": verdict.reason,
        "message": verdict.message,
        "exitCode": verdict.code,
    }


def dump(value: Any, output: str) -> str:
    """`value` as `json` or, for any other `output`, as YAML."""
    if output == "json":
        return json.dumps(value, indent=2, sort_keys=False)
    return yaml.safe_dump(value, sort_keys=False, allow_unicode=True).rstrip("\n")


def plain(renderable: RenderableType, width: int = 140) -> str:
    """The text a renderable shows, without colours (for tests and logs)."""
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None, legacy_windows=False).print(renderable)
    return buffer.getvalue()
