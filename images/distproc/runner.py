"""Where a worker's leased tasks run, and how their results reach the outbox.

Tiny ``square`` tasks run inline (the transport is the cost), ``io`` tasks on threads (they
wait, so the GIL is free), ``cpu`` and custom tasks on processes; ``--mode`` overrides it.
A pool process that dies breaks its whole pool: every task it held becomes a suspect, re-run
alone in a one-process pool, so that only the task that really kills its process fails.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future
from concurrent.futures import wait as wait_futures
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import kinds
from .concurrency import run_mode
from .outbox import Outbox, error_text
from .pools import Pools, run_timed
from .wire import Range, ranges_of

if TYPE_CHECKING:
    from .worker import WorkerConfig

log = logging.getLogger("distproc.worker")

IDLE_WAIT = 0.5
STOP_CHECK = 0.05

CHUNK = 256  # inline tasks run between two looks at the stop flag

#: hands tasks back to the master: (job_id, ranges of ids, what they are, for the log)
Release = Callable[[str, list[Range], str], None]


@dataclass
class Running:
    """A task handed to a pool."""

    job_id: str
    lease_id: int
    tid: int
    kind: str
    payload: Any


class TaskRunner:
    """Tasks in flight: started inline or on pools, collected into the outbox by lease."""

    def __init__(
        self,
        cfg: WorkerConfig,
        cpus: int,
        outbox: Outbox,
        stopping: threading.Event,
        release: Release,
    ) -> None:
        self.cfg = cfg
        self.outbox = outbox
        self.stopping = stopping
        self.release = release
        self.pools = Pools(cfg.concurrency, cfg.threads, cpus, cfg.start_method)
        self.inflight: dict[Future, Running] = {}
        self.suspects: list[Running] = []
        self._last_mode: str | None = None

    def release_runs(self, runs: list[Running], what: str) -> None:
        """Hand tasks back to the master, job by job."""
        by_job: dict[str, list[int]] = defaultdict(list)
        for run in runs:
            by_job[run.job_id].append(run.tid)
        for job_id, tids in by_job.items():
            self.release(job_id, ranges_of(sorted(tids)), what)

    def mode(self, kind: str) -> str:
        return run_mode(kind, self.cfg.mode)

    def room(self) -> int:
        """How many tasks to ask for: a batch when inline, else enough to keep pools busy."""
        cap = self.cfg.batch or 1_000_000
        if self._last_mode in (None, "inline"):
            return cap
        return max(0, min(cap, 2 * self.pools.size(self._last_mode) - len(self.inflight)))

    def start(self, job_id: str, lease_id: int, kind: str, ranges: list[Range],
              payloads: list[Any]) -> None:  # fmt: skip
        """Run a lease: ``payloads`` flat, in the order of the ids of ``ranges``."""
        mode = self.mode(kind)
        self._last_mode = mode
        if mode == "inline":
            self._run_inline(job_id, lease_id, kind, ranges, payloads)
            return
        ids = (t for first, count in ranges for t in range(first, first + count))
        for tid, payload in zip(ids, payloads, strict=True):
            run = Running(job_id, lease_id, tid, kind, payload)
            try:
                self.inflight[self.pools.get(mode).submit(run_timed, kind, payload)] = run
            except BrokenProcessPool:  # a process died before we noticed: same as collect()
                self.suspects.append(run)
                self._recover_pool()

    def _run_inline(self, job_id: str, lease_id: int, kind: str, ranges: list[Range],
                    payloads: list[Any]) -> None:  # fmt: skip
        try:
            fn = kinds.resolve(kind)
        except kinds.KindError as exc:
            for first, count in ranges:
                ids = range(first, first + count)
                self.outbox.add(job_id, lease_id, first, [None] * count,
                                [(t, error_text(exc)) for t in ids])  # fmt: skip
            return
        t0 = time.perf_counter()
        pos = 0
        for i, (first, count) in enumerate(ranges):
            values: list[Any] = []
            errors: list[tuple[int, str]] = []
            for off in range(0, count, CHUNK):
                if self.stopping.is_set():
                    self.outbox.add(job_id, lease_id, first, values, errors)
                    self.release(job_id, [(first + off, count - off), *ranges[i + 1 :]],
                                 "unstarted")  # fmt: skip
                    self.outbox.busy[job_id] += time.perf_counter() - t0
                    return
                run_span(fn, payloads[pos + off : pos + off + CHUNK], first + off, values, errors)
            self.outbox.add(job_id, lease_id, first, values, errors)
            pos += count
        self.outbox.busy[job_id] += time.perf_counter() - t0

    def collect(self, block: bool) -> None:
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
                self.outbox.add_one(run.job_id, run.lease_id, run.tid, value)
                self.outbox.busy[run.job_id] += seconds
            else:
                self.outbox.add_one(run.job_id, run.lease_id, run.tid, error=error_text(exc))
        if broken:
            self._recover_pool()

    def _recover_pool(self) -> None:
        """A pool process died: drop the broken pool; its tasks come back as suspects."""
        self.pools.drop_broken()
        log.warning("a pool process died: re-running its tasks one at a time")

    def run_suspects(self) -> None:
        """Run each suspect alone in a fresh one-process pool: a crash now is its own."""
        while self.suspects and not self.stopping.is_set():
            run = self.suspects.pop(0)
            try:
                value, seconds = self.pools.run_alone(run.kind, run.payload)
            except BrokenProcessPool:
                error = "crashed its worker process (killed or exited)"
                self.outbox.add_one(run.job_id, run.lease_id, run.tid, error=error)
            except Exception as exc:
                self.outbox.add_one(run.job_id, run.lease_id, run.tid, error=error_text(exc))
            else:
                self.outbox.add_one(run.job_id, run.lease_id, run.tid, value)
                self.outbox.busy[run.job_id] += seconds
        if self.suspects:  # stopping: hand the rest back
            suspects, self.suspects = self.suspects, []
            self.release_runs(suspects, "unstarted")

    def cancel_unstarted(self) -> None:
        """Stopping: tasks still queued in a pool go back to the master, unspent."""
        cancelled = [self.inflight.pop(fut) for fut in list(self.inflight) if fut.cancel()]
        self.release_runs(cancelled, "unstarted")

    def abandon(self) -> list[Running]:
        """Give up on what still runs (the drain timed out): the tasks, to hand back."""
        running = list(self.inflight.values())
        for fut in self.inflight:
            fut.cancel()
        self.inflight.clear()
        return running

    def shutdown(self, terminate: bool) -> None:
        self.pools.shutdown(terminate)


def run_span(fn: Callable[[Any], Any], payloads: list[Any], first: int, values: list[Any],
             errors: list[tuple[int, str]]) -> None:  # fmt: skip
    """Append ``fn(p)`` for each payload (ids from ``first``) to ``values``; where it raises,
    None, and the error to ``errors``. One C loop (``list.extend(map(...))``) unless a task
    raises: ``extend`` keeps what the ``map`` made before (test_ranges.py checks it)."""
    start = len(values)
    it = iter(payloads)
    while True:
        try:
            values.extend(map(fn, it))
        except Exception as exc:
            errors.append((first + len(values) - start, error_text(exc)))
            values.append(None)
            continue
        if len(values) - start == len(payloads):
            return
        # a task raised StopIteration, which ends a map as if it had run out
        errors.append((first + len(values) - start, "StopIteration"))
        values.append(None)
