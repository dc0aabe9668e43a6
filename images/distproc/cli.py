"""``python -m distproc master|worker|submit|attach|report|status|cancel|probe``.

Exit codes: 0 ok, 1 runtime error (master unreachable or lost...), 2 usage error (no authkey,
a value out of range, a journal the master will not use...), 3 the job's own checks failed,
4 ``attach`` to a job the master does not know.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import threading
from multiprocessing import AuthenticationError
from typing import Any

from . import server
from .auth import AuthkeyError, read_authkey
from .broker import JobError, UnknownJob
from .client import LINK_ERRORS, Unreachable, broker, connect, parse_address
from .concurrency import DEFAULT_THREADS, MODES
from .identity import pids_limit
from .journal_file import SYNC_MODES
from .spec import JobField, job_fields, make_spec

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_CHECK, EXIT_UNKNOWN_JOB = 0, 1, 2, 3, 4
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
log = logging.getLogger("distproc")


def _number(kind: type, low: float, high: float | None = None) -> Any:
    """An argparse type: a ``kind`` number within [low, high]."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value != value or value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"must be {bound}, not {text}")
        return value

    return parse


PORT = _number(int, 0, 65535)
POSITIVE = _number(int, 1)
SECONDS = _number(float, 0.001, 366 * 86400)


def _job_args(p: argparse.ArgumentParser, tasks_default: int | None) -> None:
    """The job flags, one per ``JobSpec`` field: spelling, default, help and checks all come
    from the field, so a field added there is a flag here. ``tasks_default`` differs by
    command: ``master`` runs no job unless given ``--tasks``; ``submit`` runs 1000 tasks."""
    g = p.add_argument_group("job")
    for f in job_fields():
        default = tasks_default if f.name == "tasks" else f.default
        if f.type is bool:
            g.add_argument(
                f.flag,
                dest=f.name,
                action=argparse.BooleanOptionalAction,
                default=default,
                help=f"{f.help} (default %(default)s)",
            )
            continue
        g.add_argument(
            f.flag,
            dest=f.name,
            type=_checked(f),
            default=default,
            metavar="{" + ",".join(f.choices) + "}" if f.choices else f.name.upper(),
            help=f.help if f.nullable else f"{f.help} (default %(default)s)",  # it says its own
        )


def _checked(f: JobField) -> Any:
    """An argparse type: the field's own parse-and-check, its ValueError a usage error."""

    def parse(text: str) -> Any:
        try:
            return f.parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = f.name  # argparse names the type in some messages
    return parse


def _spec(args: argparse.Namespace) -> dict[str, Any]:
    """The job spec the flags give; ``submit --results`` (every task in the report) implies
    ``results="stream"``: only a streamed job keeps its result values to report."""
    spec = {f.name: getattr(args, f.name) for f in job_fields()}
    if getattr(args, "include_results", False):
        spec["results"] = "stream"
    return spec


def _client_args(p: argparse.ArgumentParser, connect_timeout: float = 30.0) -> None:
    p.add_argument("--master", default="127.0.0.1:5000", help="HOST:PORT (default %(default)s)")
    p.add_argument("--authkey-file", help="file holding the key (or $DISTPROC_AUTHKEY_FILE)")
    p.add_argument(
        "--connect-timeout",
        type=SECONDS,
        default=connect_timeout,
        help="give up on the master after this long (default %(default)s)",
    )


