"""The `modelops` command, and `kubectl modelops`: the same app as a kubectl plugin.

    modelops get [NAME] [-w]                 a Model as a tree (-w: refreshed), or all in a table
    modelops status NAME [--wait]            Ready or why not, as an exit status (for CI)
    modelops history NAME                    the versions as an experiment table
    modelops report NAME [--prometheus URL]  a self-contained HTML report of the Model
    modelops retrain NAME [--wait]           train a new version now
    modelops promote|abort|pause|resume NAME [--wait]   drive the running canary
    modelops train ...                       the training runtime: a training Job's command
    modelops operator ...                    the operator process

`train` and `operator` are handed their arguments unchanged by the command's entry point (entry.py)
before this module is imported. The other verbs are a typer app (options, help, shell completion)
that imports the Kubernetes client only when a verb runs. Exit statuses: cli_verdicts.
"""

from __future__ import annotations

import datetime
import enum
import os
import queue
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from modelops_operator.cli_verdicts import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_PENDING,
    EXIT_USAGE,
    Verdict,
)
from modelops_operator.entry import hand_on

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from modelops_operator.cli_kube import Change, Kube
    from modelops_operator.commands import Request

class Output(enum.StrEnum):
    TABLE = "table"
    JSON = "json"
    YAML = "yaml"


app = typer.Typer(
    name="modelops",
    help="Train, serve, watch and retrain machine-learning models on Kubernetes "
    "(Models and ModelVersions, modelops.dev).",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)

# --- options every verb takes, before or after it ----------------------------------------------

NamespaceOption = Annotated[
    str | None,
    typer.Option(
        "-n", "--namespace", help="default: the kubeconfig context's namespace", show_default=False
    ),
]
AllNamespacesOption = Annotated[
    bool, typer.Option("-A", "--all-namespaces", help="Models of every namespace (get)")
]
KubeconfigOption = Annotated[
    str | None,
    typer.Option("--kubeconfig", help="default: $KUBECONFIG or ~/.kube/config", show_default=False),
]
ContextOption = Annotated[
    str | None,
    typer.Option("--context", help="default: the kubeconfig's current context", show_default=False),
]
OutputOption = Annotated[
    Output | None,
    typer.Option("-o", "--output", help="table (default), json or yaml", show_default=False),
]
WaitOption = Annotated[bool, typer.Option("--wait", help="wait for the outcome (exit status)")]
TimeoutOption = Annotated[
    str, typer.Option("--timeout", help="how long --wait waits: 90s, 5m, 1h30m, or seconds")
]
IntervalOption = Annotated[
    float, typer.Option("--interval", min=0.2, help="seconds between two reads")
]
NameArgument = Annotated[str, typer.Argument(help="the Model's name", show_default=False)]


@dataclass(frozen=True)
class Options:
    namespace: str | None = None
    all_namespaces: bool = False
    kubeconfig: str | None = None
    context: str | None = None
    output: Output | None = None

    def over(self, base: Options) -> Options:
        """These options, each taken from `base` where not given here."""
        return Options(
            namespace=self.namespace or base.namespace,
            all_namespaces=self.all_namespaces or base.all_namespaces,
            kubeconfig=self.kubeconfig or base.kubeconfig,
            context=self.context or base.context,
            output=self.output or base.output,
        )

    @property
    def format(self) -> Output:
        return self.output or Output.TABLE


def _options(ctx: typer.Context, given: Options) -> Options:
    base = ctx.obj if isinstance(ctx.obj, Options) else Options()
    return given.over(base)


def _version(value: bool) -> None:
    if value:
        try:
            version = metadata.version("modelops")
        except metadata.PackageNotFoundError:
            version = "unknown"
        print(f"modelops {version}")
        raise typer.Exit()


@app.callback()
def _main(
    ctx: typer.Context,
    namespace: NamespaceOption = None,
    all_namespaces: AllNamespacesOption = False,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    output: OutputOption = None,
    version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_version, help="print the version"),
    ] = False,
) -> None:
    ctx.obj = Options(namespace, all_namespaces, kubeconfig, context, output)


# --- running a verb: the cluster, the consoles, clean errors ------------------------------------


def _consoles() -> tuple[Console, Console]:
    from rich.console import Console

    out, err = Console(), Console(stderr=True)
    for console in (out, err):
        if not console.is_terminal and "COLUMNS" not in os.environ:
            console.width = 160  # a pipe or a CI log: no wrapping at 80 columns
    return out, err


