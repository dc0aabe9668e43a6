"""The worker: leases batches, computes, acknowledges, and survives the master going away.

Concurrency follows the classic lesson: tiny ``square`` tasks run inline (the transport is
the cost), ``io`` tasks on threads (they wait, so the GIL is free), ``cpu`` and custom tasks
on a pool of processes sized to the CPUs this worker may really use. ``--mode`` and
``--concurrency`` override the choice.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import pickle
import queue
import secrets
import signal
import socket
import threading
import time
from collections import defaultdict
from concurrent.futures import (
    FIRST_COMPLETED,
    Executor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
)
from concurrent.futures import wait as wait_futures
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from . import kinds
from .client import LINK_ERRORS, Unreachable, backoff, broker, connect
from .identity import describe, local_ip_of, usable_cpus

log = logging.getLogger("distproc.worker")

MODES = ("auto", "inline", "threads", "processes")
AUTO_MODE = {"square": "inline", "io": "threads", "cpu": "processes"}
IDLE_WAIT = 0.5
STOP_CHECK = 0.05
UNDELIVERABLE_AFTER = 3  # consecutive refused sends of the same results


@dataclass
class WorkerConfig:
    """How a worker runs; the CLI fills it in."""

    address: tuple[str, int]
    authkey: bytes
    name: str = field(default_factory=socket.gethostname)
    group: str = ""
    protocol: str = "auto"  # auto follows the master's job; leased or classic forces one
    mode: str = "auto"
    concurrency: int | None = None
    threads: int = 32
    batch: int | None = None
    connect_timeout: float = 60.0
    heartbeat: float = 1.0
    drain_timeout: float = 30.0
    start_method: str | None = None


def _ignore_signals() -> None:
    """Pool processes leave SIGINT/SIGTERM to the worker, which drains them in order."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def run_timed(kind: str, payload: Any) -> tuple[Any, float]:
    """Run one task and time it where it runs (module-level: picklable for pools)."""
    t0 = time.perf_counter()
    value = kinds.run(kind, payload)
    return value, time.perf_counter() - t0


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


def _picklable(oks: list[tuple[int, Any]]) -> tuple[list, list]:
    """Split results into those that pickle and errors for those that don't."""
    good, bad = [], []
    for tid, value in oks:
        try:
            pickle.dumps(value)
        except Exception as exc:
            bad.append((tid, f"result cannot be pickled: {_error_text(exc)}"))
        else:
            good.append((tid, value))
    return good, bad


class Outbox:
    """Results waiting to be acknowledged, per job (kept across reconnects)."""

    def __init__(self) -> None:
        self.oks: dict[str, list[tuple[int, Any]]] = defaultdict(list)
        self.errors: dict[str, list[tuple[int, str]]] = defaultdict(list)
        self.busy: dict[str, float] = defaultdict(float)
        self.leases: dict[str, list[int]] = defaultdict(list)

    def jobs(self) -> list[str]:
        return [
            j
            for j in set(self.oks) | set(self.errors) | set(self.leases)
            if self.oks.get(j) or self.errors.get(j) or self.leases.get(j)
        ]

    def take(self, job_id: str) -> tuple[list, list, float, list]:
        return (
            self.oks.pop(job_id, []),
            self.errors.pop(job_id, []),
            self.busy.pop(job_id, 0.0),
            self.leases.pop(job_id, []),
        )

    def put_back(self, job_id: str, oks: list, errors: list, busy: float, leases: list) -> None:
        self.oks[job_id][:0] = oks
        self.errors[job_id][:0] = errors
        self.busy[job_id] += busy
        self.leases[job_id][:0] = leases

    def undeliverable(self, reason: str) -> int:
        """Turn every result waiting to go into an error (the master keeps refusing them)."""
        n = 0
        for job_id, oks in self.oks.items():
            self.errors[job_id].extend((tid, reason) for tid, _ in oks)
            n += len(oks)
            oks.clear()
        return n

    def __len__(self) -> int:
        return sum(len(v) for v in self.oks.values()) + sum(len(v) for v in self.errors.values())


