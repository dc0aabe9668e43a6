"""``orchestrate hosts check | provision | leave [-f FILE] [--trust-new-hosts] [--json]``.

Registered by ``orchestrate.cli.build_parser`` with one ``register(commands)`` call; errors
are ``OrchestrateError`` and reach the CLI's one handler (one line, no traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from distproc.text import plural
from rich.table import Table

from ..model import Cluster, OrchestrateError, load_cluster
from ..ui import ConsoleEvents, make_console

EXIT_OK, EXIT_CHECK_FAILED = 0, 3


def _cluster(args: argparse.Namespace) -> Cluster:
    cluster = load_cluster(args.file)
    if not cluster.hosts:
        raise OrchestrateError(
            f"{args.file} lists no hosts: `hosts` commands work on the machines of a file "
            "with `backend: swarm` (see examples/swarm.yaml)"
        )
    return cluster


def cmd_check(args: argparse.Namespace) -> int:
    from .check import check

    events = ConsoleEvents()
    rows = check(_cluster(args), events, trust_new=args.trust_new_hosts)
    events.close()
    if args.json:
        print(json.dumps([r.as_json() for r in rows], indent=2))
    table = Table(title="hosts")
    for col in ("host", "address", "ssh", "docker", "arch", "free GiB", "IPsec ESP", "problem"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r.host, r.address, "ok" if r.ssh else "no", r.docker or "-", r.arch or "-",
            f"{r.free_gib:.1f}" if r.ssh else "-", r.esp or "-", r.error or "",
        )  # fmt: skip
    console = make_console()
    console.print(table)
    bad = [r.host for r in rows if not r.ok]
    if bad:
        console.print(f"[red]hosts: {plural(len(bad), 'host')} cannot be a node: {', '.join(bad)}")
        return EXIT_CHECK_FAILED
    console.print(f"[green]hosts: all {plural(len(rows), 'host')} can be nodes[/green]")
    return EXIT_OK


def cmd_provision(args: argparse.Namespace) -> int:
    from .provision import provision

    events = ConsoleEvents()
    done = provision(_cluster(args), events, trust_new=args.trust_new_hosts)
    events.close()
    what = "; ".join(a.describe() for a in done) or "nothing to change"
    print(f"hosts: provisioned ({what})", file=sys.stderr)
    return EXIT_OK


def cmd_leave(args: argparse.Namespace) -> int:
    from .provision import leave

    events = ConsoleEvents()
    left = leave(_cluster(args), events)
    events.close()
    print(f"hosts: {plural(left, 'host')} left the swarm", file=sys.stderr)
    return EXIT_OK


def register(commands: Any) -> None:
    """Add ``hosts`` and its subcommands to orchestrate's parser."""
    from ..cli import _add_file_option  # the one definition of -f/--file

    p = commands.add_parser("hosts", help="the machines of hosts: check, provision, leave")
    sub = p.add_subparsers(dest="hosts_command", metavar="ACTION", required=True)
    for name, func, text in (
        ("check", cmd_check, "ssh, Docker, version, architecture, free disk and ESP per host"),
        ("provision", cmd_provision, "form the swarm, label its nodes (idempotent)"),
        ("leave", cmd_leave, "undo provision: every host leaves the swarm"),
    ):
        s = sub.add_parser(name, help=text)
        _add_file_option(s)
        if name != "leave":
            s.add_argument(
                "--trust-new-hosts",
                action="store_true",
                help="trust a host key seen for the first time and record it in the host's "
                "known_hosts (trust on first use; by default an unknown key is refused)",
            )
        if name == "check":
            s.add_argument("--json", action="store_true", help="the rows as JSON on stdout")
        s.set_defaults(func=func)
