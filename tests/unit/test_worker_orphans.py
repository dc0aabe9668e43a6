"""A worker's pool processes die with it, whatever kills it and whatever the start method.

Pool processes ignore SIGINT (the worker drains them in order), so a worker killed with
SIGKILL used to leave them running for good, re-parented to pid 1.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from harness import Procs

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")

GONE_WITHIN = 5.0  # seconds; the prctl path takes milliseconds, the fallback thread ~0.5 s


def _stat(pid: int) -> tuple[int, str, int] | None:
    """(ppid, state, start time) of ``pid`` from /proc, or None if there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the name may hold spaces and parens
    return int(fields[1]), fields[0], int(fields[19])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _descendants(root: int) -> dict[int, int]:
    """Every live descendant of ``root``: pid -> start time (to tell a reused pid apart)."""
    parent_of: dict[int, tuple[int, int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(int(entry))) is not None and st[1] not in "ZX":
            parent_of[int(entry)] = (st[0], st[2])
    found: dict[int, int] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, start) in parent_of.items():
            if ppid == parent and pid not in found:
                found[pid] = start
                frontier.append(pid)
    return found


def _alive(pid: int, start: int) -> bool:
    st = _stat(pid)
    return st is not None and st[2] == start and st[1] not in "ZX"  # a zombie has died


def _pool_processes(worker: int, family: dict[int, int]) -> list[int]:
    """The task processes among the worker's descendants (not its resource tracker or
    forkserver, which are helpers: they must go too, but they run no task)."""
    helpers = ("resource_tracker", "forkserver import main")
    return [
        pid
        for pid in family
        if not (any(h in _cmdline(pid) for h in helpers) and (_stat(pid) or (0,))[0] == worker)
    ]


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_pool_processes_die_when_worker_is_sigkilled(procs: Procs, method: str) -> None:
    procs.master()
    worker = procs.worker(
        "--name", "victim", "--mode", "processes", "--concurrency", "2", "--start-method", method
    )
    procs.wait_workers(1)
    # four one-minute tasks: both pool processes are busy when the worker is killed
    sub = procs.submit_bg("--kind", "io", "--size", "60000", "--tasks", "4", "--timeout", "60")
    family: dict[int, int] = {}
    try:
        deadline = time.monotonic() + 20
        while len(_pool_processes(worker.pid, family)) < 2:
            assert time.monotonic() < deadline, f"no 2 pool processes: {family}"
            time.sleep(0.1)
            family = _descendants(worker.pid)
        procs.wait_done(0)  # the job is running
        time.sleep(0.5)  # the tasks have reached their processes
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        deadline = time.monotonic() + GONE_WITHIN
        while (left := [p for p, start in family.items() if _alive(p, start)]) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.05)
        assert not left, {p: _cmdline(p) for p in left}
    finally:
        for pid, start in family.items():  # whatever outlived the worker: ours to end
            if _alive(pid, start):
                os.kill(pid, signal.SIGKILL)
        sub.kill()
        sub.wait(timeout=10)


def test_pool_process_whose_parent_died_before_prctl_exits() -> None:
    """The race: the parent dies between the fork and prctl, so no signal will ever come.
    The initializer must see that its parent is not the one it was started by, and exit."""
    code = (
        "from distproc.pools import init_pool_process\n"
        "init_pool_process(1)\n"  # pid 1 is never our parent here: as if ours had died
        "print('survived')\n"
    )
    assert os.getppid() != 1
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "survived" not in r.stdout, (r.returncode, r.stdout, r.stderr)


def test_pool_process_without_prctl_follows_its_parent(tmp_path: Path) -> None:
    """The portable fallback (no prctl): a thread sees the parent go and ends the process."""
    script = tmp_path / "fallback.py"
    script.write_text(
        "import os, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', '''\n"
        "import os, sys, time\n"
        "from distproc import pools\n"
        "pools.init_pool_process(os.getppid(), None, use_prctl=False)\n"
        "print(os.getpid(), flush=True)\n"
        "time.sleep(60)\n"
        "'''], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)\n"
        "print(child.stdout.readline().strip(), flush=True)\n"
        "os._exit(0)\n"  # the parent dies without a word: no signal, no EOF
    )
    # the child's output goes to its parent only: run() returns as the parent exits
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=30)
    pid = int(r.stdout.strip())
    st = _stat(pid)
    start = st[2] if st else 0
    try:
        deadline = time.monotonic() + GONE_WITHIN
        while _alive(pid, start) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid, start), "the orphan outlived its parent"
    finally:
        if _alive(pid, start):
            os.kill(pid, signal.SIGKILL)


def test_the_workers_handler_in_a_forked_pool_process_acts_as_one() -> None:
    """Under fork, a pool process runs the worker's signal handler until its initializer
    replaces it. A SIGTERM then (the executor stopping a broken pool) must end it, as after
    (pools.py); it used to set the copy of the worker's stop flag and run on."""
    from distproc.worker import Worker, WorkerConfig

    w = Worker(WorkerConfig(address=("127.0.0.1", 9), authkey=b"k"))
    pid = os.fork()
    if pid == 0:  # the child: a pool process before its initializer
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, w._on_signal)
            os.kill(os.getpid(), signal.SIGINT)  # ignored, as in a pool process
            time.sleep(0.2)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(10)
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM, status
    assert not w.stopping.is_set()
