"""``orchestrate testbed up [--hosts N] | down [--images] | status [--json]``.

Registered by ``orchestrate.cli.build_parser`` with one ``register(commands)`` call; errors
are ``OrchestrateError`` and reach the CLI's one handler (no traceback, exit 1; a bad
``--hosts`` is a usage error, exit 2).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from distproc.text import plural
from rich.table import Table

from ..ui import ConsoleEvents, make_console
from .plan import DEFAULT_HOSTS, MAX_HOSTS, READY_TIMEOUT, TestbedError, check_count


def _count(text: str) -> int:
    try:
        return check_count(int(text))
    except (ValueError, TestbedError):
        raise argparse.ArgumentTypeError(f"{text!r}: give 1 to {MAX_HOSTS} machines") from None


def _shown(path: Path | str) -> str:
    """A path relative to the current directory when it is under it."""
    p = Path(path)
    try:
        return str(p.relative_to(Path.cwd()))
    except ValueError:
        return str(p)


def cmd_up(args: argparse.Namespace) -> int:
    from . import bed  # Docker, fabric: only when a test bed command runs
    from .files import BedFiles

    events = ConsoleEvents()
    events.step(f"test bed: {plural(args.hosts, 'machine')}")
    result = bed.up(args.hosts, events, ready_timeout=args.ready_timeout)
    events.close()
    console = make_console()
    console.print(bed.summary(result), soft_wrap=True)
    for m in result.machines:
        engine = result.versions.get(m.name, "?")
        ready = result.ready_seconds.get(m.name)
        took = f", engine answered in {ready:.1f}s" if ready is not None else ""
        console.print(
            f"  {m.name} {m.address} {m.role}: Docker {engine} over ssh{took}", soft_wrap=True
        )
    files = BedFiles.default()
    console.print(
        f"hosts file: {_shown(files.hosts)}; ssh: `ssh -F {_shown(files.ssh_config)} tb-1`; "
        f"Docker over ssh: `PATH={_shown(files.bin)}:$PATH docker -H "
        f"ssh://root@{result.machines[0].address} version`",
        soft_wrap=True,
        markup=False,
    )
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from . import bed

    result = bed.down(ConsoleEvents(), images=args.images)
    console = make_console()
    if result.leftovers:
        raise TestbedError(f"still labelled after down: {', '.join(result.leftovers)}")
    parts = [plural(n, kind.rstrip("s")) for kind, n in result.counts.items() if n]
    if result.files:
        parts.append(plural(len(result.files), "file"))
    if result.images:
        parts.append(f"image {', '.join(result.images)}")
    said = f"removed {', '.join(parts)}" if parts else "nothing to remove"
    console.print(f"test bed: {said}", soft_wrap=True)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from . import bed

    doc = bed.status()
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    console = make_console()
    if not doc["machines"]:
        console.print("the test bed is not up (`orchestrate testbed up`)")
        return 0
    table = Table(title="test bed")
    for col in ("machine", "address", "role", "state", "engine"):
        table.add_column(col)
    for row in doc["machines"]:
        table.add_row(
            *(str(row[k] or "-") for k in ("name", "address", "role", "state")), _engine(row)
        )
    console.print(table)
    if doc["hosts_file"]:
        console.print(f"hosts file: {_shown(doc['hosts_file'])}", soft_wrap=True)
    return 0


def _engine(row: dict[str, Any]) -> str:
    if row["engine"]:
        return str(row["engine"])
    return "not answering" if row["state"] == "running" else "-"


def register(commands: Any) -> None:
    """Add ``testbed`` to the CLI's subcommands (``commands``: argparse's subparsers)."""
    p = commands.add_parser(
        "testbed", help="test machines on this box (sshd and dockerd each), for many-machine runs"
    )
    actions = p.add_subparsers(dest="testbed_action", metavar="ACTION", required=True)

    up = actions.add_parser("up", help="make or update the test machines; write hosts.yaml")
    up.add_argument(
        "--hosts",
        type=_count,
        default=DEFAULT_HOSTS,
        metavar="N",
        help="how many machines (default %(default)s); a different N adds or removes machines",
    )
    up.add_argument(
        "--ready-timeout",
        type=float,
        default=READY_TIMEOUT,
        metavar="S",
        help="how long each machine may take to answer over ssh (default %(default)s)",
    )
    up.set_defaults(func=cmd_up)

    down = actions.add_parser("down", help="remove every test machine, volume and file")
    down.add_argument("--images", action="store_true", help="also remove the cached machine image")
    down.set_defaults(func=cmd_down)

    status = actions.add_parser("status", help="the machines and their engines")
    status.add_argument("--json", action="store_true", help="print JSON on stdout")
    status.set_defaults(func=cmd_status)
    for sub in actions.choices.values():  # -v after the action too (the CLI adds it before)
        sub.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS)