_LIMITS = server.ServerLimits()  # the master flags' defaults: defined there, once


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m distproc", description=__doc__.split("\n")[0])
    parser.add_argument("--log-level", default="INFO", type=str.upper, choices=LOG_LEVELS)
    sub = parser.add_subparsers(dest="command", required=True)

    m = sub.add_parser("master", help="serve the task and result queues")
    m.add_argument("--host", default="0.0.0.0")
    m.add_argument("--port", type=PORT, default=5000)
    m.add_argument("--authkey-file", help="file holding the key (or $DISTPROC_AUTHKEY_FILE)")
    m.add_argument(
        "--handshake-timeout",
        type=SECONDS,
        default=_LIMITS.handshake_timeout,
        help="drop a client that has not authenticated and sent its first request within "
        "this many seconds (default %(default)s)",
    )
    m.add_argument(
        "--max-connections",
        type=POSITIVE,
        default=None,
        help="authenticated connections served at once, one thread each; past it a new "
        "connection is closed at once (default: what fits the master's pids limit, less "
        f"{server.SPARE_PIDS}: 200 under pids 256; {server.MAX_CONNECTIONS_UNLIMITED} "
        "without a limit)",
    )
    m.add_argument(
        "--max-handshakes",
        type=POSITIVE,
        default=_LIMITS.max_handshakes,
        help="connections in the handshake at once (default %(default)s)",
    )
    m.add_argument(
        "--max-handshakes-per-peer",
        type=POSITIVE,
        default=_LIMITS.max_handshakes_per_peer,
        help="of those, from one IP address (default %(default)s)",
    )
    m.add_argument(
        "--refusal-log-interval",
        type=_number(float, 0.0, 86400),
        default=_LIMITS.refusal_log_interval,
        help="log refused or dropped clients once per peer IP per this many seconds, with "
        "a count of the lines held back (0: every one; default %(default)s)",
    )
    m.add_argument(
        "--max-request-mib",
        type=POSITIVE,
        default=_LIMITS.max_request // server.MIB,
        help="a request larger than this closes its connection (default %(default)s)",
    )
    m.add_argument(
        "--send-timeout",
        type=_number(float, 0.0, 86400),
        default=_LIMITS.send_timeout,
        help="close a served connection whose reply makes no progress for this many seconds "
        "(a client that never reads it: closed after about 3 times this, as the send buffer "
        "grows; 0: never; default %(default)s)",
    )
    m.add_argument(
        "--keepalive-idle",
        type=_number(int, 0, 86400),
        default=_LIMITS.keepalive[0],
        help="TCP keepalive on served connections: probe after this many idle seconds, "
        "every 10 s, and close after 3 unanswered probes, so that a vanished peer frees its "
        "slot in about idle + 30 s (0: no keepalive; default %(default)s)",
    )
    m.add_argument(
        "--exit-when-done",
        action="store_true",
        help="with --tasks: print the job's report and exit (3 if a check failed)",
    )
    m.add_argument("--job-timeout", type=SECONDS, default=None)
    m.add_argument(
        "--results-dir",
        default=None,
        help="where jobs with results: stream write their JSON lines (default: the temp dir)",
    )
    m.add_argument(
        "--journal",
        metavar="PATH",
        default=None,
        help="keep jobs and every accepted result in this sqlite file (created if missing; "
        "its directory must exist), and on start resume from it: what was final stays "
        "final, the job that ran goes on under its id (default: no journal)",
    )
    m.add_argument(
        "--journal-sync",
        choices=SYNC_MODES,
        default="normal",
        help="sqlite's synchronous for the journal: 'normal' survives a crash of the master, "
        "'full' also a power loss, for an fsync per commit (default %(default)s)",
    )
    _job_args(m, tasks_default=None)

    w = sub.add_parser("worker", help="take tasks, compute, put results back")
    _client_args(w, connect_timeout=60.0)
    w.add_argument("--name", default=socket.gethostname())
    w.add_argument("--group", default="")
    w.add_argument("--protocol", choices=("auto", "leased", "classic"), default="auto")
    w.add_argument("--mode", choices=MODES, default="auto")
    w.add_argument(
        "--concurrency",
        type=POSITIVE,
        default=None,
        help="pool size (default: usable CPUs for processes, --threads for threads)",
    )
    w.add_argument("--threads", type=POSITIVE, default=DEFAULT_THREADS, help="threads for io tasks")
    w.add_argument("--batch", type=POSITIVE, default=None, help="cap on tasks per lease")
    w.add_argument("--heartbeat", type=SECONDS, default=1.0)
    w.add_argument(
        "--drain-timeout",
        type=SECONDS,
        default=30.0,
        help="on SIGTERM, wait this long for running tasks, then hand them back",
    )
    w.add_argument("--start-method", choices=("fork", "spawn", "forkserver"), default=None)

    s = sub.add_parser("submit", help="run a job on a running master and print its report")
    _client_args(s)
    _job_args(s, tasks_default=1000)
    s.add_argument("--payloads", help="JSON file with a list of payloads (instead of --tasks)")
    s.add_argument("--timeout", type=SECONDS, default=None, help="cancel the job after SECONDS")
    s.add_argument("--progress", choices=("auto", "bar", "plain", "json", "none"), default="auto")
    s.add_argument(
        "--results",
        dest="include_results",
        action="store_true",
        help="include every task in the report (implies --results-mode stream)",
    )

    a = sub.add_parser(
        "attach", help="follow a job already submitted until it ends, then print its report"
    )
    _client_args(a)
    a.add_argument("--job", required=True, help="the job's id (submit prints it first)")
    a.add_argument("--timeout", type=SECONDS, default=None, help="cancel the job after SECONDS")
    a.add_argument("--progress", choices=("auto", "bar", "plain", "json", "none"), default="auto")
    a.add_argument(
        "--results",
        dest="include_results",
        action="store_true",
        help="include every task in the report (the job must stream its results)",
    )

    r = sub.add_parser("report", help="print the JSON report of a job (the last by default)")
    _client_args(r)
    r.add_argument("--job", default=None)
    r.add_argument("--results", action="store_true", help="include every task in the report")

    st = sub.add_parser("status", help="print connected workers and the current job as JSON")
    _client_args(st)

    c = sub.add_parser("cancel", help="end the current job (or --job) now, and print its report")
    _client_args(c)
    c.add_argument("--job", default=None)

    pr = sub.add_parser("probe", help="exit 0 if any HOST:PORT accepts a TCP connection, else 1")
    pr.add_argument("targets", nargs="+", metavar="HOST:PORT")
    pr.add_argument("--timeout", type=SECONDS, default=2.0)
    return parser


