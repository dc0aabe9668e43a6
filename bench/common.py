"""Shared benchmark helpers: median-of-k timing, free ports, server processes, cleanup."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import socket
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"
STARTUP_TIMEOUT = 30.0

# "spawn": the CLI also runs Dask (threads in this process), and fork-with-threads can deadlock.
SPAWN = mp.get_context("spawn")


def measure(
    name: str, tasks: int, once: Callable[[], float], repeat: int = 3, **extra: Any
) -> dict[str, Any]:
    """Run ``once`` (returns elapsed seconds for ``tasks`` tasks) ``repeat`` times; median it.

    Returns ``{"name", "tasks", "seconds", "rate", "runs", **extra}`` where ``seconds`` is the
    median elapsed time, ``rate`` the median tasks/second and ``runs`` the per-run rates.
    """
    if repeat < 1:
        raise ValueError("repeat must be >= 1")
    secs = [once() for _ in range(repeat)]
    rates = [tasks / s if s > 0 else float("inf") for s in secs]
    return {
        "name": name,
        "tasks": tasks,
        "seconds": statistics.median(secs),
        "rate": statistics.median(rates),
        "runs": rates,
        **extra,
    }


def skipped(name: str, reason: str, fix: str = "") -> dict[str, Any]:
    """Result for a measurement that could not run here, and the command that brings it."""
    return {"name": name, "skipped": reason, **({"fix": fix} if fix else {})}


def free_port() -> int:
    """A currently free TCP port on loopback (for servers that cannot bind port 0 themselves)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def wait_until(
    pred: Callable[[], bool], timeout: float, interval: float = 0.01, what: str = ""
) -> None:
    """Poll ``pred`` until true; raise ``TimeoutError`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what or pred}")
        time.sleep(interval)


def stop_process(proc: BaseProcess | subprocess.Popen[Any] | None, timeout: float = 5.0) -> None:
    """Terminate (then kill) one process we started; never touches anything else."""
    if proc is None:
        return
    if isinstance(proc, subprocess.Popen):
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        return
    if proc.is_alive():
        proc.terminate()
        proc.join(timeout)
        if proc.is_alive():
            proc.kill()
            proc.join(timeout)
    with contextlib.suppress(ValueError):
        proc.close()


@contextlib.contextmanager
def server_process(
    target: Callable[..., None], *args: Any, timeout: float = STARTUP_TIMEOUT
) -> Iterator[Any]:
    """Run ``target(ready_conn, *args)`` in a spawned process; yield what it sent on ``ready_conn``.

    The target must be module-level, bind its server (port 0), ``ready_conn.send(address)``, then
    serve forever. The process is terminated on exit.
    """
    parent, child = SPAWN.Pipe(duplex=False)
    proc = SPAWN.Process(target=target, args=(child, *args), daemon=True)
    try:
        proc.start()
        child.close()
        if not parent.poll(timeout):
            raise TimeoutError(
                f"{getattr(target, '__name__', target)} did not start in {timeout:.0f}s"
            )
        yield parent.recv()
    finally:
        parent.close()
        stop_process(proc)


def pythonpath_env() -> dict[str, str]:
    """Environment for child interpreters that must import ``bench`` from the repo root."""
    env = dict(os.environ)
    parts = [str(REPO_ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(parts)
    return env


def warm_shutdown(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """SIGTERM (graceful for rq workers), wait, then kill."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
