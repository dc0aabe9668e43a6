"""The classic protocol's calls on the broker: the tutorial's task and result queues.

A room of the broker's (a mixin of ``Broker``), not an object beside it: a tutorial worker's
``get`` and ``put`` take the broker's lock and change its current job as a leased call does,
and wake the same waiters. It has a file of its own because its rules are the classic
protocol's, not the leases': a task taken is remembered by its connection (``Takers``), a
result is counted for a worker by the peer IP it came from (``WorkerRegistry.classic``), and
a connection that closes loses what it took and never answered (at-most-once, ``classic.py``).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

from . import calls
from .classic import ClassicResults, ClassicTasks, Takers, parse_result
from .journal import Journal
from .journal_feed import JournalFeed
from .ledger import Ledger
from .registry import WorkerRegistry
from .server import current_connection, current_peer

log = logging.getLogger("distproc.master")


class ClassicProtocol:
    """The classic calls of ``Broker``, which sets these attributes and ``_noted``."""

    lock: threading.Lock
    changed: threading.Condition
    registry: WorkerRegistry
    current: Ledger | None
    journal: Journal | None
    feed: JournalFeed
    takers: Takers
    task_queue: ClassicTasks
    results_sink: ClassicResults

    def _noted(self, job: Ledger, worker: int | None = None) -> int:
        raise NotImplementedError  # Broker's: the journal has the change; an end wakes all

    def get_task_queue(self) -> ClassicTasks:
        return self.task_queue

    def get_result_queue(self) -> ClassicResults:
        return self.results_sink

    def classic_take(self, block: bool = True, timeout: float | None = None) -> Any:
        """A tutorial worker's ``task.get()``: the next task of the classic job, remembered
        as taken by this connection. Raises ``queue.Empty`` like ``Queue.get``."""
        calls.flag("block", block)
        timeout = calls.seconds("timeout", timeout, high=366 * 86400, optional=True)
        conn, peer = current_connection(), current_peer()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.lock:
            while True:
                job = self.current
                if job is not None and job.spec.protocol == "classic":
                    who = self.registry.classic_name(peer) if self.journal is not None else ""
                    tid = job.take(who, peer)
                    if tid is not None:
                        self.takers.took(conn, tid, peer)
                        payload, seq = job.payloads[tid], self.feed.note(job)
                        break
                remaining = 1.0 if deadline is None else deadline - time.monotonic()
                if not block or remaining <= 0:
                    raise queue.Empty
                self.changed.wait(min(remaining, 1.0))
        self.feed.commit(seq)  # taken, on disk: lost, not served twice, if the master dies now
        return payload

    def classic_pending(self) -> int:
        with self.lock:
            job = self.current
            if job is None or job.spec.protocol != "classic" or job.done:
                return 0
            return job.pending_count()

    def classic_result(self, item: Any) -> None:
        """Account one tutorial-style result: ``'n * n = r'`` or the bare int ``n*n``."""
        peer = current_peer()
        with self.lock:
            job = self.current
            if job is None or job.spec.protocol != "classic":
                log.info("ignored a classic result from %s: no classic job is running", peer)
                return
            tid, value = parse_result(item, job.payloads.index_of)  # type: ignore[attr-defined]
            if tid is None:
                job.counts["stale"] += 1
                return
            self.takers.answered(tid)
            index = self.registry.classic(peer)
            job.accept(index, peer, [(tid, value)])
            seq = self._noted(job, index)
        self.feed.commit(seq)

    def connection_closed(self, conn: int) -> None:
        """The server's disconnect hook: what this connection took and never answered is lost."""
        with self.lock:
            taken = self.takers.closed(conn)
            job = self.current
            if not taken or job is None or job.spec.protocol != "classic":
                return
            for tid, peer in sorted(taken.items()):
                who = self.registry.classic_name(peer)
                reason = f"lost: {who} took it and its connection closed without a result"
                if job.lose(tid, reason, who, peer):
                    log.warning("job %s: task %d lost with %s (%s)", job.id, tid, who, peer)
            self.changed.notify_all()
            seq = self._noted(job)
        self.feed.commit(seq)