def _print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
    sys.stdout.flush()


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def cmd_master(args: argparse.Namespace) -> int:
    from .master import Master

    key = read_authkey(args.authkey_file)
    limits = server.ServerLimits(
        max_connections=args.max_connections or server.default_max_connections(pids_limit()),
        max_handshakes=args.max_handshakes,
        max_handshakes_per_peer=args.max_handshakes_per_peer,
        handshake_timeout=args.handshake_timeout,
        max_request=args.max_request_mib * server.MIB,
        refusal_log_interval=args.refusal_log_interval,
        keepalive=(args.keepalive_idle, *_LIMITS.keepalive[1:]),
        send_timeout=args.send_timeout,
    )
    master = Master(args.host, args.port, key, limits=limits, results_dir=args.results_dir,
                    journal=args.journal, journal_sync=args.journal_sync).start()  # fmt: skip
    stop = _stop_on_signals()
    try:
        if args.tasks is not None:
            resumed = master.broker.feed.replayed["resumed"]
            if resumed is not None:
                log.info("job %s resumed from the journal: --tasks submits nothing",
                         resumed["job"])  # fmt: skip
            job_id = resumed["job"] if resumed else master.broker.submit(_spec(args))
            if args.exit_when_done:
                return _run_to_the_end(master.broker, job_id, args.job_timeout, stop)
        stop.wait()
        log.info("master stopping")
        return EXIT_OK
    finally:
        master.stop()


def _run_to_the_end(b: Any, job_id: str, timeout: float | None, stop: threading.Event) -> int:
    """Wait for the job (in slices, so that a signal is heard), then print its report."""
    waited = 0.0
    while not b.wait(job_id, 0.5)["finished"]:
        waited += 0.5
        if stop.is_set() or (timeout is not None and waited >= timeout):
            b.cancel(job_id, "interrupted" if stop.is_set() else "job timeout")
            break
    rep = b.report(job_id)
    _print_json(rep)
    return EXIT_OK if rep["ok"] else EXIT_CHECK


def cmd_worker(args: argparse.Namespace) -> int:
    from .worker import Worker, WorkerConfig

    cfg = WorkerConfig(
        address=parse_address(args.master),
        authkey=read_authkey(args.authkey_file),
        name=args.name,
        group=args.group,
        protocol=args.protocol,
        mode=args.mode,
        concurrency=args.concurrency,
        threads=args.threads,
        batch=args.batch,
        connect_timeout=args.connect_timeout,
        heartbeat=args.heartbeat,
        drain_timeout=args.drain_timeout,
        start_method=args.start_method,
    )
    worker = Worker(cfg)
    code = worker.run()
    if worker.abandoned:  # a task thread still runs: don't wait for it at exit
        logging.shutdown()
        os._exit(code)
    return code


