"""The worker's pools of threads and processes, and pool processes that die with the worker.

Pool processes ignore SIGINT (a Ctrl-C reaches the whole process group): the worker drains
them in order. SIGTERM ends them, and must: since 3.12 it is how ProcessPoolExecutor stops
the other processes of a broken pool (CPython gh-94777: no more sentinels), and it joins them
while it holds its shutdown lock. Ignored (as it was), a task that killed its process hung
the worker for good on 3.13 and 3.14, measured in their images (3.11 also sent the survivors
a sentinel, so it did not). Under fork, a new process runs the worker's signal handler until
its initializer replaces it: that handler defers to ``as_pool_process``.

When the worker is killed outright (SIGKILL, the OOM killer), nothing used to end its pool
processes: they ran on for good, re-parented to pid 1. ``init_pool_process`` ties each pool
process to the worker:

- on Linux, ``prctl(PR_SET_PDEATHSIG, SIGKILL)``: the kernel kills it when its parent dies;
- then it compares ``os.getppid()`` with the parent pid taken before the fork or spawn: a
  parent that died before prctl sends no signal, and that race ends the process at once;
- where prctl is unavailable, or the parent is not the worker, a daemon thread checks every
  ``WATCH_INTERVAL`` seconds and ends the process once its parent or the worker is gone.

Under ``fork`` and ``spawn`` the parent is the worker: prctl alone does it, in milliseconds.
Under ``forkserver`` the parent is the forkserver, and it does *not* exit when the worker
dies: multiprocessing hands the worker's end of the forkserver's ``alive`` pipe to every
process it starts (so they may start processes in turn), and the forkserver waits for EOF on
that pipe. Measured here (3.11): worker SIGKILLed, forkserver and pool processes all alive
minutes later. So those pool processes watch the worker itself; once they are gone the
forkserver reads EOF and exits, and with it the resource tracker.

prctl(2): the signal comes when the parent *thread* exits. ProcessPoolExecutor starts its
processes in the thread that calls ``submit`` (3.11 to 3.13; only ``max_tasks_per_child``,
unused here, starts them in its manager thread), and the worker submits from its main thread.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing.context import BaseContext
from typing import Any

from . import kinds, stdlib_private
from .concurrency import tasks_at_once
from .text import plural

log = logging.getLogger("distproc.worker")

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
WATCH_INTERVAL = 0.5  # s: how late the fallback notices; one getppid() call per tick
PARENT_GONE = 70  # exit status of a pool process that outlived its parent (EX_SOFTWARE)


def _set_parent_death_signal() -> bool:
    """Ask Linux to SIGKILL this process when its parent dies; False where it cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (ImportError, OSError, AttributeError):  # no _ctypes, or no prctl in this libc
        return False
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0