@dataclass
class Running:
    """A task handed to a pool."""

    job_id: str
    lease_id: int
    tid: int
    kind: str
    payload: Any


class Worker:
    """A leased-protocol worker (it also speaks the classic protocol when the job asks)."""

    def __init__(self, config: WorkerConfig) -> None:
        self.cfg = config
        self.wid = f"{config.name}/{os.getpid()}/{secrets.token_hex(2)}"
        self.stopping = threading.Event()
        self.outbox = Outbox()
        self.inflight: dict[Future, Running] = {}
        self.lease_left: dict[tuple[str, int], int] = {}
        self.suspects: list[Running] = []
        self._pools: dict[str, Executor] = {}
        self._broker: Any = None
        self._manager: Any = None
        self._heartbeat_thread: threading.Thread | None = None
        self._heartbeat_stop = threading.Event()  # beats go on while draining
        self._lease_seconds = 10.0
        self._last_mode: str | None = None
        self._failed_sends = 0
        self._failures = 0  # sessions lost in a row (reset once connected again)
        self._drain_deadline: float | None = None
        self.abandoned = False  # tasks still ran when the drain timed out
        self.cpus = usable_cpus()

    # -- lifecycle ---------------------------------------------------------------------------
    def run(self) -> int:
        """Work until SIGTERM/SIGINT (exit 0) or until the master stays unreachable (exit 1)."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        try:
            while not self.stopping.is_set():
                try:
                    self._session()
                except Unreachable:
                    raise
                except LINK_ERRORS as exc:
                    if self.stopping.is_set():
                        break
                    log.warning("lost the master (%s): reconnecting", _error_text(exc))
                    self._after_failure()
                except Exception:  # a bug or a bad task must not end the worker
                    log.exception("worker session failed: reconnecting")
                    self._after_failure()
            self._drain()
            return 0
        except Unreachable as exc:
            log.error("%s", exc)
            return 1
        finally:
            self._heartbeat_stop.set()
            self._shutdown_pools()

    def _after_failure(self) -> None:
        """Drop the connection, give up on results the master keeps refusing, back off."""
        self._drop_connection()
        if len(self.outbox):
            self._failed_sends += 1
            if self._failed_sends >= UNDELIVERABLE_AFTER:
                n = self.outbox.undeliverable(
                    f"result not delivered: the master dropped the connection "
                    f"{self._failed_sends} times while receiving it (can it unpickle it?)"
                )
                log.error("turned %d undeliverable results into errors", n)
                self._failed_sends = 0
        self.stopping.wait(backoff(self._failures))
        self._failures += 1

    def _shutdown_pools(self) -> None:
        for pool in self._pools.values():
            if self.abandoned and isinstance(pool, ProcessPoolExecutor):
                for proc in list(getattr(pool, "_processes", {}).values()):
                    proc.terminate()  # a hung task: its process must not outlive us
            pool.shutdown(wait=False, cancel_futures=True)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if not self.stopping.is_set():
            log.info(
                "%s: stopping; finishing or releasing what this worker holds",
                signal.Signals(signum).name,
            )
        self.stopping.set()

    def _session(self) -> None:
        self._manager = connect(self.cfg.address, self.cfg.authkey, self.cfg.connect_timeout)
        b = broker(self._manager)
        b.ping()  # opens this thread's connection, so its local address is known
        local_ip = local_ip_of(b._tls.connection.fileno())
        info = b.hello(self.wid, describe(self.cfg.name, self.cfg.group, local_ip))
        self._broker = b
        self._failures = 0
        log.info(
            "connected to master %s (%s) from %s as %s",
            info["instance"],
            info["hostname"],
            local_ip,
            self.wid,
        )
        self._start_heartbeat()
        if self.cfg.protocol == "classic":
            self._classic_loop(auto=False)
        else:
            self._leased_loop()

    def _drop_connection(self) -> None:
        self._broker = None
        self._manager = None

    # -- heartbeat ---------------------------------------------------------------------------
    def _start_heartbeat(self) -> None:
        if self._heartbeat_thread is None:
            self._heartbeat_thread = threading.Thread(
                target=self._heartbeat, name="heartbeat", daemon=True
            )
            self._heartbeat_thread.start()

    def _heartbeat(self) -> None:
        """Renew this worker's leases: every ``--heartbeat`` s, and 3 times per lease."""
        while not self._heartbeat_stop.wait(min(self.cfg.heartbeat, self._lease_seconds / 3)):
            b = self._broker
            if b is None:
                continue
            # the main loop owns reconnecting; a missed beat is harmless
            with contextlib.suppress(Exception):
                b.renew(self.wid)

    # -- leased protocol -----------------------------------------------------------------------
    def _exchange(self, job_id: str | None, want: int, wait: float) -> Any:
        oks, errors, busy, leases = self.outbox.take(job_id) if job_id else ([], [], 0.0, [])
        try:
            try:
                reply = self._broker.exchange(
                    self.wid, job_id, oks, errors, busy, leases, want, wait
                )
            except (pickle.PicklingError, TypeError, AttributeError):
                # a value that cannot be pickled: nothing was sent; send it as an error
                oks, bad = _picklable(oks)
                errors = errors + bad
                reply = self._broker.exchange(
                    self.wid, job_id, oks, errors, busy, leases, want, wait
                )
        except LINK_ERRORS:
            if job_id:
                self.outbox.put_back(job_id, oks, errors, busy, leases)
            raise
        if oks or errors:
            self._failed_sends = 0
        return reply

    def _flush_other_jobs(self, keep: str | None) -> None:
        for job_id in self.outbox.jobs():
            if job_id != keep:
                self._exchange(job_id, 0, 0.0)

    def _leased_loop(self) -> None:
        job_id: str | None = None
        released = False
        while True:
            self._flush_other_jobs(job_id)
            self._collect(block=False)
            stopping = self.stopping.is_set()
            if stopping and not released:
                self._cancel_unstarted()
                self._drain_deadline = time.monotonic() + self.cfg.drain_timeout
                released = True
            if stopping and self._drain_past_deadline():
                self._abandon()
            if stopping and not self.inflight and not self.suspects:
                if job_id and self.outbox.jobs():
                    self._exchange(job_id, 0, 0.0)
                return
            if self.suspects:
                self._run_suspects()
                continue
            room = 0 if stopping else self._room()
            if room == 0 and not len(self.outbox):
                self._collect(block=True)
                continue
            idle = not self.inflight and not len(self.outbox)
            reply = self._exchange(job_id, room, IDLE_WAIT if idle else 0.0)
            if reply is None:  # nothing to lease now: wait for our own tasks, not the master
                self._collect(block=True)
                continue
            if reply[0] == "hello":
                raise ConnectionResetError("the master does not know this worker (restarted?)")
            if reply[0] == "classic":
                if self.cfg.protocol == "auto":
                    self._classic_loop(auto=True)
                else:
                    time.sleep(IDLE_WAIT)
                continue
            job_id, lease_id, self._lease_seconds, kind, tasks = reply
            if self.stopping.is_set():  # the signal came during the call: hand them back
                self._release(job_id, [tid for tid, _ in tasks])
                continue
            self._start(job_id, lease_id, kind, tasks)

    def _mode(self, kind: str) -> str:
        if self.cfg.mode != "auto":
            return self.cfg.mode
        return AUTO_MODE.get(kind, "processes")

    def _room(self) -> int:
        """How many tasks to ask for: a batch when inline, else enough to keep pools busy."""
        cap = self.cfg.batch or 1_000_000
        if self._last_mode in (None, "inline"):
            return cap
        return max(0, min(cap, 2 * self._pool_size(self._last_mode) - len(self.inflight)))

    def _pool_size(self, mode: str) -> int:
        if self.cfg.concurrency:
            return self.cfg.concurrency
        return self.cfg.threads if mode == "threads" else self.cpus

    def _pool(self, mode: str) -> Executor:
        pool = self._pools.get(mode)
        if pool is None:
            n = self._pool_size(mode)
            if mode == "threads":
                pool = ThreadPoolExecutor(n, thread_name_prefix="task")
            else:
                ctx = multiprocessing.get_context(self.cfg.start_method)
                pool = ProcessPoolExecutor(n, mp_context=ctx, initializer=_ignore_signals)
            self._pools[mode] = pool
            log.info("started a pool of %d %s", n, mode)
        return pool

    def _start(self, job_id: str, lease_id: int, kind: str, tasks: list[tuple[int, Any]]) -> None:
        mode = self._mode(kind)
        self._last_mode = mode
        if mode == "inline":
            self._run_inline(job_id, lease_id, kind, tasks)
            return
        self.lease_left[(job_id, lease_id)] = len(tasks)
        for tid, payload in tasks:
            run = Running(job_id, lease_id, tid, kind, payload)
            try:
                self.inflight[self._pool(mode).submit(run_timed, kind, payload)] = run
            except BrokenProcessPool:  # a process died before we noticed: same as below
                self.suspects.append(run)
                self._recover_pool()

    def _run_inline(self, job_id: str, lease_id: int, kind: str, tasks: list) -> None:
        try:
            fn = kinds.resolve(kind)
        except kinds.KindError as exc:
            self.outbox.errors[job_id].extend((tid, _error_text(exc)) for tid, _ in tasks)
            self.outbox.leases[job_id].append(lease_id)
            return
        oks = self.outbox.oks[job_id]
        errors = self.outbox.errors[job_id]
        t0 = time.perf_counter()
        for i, (tid, payload) in enumerate(tasks):
            if self.stopping.is_set():
                self._release(job_id, [t for t, _ in tasks[i:]])
                break
            try:
                oks.append((tid, fn(payload)))
            except Exception as exc:
                errors.append((tid, _error_text(exc)))
        self.outbox.busy[job_id] += time.perf_counter() - t0
        self.outbox.leases[job_id].append(lease_id)

    def _release(self, job_id: str, tids: list[int], what: str = "unstarted") -> None:
        if tids and self._broker is not None:
            n = self._broker.release(self.wid, job_id, tids)
            log.info("released %d %s tasks of job %s", n, what, job_id)

    def _release_runs(self, runs: list[Running], what: str) -> None:
        """Hand tasks back to the master, job by job."""
        by_job: dict[str, list[int]] = defaultdict(list)
        for run in runs:
            by_job[run.job_id].append(run.tid)
        for job_id, tids in by_job.items():
            self._release(job_id, tids, what)

    def _collect(self, block: bool) -> None:
        """Move finished pool tasks to the outbox; a broken pool turns its tasks into suspects."""
        if not self.inflight:
            return
        waiting = list(self.inflight)
        deadline = time.monotonic() + IDLE_WAIT
        while True:  # in short slices, so that a SIGTERM is acted on at once
            done, _ = wait_futures(
                waiting, timeout=STOP_CHECK if block else 0, return_when=FIRST_COMPLETED
            )
            if done or not block or self.stopping.is_set() or time.monotonic() > deadline:
                break
        broken = False
        for fut in done:
            run = self.inflight.pop(fut)
            if fut.cancelled():
                continue
            exc = fut.exception()
            if isinstance(exc, BrokenProcessPool):
                broken = True
                self.suspects.append(run)
                continue
            if exc is None:
                value, seconds = fut.result()
                self.outbox.oks[run.job_id].append((run.tid, value))
                self.outbox.busy[run.job_id] += seconds
            else:
                self.outbox.errors[run.job_id].append((run.tid, _error_text(exc)))
            self._lease_step(run)
        if broken:
            self._recover_pool()

    def _lease_step(self, run: Running) -> None:
        key = (run.job_id, run.lease_id)
        left = self.lease_left.get(key, 1) - 1
        if left <= 0:
            self.lease_left.pop(key, None)
            self.outbox.leases[run.job_id].append(run.lease_id)
        else:
            self.lease_left[key] = left

    def _recover_pool(self) -> None:
        """A pool process died: drop the broken pool; its tasks come back as suspects."""
        for mode, pool in list(self._pools.items()):
            if getattr(pool, "_broken", False):
                pool.shutdown(wait=False, cancel_futures=True)
                del self._pools[mode]
        log.warning("a pool process died: re-running its tasks one at a time")

    def _run_suspects(self) -> None:
        """Run each suspect alone in a fresh one-process pool: a crash now is its own."""
        ctx = multiprocessing.get_context(self.cfg.start_method)
        while self.suspects and not self.stopping.is_set():
            run = self.suspects.pop(0)
            with ProcessPoolExecutor(1, mp_context=ctx, initializer=_ignore_signals) as iso:
                try:
                    value, seconds = iso.submit(run_timed, run.kind, run.payload).result()
                except BrokenProcessPool:
                    self.outbox.errors[run.job_id].append(
                        (run.tid, "crashed its worker process (killed or exited)")
                    )
                except Exception as exc:
                    self.outbox.errors[run.job_id].append((run.tid, _error_text(exc)))
                else:
                    self.outbox.oks[run.job_id].append((run.tid, value))
                    self.outbox.busy[run.job_id] += seconds
            self._lease_step(run)
        if self.suspects:  # stopping: hand the rest back
            suspects, self.suspects = self.suspects, []
            self._release_runs(suspects, "unstarted")

    def _cancel_unstarted(self) -> None:
        """Stopping: tasks still queued in a pool go back to the master, unspent."""
        cancelled = [self.inflight.pop(fut) for fut in list(self.inflight) if fut.cancel()]
        self._release_runs(cancelled, "unstarted")

    def _drain_past_deadline(self) -> bool:
        return (
            bool(self.inflight)
            and self._drain_deadline is not None
            and time.monotonic() > self._drain_deadline
        )

    def _abandon(self) -> None:
        """The drain timed out: hand back what still runs (a late result is a duplicate)."""
        running = list(self.inflight.values())
        for fut in self.inflight:
            fut.cancel()
        self.inflight.clear()
        self.abandoned = True
        log.warning("drain timeout (%.0fs): handing back %d running tasks",
                    self.cfg.drain_timeout, len(running))  # fmt: skip
        self._release_runs(running, "still running")

    def _drain(self) -> None:
        """On the way out: release what has not started, finish the rest, ack, say goodbye."""
        try:
            if self._broker is not None:
                self._cancel_unstarted()
            if self._drain_deadline is None:
                self._drain_deadline = time.monotonic() + self.cfg.drain_timeout
            while self.inflight and not self._drain_past_deadline():
                self._collect(block=True)
            if self.inflight:
                self._abandon()
            if self._broker is None:
                return
            for job_id in self.outbox.jobs():
                self._exchange(job_id, 0, 0.0)
            self._broker.bye(self.wid)
        except LINK_ERRORS as exc:
            log.warning("could not say goodbye to the master: %s", _error_text(exc))

    # -- classic protocol ----------------------------------------------------------------------
    def _classic_loop(self, auto: bool) -> None:
        """The tutorial's loop: one ``get`` and one ``put`` per task, no ids, no leases."""
        tasks = self._manager.get_task_queue()
        results = self._manager.get_result_queue()
        while not self.stopping.is_set():
            try:
                n = tasks.get(timeout=1)
            except queue.Empty:
                if auto and self._exchange(None, 0, 0.0) != ("classic",):
                    return
                continue
            results.put("%d * %d = %d" % (n, n, n * n))  # noqa: UP031 (the tutorial's format)