def _connect(args: argparse.Namespace) -> Any:
    return broker(
        connect(parse_address(args.master), read_authkey(args.authkey_file), args.connect_timeout)
    )


def cmd_submit(args: argparse.Namespace) -> int:
    from .submit import ProgressPrinter, run_job

    payloads = None
    if args.payloads:
        try:
            with open(args.payloads) as f:
                payloads = json.load(f)
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"--payloads {args.payloads}: {exc}") from None
        if not isinstance(payloads, list):
            raise ValueError(f"--payloads {args.payloads}: expected a JSON list")
        args.tasks = len(payloads)
    progress, timing = ProgressPrinter(args.progress), {}
    rep = run_job(
        parse_address(args.master),
        read_authkey(args.authkey_file),
        _spec(args),
        payloads,
        timeout=args.timeout,
        progress=progress,
        connect_timeout=args.connect_timeout,
        results=args.include_results,
        timing=timing,
        announce=progress.job,
    )
    _print_json(rep)
    progress.timing(timing)
    return EXIT_OK if rep["ok"] else EXIT_CHECK


def cmd_attach(args: argparse.Namespace) -> int:
    """Follow a job by its id (after a restart of the master, say), as ``submit`` does."""
    from .submit import ProgressPrinter, attach_job

    progress = ProgressPrinter(args.progress)
    try:
        rep = attach_job(
            parse_address(args.master),
            read_authkey(args.authkey_file),
            args.job,
            timeout=args.timeout,
            progress=progress,
            connect_timeout=args.connect_timeout,
            results=args.include_results,
            announce=progress.job,
        )
    except UnknownJob as exc:
        print(f"distproc attach: {exc}", file=sys.stderr)
        return EXIT_UNKNOWN_JOB
    _print_json(rep)
    return EXIT_OK if rep["ok"] else EXIT_CHECK


def cmd_report(args: argparse.Namespace) -> int:
    rep = _connect(args).report(args.job, args.results)
    _print_json(rep)
    return EXIT_OK if rep["ok"] else EXIT_CHECK


def cmd_status(args: argparse.Namespace) -> int:
    _print_json(_connect(args).status())
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace) -> int:
    b = _connect(args)
    job = b.progress(args.job)["job"]
    b.cancel(job, "cancelled by the user")
    rep = b.report(job)
    _print_json(rep)
    return EXIT_OK


def _reach(target: str, timeout: float) -> tuple[bool, str]:
    host, port = parse_address(target)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True, f"reachable {host}:{port}"
    except OSError as exc:
        return False, f"unreachable {host}:{port}: {exc}"


def cmd_probe(args: argparse.Namespace) -> int:
    """Try every target at once; exit 0 if any accepted a TCP connection, else 1."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(args.targets)) as pool:
        results = list(pool.map(lambda t: _reach(t, args.timeout), args.targets))
    for _ok, line in results:
        print(line)
    return EXIT_OK if any(ok for ok, _ in results) else EXIT_ERROR


COMMANDS = {
    "master": cmd_master,
    "worker": cmd_worker,
    "submit": cmd_submit,
    "attach": cmd_attach,
    "report": cmd_report,
    "status": cmd_status,
    "cancel": cmd_cancel,
    "probe": cmd_probe,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    name = f"distproc {args.command}"
    try:
        for address in [getattr(args, "master", None), *(getattr(args, "targets", None) or [])]:
            if address:
                parse_address(address)  # a bad one is a usage error, before anything starts
        if args.command in ("master", "submit") and args.tasks is not None:
            make_spec(_spec(args))
        return COMMANDS[args.command](args)
    except (AuthkeyError, ValueError) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except AuthenticationError:
        print(f"{name}: the master rejected the authkey", file=sys.stderr)
        return EXIT_ERROR
    except (Unreachable, JobError) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except LINK_ERRORS as exc:
        print(f"{name}: lost the master ({type(exc).__name__}: {exc})", file=sys.stderr)
        return EXIT_ERROR