def _gone(pid: int) -> bool:
    """Whether ``pid`` has exited (a zombie has: its parent merely has not reaped it yet)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return not os.path.isdir("/proc/self")  # no /proc: os.kill() was all we could ask
    return stat[stat.rindex(b")") + 2 :][:1] in (b"Z", b"X")


def _watch(parent: int, worker: int) -> None:
    """Until the parent changes or the worker is gone (then end this process): the loop ends
    with the process, or with the worker."""
    while os.getppid() == parent and (worker == parent or not _gone(worker)):
        time.sleep(WATCH_INTERVAL)
    os._exit(PARENT_GONE)


#: What a pool process does with the signals the worker handles (see above).
POOL_SIGNALS = {signal.SIGINT: signal.SIG_IGN, signal.SIGTERM: signal.SIG_DFL}


def as_pool_process(signum: int) -> None:
    """For the worker's signal handler, when it runs in a process forked from the worker
    before ``init_pool_process`` replaced it: do what a pool process does. A pool can break
    (and the executor send SIGTERM) while its last process is starting: in 2 of 9 runs of a
    crashing task on 3.13 with fork, the new process logged the worker's "SIGTERM: stopping",
    ran on, and the worker hung; 0 of 20 runs since (3.13 and 3.14, every start method)."""
    action = POOL_SIGNALS.get(signal.Signals(signum), signal.SIG_DFL)
    signal.signal(signum, action)
    if action == signal.SIG_DFL:
        os.kill(os.getpid(), signum)


def init_pool_process(
    parent: int | None, worker: int | None = None, use_prctl: bool = True
) -> None:
    """The initializer of every pool process: leave SIGINT to the worker, which drains in
    order, end on SIGTERM (the executor's stop, see above), and die with the worker.
    ``parent``: the pid that starts this process, taken before the fork or spawn (None:
    unknown, follow the parent found now); ``worker``: the worker's pid, when it is not the
    parent (``forkserver``)."""
    for sig, action in POOL_SIGNALS.items():
        signal.signal(sig, action)
    if parent is None:
        parent = os.getppid()
    if worker is None:
        worker = parent
    if not (use_prctl and _set_parent_death_signal()) or worker != parent:
        threading.Thread(target=_watch, args=(parent, worker), name="lifeline", daemon=True).start()
    if os.getppid() != parent:  # it died before prctl took effect: no signal will come
        os._exit(PARENT_GONE)


def expected_parent(ctx: BaseContext) -> int | None:
    """The pid that will be the parent of this context's processes, known before they start."""
    if ctx.get_start_method() != "forkserver":
        return os.getpid()
    from multiprocessing import forkserver

    forkserver.ensure_running()
    return stdlib_private.forkserver_pid()


def run_timed(kind: str, payload: Any) -> tuple[Any, float]:
    """Run one task and time it where it runs (module-level: picklable for pools)."""
    t0 = time.perf_counter()
    value = kinds.run(kind, payload)
    return value, time.perf_counter() - t0


class Pools:
    """One pool per mode (``threads`` or ``processes``), made on first use."""

    def __init__(
        self, concurrency: int | None, threads: int, cpus: int, start_method: str | None
    ) -> None:
        self.concurrency = concurrency
        self.threads = threads
        self.cpus = cpus
        self.start_method = start_method
        self._pools: dict[str, Executor] = {}

    def size(self, mode: str) -> int:
        """The pool's size in ``mode`` (``threads`` or ``processes``)."""
        return tasks_at_once(mode, self.concurrency, self.threads, self.cpus)

    def _processes(self, n: int) -> ProcessPoolExecutor:
        ctx = multiprocessing.get_context(self.start_method)
        return ProcessPoolExecutor(
            n,
            mp_context=ctx,
            initializer=init_pool_process,
            initargs=(expected_parent(ctx), os.getpid()),
        )

    def get(self, mode: str) -> Executor:
        pool = self._pools.get(mode)
        if pool is None:
            n = self.size(mode)
            if mode == "threads":
                pool = ThreadPoolExecutor(n, thread_name_prefix="task")
            else:
                pool = self._processes(n)
            self._pools[mode] = pool
            word = "thread" if mode == "threads" else "process"
            log.info("started a pool of %s", plural(n, word))
        return pool

    def drop_broken(self) -> None:
        """A pool process died: drop the broken pool (the next task gets a fresh one)."""
        for mode, pool in list(self._pools.items()):
            if stdlib_private.pool_is_broken(pool):
                pool.shutdown(wait=False, cancel_futures=True)
                del self._pools[mode]

    def run_alone(self, kind: str, payload: Any) -> tuple[Any, float]:
        """Run one task in a fresh one-process pool, so that a crash now is its own
        (raises BrokenProcessPool if its process died, or what the task raised)."""
        with self._processes(1) as iso:
            return iso.submit(run_timed, kind, payload).result()

    def shutdown(self, terminate: bool) -> None:
        """Let go of every pool; ``terminate``: a hung task's process must not outlive us."""
        for pool in self._pools.values():
            if terminate and isinstance(pool, ProcessPoolExecutor):
                for proc in stdlib_private.pool_processes(pool):
                    proc.kill()  # SIGKILL: whatever a hung task does with signals
            pool.shutdown(wait=False, cancel_futures=True)
