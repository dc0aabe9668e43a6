"""The worker's pools, on their own (no master)."""

from __future__ import annotations

import logging
import os
import signal
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest
from distproc import stdlib_private
from distproc.pools import Pools, run_timed
from distproc.text import plural
from distproc_kinds import chaos


@pytest.mark.parametrize(
    ("n", "word", "text"),
    [(1, "process", "1 process"), (2, "process", "2 processes"), (1, "thread", "1 thread"),
     (32, "thread", "32 threads")],
)  # fmt: skip
def test_plural(n: int, word: str, text: str) -> None:
    assert plural(n, word) == text


def test_pool_log_says_1_process_not_1_processes(caplog: pytest.LogCaptureFixture) -> None:
    pools = Pools(concurrency=1, threads=4, cpus=1, start_method="spawn")
    try:
        with caplog.at_level(logging.INFO, logger="distproc.worker"):
            pools.get("processes")
            pools.get("threads")
    finally:
        pools.shutdown(terminate=False)
    assert "started a pool of 1 process" in caplog.messages
    assert "started a pool of 1 thread" in caplog.messages


def _running(pid: int) -> bool:
    """From /proc, not from the Process object: the executor's own thread reaps its
    processes too, and a join racing with it can return None for a dead one (ECHILD)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def _ended(pids: list[int], within: float = 10.0) -> list[bool]:
    deadline = time.monotonic() + within
    while any(map(_running, pids)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [not _running(pid) for pid in pids]


def test_a_pool_process_ends_on_sigterm_but_not_on_sigint() -> None:
    """SIGINT (a Ctrl-C to the group) is the worker's to drain; SIGTERM is how the executor
    stops a broken pool's processes since 3.12 (gh-94777), so it must end them, whatever
    handler the worker had (a forked process inherits it)."""
    pools = Pools(concurrency=2, threads=1, cpus=2, start_method=None)  # this Python's default
    pool = pools.get("processes")
    try:
        pool.submit(os.getpid).result(timeout=30)
        pid = stdlib_private.pool_processes(pool)[0].pid
        os.kill(pid, signal.SIGINT)
        time.sleep(1)
        assert _running(pid), "SIGINT ended a pool process"
        os.kill(pid, signal.SIGTERM)
        assert _ended([pid]) == [True], "SIGTERM did not end a pool process"
    finally:
        for proc in stdlib_private.pool_processes(pool):
            proc.kill()
        pools.shutdown(terminate=True)


@pytest.mark.timeout(120)  # the hang this guards against is for good, not slow
def test_a_crash_beside_a_busy_process_leaves_no_pool_hanging() -> None:
    """One process dies (chaos:crash) while the other runs a task that never ends
    (chaos:hang). The executor fails both futures, stops the survivor and joins it; the
    worker then drops the pool. On 3.13 and 3.14 the join never ended while pool processes
    ignored SIGTERM (and ``drop_broken`` waited on the lock it held); on 3.11 the survivor ran
    on until its task ended."""
    pools = Pools(concurrency=2, threads=1, cpus=2, start_method=None)
    pool = pools.get("processes")
    try:
        # both processes started first: under forkserver or spawn they start on demand, and
        # the executor's thread does not watch a process started after it last woke up (a
        # crash there goes unnoticed until the next result or submit)
        warm = [pool.submit(run_timed, "io", 300) for _ in range(2)]
        assert [f.result(timeout=60)[0] for f in warm] == [300, 300]
        assert len(stdlib_private.pool_processes(pool)) == 2
        hung = pool.submit(run_timed, "distproc_kinds.chaos:hang", chaos.POISON)
        time.sleep(1)  # an idle process has taken it: the crash goes to the other one
        crashed = pool.submit(run_timed, "distproc_kinds.chaos:crash", chaos.POISON)
        for fut in (crashed, hung):
            with pytest.raises(BrokenProcessPool):
                fut.result(timeout=30)
        pids = [proc.pid for proc in stdlib_private.pool_processes(pool)]
        assert len(pids) == 2
        assert _ended(pids) == [True, True], "a survivor runs on"
        pools.drop_broken()
        assert not stdlib_private.pool_is_broken(pools.get("processes"))  # a fresh pool
    finally:
        for proc in stdlib_private.pool_processes(pool):
            proc.kill()
        pools.shutdown(terminate=True)
