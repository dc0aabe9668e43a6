"""The worker: leases batches, computes, acknowledges, and survives the master going away.

Concurrency follows the classic lesson: tiny ``square`` tasks run inline (the transport is
the cost), ``io`` tasks on threads (they wait, so the GIL is free), ``cpu`` and custom tasks
on a pool of processes sized to the CPUs this worker may really use. ``--mode`` and
``--concurrency`` override the choice. Where tasks run is ``runner.py`` (pools: ``pools.py``);
results wait in ``outbox.py``; this module holds the sessions with the master.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import secrets
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .classic_loop import classic_loop
from .client import LINK_ERRORS, Unreachable, backoff, broker, connect
from .concurrency import DEFAULT_THREADS
from .identity import describe, local_ip_of, usable_cpus
from .outbox import Outbox, error_text, picklable
from .pools import as_pool_process
from .runner import IDLE_WAIT, TaskRunner
from .wire import Range, payloads_of

log = logging.getLogger("distproc.worker")

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
    threads: int = DEFAULT_THREADS
    batch: int | None = None
    connect_timeout: float = 60.0
    heartbeat: float = 1.0
    drain_timeout: float = 30.0
    start_method: str | None = None


class Worker:
    """A leased-protocol worker (it also speaks the classic protocol when the job asks)."""

    def __init__(self, config: WorkerConfig) -> None:
        self.cfg = config
        self.pid = os.getpid()
        self.wid = f"{config.name}/{self.pid}/{secrets.token_hex(2)}"
        self.stopping = threading.Event()
        self.outbox = Outbox()
        self.cpus = usable_cpus()
        self.tasks = TaskRunner(config, self.cpus, self.outbox, self.stopping, self._release)
        self._broker: Any = None
        self._manager: Any = None
        self._heartbeat_thread: threading.Thread | None = None
        self._heartbeat_stop = threading.Event()  # beats go on while draining
        self._lease_seconds = 10.0
        self._failed_sends = 0
        self._failures = 0  # sessions lost in a row (reset once connected again)
        self._drain_deadline: float | None = None
        self.abandoned = False  # tasks still ran when the drain timed out

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
                    log.warning("lost the master (%s): reconnecting", error_text(exc))
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
            self.tasks.shutdown(terminate=self.abandoned)

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

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if os.getpid() != self.pid:  # a pool process, forked before its initializer ran
            as_pool_process(signum)
            return
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
            classic_loop(self._manager, self.stopping, None)
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
        done, busy = self.outbox.take(job_id) if job_id else ([], 0.0)
        try:
            try:
                reply = self._broker.exchange(self.wid, job_id, done, busy, want, wait)
            except (pickle.PicklingError, TypeError, AttributeError):
                # a value that cannot be pickled: nothing was sent; send it as an error
                done = picklable(done)
                reply = self._broker.exchange(self.wid, job_id, done, busy, want, wait)
        except LINK_ERRORS:
            if job_id:
                self.outbox.put_back(job_id, done, busy)
            raise
        if reply == ("hello",):  # a master that does not know us took none of them
            if job_id:
                self.outbox.put_back(job_id, done, busy)
            return reply
        if done:
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
            self.tasks.collect(block=False)
            stopping = self.stopping.is_set()
            if stopping and not released:
                self.tasks.cancel_unstarted()
                self._drain_deadline = time.monotonic() + self.cfg.drain_timeout
                released = True
            if stopping and self._drain_past_deadline():
                self._abandon()
            if stopping and not self.tasks.inflight and not self.tasks.suspects:
                if job_id and self.outbox.jobs():
                    self._exchange(job_id, 0, 0.0)
                return
            if self.tasks.suspects:
                self.tasks.run_suspects()
                continue
            room = 0 if stopping else self.tasks.room()
            if room == 0 and not len(self.outbox):
                self.tasks.collect(block=True)
                continue
            idle = not self.tasks.inflight and not len(self.outbox)
            reply = self._exchange(job_id, room, IDLE_WAIT if idle else 0.0)
            if reply is None:  # nothing to lease now: wait for our own tasks, not the master
                self.tasks.collect(block=True)
                continue
            if reply[0] == "hello":
                raise ConnectionResetError("the master does not know this worker (restarted?)")
            if reply[0] == "classic":
                if self.cfg.protocol == "auto":
                    classic_loop(self._manager, self.stopping, self._job_is_classic)
                else:
                    time.sleep(IDLE_WAIT)
                continue
            job_id, lease_id, self._lease_seconds, kind, ranges, source = reply
            if self.stopping.is_set():  # the signal came during the call: hand them back
                self._release(job_id, ranges)
                continue
            self.tasks.start(job_id, lease_id, kind, ranges, payloads_of(kind, ranges, source))

    def _release(self, job_id: str, ranges: list[Range], what: str = "unstarted") -> None:
        if ranges and self._broker is not None:
            n = self._broker.release(self.wid, job_id, ranges)
            log.info("released %d %s tasks of job %s", n, what, job_id)

    def _drain_past_deadline(self) -> bool:
        return (
            bool(self.tasks.inflight)
            and self._drain_deadline is not None
            and time.monotonic() > self._drain_deadline
        )

    def _abandon(self) -> None:
        """The drain timed out: hand back what still runs (a late result is a duplicate)."""
        running = self.tasks.abandon()
        self.abandoned = True
        log.warning("drain timeout (%.0fs): handing back %d running tasks",
                    self.cfg.drain_timeout, len(running))  # fmt: skip
        self.tasks.release_runs(running, "still running")

    def _drain(self) -> None:
        """On the way out: release what has not started, finish the rest, ack, say goodbye."""
        try:
            if self._broker is not None:
                self.tasks.cancel_unstarted()
            if self._drain_deadline is None:
                self._drain_deadline = time.monotonic() + self.cfg.drain_timeout
            while self.tasks.inflight and not self._drain_past_deadline():
                self.tasks.collect(block=True)
            if self.tasks.inflight:
                self._abandon()
            if self._broker is None:
                return
            for job_id in self.outbox.jobs():
                self._exchange(job_id, 0, 0.0)
            self._broker.bye(self.wid)
        except LINK_ERRORS as exc:
            log.warning("could not say goodbye to the master: %s", error_text(exc))

    def _job_is_classic(self) -> bool:
        """Whether the master's job still speaks the classic protocol (asked when idle)."""
        return self._exchange(None, 0, 0.0) == ("classic",)
