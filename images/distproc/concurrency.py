"""How many tasks a worker runs at once, and where: the rule, apart from the pools themselves.

The worker follows it (``runner.TaskRunner.mode``, ``pools.Pools.size``), and so does the
host: ``orchestrate validate`` estimates how long a job takes from the same rule, so the
estimate cannot drift from what the workers do. Stdlib only, and cheap to import (no pools):
the CLI's parser reads ``DEFAULT_THREADS`` for every command.
"""

from __future__ import annotations

MODES = ("auto", "inline", "threads", "processes")
#: ``auto`` mode, by kind: tiny ``square`` tasks inline (the transport is the cost), ``io`` on
#: threads (they wait, so the GIL is free); ``cpu`` and custom kinds on processes.
AUTO_MODE = {"square": "inline", "io": "threads", "cpu": "processes"}
#: A worker's threads in ``threads`` mode when no ``--concurrency`` is given.
DEFAULT_THREADS = 32


def run_mode(kind: str, mode: str) -> str:
    """Where a worker in ``mode`` runs tasks of ``kind``."""
    if mode != "auto":
        return mode
    return AUTO_MODE.get(kind, "processes")


def tasks_at_once(mode: str, concurrency: int | None, threads: int, cpus: int) -> int:
    """How many tasks a worker runs at the same time in a (resolved) ``mode``: one inline,
    else its pool's size: ``concurrency`` if given, else ``threads`` or ``cpus``."""
    if mode == "inline":
        return 1
    if concurrency:
        return concurrency
    return threads if mode == "threads" else cpus