def _fail(message: str, code: int) -> NoReturn:
    _, err = _consoles()
    err.print(f"modelops: {message}", style="red", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _kube(options: Options) -> Kube:
    from modelops_operator.cli_kube import Kube, connect

    return Kube(connect(options.kubeconfig, options.context, options.namespace))


def _run(body: Callable[[], int]) -> NoReturn:
    """Runs a verb: a CliError becomes its message on stderr and its exit status, Ctrl-C ends
    quietly."""
    from modelops_operator.cli_kube import CliError

    try:
        code = body()
    except CliError as error:
        _fail(str(error), error.code)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    raise typer.Exit(code)


def _seconds(timeout: str) -> float:
    from modelops_api.spec import seconds

    try:
        return float(timeout)
    except ValueError:
        pass
    try:
        return seconds(timeout)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--timeout") from None


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _print(console: Console, renderable: RenderableType | str) -> None:
    if isinstance(renderable, str):
        console.print(renderable, markup=False, highlight=False, soft_wrap=True)
    else:
        console.print(renderable)


def _polling(kube: Kube, judge: Callable[[Kube], Verdict], err: Console) -> Callable[[], Verdict]:
    """`judge` as --wait calls it: a spinner on a terminal says what it waits for; a failure to
    reach the API server after the first read is waited out (a CI runner's network blips), an
    unknown Model is not."""
    from modelops_operator.cli_kube import CliError, NotFound

    spinner = err.status("waiting") if err.is_terminal else None
    if spinner is not None:
        spinner.start()

    def judge_once() -> Verdict:
        try:
            verdict = judge(kube)
        except NotFound:
            raise
        except CliError as error:
            verdict = Verdict("Pending", "Unreachable", str(error), EXIT_PENDING)
        if spinner is not None:
            spinner.update(f"waiting: {verdict.reason}: {verdict.message}")
            if verdict.final:
                spinner.stop()
        return verdict

    return judge_once


# --- the verbs ----------------------------------------------------------------------------------


@app.command()
def get(
    ctx: typer.Context,
    name: Annotated[
        str | None, typer.Argument(help="a Model: its tree; none: every Model in a table")
    ] = None,
    watch: Annotated[
        bool,
        typer.Option(
            "-w", "--watch", help="follow the API server's watch, refreshed in place until Ctrl-C"
        ),
    ] = False,
    interval: Annotated[
        float,
        typer.Option(
            "--interval", min=0.2, help="-w: seconds between two reads if the watch fails"
        ),
    ] = 2.0,
    namespace: NamespaceOption = None,
    all_namespaces: AllNamespacesOption = False,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    output: OutputOption = None,
) -> None:
    """Show a Model as a tree: stable and canary, checks, drift, accuracy, retrains, versions."""
    options = _options(ctx, Options(namespace, all_namespaces, kubeconfig, context, output))
    if name and options.all_namespaces:
        raise typer.BadParameter("a NAME is in one namespace: give -n, not -A", param_hint="-A")
    if watch and options.format != Output.TABLE:
        raise typer.BadParameter("--watch shows the table or tree; -o json|yaml prints once")

    def body() -> int:
        from modelops_operator import cli_views

        kube = _kube(options)
        out, err = _consoles()

        def render() -> RenderableType | None:
            if name:
                model = kube.view(name)
                if options.format != Output.TABLE:
                    return cli_views.dump(cli_views.data(model), options.format)
                return cli_views.model_tree(model, _now())
            models = kube.views(options.all_namespaces)
            if options.format != Output.TABLE:
                return cli_views.dump({"items": cli_views.data(models)}, options.format)
            if not models:
                return None
            return cli_views.models_table(models, _now(), namespaces=options.all_namespaces)

        where = "any namespace" if options.all_namespaces else f"namespace {kube.namespace}"
        if not watch:
            shown = render()
            if shown is None:
                _print(err, f"No Models in {where}.")
            else:
                _print(out, shown)
            return EXIT_OK
        what = f"modelops get {name or ''} ({where})"
        return _watch(render, what, interval, out, lambda q: kube.follow(options.all_namespaces, q))

    _run(body)


def _watch(
    render: Callable[[], RenderableType | None],
    what: str,
    interval: float,
    out: Console,
    follow: Callable[[queue.Queue[Change]], Callable[[], None]],
) -> int:
    """Re-renders in place on each change the API server's watch reports until Ctrl-C, or every
    `interval` seconds once the watch failed; a failed read shows beside the last good view."""
    from rich.console import Group
    from rich.live import Live
    from rich.text import Text

    from modelops_operator import cli_views
    from modelops_operator.cli_kube import CliError, refreshes

    last: RenderableType = Text("")
    watch_failed: str | None = None

    def frame() -> RenderableType:
        nonlocal last
        shown: list[RenderableType] = []
        try:
            last = render() or Text("No Models.")
            shown.append(last)
        except CliError as error:
            shown += [last, Text(str(error), style="red")]
        if watch_failed is not None:
            note = f"not watching ({watch_failed}): reading every {interval:g}s"
            shown.append(Text(note, style="yellow"))
        return cli_views.watching(what, _now(), Group(*shown))

    changes: queue.Queue[Change] = queue.Queue()
    stop = follow(changes)  # before the first read: no change after it goes unseen
    try:
        with Live(frame(), console=out, auto_refresh=False, transient=False) as live:
            for failure in refreshes(changes, interval):
                watch_failed = failure
                live.update(frame(), refresh=True)
    except KeyboardInterrupt:
        pass
    finally:
        stop()
    return EXIT_OK


@app.command()
def status(
    ctx: typer.Context,
    name: NameArgument,
    wait: Annotated[
        bool, typer.Option("--wait", help="wait until Ready, Degraded or Failed, or the timeout")
    ] = False,
    timeout: TimeoutOption = "10m",
    interval: IntervalOption = 2.0,
    namespace: NamespaceOption = None,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    output: OutputOption = None,
) -> None:
    """Is the Model Ready? Exit 0 if so; 3 Degraded, 4 Failed, 5 not yet (or timed out)."""
    options = _options(ctx, Options(namespace, False, kubeconfig, context, output))
    seconds = _seconds(timeout)

    def body() -> int:
        from modelops_operator import cli_verdicts, cli_views

        kube = _kube(options)
        out, err = _consoles()
        model = kube.view(name)
        verdict = cli_verdicts.model_verdict(model)
        if wait and not verdict.final:

            def judge(k: Kube) -> Verdict:
                nonlocal model
                model = k.view(name)
                return cli_verdicts.model_verdict(model)

            verdict = cli_verdicts.poll(_polling(kube, judge, err), seconds, interval)
        if options.format == Output.TABLE:
            _print(out, cli_views.verdict_line(model, verdict))
        else:
            _print(out, cli_views.dump(cli_views.verdict_data(model, verdict), options.format))
        return verdict.code

    _run(body)


@app.command()
def history(
    ctx: typer.Context,
    name: NameArgument,
    namespace: NamespaceOption = None,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    output: OutputOption = None,
) -> None:
    """The Model's versions, newest first: phase, trigger, metrics, result, age."""
    options = _options(ctx, Options(namespace, False, kubeconfig, context, output))

    def body() -> int:
        from modelops_operator import cli_views

        model = _kube(options).view(name)
        out, err = _consoles()
        if options.format != Output.TABLE:
            _print(out, cli_views.dump({"items": cli_views.data(model.versions)}, options.format))
        elif not model.versions:
            _print(err, f"Model {model.namespace}/{model.name} has no versions yet.")
        else:
            _print(out, cli_views.versions_table(model, _now()))
        return EXIT_OK

    _run(body)


@app.command()
def report(
    ctx: typer.Context,
    name: NameArgument,
    prometheus: Annotated[
        str | None,
        typer.Option(
            "--prometheus",
            help="its URL: the series over time; without it, the status's last values",
            show_default=False,
        ),
    ] = None,
    since: Annotated[
        str, typer.Option("--since", help="the period the series cover: 90m, 24h, 7d or seconds")
    ] = "24h",
    path: Annotated[
        str, typer.Option("-o", "--output", help="the HTML file to write")
    ] = "report.html",
    namespace: NamespaceOption = None,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
) -> None:
    """Write a Model's report as one HTML page: versions, accuracy, drift, canaries, retrains."""
    from modelops_operator.report_model import period_seconds

    options = _options(ctx, Options(namespace, False, kubeconfig, context))
    try:
        seconds = period_seconds(since)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--since") from None

    def body() -> int:
        from modelops_operator.report_gather import write_report

        written = write_report(
            name,
            options.namespace,
            kubeconfig=options.kubeconfig,
            context=options.context,
            prometheus=prometheus,
            since_seconds=seconds,
            path=path,
        )
        out, _ = _consoles()
        _print(out, f"wrote {written}")
        return EXIT_OK

    _run(body)


def _request(
    ctx: typer.Context,
    make: Callable[[Kube], Request],
    wait: bool,
    timeout: str,
    interval: float,
    given: Options,
) -> NoReturn:
    """Writes a request and, with --wait, waits for its outcome."""
    options = _options(ctx, given)
    seconds = _seconds(timeout)

    def body() -> int:
        from modelops_operator import cli_verdicts, cli_views

        kube = _kube(options)
        out, err = _consoles()
        request = make(kube)
        said: dict[str, object] = {
            "namespace": request.namespace,
            "name": request.name,
            "verb": request.verb,
            "annotation": {request.key: request.value},
        }
        if options.format == Output.TABLE:
            _print(out, request.said)
        verdict: Verdict | None = None
        if wait:
            verdict = cli_verdicts.poll(_polling(kube, request.judge, err), seconds, interval)
            if options.format == Output.TABLE:
                _print(out, f"{request.verb}: {verdict.state}: {verdict.message}")
            said["outcome"] = {
                "state": verdict.state,
                "reason": verdict.reason,
                "message": verdict.message,
                "exitCode": verdict.code,
            }
        if options.format != Output.TABLE:
            _print(out, cli_views.dump(said, options.format))
        return EXIT_OK if verdict is None else verdict.code

    _run(body)


@app.command()
def retrain(
    ctx: typer.Context,
    name: NameArgument,
    wait: WaitOption = False,
    timeout: TimeoutOption = "30m",
    interval: IntervalOption = 2.0,
    namespace: NamespaceOption = None,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    output: OutputOption = None,
) -> None:
    """Train a new version now (reason manual). --wait: until it is trained (0) or not (3)."""
    from modelops_operator import commands

    given = Options(namespace, False, kubeconfig, context, output)
    _request(ctx, lambda k: commands.retrain(k, name), wait, timeout, interval, given)


def _canary_verb(verb: str, text: str) -> None:
    def command(
        ctx: typer.Context,
        name: NameArgument,
        wait: WaitOption = False,
        timeout: TimeoutOption = "5m",
        interval: IntervalOption = 2.0,
        namespace: NamespaceOption = None,
        kubeconfig: KubeconfigOption = None,
        context: ContextOption = None,
        output: OutputOption = None,
    ) -> None:
        from modelops_operator import commands

        given = Options(namespace, False, kubeconfig, context, output)
        _request(ctx, lambda k: commands.canary(k, verb, name), wait, timeout, interval, given)

    command.__doc__ = text
    app.command(name=verb)(command)


_canary_verb("promote", "Promote the running canary to stable now.")
_canary_verb("abort", "Roll the running canary back now.")
_canary_verb("pause", "Pause the running canary: no analysis, no step, no deadline.")
_canary_verb("resume", "Resume a paused canary.")


# --- the verbs of other processes, handed on unchanged ------------------------------------------

_PASS_THROUGH_SETTINGS = {"allow_extra_args": True, "ignore_unknown_options": True}


@app.command(context_settings=_PASS_THROUGH_SETTINGS, add_help_option=False)
def train(ctx: typer.Context) -> None:
    """Train a model from a Model's spec.training: a training Job's command (train --help)."""
    raise typer.Exit(hand_on("train", list(ctx.args)))


@app.command(context_settings=_PASS_THROUGH_SETTINGS, add_help_option=False)
def operator(ctx: typer.Context) -> None:
    """Run the operator (Kopf) against a cluster (operator --help)."""
    raise typer.Exit(hand_on("operator", list(ctx.args)))


def _prog_name() -> str:
    called = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return called if called in ("modelops", "kubectl-modelops") else "modelops"


def main(argv: Sequence[str] | None = None) -> int:
    """The typer app on `argv` (default: the command line)."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        app(args=args, prog_name=_prog_name())
    except SystemExit as exit_:
        code = exit_.code
        if code is None:
            return EXIT_OK
        return code if isinstance(code, int) else EXIT_ERROR
    return EXIT_OK


__all__ = ["EXIT_USAGE", "app", "main"]

if __name__ == "__main__":
    sys.exit(main())
