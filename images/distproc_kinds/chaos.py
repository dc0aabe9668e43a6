"""Misbehaving kinds, to watch retries and dead-lettering work (and to test them).

Payloads are task indexes (custom kinds get ``0..n-1``). Task 13 is the poison.
"""

from __future__ import annotations

import os
import threading
import time

POISON = 13


def poison(n: int) -> int:
    """Raises on task 13, every time: it ends dead-lettered after max_attempts."""
    if n == POISON:
        raise ValueError(f"task {n} is poison")
    return n


def crash(n: int) -> int:
    """Kills the process running task 13 (as a segfault or the OOM killer would)."""
    if n == POISON:
        os._exit(70)
    time.sleep(0.01)
    return n


def hang(n: int) -> int:
    """Never returns on task 13 (a deadlock, a call that never times out)."""
    if n == POISON:
        threading.Event().wait()
    return n


class _Unpicklable:
    def __reduce__(self) -> None:
        raise TypeError("this value refuses to be pickled")


def unpicklable(n: int) -> object:
    """Returns a value that cannot be sent back on task 13."""
    return _Unpicklable() if n == POISON else n


def _explode() -> None:
    raise RuntimeError("this value cannot be unpickled")


class _Unloadable:
    def __reduce__(self) -> tuple:
        return (_explode, ())


def unloadable(n: int) -> object:
    """Returns, on task 13, a value that pickles but that the master cannot unpickle."""
    return _Unloadable() if n == POISON else n


def huge(mib: int) -> bytes:
    """Returns ``mib`` MiB: past the master's request cap, its result can never be delivered
    (give the payloads with ``--payloads``; task indexes make small results)."""
    return bytes(mib * 1024 * 1024)


def noted(n: int) -> int:
    """Notes each run as a line ``<pid> <id>`` in the file ``$DISTPROC_NOTES``; while the
    file ``$DISTPROC_NOTES.hold`` exists, ids from 2 on wait for it to go (a test kills the
    worker that holds them, mid-lease, and sees which ids run again)."""
    notes = os.environ["DISTPROC_NOTES"]
    with open(notes, "a") as f:
        f.write(f"{os.getpid()} {n}\n")
    while n >= 2 and os.path.exists(notes + ".hold"):
        time.sleep(0.01)
    return n
