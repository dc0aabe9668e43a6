"""Command line: ``orchestrate <command>``.

Each command is a small handler ``cmd_<name>(args) -> int`` registered in ``build_parser``.
Exit codes: 0 ok, 1 runtime error, 2 usage or configuration error, 3 a check failed.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from distproc.cli import SECONDS  # the queue program's type for seconds: one definition
from distproc.text import plural
from rich.console import Console

from .model import (
    SCHEMA_FILE,
    ConfigError,
    OrchestrateError,
    Problem,
    cluster_json_schema_text,
    load_cluster,
)
from .ui import ConsoleEvents, make_console, print_checks, print_summary, print_tasks_not_ok

if TYPE_CHECKING:
    from .backends.base import Backend
    from .cluster import ClusterRun, Outcome
    from .model import Cluster

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_CONFIG = 2
EXIT_CHECK_FAILED = 3
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports a command that SIGINT ended
DEFAULT_CONFIG = "cluster.yaml"
MIN_POLL = 0.5  # seconds between the dashboard's polls of the master, at the least


class UsageError(OrchestrateError):
    """Bad command-line values: exit 2, like a bad config file."""

    exit_code = EXIT_CONFIG


FILE_FLAGS = ("-f", "--file")
FOLLOW_FLAGS = ("-F", "--follow")
#: Said when ``-f`` is used as follow (``docker logs -f``), or given without its file.
FOLLOW_HINT = "-f is the cluster file; use --follow (-F) to follow"


def _add_file_option(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    """``-f/--file``: one definition for the global option and every subcommand's.

    A subcommand's copy defaults to ``SUPPRESS``, so ``orchestrate -f x.yaml status`` keeps
    the global value (argparse copies a subcommand's defaults over the global namespace);
    after the subcommand it wins, as in ``docker compose``.
    """
    parser.add_argument(
        *FILE_FLAGS,
        dest="file",
        default=argparse.SUPPRESS if default is None else default,
        metavar="FILE",
        help=f"cluster description (default: {DEFAULT_CONFIG})",
    )


class _Parser(argparse.ArgumentParser):
    """argparse with a hint for the mistakes it only answers with a usage line."""

    def error(self, message: str) -> typing.NoReturn:
        if message.startswith("argument -f/--file: expected one argument"):
            if self.prog.endswith(" logs"):
                message = FOLLOW_HINT
            else:
                message += f": the cluster file, e.g. `-f {DEFAULT_CONFIG}`"
        super().error(message)


def _load(args: argparse.Namespace) -> Cluster:
    """The validated cluster file; its warnings go to stderr (errors raise ConfigError)."""
    warnings: list[Problem] = []
    cluster = load_cluster(args.file, warnings)
    for w in warnings:
        print(f"{w.file}:{w.line}:{w.col}: warning: {w.message}", file=sys.stderr)
    return cluster


def _backend(cluster: Cluster | None) -> Backend:
    """The backend the file names (``backend:``), or the local one for a cluster known only
    by ``--name`` (imported late: validate needs no Docker)."""
    from .backends import make_backend

    if cluster is None:
        return make_backend()
    return make_backend(cluster.backend, cluster)


def _named(args: argparse.Namespace, attr: str = "name") -> tuple[str, Backend]:
    """The cluster a command on names (``--name``, else the file's) and its backend."""
    name = getattr(args, attr)
    cluster = None if name else _load(args)
    return name or cluster.name, _backend(cluster)


def _runner(args: argparse.Namespace, cluster: Cluster | None = None) -> ClusterRun:
    """The file's cluster on its backend."""
    from .cluster import ClusterRun

    cluster = cluster or _load(args)
    events = ConsoleEvents()
    return ClusterRun(cluster, _backend(cluster), events, Path(args.file).parent, args.file)


def _err() -> Console:
    return make_console()


def _finish(args: argparse.Namespace, runner: ClusterRun, outcome: Outcome, what: str) -> int:
    """Print the summary, the checks and the verdict; JSON on stdout with --json."""
    events = runner.events
    if isinstance(events, ConsoleEvents):
        events.close()
    console = _err()
    rows = outcome.rows()
    rep = outcome.job_report
    if rows and rep and outcome.job_ran:  # a `check` that read the last report: not its line
        print_summary(
            console,
            rows,
            f"{what}: {rep.totals.ok}/{plural(rep.totals.tasks, 'task')} "
            f"in {rep.elapsed_seconds:.2f}s ({rep.throughput:.0f}/s)",
        )
    print_checks(console, outcome.checks)
    if rep:
        print_tasks_not_ok(console, rep, outcome.inventory)
    if outcome.ok:
        console.print(f"[green]{what}: every check passed[/green]")
    else:
        console.print(f"[red]{what}: failed checks: {', '.join(outcome.failed())}[/red]")
        from .state import state_dir

        logs = state_dir(runner.cluster.name) / "logs"
        runner.backend.save_logs(runner.cluster.name, logs)
        console.print(f"container logs saved in {logs}")
    if getattr(args, "json", False):
        print(json.dumps(outcome.as_json(), indent=2, default=str))
    return EXIT_OK if outcome.ok else EXIT_CHECK_FAILED


def cmd_up(args: argparse.Namespace) -> int:
    """Build, create networks, master and workers, wait for them, run the job, verify.
    With ``--dashboard``, the dashboard serves from the start (the page shows the cluster
    coming up) and until Ctrl-C after."""
    runner = _runner(args)
    server = _start_dashboard(args, runner.cluster, in_thread=True) if args.dashboard else None
    outcome = runner.up(
        run_job=not args.no_job, ready_timeout=args.ready_timeout, job_timeout=args.job_timeout
    )
    if args.no_job and outcome.ok:
        _err().print(
            f"cluster {runner.cluster.name!r} is up (no job run); "
            "try `orchestrate job` or `orchestrate check`"
        )
    code = _finish(args, runner, outcome, "up")
    if server is not None:
        _err().print("the dashboard goes on serving: Ctrl-C to stop it")
        try:
            signal.pause()
        except KeyboardInterrupt:
            server.should_exit = True
    return code


def _start_dashboard(args: argparse.Namespace, cluster: Cluster, in_thread: bool) -> object:
    """Serve the dashboard of ``cluster`` as the dashboard flags say (``dashboard`` and
    ``up --dashboard``); a clear error when its extra is not installed."""
    try:
        from .dashboard import server
        from .dashboard.poller import Poller
    except ImportError as exc:
        raise OrchestrateError(
            f"the dashboard needs its extra ({exc.name} is missing): `make dashboard`, or "
            "`pip install -e '.[dashboard]'`"
        ) from None
    if args.poll < MIN_POLL:
        raise UsageError(f"--poll {args.poll}: at least {MIN_POLL} s (it bounds the polling)")
    host = args.host
    if host not in server.LOCAL_NAMES:
        _err().print(
            f"[yellow]warning: the dashboard listens on {host}, not only on this machine: "
            "anyone who can reach it and has the token can start and cancel jobs[/yellow]",
            soft_wrap=True,
        )
    token = server.read_token(Path(args.token_file)) if args.token_file else server.new_token()
    poller = Poller(
        cluster,
        lambda: _backend(cluster),
        args.file,
        period=args.poll,
        config_dir=Path(args.file).parent,
    )

    def started(url: str) -> None:
        where = "the token is in --token-file" if args.token_file else "the token is in it"
        print(f"dashboard of {cluster.name!r}: {url}  ({where})", file=sys.stderr, flush=True)
        if args.open:
            import webbrowser

            webbrowser.open(url)

    return server.serve(
        poller, host, args.port, token, args.allow_host, on_started=started, in_thread=in_thread
    )


def cmd_dashboard(args: argparse.Namespace) -> int:
    """Serve the live dashboard of the file's cluster, until Ctrl-C."""
    _start_dashboard(args, _load(args), in_thread=False)
    return EXIT_OK


def _add_dashboard_options(parser: argparse.ArgumentParser, flag: bool = False) -> None:
    """The dashboard's options, for ``dashboard`` and ``up --dashboard``."""
    g = parser.add_argument_group("dashboard")
    if flag:
        g.add_argument("--dashboard", action="store_true", help="serve the live dashboard too")
    g.add_argument("--port", type=int, default=8050, help="its port (default %(default)s)")
    g.add_argument(
        "--host",
        default="127.0.0.1",
        help="the address it listens on (default %(default)s: this machine only)",
    )
    g.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a host name the page may be reached by, besides localhost (repeatable)",
    )
    g.add_argument(
        "--token-file",
        metavar="FILE",
        help="read the token from FILE (default: a new one, printed at start)",
    )
    g.add_argument("--open", action="store_true", help="open the page in a browser")
    g.add_argument(
        "--poll",
        type=SECONDS,
        default=1.0,
        metavar="S",
        help="seconds between polls of the cluster (default %(default)s)",
    )


def cmd_down(args: argparse.Namespace) -> int:
    """Remove every labelled object of the cluster (idempotent)."""
    from .events import NullEvents

    name, backend = _named(args)
    removed = backend.sweep(name, NullEvents(), keep_data=args.keep_data)
    kept = " (its journal kept: the next `up` replays it)" if args.keep_data else ""
    print(f"cluster {name!r}: removed {plural(removed, 'object')}{kept}", file=sys.stderr)
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    """What of the cluster runs now: networks, master, workers, images, the key file."""
    name, backend = _named(args)
    inv = backend.inventory(name)
    doc = inv.as_status()
    if args.json:
        print(json.dumps(doc, indent=2))
        return EXIT_OK
    console = _err()
    if inv.empty:
        console.print(f"cluster {name!r} is not running")
        return EXIT_OK
    from rich.table import Table

    table = Table(title=f"cluster {name!r} (run {inv.run}, backend {inv.backend})")
    machines = len(inv.nodes) > 1
    for col in ("container", "role", "state", "addresses", *(["machine"] if machines else [])):
        table.add_column(col)
    from .checks import by_address

    for c in [*([inv.master] if inv.master else []), *inv.workers, *by_address(inv.others)]:
        role = c.role or "joined by hand"
        addrs = ", ".join(f"{net} {ip}" for net, ip in c.addresses.items())
        row = [c.name, role + (f" ({c.group})" if c.group else ""), c.state, addrs]
        table.add_row(*row, *([c.node] if machines else []))
    console.print(table)
    if machines:
        for node in inv.nodes:
            console.print(f"machine {node.name}: {node.address} {node.role}, {node.state}")
    for n in inv.networks:
        console.print(
            f"network {n.name}: {n.engine_name} {n.subnet}" + (" internal" if n.internal else "")
        )
    return EXIT_OK


def cmd_logs(args: argparse.Namespace) -> int:
    """Container logs: one container (by name or short name), or all of them."""
    if args.follow and not args.container:
        raise UsageError("logs --follow follows one container: name it (`logs -F alpha-0`)")
    if not (args.container or args.name_cluster or Path(args.file).exists()):
        # `logs -f alpha-0`, the habit from `docker logs -f`: alpha-0 was taken for the file
        raise UsageError(
            f"{args.file}: no such cluster file ({FOLLOW_HINT}: `logs -F {args.file}`)"
        )
    name, backend = _named(args, "name_cluster")
    for line in backend.logs(name, args.container, args.follow):
        sys.stdout.write(line)
        sys.stdout.flush()
    return EXIT_OK


def _add_job_overrides(parser: argparse.ArgumentParser) -> None:
    """One flag per ``JobSpec`` field, spelt as the queue program spells it; unset (None)
    unless given. Values are only converted here: the ``Job`` model checks them."""
    from distproc.spec import job_fields

    g = parser.add_argument_group("job overrides (default: the file's job)")
    for f in job_fields():
        if f.type is bool:
            g.add_argument(f.flag, dest=f.name, action=argparse.BooleanOptionalAction, help=f.help)
        else:
            metavar = "{" + ",".join(f.choices) + "}" if f.choices else f.name.upper()
            g.add_argument(f.flag, dest=f.name, type=f.type, metavar=metavar, help=f.help)


def _job_overrides(args: argparse.Namespace, cluster: Cluster) -> dict[str, object]:
    """The job options given on the command line, checked against the Job model."""
    from distproc.spec import job_fields

    from .cluster import job_overrides

    given = {f.name: getattr(args, f.name) for f in job_fields()}
    try:
        overrides, warnings = job_overrides(cluster, given)
    except ValueError as exc:
        raise UsageError(f"job: {exc}") from None
    for warning in warnings:
        _err().print(f"warning: {warning}", soft_wrap=True)
    return overrides


def cmd_job(args: argparse.Namespace) -> int:
    """Run another job on the running cluster; blocks until it ends."""
    cluster = _load(args)
    overrides = _job_overrides(args, cluster)
    if args.attach is not None:
        from distproc.broker import JOB_ID

        if overrides:
            raise UsageError("--attach follows a job already submitted: it takes no job fields")
        if not JOB_ID.fullmatch(args.attach):
            shown = args.attach if len(args.attach) <= 40 else args.attach[:39] + "…"
            raise UsageError(
                f"--attach: {shown!r} is not a job id (`job` names its job as 7f3a0c1e-3)"
            )
    runner = _runner(args, cluster)
    outcome = runner.job(overrides, timeout=args.job_timeout, attach=args.attach)
    return _finish(args, runner, outcome, "job")


def cmd_check(args: argparse.Namespace) -> int:
    """The end-to-end checks on the running cluster."""
    runner = _runner(args)
    return _finish(args, runner, runner.check(), "check")


#: the flags of one scenario, by the ChaosEntry field each sets
CHAOS_FLAGS = {"target": "--target", "at": "--at", "for": "--for", "rate": "--rate",
               "delay": "--delay", "loss": "--loss"}  # fmt: skip


def _chaos_entries(args: argparse.Namespace, cluster: Cluster) -> list[object]:
    """The scenario the flags give (checked as a ``chaos:`` entry is), or the file's list."""
    from pydantic import ValidationError

    from .model import ChaosEntry
    from .model.chaos import SCENARIO_NAMES, SCENARIOS, target_problem

    given = {key: getattr(args, "for_" if key == "for" else key) for key in CHAOS_FLAGS}
    given = {key: value for key, value in given.items() if value is not None}
    if args.scenario is None:
        if given:
            flags = ", ".join(CHAOS_FLAGS[k] for k in given)
            raise UsageError(f"{flags}: name a scenario (the file's chaos: list has its own)")
        if not cluster.chaos:
            raise UsageError(
                f"name a scenario ({', '.join(SCENARIO_NAMES)}), or list some under chaos: in "
                f"{args.file}"
            )
        return list(cluster.chaos)
    try:
        entry = ChaosEntry.model_validate({"scenario": args.scenario, **given})
    except ValidationError as exc:
        said = [f"{CHAOS_FLAGS.get(str(e['loc'][0]), e['loc'][0])}: {e['msg']}"
                for e in exc.errors()]  # fmt: skip
        raise UsageError("; ".join(said)) from None
    if entry.target is not None:
        why = target_problem(cluster, SCENARIOS[entry.scenario], entry.target)
        if why:
            raise UsageError(f"--target: {why}")
    return [entry]


def cmd_chaos(args: argparse.Namespace) -> int:
    """Run a job, inject a fault while it runs, heal it, and judge what was lost."""
    from distproc.spec import job_fields

    from .chaos.marks import marks_path
    from .chaos.runner import ChaosRun
    from .chaos.show import print_verdicts
    from .chaos.verdict import exit_code

    if args.list:
        return _chaos_list()
    cluster = _load(args)
    entries = _chaos_entries(args, cluster)
    if args.scenario:  # its job is the file's and the flags': checked before any engine
        _job_overrides(args, cluster)
    cli_job = {f.name: getattr(args, f.name) for f in job_fields()}
    cli_job = {name: value for name, value in cli_job.items() if value is not None}
    runner = _runner(args, cluster)
    chaos = ChaosRun(runner, job_timeout=args.job_timeout, marks=marks_path(cluster.name))
    verdicts = chaos.execute(chaos.plan(entries, cli_job))  # type: ignore[arg-type]
    if isinstance(runner.events, ConsoleEvents):
        runner.events.close()
    code = exit_code(verdicts)
    print_verdicts(_err(), verdicts, f"chaos on {cluster.name!r}", cluster.name)
    if args.json:
        doc = {"ok": code == 0, "kernel": chaos.kernel, "verdicts": [v.as_json() for v in verdicts]}
        print(json.dumps(doc, indent=2, default=str))
    return code


def _chaos_list() -> int:
    """The scenarios, what each does, and where each runs."""
    from .backends.docker_faults import DockerFaults
    from .backends.swarm.faults import SwarmFaults
    from .chaos.scenarios import IMPLEMENTATIONS
    from .model.chaos import SCENARIOS

    console = _err()
    for spec in SCENARIOS.values():
        uses = IMPLEMENTATIONS[spec.name].uses
        where = [f.backend for f in (DockerFaults, SwarmFaults) if uses <= f.operations]
        console.print(
            f"{spec.name} (target: a {spec.target}; backends: {', '.join(where)}): {spec.summary}",
            soft_wrap=True,
            markup=False,
        )
    return EXIT_OK


def cmd_graph(args: argparse.Namespace) -> int:
    """The topology as Mermaid text; and as SVG (--svg FILE) where Graphviz is installed."""
    from . import graph

    cluster = _load(args)
    if args.svg and graph.graphviz() is None:  # before any output: nothing half done
        print(f"orchestrate: {graph.GRAPHVIZ_MISSING}", file=sys.stderr)
        return EXIT_RUNTIME
    print(graph.mermaid(cluster), end="")
    if args.svg:
        svg = graph.svg(cluster)
        if svg is None:  # dot vanished since the check above
            print(f"orchestrate: {graph.GRAPHVIZ_MISSING}", file=sys.stderr)
            return EXIT_RUNTIME
        Path(args.svg).write_text(svg)
        print(f"wrote {args.svg}", file=sys.stderr)
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate the cluster file; print a summary, or the model as JSON with --json."""
    warnings: list[Problem] = []
    cluster = load_cluster(args.file, warnings)
    for warning in warnings:
        print(
            f"{warning.file}:{warning.line}:{warning.col}: warning: {warning.message}",
            file=sys.stderr,
        )
    if args.json:
        print(json.dumps(cluster.model_dump(mode="json"), indent=2))
    print(f"{args.file}: ok — {cluster.summary()}", file=sys.stderr)
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    """Print the JSON schema, write it (--write / -o), or check a written copy (--check)."""
    text = cluster_json_schema_text()
    if args.check:
        target = Path(args.output or SCHEMA_FILE)
        try:
            current = target.read_text(encoding="utf-8")
        except FileNotFoundError:
            current = None
        if current != text:
            print(f"{target} is out of date: run `orchestrate schema --write`", file=sys.stderr)
            return EXIT_CHECK_FAILED
        print(f"{target}: up to date", file=sys.stderr)
        return EXIT_OK
    if args.output or args.write:
        target = Path(args.output or SCHEMA_FILE)
        target.write_text(text, encoding="utf-8")
        print(f"wrote {target}", file=sys.stderr)
        return EXIT_OK
    sys.stdout.write(text)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; add a command with ``commands.add_parser`` and ``set_defaults``."""
    parser = _Parser(prog="orchestrate", description="Run distproc as a containerized cluster.")
    _add_file_option(parser, DEFAULT_CONFIG)  # also before the command, as in docker compose
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = commands.add_parser("validate", help="check cluster.yaml and summarise it")
    _add_file_option(p)
    p.add_argument("--json", action="store_true", help="print the validated model as JSON")
    p.set_defaults(func=cmd_validate)

    p = commands.add_parser("schema", help="print or write the JSON schema of cluster.yaml")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--write", action="store_true", help=f"write {SCHEMA_FILE}")
    out.add_argument("-o", "--output", metavar="FILE", help="write the schema to FILE")
    p.add_argument(
        "--check", action="store_true", help="exit 3 if the written schema is out of date"
    )
    p.set_defaults(func=cmd_schema)

    p = commands.add_parser("up", help="build, start the cluster, run the job and verify it")
    _add_file_option(p)
    p.add_argument("--no-job", action="store_true", help="start the cluster but run no job")
    p.add_argument("--json", action="store_true", help="print the outcome as JSON on stdout")
    p.add_argument(
        "--ready-timeout",
        type=SECONDS,
        default=90.0,
        metavar="S",
        help="how long workers may take to connect (default %(default)s)",
    )
    p.add_argument(
        "--job-timeout",
        type=SECONDS,
        default=900.0,
        metavar="S",
        help="cancel the job after S seconds (default %(default)s)",
    )
    _add_dashboard_options(p, flag=True)
    p.set_defaults(func=cmd_up)

    p = commands.add_parser("down", help="remove the cluster's containers and networks")
    _add_file_option(p)
    p.add_argument("--name", help="cluster name (default: from the file)")
    p.add_argument(
        "--keep-data",
        action="store_true",
        help="keep the master's journal volume (the next `up` replays it)",
    )
    p.set_defaults(func=cmd_down)

    p = commands.add_parser("status", help="show what runs: networks, master, workers")
    _add_file_option(p)
    p.add_argument("--name", help="cluster name (default: from the file)")
    p.add_argument("--json", action="store_true", help="print JSON on stdout")
    p.set_defaults(func=cmd_status)

    p = commands.add_parser("logs", help="container logs")
    _add_file_option(p)  # the file here too: following is -F/--follow, never -f
    p.add_argument("container", nargs="?", help="container name, or short name (alpha-0)")
    p.add_argument(*FOLLOW_FLAGS, action="store_true", help="follow one container's log")
    p.add_argument("--name", dest="name_cluster", help="cluster name (default: from the file)")
    p.set_defaults(func=cmd_logs)

    p = commands.add_parser("job", help="run another job on the running cluster")
    _add_file_option(p)
    _add_job_overrides(p)
    p.add_argument("--job-timeout", type=SECONDS, default=900.0, metavar="S")
    p.add_argument(
        "--attach",
        metavar="ID",
        help="follow the job ID (already on the master, say after a restart) instead of "
        "submitting one",
    )
    p.add_argument("--json", action="store_true", help="print the outcome as JSON on stdout")
    p.set_defaults(func=cmd_job)

    p = commands.add_parser("check", help="run the end-to-end checks on the running cluster")
    _add_file_option(p)
    p.add_argument("--json", action="store_true", help="print the outcome as JSON on stdout")
    p.set_defaults(func=cmd_check)

    p = commands.add_parser(
        "chaos", help="run a job, inject a fault while it runs, and judge what was lost"
    )
    _add_file_option(p)
    p.add_argument(
        "scenario",
        nargs="?",
        metavar="SCENARIO",
        help="kill-worker, pause-worker, partition, blackhole, slow-link, restart-master or "
        "scale (--list says what each does); none: the file's chaos: list",
    )
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    p.add_argument("--target", help="the worker (alpha-0), or for scale the group")
    p.add_argument("--at", type=float, metavar="S", help="inject S seconds into the job (2)")
    p.add_argument(
        "--for", dest="for_", type=float, metavar="S", help="heal after S seconds (per scenario)"
    )
    p.add_argument("--rate", help="slow-link: the rate, in tc's units (128kbit)")
    p.add_argument("--delay", type=float, metavar="MS", help="slow-link: delay (needs netem)")
    p.add_argument("--loss", type=float, metavar="PCT", help="slow-link: loss (needs netem)")
    _add_job_overrides(p)
    p.add_argument("--job-timeout", type=SECONDS, default=900.0, metavar="S")
    p.add_argument("--json", action="store_true", help="print the verdicts as JSON on stdout")
    p.set_defaults(func=cmd_chaos)

    p = commands.add_parser("dashboard", help="the cluster and its tasks as a live web page")
    _add_file_option(p)
    _add_dashboard_options(p)
    p.set_defaults(func=cmd_dashboard)

    p = commands.add_parser("graph", help="the topology as Mermaid (and SVG with Graphviz)")
    _add_file_option(p)
    p.add_argument("--svg", metavar="FILE", help="also write an SVG (needs Graphviz)")
    p.set_defaults(func=cmd_graph)

    from .hosts.cli import register as register_hosts
    from .testbed.cli import register as register_testbed

    register_hosts(commands)
    register_testbed(commands)
    for sub in commands.choices.values():  # one flag, on every command
        sub.add_argument(
            "-v", "--verbose", action="store_true", help="show the engine's raw errors"
        )
    return parser


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (errors are reported without a traceback)."""
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # clean up as after Ctrl-C (a job is cancelled)
    try:
        return args.func(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return exc.exit_code
    except OrchestrateError as exc:
        print(f"orchestrate: {exc}", file=sys.stderr)
        raw = getattr(exc, "raw", "")  # an engine error keeps the engine's own words
        if raw and args.verbose:
            print(f"orchestrate: the engine said: {raw}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"orchestrate: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        print("orchestrate: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
